"""Seed-averaged results next to published anchors (issue 19): read finished multi-seed run folders, write one
results.json entry per figure and the "Seed-averaged results" section of RESULTS.md.

    python -m benchmarks.anchors            # after the runs below (hours on 2 CPU cores; each resumable)

Each figure is a `--seeds` run folder (`seeds.json`, or while seeds are still missing, the finished
`seed-N/metrics.json`) and the command that trains it. None of them is reported on the split that chose anything:
the SST-2 search and its checkpoint selection use held-out training rows and report dev as a test; the recipe row
uses no selection; CoNLL selects on validation and reports test; cross-lingual reports the WikiANN test splits that
training never sees.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.record_run import RESULTS, record, replace_section

REPO = Path(__file__).resolve().parent.parent
RESULTS_MD = REPO / "benchmarks" / "RESULTS.md"
START, END = "<!-- anchors:start -->", "<!-- anchors:end -->"
TUNE = "runs/sst2-minilm-tune"
TUNE_COMMAND = ("OMP_NUM_THREADS=1 nlp-transfer tune recipes/sst2_minilm.yaml --space recipes/spaces/sst2_minilm.yaml "
                "--trials 8 --rows 12000 --holdout 0.03 --out runs/sst2-minilm-tune training.eval_steps=250")


@dataclass
class Figure:
    name: str
    folder: str  # the --seeds output_dir
    command: str
    section: str  # "eval", "test" or an eval set's name
    metric: str
    key: str  # results.json prefix
    shown_as: str  # what the section is, in the table
    goal: float | None
    anchor: str


FIGURES = [
    Figure("SST-2, MiniLM-L6, searched settings (one epoch)", "runs/sst2-minilm-tuned",
           "OMP_NUM_THREADS=1 nlp-transfer train runs/sst2-minilm-tune/best.yaml --seeds 3 "
           "output_dir=runs/sst2-minilm-tuned training.eval_steps=1000",
           "test", "accuracy", "sst2/minilm-l6/tuned-1epoch", "dev (872; the search and the checkpoint "
           "selection used held-out training rows)", 0.91,
           "MiniLM-L6-H384 91.5, DistilBERT 91.3 (published; other checkpoints, several epochs)"),
    Figure("SST-2, MiniLM-L6, the recipe as shipped (one epoch)", "runs/sst2-minilm-seeds",
           "OMP_NUM_THREADS=1 nlp-transfer train recipes/sst2_minilm.yaml --seeds 3 training.eval_strategy=no "
           "output_dir=runs/sst2-minilm-seeds",
           "eval", "accuracy", "sst2/minilm-l6/full-1epoch-noselect", "dev (872; no checkpoint selection)", 0.91,
           "as above"),
    Figure("SST-2, MiniLM-L6, the recipe as shipped but 3 epochs", "runs/sst2-minilm-3ep",
           "OMP_NUM_THREADS=2 nlp-transfer train recipes/sst2_minilm.yaml --seeds 1, training.num_train_epochs=3 "
           "training.eval_strategy=no output_dir=runs/sst2-minilm-3ep",
           "eval", "accuracy", "sst2/minilm-l6/full-3epoch-noselect", "dev (872; no checkpoint selection)", 0.91,
           "as above"),
    Figure("CoNLL-2003, MiniLM-L6, full fine-tuning (5 epochs)", "runs/conll03-minilm-seeds",
           "OMP_NUM_THREADS=1 nlp-transfer train recipes/conll03_minilm.yaml --seeds 3 "
           "output_dir=runs/conll03-minilm-seeds",
           "test", "f1", "conll03/minilm-l6/full", "test (3,453 sentences; validation chose the epoch)", 0.89,
           "BERT-base 92.4; GloVe BiLSTM-CRF + characters about 91; small cased encoders 89-91"),
    Figure("Cross-lingual NER, English CoNLL -> German WikiANN (zero-shot)", "runs/conll03-e5-xling-seeds",
           "OMP_NUM_THREADS=1 nlp-transfer train recipes/conll03_e5_crosslingual_full.yaml --seeds 3",
           "wikiann_de", "f1", "xling/e5-small/conll03-en-all->wikiann-de", "WikiANN de test (10,000)", None,
           "XLM-R base 74-80 zero-shot on WikiANN (trained on English WikiANN, not CoNLL)"),
    Figure("Cross-lingual NER, English CoNLL -> Dutch WikiANN (zero-shot)", "runs/conll03-e5-xling-seeds",
           "OMP_NUM_THREADS=1 nlp-transfer train recipes/conll03_e5_crosslingual_full.yaml --seeds 3",
           "wikiann_nl", "f1", "xling/e5-small/conll03-en-all->wikiann-nl", "WikiANN nl test (10,000)", None,
           "as above"),
]


def spread(folder: Path, figure: Figure) -> dict | None:
    """{mean, std, values} of the figure's metric over the seeds finished so far (None: none yet)."""
    from nlp_transfer.seeds import summarise

    summary_path = folder / "seeds.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    else:
        finished = {}
        for metrics_path in sorted(folder.glob("seed-*/metrics.json")):
            finished[int(metrics_path.parent.name.split("-", 1)[1])] = json.loads(metrics_path.read_text())
        if not finished:
            return None
        summary = summarise(finished)
    table = summary.get(figure.section) if figure.section in ("eval", "test") else \
        (summary.get("eval_sets") or {}).get(figure.section)
    return (table or {}).get(figure.metric)


