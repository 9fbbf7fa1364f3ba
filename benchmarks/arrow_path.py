"""SST-2 fine-tuning through the Arrow data path (data_storage: arrow) against the in-memory path, side by side.

    python -m benchmarks.arrow_path [--train-rows 4000] [--rounds 2] [--record]

The recipe is recipes/sst2_minilm.yaml (MiniLM-L6, one epoch, seed 42) on a seeded subset of ``--train-rows``
training rows (the full 67,349 take about 25 minutes a run on 2 cores), scored on the 872 dev sentences. The two
paths alternate round by round in fresh processes (the Arrow cache is written in the first arrow round and opened in
the later ones); each keeps its best training throughput (Trainer's train_samples_per_second). Same seed, same rows:
the dev accuracy should be equal, not just close.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(storage: str, train_rows: int, out: Path, cache: Path) -> dict:
    env = {**os.environ, "NLP_TRANSFER_CACHE": str(cache), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    command = [sys.executable, "-m", "nlp_transfer", "train", "recipes/sst2_minilm.yaml", f"data_storage={storage}",
               f"train_rows={train_rows}", f"output_dir={out}", "overwrite=true", "training.eval_strategy=no",
               "training.report_to=none"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"accuracy": metrics["eval"]["accuracy"], "samples_per_second": metrics["train"]["samples_per_second"]}


def run(train_rows: int, rounds: int) -> dict[str, float]:
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for round_ in range(rounds):
            for storage in ("memory", "arrow"):
                result = train(storage, train_rows, folder / storage, folder / "cache")
                print(f"round {round_ + 1}, {storage}: dev accuracy {result['accuracy']:.4f}, "
                      f"{result['samples_per_second']:.1f} samples/s", flush=True)
                if storage in best and best[storage]["accuracy"] != result["accuracy"]:
                    print(f"  ({storage}: accuracy differs between rounds)", flush=True)
                if storage not in best or result["samples_per_second"] > best[storage]["samples_per_second"]:
                    best[storage] = result
    memory, arrow = best["memory"], best["arrow"]
    return {"memory/dev_accuracy": memory["accuracy"], "arrow/dev_accuracy": arrow["accuracy"],
            "memory/train_samples_per_second": memory["samples_per_second"],
            "arrow/train_samples_per_second": arrow["samples_per_second"],
            "arrow_vs_memory_throughput": round(arrow["samples_per_second"] / memory["samples_per_second"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/results.json")
    args = parser.parse_args()
    figures = {f"sst2/minilm-l6/{args.train_rows}_rows/{k}": v for k, v in run(args.train_rows, args.rounds).items()}
    for key, value in figures.items():
        print(f"{key} = {value}")
    if args.record:
        from benchmarks.record_run import record

        record(figures, f"python -m benchmarks.arrow_path --train-rows {args.train_rows} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
