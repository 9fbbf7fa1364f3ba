"""Distillation on SST-2 (issue 30): the MPNet teacher, and each student with and without it, side by side.

    python -m benchmarks.distill_sst2 [--stages teacher,students,table] [--seeds 1,2,3] [--teacher-seeds 1]
                                      [--only glove-bilstm,glove-bilstm-distilled] [--record]
    python -m benchmarks.distill_sst2 --demo [--seeds 1,2,3] [--record]   # the shipped 2,000-row sample, minutes

Stages (each skips the runs already finished, so a stopped benchmark continues):
- ``teacher``: `recipes/sst2_mpnet.yaml` over the seeds; the first seed's run teaches every student;
- ``students``: MiniLM-L6 (`sst2_minilm.yaml`, `sst2_minilm_distill.yaml`) and the GloVe BiLSTM (`sst2_glove.yaml`,
  `sst2_glove_distill.yaml`; both again with ``static.train_vectors=true``, and the distilled one once more with 3
  augmented copies and 5 epochs), with the same seeds;
- ``table``: dev accuracy mean ± sample std over the seeds, parameters, and CPU predict speed (texts/s of
  ``load_model(run, device="cpu").predict`` over the 872 dev sentences at batch 32, best of five rounds of a second
  or more each) into RESULTS.md
  ("Distillation on SST-2") and results.json (``distill/sst2/<model>/...``).
On 2 CPU cores the teacher takes hours per seed and epoch: run the teacher stage on a GPU when one is lent (the
students' predict speed is measured on the CPU whatever trained them). ``--demo``: the same comparison on the shipped
sample with the demo's MiniLM-L6 as the teacher of the GloVe BiLSTM (`sst2_demo_glove*.yaml`).
Dev accuracy comes from each run's own metrics.json. In the full benchmark nothing is chosen on the dev split: the
teacher and the Trainer students keep their last step (``load_best_model_at_end: false``; the Trainer's rate decays
linearly to 0), the BiLSTMs their last epoch (``static.keep=last static.patience=null``), with the rate decayed
linearly to 0 (``static.schedule=linear``: with a constant rate their dev accuracy wandered by 7 points from epoch to
epoch, 0.757 to 0.830 over epochs 7-10 of one run). The demo's BiLSTMs keep their best epoch on dev, with and without
a teacher alike.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"

# name -> (recipe, output folder, what it is); the teacher first
FULL = {
    "mpnet-teacher": ("recipes/sst2_mpnet.yaml", "runs/sst2-mpnet",
                      "MPNet (all-mpnet-base-v2), fine-tuned: the teacher"),
    "minilm-l6": ("recipes/sst2_minilm.yaml", "runs/sst2-minilm-seeds", "MiniLM-L6, fine-tuned, no teacher"),
    "minilm-l6-distilled": ("recipes/sst2_minilm_distill.yaml", "runs/sst2-minilm-distill",
                            "MiniLM-L6, distilled from the teacher"),
    "glove-bilstm": ("recipes/sst2_glove.yaml", "runs/sst2-glove-seeds", "GloVe BiLSTM, no teacher"),
    "glove-bilstm-distilled": ("recipes/sst2_glove_distill.yaml", "runs/sst2-glove-distill",
                               "GloVe BiLSTM, distilled from the teacher (1 augmented copy)"),
    "glove-bilstm-trained-vectors": ("recipes/sst2_glove.yaml", "runs/sst2-glove-tv-seeds",
                                     "GloVe BiLSTM, vectors trained with it, no teacher"),
    "glove-bilstm-trained-vectors-distilled": ("recipes/sst2_glove_distill.yaml", "runs/sst2-glove-tv-distill",
                                               "GloVe BiLSTM, vectors trained with it, distilled (1 augmented copy)"),
    "glove-bilstm-trained-vectors-distilled-aug3": ("recipes/sst2_glove_distill.yaml", "runs/sst2-glove-tv-aug3",
                                                    "GloVe BiLSTM, vectors trained with it, distilled (3 augmented "
                                                    "copies, 5 epochs: as many steps as 1 copy and 10 epochs)"),
}
# rows that are their recipe with more keys set
EXTRA = {"glove-bilstm-trained-vectors": ["static.train_vectors=true"],
         "glove-bilstm-trained-vectors-distilled": ["static.train_vectors=true"],
         "glove-bilstm-trained-vectors-distilled-aug3": ["static.train_vectors=true", "strategy.augment=3",
                                                         "static.epochs=5"]}
DEMO = {
    "minilm-l6-teacher": ("recipes/sst2_demo.yaml", "runs/sst2-demo", "MiniLM-L6, fine-tuned (`make demo`'s run): "
                          "the teacher"),
    "glove-bilstm": ("recipes/sst2_demo_glove.yaml", "runs/sst2-demo-glove-seeds", "GloVe BiLSTM, no teacher"),
    "glove-bilstm-distilled": ("recipes/sst2_demo_glove_distill.yaml", "runs/sst2-demo-glove-distill",
                               "GloVe BiLSTM, distilled from the teacher (10 augmented copies)"),
}


# rows measured before this benchmark under its protocol (one epoch, last step), whose run folders are gone:
# name -> (results.json prefix of dev_accuracy_{mean,std,n}, the row whose run gives parameters and predict speed,
# the same architecture)
RECORDED = {"minilm-l6": ("sst2/minilm-l6/full-1epoch-noselect", "minilm-l6-distilled")}

# nothing chosen on the dev split the table reports: each student keeps its last step / epoch
UNSELECTED = {"trainer": ["training.load_best_model_at_end=false"],
              "static": ["static.keep=last", "static.patience=null", "static.schedule=linear"]}


def train(recipe: str, out: str, seeds: str | None, teacher: str | None, overrides: list[str] = ()) -> None:
    command = [sys.executable, "-m", "nlp_transfer", "train", recipe, *(["--seeds", seeds] if seeds else []),
               f"output_dir={out}", "overwrite=false", "resume=true", *overrides]
    if teacher is not None:
        command.append(f"strategy.teacher={teacher}")
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def predict_speed(run: Path, texts: list[str]) -> float:
    from nlp_transfer import load_model

    model = load_model(run, device="cpu")
    started = time.perf_counter()
    model.predict(texts, batch_size=32)  # a warm-up round, which also sizes the timed ones
    # the BiLSTMs predict the dev split in 0.1-0.2 s, where one round's noise is a third: each timed round predicts
    # it often enough to last a second or more; best of five rounds
    repeats = max(1, int(1.0 / max(time.perf_counter() - started, 1e-3)) + 1)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            model.predict(texts, batch_size=32)
        best = min(best, (time.perf_counter() - started) / repeats)
    return len(texts) / best


def recorded_row(name: str, what: str, rows: dict[str, dict]) -> dict | None:
    """A `RECORDED` row from results.json, with parameters and speed of its twin's run (None when neither is there).
    Its figures stay under their own results.json keys and command; the table names them."""
    prefix, twin = RECORDED[name]
    figures = json.loads((RESULTS_MD.parent / "results.json").read_text())
    if f"{prefix}/dev_accuracy_mean" not in figures or twin not in rows:
        return None
    value = {key: figures[f"{prefix}/dev_accuracy_{key}"]["value"] for key in ("mean", "std", "n")}
    source = figures[f"{prefix}/dev_accuracy_mean"]
    return {**rows[twin], **value, "n": int(value["n"]), "recorded": True,
            "what": f"{what} (recorded {source['date']}, `{source['command']}`, results.json `{prefix}/...`; "
                    f"parameters and speed: the distilled run's, the same architecture)"}


def summary(runs: dict, seeds: list[int], dev_texts: list[str]) -> dict[str, dict]:
    rows = {}
    for name, (_, out, what) in runs.items():
        single = (ROOT / out / "metrics.json").is_file()  # one run (the demo's teacher), not one per seed
        folders = [ROOT / out] if single else [ROOT / out / f"seed-{seed}" for seed in seeds]
        done = [f for f in folders if (f / "metrics.json").is_file()]
        if not done:
            continue
        metrics = [json.loads((f / "metrics.json").read_text()) for f in done]
        scores = [m["eval"]["accuracy"] for m in metrics]
        rows[name] = {"what": what, "mean": statistics.mean(scores),
                      "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "n": len(scores),
                      "params": metrics[0]["params"]["total"], "texts_per_second": predict_speed(done[0], dev_texts)}
    for name in [n for n in RECORDED if n in runs and n not in rows]:
        row = recorded_row(name, runs[name][2], rows)
        if row is not None:
            rows[name] = row
    return {name: rows[name] for name in runs if name in rows}  # the table's order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="teacher,students,table")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--demo", action="store_true", help="the shipped sample, the demo's MiniLM-L6 as teacher")
    parser.add_argument("--only", default=None, help="comma-separated row names (e.g. glove-bilstm,"
                        "glove-bilstm-distilled): train only these students; the table shows every finished run")
    parser.add_argument("--teacher-seeds", default=None, help="the teacher stage's seeds (default: --seeds)")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    runs, seeds = (DEMO if args.demo else FULL), [int(s) for s in args.seeds.split(",")]
    names = list(runs)
    # the demo's teacher is one run (make demo's); the full benchmark's is the first seed's
    teacher_seed = (args.teacher_seeds or args.seeds).split(",")[0]
    teacher = runs[names[0]][1] + ("" if args.demo else f"/seed-{teacher_seed}")  # relative to the repository
    stages = args.stages.split(",")
    if "teacher" in stages:
        train(runs[names[0]][0], runs[names[0]][1], None if args.demo else args.teacher_seeds or args.seeds, None)
    if "students" in stages:
        chosen = names[1:] if args.only is None else [n for n in names[1:] if n in args.only.split(",")]
        for name in chosen:
            # the demo's recipes name their teacher already; the full ones name the teacher's folder, not a seed's
            unselected = [] if args.demo else UNSELECTED["static" if name.startswith("glove") else "trainer"]
            unselected = unselected + EXTRA.get(name, [])
            train(runs[name][0], runs[name][1], args.seeds, teacher if "distilled" in name and not args.demo else None,
                  unselected)
    if "table" not in stages:
        return
    from benchmarks.speed import sst2_rows

    dev_texts = [text for text, _ in sst2_rows("dev")]
    rows = summary(runs, seeds, dev_texts)
    scope = "demo" if args.demo else "sst2"
    command = (f"python -m benchmarks.distill_sst2{' --demo' if args.demo else ''} --seeds {args.seeds}"
               + (f" --teacher-seeds {args.teacher_seeds}" if args.teacher_seeds else ""))
    lines = [f"`{command}` ({time.strftime('%Y-%m-%d')}; teacher: {teacher})", "",
             "| model | dev accuracy | parameters | CPU predict, texts/s (batch 32, 2 threads) |",
             "|---|---:|---:|---:|"]
    figures = {}
    for name, row in rows.items():
        lines.append(f"| {row['what']} | {row['mean']:.4f} ± {row['std']:.4f} (n={row['n']}) | {row['params']:,} | "
                     f"{row['texts_per_second']:.0f} |")
        if row.get("recorded"):
            continue
        key = f"distill/{scope}/{name}"
        figures.update({f"{key}/dev_accuracy/mean": round(row["mean"], 4), f"{key}/dev_accuracy/std":
                        round(row["std"], 4), f"{key}/n": float(row["n"]), f"{key}/params": float(row["params"]),
                        f"{key}/cpu_predict_texts_per_second": round(row["texts_per_second"], 1)})
    print("\n".join(lines))
    if args.record:
        from benchmarks.record_run import record, replace_section

        start, end = f"<!-- distill:{scope}:start -->", f"<!-- distill:{scope}:end -->"
        replace_section(RESULTS_MD, start, end, "\n".join([start, *lines, end]))
        record(figures, command)


if __name__ == "__main__":
    main()
