"""Memory and speed of `nlp-transfer predict` and `nlp-transfer embed` on large generated inputs (issue 29), side by
side in one run.

    python -m benchmarks.scale [--what predict,embed] [--model runs/sst2-demo] [--embed-model minilm-l6]
                               [--sizes 20000,80000] [--throughput-rows 20000] [--old-tree DIR] [--max-words N]
                               [--record]

Each measurement is the real command in a fresh process (its peak RSS from the operating system):
- peak RSS above the loaded model (a 100-line run of the same command) at each size: flat when memory does not grow
  with the input (the goal: under 500 MB at both sizes, and the largest within 10% of the smallest); for `embed`
  (``--output`` a folder: chunks saved as they are ready, then joined into embeddings.npy) under
  ``scale/embed/<model>/<size>/peak_rss_over_model_mb``;
- throughput of the streaming path against the in-memory path it replaced, on the same lines, with identical labels
  (the in-memory path is the package as of ``--old-tree``: a checkout of a24ae61, e.g. ``git worktree add DIR a24ae61``).
Lines cycle through the first 10,000 SST-2 training sentences at every size: realistic lengths, the same ones
at every size. ``--max-words N`` draws them only from sentences of at most N words (keys under ``max_N_words/``):
short lines let millions of them run in an hour or two on 2 cores, where memory, not speed, is what is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed import sst2_rows

ROOT = Path(__file__).resolve().parents[1]
MEASURE = ("import resource, subprocess, sys, time; started = time.perf_counter(); "
           "code = subprocess.run(sys.argv[1:]).returncode; seconds = time.perf_counter() - started; "
           "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, seconds)")


POOL = 10_000  # every size cycles through the same first 10,000 SST-2 training sentences


MAX_WORDS = None  # set by --max-words: the pool holds only sentences of at most this many words


def write_lines(path: Path, count: int) -> None:
    """``count`` lines cycling through the same pool at every size, so a larger input holds no longer sentences (the
    longest batch sets the peak) and only its size differs."""
    sentences = [text for text, _ in sst2_rows() if MAX_WORDS is None or len(text.split()) <= MAX_WORDS][:POOL]
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            handle.write(sentences[i % len(sentences)] + "\n")


def measure(command: list[str], tree: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``command`` run with the package from ``tree``, in a fresh parent process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env,
                          cwd=tree)
    code, rss_kb, seconds = done.stdout.split()[-3:]
    if code != "0":
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return int(rss_kb) / 1024, float(seconds)


def predict(model: str, source: Path, output: Path, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "nlp_transfer", "predict", model, "--input", str(source), "--output", str(output),
            "--device", "cpu", *extra]


def embed(model: str, source: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "nlp_transfer", "embed", model, "--input", str(source), "--output", str(output),
            "--device", "cpu"]


def memory_at_sizes(command, folder: Path, sizes: list[int], what: str) -> tuple[float, list[tuple[int, float, float]]]:
    """(peak RSS of a 100-line run: the model loaded, and (size, peak RSS MB, seconds) at each size) of
    ``command(input, output_stem)``, each run in a fresh process on lines written into ``folder``."""
    write_lines(folder / "small.txt", 100)
    base, _ = measure(command(folder / "small.txt", folder / f"{what}-small"), ROOT)
    runs = []
    for size in sizes:
        write_lines(folder / f"{size}.txt", size)
        peak, seconds = measure(command(folder / f"{size}.txt", folder / f"{what}-{size}"), ROOT)
        print(f"{what}, {size} lines: peak {peak:.0f} MB ({peak - base:.0f} above the model alone, {base:.0f} MB), "
              f"{size / seconds:.0f} texts/s", flush=True)
        runs.append((size, peak, seconds))
    return base, runs


def run_embed(model: str, sizes: list[int]) -> dict[str, float]:
    """Peak RSS of `nlp-transfer embed` at each size, above a 100-line run (the model loaded), and its speed."""
    with tempfile.TemporaryDirectory() as folder:
        base, runs = memory_at_sizes(lambda source, stem: embed(model, source, stem), Path(folder), sizes, "embed")
    figures = {"model_loaded_peak_rss_mb": round(base, 1)}
    for size, peak, seconds in runs:
        figures[f"{size}/peak_rss_mb"] = round(peak, 1)
        figures[f"{size}/peak_rss_over_model_mb"] = round(peak - base, 1)
        figures[f"{size}/texts_per_second"] = round(size / seconds, 1)
    return figures


def labels(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["label"] for line in handle]


def run(model: str, sizes: list[int], throughput_rows: int, old_tree: Path | None) -> dict[str, float]:
    """`nlp-transfer predict`: peak RSS above the model at each size; with ``old_tree``, speed against the in-memory
    path it replaced."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        base, runs = memory_at_sizes(lambda source, stem: predict(model, source, stem.with_suffix(".jsonl")), folder,
                                     sizes, "predict")
        figures = {"predict/model_loaded_peak_rss_mb": round(base, 1)}
        for size, peak, seconds in runs:
            figures[f"predict/{size}_lines/peak_rss_mb"] = round(peak, 1)
            figures[f"predict/{size}_lines/above_model_mb"] = round(peak - base, 1)
            figures[f"predict/{size}_lines/texts_per_second"] = round(size / seconds, 1)
        first, last = sizes[0], sizes[-1]
        figures["predict/largest_vs_smallest_above_model_ratio"] = round(
            figures[f"predict/{last}_lines/above_model_mb"] / max(figures[f"predict/{first}_lines/above_model_mb"], 1e-9), 3)
        if old_tree is not None:
            write_lines(folder / "same.txt", throughput_rows)
            new_times, old_times = [], []
            for _ in range(2):  # alternating, best of two each
                new_times.append(measure(predict(model, folder / "same.txt", folder / "new.jsonl"), ROOT)[1])
                old_rss, old_seconds = measure(predict(model, folder / "same.txt", folder / "old.jsonl"), old_tree)
                old_times.append(old_seconds)
            figures[f"predict/{throughput_rows}_lines/in_memory_peak_rss_mb"] = round(old_rss, 1)
            figures[f"predict/{throughput_rows}_lines/streaming_vs_in_memory_speedup"] = round(
                min(old_times) / min(new_times), 3)
            figures[f"predict/{throughput_rows}_lines/identical_labels"] = float(
                labels(folder / "new.jsonl") == labels(folder / "old.jsonl"))
            print(f"{throughput_rows} lines: streaming {throughput_rows / min(new_times):.0f} texts/s, in-memory "
                  f"{throughput_rows / min(old_times):.0f} texts/s, same labels: "
                  f"{labels(folder / 'new.jsonl') == labels(folder / 'old.jsonl')}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "sst2-demo"), help="a trained classifier folder "
                                                                                   "(make demo writes runs/sst2-demo)")
    parser.add_argument("--embed-model", default="minilm-l6", help="the encoder `embed` runs (an alias or folder)")
    parser.add_argument("--what", default="predict,embed", help="commands to measure: predict, embed or both")
    parser.add_argument("--sizes", default="20000,80000")
    parser.add_argument("--throughput-rows", type=int, default=20000)
    parser.add_argument("--old-tree", help="a checkout of the in-memory path (a24ae61) to compare throughput with")
    parser.add_argument("--max-words", type=int, help="draw the lines only from SST-2 sentences of at most this many "
                        "words (short lines: millions of lines in an hour on 2 cores; the keys then say so)")
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/results.json")
    args = parser.parse_args()
    global MAX_WORDS
    MAX_WORDS = args.max_words
    what = [name.strip() for name in args.what.split(",") if name.strip()]
    if not what or set(what) - {"predict", "embed"}:
        parser.error(f"--what {args.what}: give predict, embed or predict,embed")
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    figures = {}
    lines = f"max_{args.max_words}_words/" if args.max_words else ""  # short lines are keyed apart
    if "predict" in what:
        old_tree = Path(args.old_tree) if args.old_tree else None
        figures.update({f"scale/minilm-l6/{lines}{k}": v for k, v in run(args.model, sizes, args.throughput_rows,
                                                                  old_tree).items()})
    if "embed" in what:
        figures.update({f"scale/embed/{Path(args.embed_model).name}/{lines}{k}": v
                        for k, v in run_embed(args.embed_model, sizes).items()})
    for key, value in figures.items():
        print(f"{key} = {value}")
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.record:
        from benchmarks.record_run import record

        record(figures, f"python -m benchmarks.scale --what {','.join(what)} --sizes {args.sizes} --throughput-rows "
                        f"{args.throughput_rows}" + (" --old-tree A24AE61_CHECKOUT" if args.old_tree else "")
                        + (f" --embed-model {args.embed_model}" if "embed" in what else "")
                        + (f" --max-words {args.max_words}" if args.max_words else ""))


if __name__ == "__main__":
    main()
