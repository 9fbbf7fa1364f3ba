"""Masked-LM (domain-adaptive pretraining) from corpora larger than memory (issue 29), side by side in one run.

    python -m benchmarks.scale_mlm [--sizes-mb 200,2000] [--steps 40] [--memory-baseline] [--record]

For each corpus size, the real `nlp-transfer train` command (task masked-lm, MiniLM-L6, data_storage: arrow, a fixed
number of steps) runs twice in fresh processes on an empty cache: the first run reads the text into the Arrow cache,
the second opens it. Each run's peak RSS comes from the operating system; its data preparation time is what the run
reports for its splits (hashing the files, then writing or opening the Arrow cache); the time from start to the
"nlp-transfer: training" line is recorded too (imports and the model load included: about the same in every run).
With ``--memory-baseline`` the smallest corpus also runs with data_storage: memory (the path before issue 29: every
row in a Python list, tokenized in memory).
Corpus lines are twenty SST-2 training sentences drawn with a fixed seed (about 1,100 characters, 200+ tokens: nearly
every row is cut to the 128 tokens kept, so the batches have one shape and the peak does not depend on which rows
were drawn; with six sentences a line, about 65 tokens, the peak moved by 500 MB between runs).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.speed import sst2_rows

ROOT = Path(__file__).resolve().parents[1]
# the child's stdout is read line by line so the start of training can be timed; its peak RSS is the parent's
# RUSAGE_CHILDREN after it exits
MEASURE = ("import re, resource, subprocess, sys, threading, time; started = time.perf_counter(); ready = None\n"
           "data = 0.0; peaks = {'RssAnon': 0, 'RssFile': 0}\n"
           "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)\n"
           "def sample():\n"
           "    while child.poll() is None:\n"
           "        try:\n"
           "            status = dict(l.split(':', 1) for l in open(f'/proc/{child.pid}/status'))\n"
           "            for key in peaks: peaks[key] = max(peaks[key], int(status[key].split()[0]))\n"
           "        except (OSError, KeyError, ValueError): pass\n"
           "        time.sleep(0.1)\n"
           "threading.Thread(target=sample, daemon=True).start()\n"
           "for line in child.stdout:\n"
           "    if ready is None and line.startswith('nlp-transfer: training'): ready = time.perf_counter() - started\n"
           "    found = re.search(r'the Arrow cache in ([0-9.]+) s', line)\n"
           "    data += float(found.group(1)) if found else 0.0\n"
           "code = child.wait(); seconds = time.perf_counter() - started\n"
           "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, peaks['RssAnon'], peaks['RssFile'],"
           " ready, data, seconds)")


def write_corpus(path: Path, megabytes: int, seed: int = 0) -> int:
    """A text corpus of about ``megabytes`` MB (TSV with a ``text`` header); returns its lines."""
    sentences = [text for text, _ in sst2_rows()]
    rng = random.Random(seed)
    target, written, lines = megabytes * 1_000_000, 0, 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write("text\n")
        while written < target:
            block = "".join(" ".join(rng.choices(sentences, k=20)) + "\n" for _ in range(10_000))
            handle.write(block)
            written += len(block.encode("utf-8"))
            lines += 10_000
    return lines


def recipe(folder: Path, corpus: Path, steps: int, storage: str) -> Path:
    card = folder / f"{corpus.stem}.md"
    card.write_text("---\n" + yaml.safe_dump({"name": corpus.stem, "task": "text", "splits": {"train": str(corpus)},
                                               "format": "tsv", "text": "text"}) + "---\n# generated corpus\n")
    path = folder / f"{corpus.stem}-{storage}.yaml"
    path.write_text(yaml.safe_dump({
        "task": "masked-lm", "data": str(card), "model": "minilm-l6", "max_length": 128, "data_storage": storage,
        "output_dir": str(folder / f"run-{corpus.stem}-{storage}"), "overwrite": True,
        "training": {"max_steps": steps, "per_device_train_batch_size": 16, "save_strategy": "no",
                     "logging_steps": steps, "report_to": "none", "disable_tqdm": True}}))
    return path


def measure(recipe_path: Path, cache: Path) -> tuple[float, float, float, float, float, float]:
    """(peak RSS MB, peak anonymous and file-backed RSS MB sampled every 0.1 s, seconds to the start of training,
    seconds the data took: hashing the files and writing or opening the Arrow cache, as the run reports them, total
    seconds) of one training run in a fresh process. File-backed pages are the mapped libraries (torch's alone are
    hundreds of MB) and the touched pages of memory-mapped files: the kernel drops them when memory is short."""
    env = {**os.environ, "NLP_TRANSFER_CACHE": str(cache), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    command = [sys.executable, "-m", "nlp_transfer", "train", str(recipe_path)]
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    code, rss_kb, anon_kb, file_kb, ready, data, seconds = done.stdout.split()[-7:]
    if code != "0" or ready == "None":
        raise SystemExit(f"{' '.join(command)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return int(rss_kb) / 1024, int(anon_kb) / 1024, int(file_kb) / 1024, float(ready), float(data), float(seconds)


# The data path of a masked-LM run without the model: read the split (from the cache when it is there), then draw
# steps x 16 rows in the run's order, tokenize and mask them as training does. Its peak RSS shows what the data costs
# apart from training, whose own peak moves by a few hundred MB between identical runs (the allocator).
DATA_ONLY = """
import resource, sys
from transformers import AutoTokenizer
from nlp_transfer.data.order import ScatteredOrder
from nlp_transfer.data.readers import load_data
from nlp_transfer.models import resolve
from nlp_transfer.tasks.mlm import MaskingCollator, TokenizedOnRead
split = load_data(sys.argv[1], storage="arrow").splits["train"]
tokenizer = AutoTokenizer.from_pretrained(resolve("minilm-l6"))
rows, collate = TokenizedOnRead(split, tokenizer, 128, False), MaskingCollator(tokenizer, 0.15, False)
order = iter(ScatteredOrder(len(rows), 42))
for _ in range(int(sys.argv[2])):
    collate([rows[next(order)] for _ in range(16)])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def data_only(card: Path, steps: int, cache: Path) -> float:
    env = {**os.environ, "NLP_TRANSFER_CACHE": str(cache), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run([sys.executable, "-c", DATA_ONLY, str(card), str(steps)], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"the data-only run failed: {done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) / 1024


def run(sizes: list[int], steps: int, memory_baseline: bool, folder: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    for size in sizes:
        corpus = folder / f"corpus-{size}mb.tsv"
        if not corpus.is_file():
            write_corpus(corpus, size)
        cache = folder / f"cache-{size}mb"
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        path = recipe(folder, corpus, steps, "arrow")
        for attempt in ("first", "second"):
            peak, anon, mapped, ready, data, seconds = measure(path, cache)
            figures[f"{size}mb/{attempt}_run/peak_rss_mb"] = round(peak, 1)
            figures[f"{size}mb/{attempt}_run/peak_anon_rss_mb"] = round(anon, 1)
            figures[f"{size}mb/{attempt}_run/peak_file_rss_mb"] = round(mapped, 1)
            figures[f"{size}mb/{attempt}_run/data_preparation_s"] = round(data, 2)
            figures[f"{size}mb/{attempt}_run/seconds_to_training"] = round(ready, 1)
            print(f"{size} MB corpus, {attempt} run: peak {peak:.0f} MB (anonymous {anon:.0f}, file-backed {mapped:.0f}), data ready in {data:.1f} s, training after "
                  f"{ready:.1f} s, {seconds:.0f} s in all", flush=True)
        for attempt in ("first", "second"):  # on an empty cache, then on the one it wrote
            if attempt == "first":
                subprocess.run(["rm", "-rf", str(folder / f"data-only-{size}mb")], check=True)
            peak = data_only(folder / f"{corpus.stem}.md", steps, folder / f"data-only-{size}mb")
            figures[f"{size}mb/data_only_{attempt}_run/peak_rss_mb"] = round(peak, 1)
            print(f"{size} MB corpus, data path alone, {attempt} run: peak {peak:.0f} MB", flush=True)
        figures[f"{size}mb/second_vs_first_data_preparation_ratio"] = round(
            figures[f"{size}mb/second_run/data_preparation_s"] / figures[f"{size}mb/first_run/data_preparation_s"], 3)
    first, last = sizes[0], sizes[-1]
    figures["data_only/largest_vs_smallest_peak_rss_ratio"] = round(
        max(figures[f"{last}mb/data_only_{a}_run/peak_rss_mb"] for a in ("first", "second"))
        / max(figures[f"{first}mb/data_only_{a}_run/peak_rss_mb"] for a in ("first", "second")), 3)
    for kind in ("rss", "anon_rss"):
        figures[f"largest_vs_smallest_peak_{kind}_ratio"] = round(
            max(figures[f"{last}mb/{a}_run/peak_{kind}_mb"] for a in ("first", "second"))
            / max(figures[f"{first}mb/{a}_run/peak_{kind}_mb"] for a in ("first", "second")), 3)
    if memory_baseline:
        corpus = folder / f"corpus-{first}mb.tsv"
        peak, anon, _, ready, _, _ = measure(recipe(folder, corpus, steps, "memory"), folder / "cache-memory")
        figures[f"{first}mb/in_memory/peak_rss_mb"] = round(peak, 1)
        figures[f"{first}mb/in_memory/peak_anon_rss_mb"] = round(anon, 1)
        figures[f"{first}mb/in_memory/seconds_to_training"] = round(ready, 1)
        print(f"{first} MB corpus in memory: peak {peak:.0f} MB, training after {ready:.1f} s", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="200,2000")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--memory-baseline", action="store_true")
    parser.add_argument("--folder", help="where corpora and caches go (kept for the next run); default: a temp folder")
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/results.json")
    args = parser.parse_args()
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes_mb.split(",")]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(args.folder or temp)
        folder.mkdir(parents=True, exist_ok=True)
        figures = {f"scale/mlm/minilm-l6/{k}": v
                   for k, v in run(sizes, args.steps, args.memory_baseline, folder).items()}
    for key, value in figures.items():
        print(f"{key} = {value}")
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.record:
        from benchmarks.record_run import record

        record(figures, f"python -m benchmarks.scale_mlm --sizes-mb {args.sizes_mb} --steps {args.steps}"
                        + (" --memory-baseline" if args.memory_baseline else ""))


if __name__ == "__main__":
    main()
