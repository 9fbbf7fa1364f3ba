"""Few-shot SST-2 against SetFit 1.2 on identical rows (issue 30), side by side in one run.

    python -m benchmarks.fewshot_setfit [--models minilm-l6,mpnet-base] [--per-label 8,16] [--seeds 1,2,3,4,5]
                                        [--systems setfit,contrastive,setfit-e2e]
                                        [--set strategy.learning_rate=2e-5 ...]
                                        [--tag NAME] [--out runs/fewshot-setfit] [--record] [--summary-only]

For each seed and size, ``per-label`` rows of each label are drawn from SST-2's training sentences of 10 words or more
(the few-shot card of `benchmarks.curves`) with ``numpy.random.default_rng(seed)``, written to one TSV, and handed
to both systems:
- SetFit 1.2 with its defaults (`setfit.TrainingArguments()`: pairs by oversampling, body learning rate 2e-5, one
  epoch, batch 16, LogisticRegression head), the model folder loaded as a sentence-transformers model;
- ``setfit-e2e`` (not run by default): SetFit 1.2 with its differentiable head trained end to end after the pairs;
- `nlp-transfer train` with `strategy: contrastive` and its defaults (``--set`` changes them: an experiment is
  recorded under its ``--tag``: results.json ``.../contrastive-TAG/...``, with the command that measures it).
Both are scored on the 872 SST-2 dev sentences; nothing is chosen on them (the probe's C is fixed or
cross-validated on the training rows, as the strategy says). Each point is appended to ``OUT/points.jsonl`` as it
finishes, so a stopped run continues where it was. Threads: ``OMP_NUM_THREADS`` (default 2).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sst2"
SYSTEMS = ("setfit", "contrastive", "setfit-e2e")


def subset(per_label: int, seed: int, folder: Path) -> Path:
    """A card whose training split is ``per_label`` seeded sentences of each label (the same file for both systems)
    and whose validation split is the full dev split."""
    import numpy as np

    from benchmarks.curves import SENTENCE_WORDS, sst2_card

    lines = (SHARED / "train.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.rsplit("\t", 1) for line in lines[1:] if len(line.rsplit("\t", 1)[0].split()) >= SENTENCE_WORDS]
    rng = np.random.default_rng(seed)
    chosen = []
    for label in ("0", "1"):
        members = [i for i, (_, value) in enumerate(rows) if value == label]
        chosen += rng.choice(members, per_label, replace=False).tolist()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{rows[i][0]}\t{rows[i][1]}\n" for i in
                                                                    sorted(chosen)), encoding="utf-8")
    return sst2_card(folder / "card.md", f"sst2-fewshot-{per_label}-seed{seed}",
                     f"{per_label} SST-2 training sentences of each label (seed {seed}), written by "
                     f"benchmarks/fewshot_setfit.py.")


def train_rows(card: Path) -> tuple[list[str], list[int]]:
    lines = (card.parent / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts, labels = zip(*(line.rsplit("\t", 1) for line in lines))
    return list(texts), [int(label) for label in labels]


def run_setfit(model: str, card: Path, seed: int, end_to_end: bool = False) -> float:
    """SetFit 1.2 with its defaults; ``end_to_end``: its differentiable head, trained with the body after the pairs
    (``use_differentiable_head=True``, ``end_to_end=True``: 16 head epochs, head rate 1e-2, body rate 1e-5)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from nlp_transfer.models import resolve

    import tempfile

    texts, labels = train_rows(card)
    head = {"use_differentiable_head": True, "head_params": {"out_features": 2}} if end_to_end else {}
    classifier = SetFitModel.from_pretrained(resolve(model), device="cpu", **head)
    with tempfile.TemporaryDirectory() as scratch:  # its defaults, but no checkpoints or logs in the working folder
        arguments = TrainingArguments(seed=seed, show_progress_bar=False, output_dir=scratch, save_strategy="no",
                                      report_to="none", end_to_end=end_to_end)
        trainer = Trainer(model=classifier, args=arguments,
                          train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        trainer.train()
    from benchmarks.speed import sst2_rows

    dev_texts, dev_labels = zip(*sst2_rows("dev"))
    predicted = classifier.predict(list(dev_texts), batch_size=64, as_numpy=True)
    return float(sum(int(p) == g for p, g in zip(predicted, dev_labels)) / len(dev_labels))


def run_contrastive(model: str, card: Path, seed: int, settings: list[str], out: Path) -> float:
    from nlp_transfer import train
    from nlp_transfer.config import load_recipe

    recipe = load_recipe({"task": "sequence-classification", "data": str(card), "model": model, "max_length": 128,
                          "seed": seed, "strategy": {"name": "contrastive"}, "output_dir": str(out),
                          "overwrite": True}, overrides=settings)
    return float(train(recipe).metrics["eval"]["accuracy"])


def summary(points: list[dict]) -> dict[tuple, tuple[float, float, int]]:
    groups: dict[tuple, list[float]] = {}
    for point in points:
        groups.setdefault((point["model"], point["per_label"], point["system"]), []).append(point["accuracy"])
    return {key: (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
            for key, values in sorted(groups.items())}


def markdown(points: list[dict], args) -> list[str]:
    """The side-by-side table: per model and size, each system's mean ± sample std and its score per seed."""
    lines = [f"`python -m benchmarks.fewshot_setfit --models {args.models} --per-label {args.per_label} --seeds "
             f"{args.seeds}` ({time.strftime('%Y-%m-%d')}; accuracy on the 872 SST-2 dev sentences)", "",
             "| model | rows per label | SetFit 1.2 | contrastive | contrastive - SetFit | SetFit per seed | "
             "contrastive per seed |", "|---|---:|---:|---:|---:|---|---|"]
    table = summary([p for p in points if "[" not in p["system"]])
    for model, per_label in sorted({(m, k) for m, k, _ in table}, key=lambda key: (key[0] != "minilm-l6", key)):
        cells = {system: table.get((model, per_label, system)) for system in ("setfit", "contrastive")}
        if None in cells.values():
            continue
        seeds = {system: " / ".join(f"{p['accuracy']:.3f}" for p in sorted(points, key=lambda p: p["seed"])
                                    if p["model"] == model and p["per_label"] == per_label and p["system"] == system)
                 for system in cells}
        (s_mean, s_std, s_n), (c_mean, c_std, c_n) = cells["setfit"], cells["contrastive"]
        lines.append(f"| {model} | {per_label} | {s_mean:.4f} ± {s_std:.4f} (n={s_n}) | {c_mean:.4f} ± {c_std:.4f} "
                     f"(n={c_n}) | {100 * (c_mean - s_mean):+.1f} points | {seeds['setfit']} | "
                     f"{seeds['contrastive']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm-l6,mpnet-base")
    parser.add_argument("--per-label", default="8,16")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--systems", default="setfit,contrastive")
    parser.add_argument("--set", action="append", default=[], help="a recipe override for contrastive (repeatable)")
    parser.add_argument("--tag", default="", help="names an experiment's points (`contrastive[TAG]`)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "fewshot-setfit"))
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/results.json")
    parser.add_argument("--summary-only", action="store_true", help="run nothing: summarise (and with --record, "
                        "record) the points OUT/points.jsonl already holds")
    args = parser.parse_args()
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        parser.error(f"--systems: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SYSTEMS)}")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "points.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    for model in [] if args.summary_only else args.models.split(","):
        for per_label in [int(k) for k in args.per_label.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                card = subset(per_label, seed, out / "data" / f"{per_label}-{seed}")
                for system in args.systems.split(","):
                    name = system if system.startswith("setfit") or not args.tag else f"{system}[{args.tag}]"
                    if any(p["model"] == model and p["per_label"] == per_label and p["seed"] == seed
                           and p["system"] == name for p in done):
                        continue
                    started = time.perf_counter()
                    if system.startswith("setfit"):
                        accuracy = run_setfit(model, card, seed, end_to_end=system == "setfit-e2e")
                    else:
                        accuracy = run_contrastive(model, card, seed, args.set,
                                                   out / "runs" / f"{model}-{per_label}-{seed}")
                    point = {"model": model, "per_label": per_label, "seed": seed, "system": name,
                             "accuracy": round(accuracy, 4), "seconds": round(time.perf_counter() - started, 1),
                             "settings": [] if system.startswith("setfit") else args.set}
                    done.append(point)
                    with log.open("a") as handle:
                        handle.write(json.dumps(point) + "\n")
                    print(json.dumps(point), flush=True)
    table = summary(done)
    for (model, per_label, system), (mean, std, n) in table.items():
        print(f"{model:12s} {per_label:3d}/label {system:28s} {mean:.4f} ± {std:.4f} (n={n})")
    if args.record:
        from benchmarks.record_run import record, replace_section

        start, end = "<!-- fewshot-setfit:start -->", "<!-- fewshot-setfit:end -->"
        replace_section(ROOT / "benchmarks" / "RESULTS.md", start, end,
                        "\n".join([start, *markdown(done, args), end]))
        commands: dict[str, dict[str, float]] = {}  # each figure under the command that measures it
        for (model, per_label, system), (mean, std, n) in table.items():
            key = f"fewshot/sst2-sentences/{model}/{per_label}pc/{system.replace('[', '-').rstrip(']')}"
            commands.setdefault(experiment_command(done, model, per_label, system, args), {}).update(
                {f"{key}/mean": round(mean, 4), f"{key}/std": round(std, 4), f"{key}/n": float(n)})
        for command, figures in commands.items():
            record(figures, command)


def experiment_command(points: list[dict], model: str, per_label: int, system: str, args) -> str:
    """The command that measures ``system``'s points: the benchmark's own for SetFit and contrastive with their
    defaults; for an experiment (another system, or ``contrastive[TAG]``), one model, size and its settings."""
    if system in ("setfit", "contrastive"):
        return (f"python -m benchmarks.fewshot_setfit --models {args.models} --per-label {args.per_label} "
                f"--seeds {args.seeds}")
    base, _, tag = system.rstrip("]").partition("[")
    settings = next(p["settings"] for p in points if p["model"] == model and p["system"] == system)
    seeds = ",".join(str(p["seed"]) for p in points if (p["model"], p["per_label"], p["system"]) ==
                     (model, per_label, system))
    return (f"python -m benchmarks.fewshot_setfit --models {model} --per-label {per_label} --seeds {seeds} "
            f"--systems {base}" + "".join(f" --set {setting}" for setting in settings)
            + (f" --tag {tag}" if tag else ""))


if __name__ == "__main__":
    main()
