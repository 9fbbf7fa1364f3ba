"""Embedding throughput of nlp_transfer vs sentence-transformers `encode`, side by side in one run,
and peak memory of embedding many texts to disk.

    python -m benchmarks.embed_speed                 # 4,000 SST-2 sentences, 3 alternating rounds
    python -m benchmarks.embed_speed --memory 100000 # also: peak RSS while embedding 100k texts to disk

Same model (all-MiniLM-L6-v2), same texts, batch size 32, mean pooling + normalization, same torch threads.
The two runs alternate (ours, theirs, ours, ...) and the best round of each counts, so a noisy neighbour
hurts both alike. Writes `embed/vs_sentence_transformers/*` and `embed/memory_100k/*` to results.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


SST2_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2" / "train.tsv"
SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sst2" / "train.tsv"


def sentences(count: int) -> list[str]:
    source = SST2_TRAIN if SST2_TRAIN.is_file() else SAMPLE
    rows = [line.rsplit("\t", 1)[0].strip() for line in source.read_text(encoding="utf-8").splitlines()[1:]]
    return [rows[i % len(rows)] for i in range(count)]


def speed(count: int, rounds: int, batch_size: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from nlp_transfer.models import resolve
    from nlp_transfer.runtime import resolve_device
    from nlp_transfer.encoders import Encoder, EmbedSettings

    texts = sentences(count)
    device = resolve_device("auto")  # both on the same device: CUDA when present, else the CPU
    ours = Encoder("minilm-l6", runtime=device)
    theirs = SentenceTransformer(resolve("minilm-l6"), device=device)
    settings = EmbedSettings(pooling="mean", normalize=True, batch_size=batch_size, max_length=256)
    ours.encode(texts[:256], settings)  # warm-up both
    theirs.encode(texts[:256], batch_size=batch_size, normalize_embeddings=True)
    best_ours, best_theirs = float("inf"), float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        a = ours.encode(texts, settings)
        best_ours = min(best_ours, time.perf_counter() - started)
        started = time.perf_counter()
        b = theirs.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        best_theirs = min(best_theirs, time.perf_counter() - started)
    cosine = float((a * b).sum(axis=1).min())
    return {"texts": count, "threads": torch.get_num_threads(), "ours_texts_per_s": count / best_ours,
            "st_texts_per_s": count / best_theirs, "speedup": best_theirs / best_ours, "min_cosine": cosine}


CHILD = """
import json, resource, sys, numpy as np
from nlp_transfer.encoders import Encoder, embed
sys.path.insert(0, {root!r})
from benchmarks.embed_speed import sentences
texts = sentences({count})
encoder = Encoder("minilm-l6")
encoder.encode(texts[:64], __import__("nlp_transfer.encoders", fromlist=["x"]).EmbedSettings())
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
base = rss_mb()
array = embed(encoder, texts, {out!r}, normalize=True, chunk_size=8192)
def hwm_mb():  # this process's own peak (ru_maxrss would include the forking parent's, carried over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
peak = hwm_mb()
print(json.dumps({{"base_mb": base, "peak_mb": peak, "rows": int(array.shape[0])}}))
"""


def memory(count: int, out: Path) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    code = CHILD.format(root=root, count=count, out=str(out))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["above_model_mb"] = result["peak_mb"] - result["base_mb"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory", type=int, default=0, help="also measure peak RSS for this many texts")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    command = "python -m benchmarks.embed_speed " + " ".join(sys.argv[1:])
    entries = {}
    result = speed(args.texts, args.rounds, args.batch_size)
    print(json.dumps(result, indent=2))
    for key in ("speedup", "ours_texts_per_s", "st_texts_per_s", "min_cosine"):
        entries[f"embed/vs_sentence_transformers/{key}"] = round(result[key], 4)
    if args.memory:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            mem = memory(args.memory, Path(folder) / "emb")
        print(json.dumps(mem, indent=2))
        entries[f"embed/memory_{args.memory // 1000}k/peak_above_model_mb"] = round(mem["above_model_mb"], 1)
        entries[f"embed/memory_{args.memory // 1000}k/peak_rss_mb"] = round(mem["peak_mb"], 1)
    if not args.no_record:
        from benchmarks.record_run import record

        record(entries, command)


if __name__ == "__main__":
    main()
