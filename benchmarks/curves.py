"""The measured learning curves: each grid's `nlp-transfer curve` command, run and recorded in results.json.

    python -m benchmarks.curves run sst2         # train the grid (resumable), then record it
    python -m benchmarks.curves record sst2      # record an existing OUT/curve.json only (results.json, RESULTS.md
                                                 # section between <!-- curve:sst2:start/end -->, figures/)
    python -m benchmarks.curves list

Each grid writes ``curve/<grid>/<strategy>/<size>/mean``, ``.../std``, ``.../n`` and ``.../train_time_s`` (per-label
grids: ``<size>pc``), and per size ``curve/<grid>/advice/<size>/best`` and ``.../cheapest`` (the strategy's index in
the grid's strategy list is not a number worth keeping, so these are the means of the picked strategies; the names
are in RESULTS.md and curve.md). The command recorded is the grid's command line.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from nlp_transfer.io import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
FIGURES = ROOT / "benchmarks" / "figures"
WALL_CLOCK = "wall-clock.json"  # in the grid's output: the seconds of each `run` (a resumed grid has several)

GRIDS = {
    # SST-2, 32 to 10,000 stratified rows, 3 seeds; fine-tuning gets at least 100 steps; LoRA at 5e-4 (as in the
    # strategy table) with the pooler trained (strategy.pooler, the default); the
    # contrastive encoder trains on at most 1,000 pairs (63 steps) per point.
    "sst2": ["recipes/sst2_curve.yaml", "--sizes", "32,100,300,1000,3000,10000", "--strategies",
             "static-bilstm,feature-extraction,lora,full,contrastive", "--static-recipe", "recipes/sst2_glove.yaml",
             "--seeds", "3", "--min-steps", "100", "--strategy-override", "lora:training.learning_rate=5e-4",
             "--strategy-override", "contrastive:strategy.max_pairs=1000", "--out", "runs/curve-sst2"],
    # SST-2 few-shot: 8 and 16 rows of each label, 5 seeds: the probe against contrastive fine-tuning (SetFit's
    # setting: 20 pair iterations, all pairs). Drawn from the training rows of 10 words or more (`sentences`):
    # GLUE's SST-2 train split is mostly phrases (9.4 words on average; dev sentences 19.5), and SetFit draws
    # its 8 or 16 from whole sentences.
    "sst2-fewshot": ["recipes/sst2_minilm_contrastive.yaml", "data=runs/data/sst2-sentences/sst2-sentences.md",
                     "--sizes", "8,16", "--per-class", "--strategies", "feature-extraction,contrastive",
                     "--strategy-override", "feature-extraction:strategy.normalize=true", "--seeds", "5",
                     "--out", "runs/fewshot-sst2"],
    # AG News (4 topics), 32 to 1,000 stratified rows, 3 seeds, scored on a fixed, label-balanced 1,000-row sample
    # of the test split (eval_rows in recipes/agnews_curve.yaml). Contrastive is measured on SST-2 only: at AG
    # News' lengths a point cost 4 to 8 minutes on one thread, more than this grid's budget.
    "agnews": ["recipes/agnews_curve.yaml", "--sizes", "32,100,300,1000", "--strategies",
               "static-average,static-bilstm,feature-extraction,full", "--static-recipe",
               "recipes/agnews_glove.yaml", "--seeds", "3", "--min-steps", "100", "--out", "runs/curve-agnews"],
}


# One thread per grid: two grids run side by side on the two cores, and every point of a grid is timed alike (a
# MiniLM-L6 SST-2 epoch takes no longer on one thread than on two here: 1,168 s vs 1,303 s, RESULTS.md).
ENV = {"OMP_NUM_THREADS": "1"}


SENTENCE_WORDS = 10  # sst2-sentences: training rows of at least this many words


def sentences_card() -> Path:
    """runs/data/sst2-sentences/: SST-2's training rows of SENTENCE_WORDS words or more (25,152 of 67,349) and a
    card reading them with the full dev split; rebuilt from ../shared/data/sst2 on every run."""
    from nlp_transfer.io import write_text_atomic

    source = ROOT.parent / "shared" / "data" / "sst2"
    folder = ROOT / "runs" / "data" / "sst2-sentences"
    folder.mkdir(parents=True, exist_ok=True)
    lines = (source / "train.tsv").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines[1:] if len(line.rsplit("\t", 1)[0].split()) >= SENTENCE_WORDS]
    write_text_atomic(folder / "train.tsv", "\n".join([lines[0], *kept]) + "\n")
    return sst2_card(folder / "sst2-sentences.md", "sst2-sentences",
                     f"# SST-2, training rows of {SENTENCE_WORDS} words or more ({len(kept)} of {len(lines) - 1}), "
                     f"full dev split\n\nWritten by benchmarks/curves.py for the few-shot grid; see data_cards/sst2.md "
                     f"for the data itself.")


def sst2_card(card: Path, name: str, prose: str) -> Path:
    """A data card at ``card`` reading the ``train.tsv`` beside it and the full SST-2 dev split of ../shared."""
    from nlp_transfer.io import write_text_atomic

    dev = os.path.relpath(ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv", card.parent)
    write_text_atomic(card, f"""---
