"""Standard CL (dbpedia, amazon, yahoo, agnews) on a generative LM: SmolLM2-135M-Instruct + LoRA (r 8, q_proj/v_proj),
the chat template, exact match of the generated answer (configs/standard_cl_generative.yaml), every method of the
Recurrent-KIF paper's Table 1 and LwF; OP / BWT / FWT / LA / F / AP mean ± std, each method paired with seq and with
replay, and one table beside the encoder grid (standard_cl.json) and the paper's Table 1
(../shared/reference/recurrent_kif_paper_tables.md, read where it lies).

    python benchmarks/standard_cl_generative.py [--quick] [--out FILE] [--methods ...] [--orders 1] [--seeds 0,1,2]
                                                [--threads 1] [--set KEY=VALUE ...] [--runs DIR] [--resume]
                                                [--merge FILE ...]
    python benchmarks/standard_cl_generative.py --compare RESULTS.json   # only the three-column table

About 40 minutes of one core per run (n_train 500, 50 test examples per task); two processes of one thread each.
"""
import json
import re
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark
from continual_lm.reporting.report import markdown_table

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
METHODS = ["seq", "inc_lora", "replay", "ewc", "l2p", "lfpt5", "o_lora", "moe_lora", "sapt", "tasl", "vr_mcl", "migu",
           "recurrent_kif", "recurrent_kif:reference_code", "mtl", "lwf"]
DATA = f"data.data_dir={SHARED / 'data' / 'cl_benchmark'}"
# Our method names → the paper's Table 1 rows (SeqLoRA is seq under LoRA, LoRAReplay is replay, ...).
PAPER_NAMES = {"seq": "SeqLoRA", "inc_lora": "IncLoRA", "replay": "LoRAReplay", "ewc": "EWC*", "l2p": "L2P*",
               "lfpt5": "LFPT5*", "moe_lora": "MoELoRA*", "o_lora": "O-LoRA*", "tasl": "TaSL", "vr_mcl": "VR-MCL",
               "migu": "MIGU*", "recurrent_kif": "Recurrent-KIF", "recurrent_kif:reference_code": "Recurrent-KIF",
               "mtl": "MTL", "sapt": "SAPT-LoRA"}

PRESET = Preset(HERE.parent / "configs" / "standard_cl_generative.yaml", "standard_cl_generative.json", METHODS,
                [0, 1, 2], [1], [DATA],
                quick={"seeds": [0], "methods": ["seq", "replay", "mtl"],
                       "overrides": [DATA, "data.n_train=16", "data.n_test=8"]},
                discussion="standard_cl_generative_discussion.md")


def paper_table1(path: Path = SHARED / "reference" / "recurrent_kif_paper_tables.md") -> dict[str, tuple[str, str]]:
    """{row name: (Standard CL OP, BWT)} of the paper's Table 1, read from the shared reference file ({} if absent)."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    table = text[text.index("## Table 1"):].split("\n## ")[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.match(r"^-?\d|^–", cells[1]):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def three_columns(results: Path, encoder: Path = HERE / "results" / "standard_cl.json") -> str:
    """Per method: OP / BWT of this grid, of the encoder grid, and of the paper (Table 1, Standard CL)."""
    ours = json.loads(results.read_text())["methods"]
    theirs = json.loads(encoder.read_text())["methods"] if encoder.exists() else {}
    paper = paper_table1()

    def cell(m: dict | None) -> str:
        if not m:
            return "–"
        bwt = (m.get("bwt") or {}).get("mean")
        return f"{m['op']['mean']:.1f} ± {m['op']['std']:.1f}" + (f" / {bwt:.1f}" if bwt is not None else "") + \
            f" ({m['runs']} run{'s' if m['runs'] != 1 else ''})"
    rows = []
    for method in dict.fromkeys([*ours, *METHODS]):
        op_bwt = paper.get(PAPER_NAMES.get(method, ""), None)
        rows.append([method, cell(ours.get(method)), cell(theirs.get(method)),
                     f"{op_bwt[0]} / {op_bwt[1]}" if op_bwt else "–"])
    return markdown_table(["method", "SmolLM2-135M, order 1 (this grid) OP ± std / BWT",
                           "MiniLM encoder, orders 1–3 (standard_cl.json) OP ± std / BWT",
                           "paper, T5-large, orders 1–3 (Table 1) OP / BWT"], rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--compare":
        print(three_columns(Path(sys.argv[2])))
        sys.exit(0)
    sys.exit(grid_benchmark(PRESET, HERE / "results"))