def split_prefix(figure: Figure) -> str:
    return {"eval": "dev", "test": "test"}.get(figure.section, "zero_shot_test")


def figure_entries(figure: Figure, found: dict) -> tuple[dict[str, float | int], str]:
    """results.json entries and the table cell for one figure's {mean, std, values}. One seed has no spread: its
    entries are the value and n=1, without a std of 0 that would read as a measurement."""
    n = len(found["values"])
    prefix = f"{figure.key}/{split_prefix(figure)}_{figure.metric}"
    if n == 1:
        return {f"{prefix}_mean": round(found["mean"], 4), f"{prefix}_n": 1}, f"**{found['mean']:.4f}** (1 seed)"
    values = ", ".join(f"{v:.4f}" for v in found["values"])
    return ({f"{prefix}_mean": round(found["mean"], 4), f"{prefix}_std": round(found["std"], 4), f"{prefix}_n": n},
            f"**{found['mean']:.4f} ± {found['std']:.4f}** ({n} seeds: {values})")


def tune_table(out: Path) -> list[str]:
    """The search behind the tuned SST-2 figure: what it searched and every trial, from tune.json and trials.md."""
    summary_path = out / "tune.json"
    if not summary_path.is_file():
        return [f"The search (`{TUNE_COMMAND}`) has not run here yet."]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    trials = (out / "trials.md").read_text(encoding="utf-8").splitlines()
    table = [line for line in trials if line.startswith("|")]
    best = summary["best"]
    lines = [f"The search behind the tuned row: `{TUNE_COMMAND}` (Optuna TPE, median pruner on the evaluations every "
             f"250 steps; {summary['finished']} trials of one epoch on 12,000 stratified training rows, scored on "
             f"{summary['holdout']['rows']['validation']:,} held-out training rows; the card's dev split never "
             f"seen). Space: `recipes/spaces/sst2_minilm.yaml`. Best: trial {best['number']}, held-out accuracy "
             f"{best['value']:.4f}; `best.yaml` trains those values on all training rows but the held-out ones, "
             f"selects its checkpoint on them and scores dev once as its test split.", ""]
    return lines + table


def main() -> None:
    rows, entries = [], {}
    for figure in FIGURES:
        folder = REPO / figure.folder
        found = spread(folder, figure) if folder.is_dir() else None
        if found is None:
            rows.append(f"| {figure.name} | `{figure.command}` | {figure.shown_as} | not measured yet | "
                        f"{figure.goal if figure.goal is not None else '–'} | {figure.anchor} |")
            continue
        figures, shown = figure_entries(figure, found)
        record(figures, figure.command, RESULTS)
        entries.update(figures)
        goal = "–" if figure.goal is None else f"{figure.goal} ({'met' if found['mean'] >= figure.goal else 'not met'})"
        rows.append(f"| {figure.name} | `{figure.command}` | {figure.shown_as} | {shown} | {goal} | {figure.anchor} |")
    lines = [START, "## Seed-averaged results against published anchors (issue 19)", "",
             "`python -m benchmarks.anchors` reads the run folders below (mean ± sample std over the seeds; results.json "
             "keys `<figure>/<split>_<metric>_{mean,std,n}`, no std for a single seed). No figure is reported on a "
             "split that chose anything.",
             "", "| figure | command | reported on | mean ± std | goal | anchor |", "|---|---|---|---|---|---|", *rows,
             "", *tune_table(REPO / TUNE), END]
    replace_section(RESULTS_MD, START, END, "\n".join(lines))
    for key, value in entries.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
