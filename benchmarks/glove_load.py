"""Loading GloVe: gensim's parser vs our first load (fresh cache) vs our cached reload, in one run.

    python -m benchmarks.glove_load              # glove.6B.50d.100k.txt.gz, 3 alternating rounds
    python -m benchmarks.glove_load --rounds 5 --no-record

Each round runs, in order: gensim ``KeyedVectors.load_word2vec_format(path, no_header=True)``; our
``load_vectors(path)`` into an empty temporary cache (parse + write the cache); our ``load_vectors(path)``
again (memory-mapped from that cache). The best round of each counts, so a noisy neighbour hurts all alike,
and every result is checked equal to gensim's (same words, same arrays). Goals: first load >= 1.0x gensim,
cached reload >= 20x faster than the first load. Writes ``static/glove_load/*`` to results.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GLOVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glove" / "glove.6B.50d.100k.txt.gz"


def timed(function):
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def run(path: Path, rounds: int) -> dict[str, float]:
    from gensim.models import KeyedVectors

    from nlp_transfer.static.vectors import load_vectors

    best = {"gensim": float("inf"), "first": float("inf"), "cached": float("inf")}
    for round_number in range(1, rounds + 1):
        seconds, theirs = timed(lambda: KeyedVectors.load_word2vec_format(str(path), no_header=True))
        best["gensim"] = min(best["gensim"], seconds)
        cache = Path(tempfile.mkdtemp(prefix="glove-load-cache-"))
        os.environ["NLP_TRANSFER_CACHE"] = str(cache)
        try:
            seconds, first = timed(lambda: load_vectors(path, progress=False))
            best["first"] = min(best["first"], seconds)
            seconds, cached = timed(lambda: load_vectors(path, progress=False))
            best["cached"] = min(best["cached"], seconds)
            assert isinstance(cached.vectors, np.memmap), "the second load did not come from the cache"
            for ours in (first, cached):
                assert ours.index_to_key == theirs.index_to_key
                assert np.array_equal(np.asarray(ours.vectors), theirs.vectors)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        print(f"round {round_number}: gensim {best['gensim']:.3f} s, first {best['first']:.3f} s, "
              f"cached {best['cached']:.4f} s (best so far)", flush=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=GLOVE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="print only; leave results.json alone")
    args = parser.parse_args()
    if not args.path.is_file():
        sys.exit(f"{args.path} not found (the GloVe files live in ../shared/data/glove beside the repository)")
    import gensim  # noqa: F401  (imported once before timing, so no round pays for it)

    import nlp_transfer.static.vectors  # noqa: F401

    best = run(args.path, args.rounds)
    first_vs_gensim = best["gensim"] / best["first"]
    cached_vs_first = best["first"] / best["cached"]
    print(f"\n{args.path.name}: gensim {best['gensim']:.3f} s, first load {best['first']:.3f} s "
          f"({first_vs_gensim:.2f}x gensim, goal >= 1.0x), cached reload {best['cached']:.4f} s "
          f"({cached_vs_first:.1f}x the first load, goal >= 20x)")
    if not args.no_record:
        from benchmarks.record_run import record

        command = "python -m benchmarks.glove_load" + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
        record({"static/glove_load/first_vs_gensim/speedup": round(first_vs_gensim, 2),
                "static/glove_load/cached_vs_first/speedup": round(cached_vs_first, 1),
                "static/glove_load/gensim_s": round(best["gensim"], 3),
                "static/glove_load/first_s": round(best["first"], 3),
                "static/glove_load/cached_s": round(best["cached"], 4)}, command)


if __name__ == "__main__":
    main()