name: {name}
task: sequence-classification
language: en
splits: {{train: train.tsv, validation: {dev}}}
format: tsv
text: sentence
label: label
labels: [negative, positive]
license: research-only (Stanford Sentiment Treebank terms, as redistributed by GLUE)
---
{prose}
""")
    return card


PREPARE = {"sst2-fewshot": sentences_card}


def command_line(grid: str) -> str:
    env = " ".join(f"{key}={value}" for key, value in ENV.items())
    return f"{env} nlp-transfer curve " + " ".join(shlex.quote(part) for part in GRIDS[grid])


def output_of(grid: str) -> Path:
    args = GRIDS[grid]
    return ROOT / args[args.index("--out") + 1]


def entries(curve_data: dict, grid: str) -> dict[str, float]:
    """results.json figures of one curve.json."""
    suffix = "pc" if curve_data.get("unit") == "rows per label" else ""
    out: dict[str, float] = {}
    for strategy, table in curve_data["points"].items():
        for size, cell in table.items():
            key = f"curve/{grid}/{strategy}/{size}{suffix}"
            out[f"{key}/mean"] = round(cell["mean"], 4)
            out[f"{key}/std"] = round(cell["std"], 4)
            out[f"{key}/n"] = float(cell["n"])
            out[f"{key}/train_time_s"] = round(cell["train_time_s"], 2)
    for item in curve_data.get("advice", []):
        key = f"curve/{grid}/advice/{item['size']}{suffix}"
        out[f"{key}/best_mean"] = round(item["best"]["mean"], 4)
        out[f"{key}/cheapest_mean"] = round(item["cheapest"]["mean"], 4)
    return out


def section(grid: str, curve_data: dict, report: str, wall_s: float | None) -> str:
    """RESULTS.md's section of a grid: its command, curve.md's table and advice, and the two plots."""
    body = report.split("\n", 2)[2].strip()  # curve.md without its title line; its heading as bold text here
    body = body.replace("## Advice (from the table)", "**Advice** (derived by `nlp_transfer.analysis.curve.advice` from the table):")
    took = f", {wall_s / 60:.0f} min wall clock on one thread" if wall_s else ""
    return (f"<!-- curve:{grid}:start -->\n`{command_line(grid)}` ({date.today().isoformat()}{took}; "
            f"`python -m benchmarks.curves run {grid}` runs and records it)\n\n{body}\n\n"
            f"![{grid}: score against labelled {curve_data.get('unit', 'rows')}](figures/curve-{grid}.png)\n"
            f"![{grid}: score against train time](figures/curve-{grid}-time.png)\n<!-- curve:{grid}:end -->")


def record_grid(grid: str) -> dict[str, float]:
    """results.json figures, the plots copied to benchmarks/figures/ and the grid's section of RESULTS.md."""
    from benchmarks.record_run import record, replace_section

    out = output_of(grid)
    summary = out / "curve.json"
    if not summary.is_file():
        raise SystemExit(f"{summary}: no curve.json; run: python -m benchmarks.curves run {grid}")
    data = json.loads(summary.read_text(encoding="utf-8"))
    figures = entries(data, grid)
    record(figures, command_line(grid))
    FIGURES.mkdir(exist_ok=True)
    for name, target in (("curve.png", f"curve-{grid}.png"), ("curve-time.png", f"curve-{grid}-time.png")):
        if (out / name).is_file():
            shutil.copyfile(out / name, FIGURES / target)
    wall = out / WALL_CLOCK
    wall_s = sum(json.loads(wall.read_text(encoding="utf-8"))) if wall.is_file() else None
    replace_section(RESULTS_MD, f"<!-- curve:{grid}:start -->", f"<!-- curve:{grid}:end -->",
                    section(grid, data, (out / "curve.md").read_text(encoding="utf-8"), wall_s))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.curves", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "record", "list"])
    parser.add_argument("grid", nargs="?", choices=sorted(GRIDS))
    args = parser.parse_args(argv)
    if args.action == "list" or args.grid is None:
        for name in GRIDS:
            print(f"{name}: {command_line(name)}")
        return 0
    if args.action == "run":
        if args.grid in PREPARE:
            PREPARE[args.grid]()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nlp_transfer", "curve", *GRIDS[args.grid]], cwd=ROOT,
                              env={**os.environ, **ENV})
        seconds = time.perf_counter() - started
        print(f"curve {args.grid}: {seconds:.0f} s wall clock")
        if done.returncode:
            return done.returncode
        wall = output_of(args.grid) / WALL_CLOCK
        write_json_atomic(wall, (json.loads(wall.read_text()) if wall.is_file() else []) + [round(seconds, 1)])
    figures = record_grid(args.grid)
    print(f"recorded {len(figures)} figures of {args.grid} in benchmarks/results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
