"""Collation time per training batch: nlp_transfer's DynamicPaddingCollator next to transformers'
DataCollatorWithPadding (what the dynamic-padding Trainer uses), on the same tokenized SST-2 rows.

    python -m benchmarks.collate_speed [--batch-size 32] [--rounds 7] [--record]

Both produce identical batches (tests/test_adapters.py checks it). The DataLoader collates in the training
process, so on a GPU, where a MiniLM-sized step takes milliseconds, this time is a real share of each step; on
2 CPU cores a step takes about a second and it does not matter there.
"""
from __future__ import annotations

import argparse
import time

from benchmarks.speed import MODEL, sst2_rows


def per_batch_ms(collate, features: list[dict], batch_size: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(0, len(features), batch_size):
            collate([dict(f) for f in features[i:i + batch_size]])
        batches = -(-len(features) // batch_size)
        best = min(best, (time.perf_counter() - started) / batches * 1000)
    return best


def speed(batch_size: int = 32, rounds: int = 7, count: int = 4096, model: str = MODEL) -> dict[str, float]:
    from transformers import DataCollatorWithPadding

    from nlp_transfer.data.adapters import DynamicPaddingCollator
    from nlp_transfer.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    rows = sst2_rows()[:count]
    encoded = tokenizer([text for text, _ in rows], truncation=True, max_length=128)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    features = [{**{k: encoded[k][i] for k in keys}, "labels": label} for i, (_, label) in enumerate(rows)]
    ours = per_batch_ms(DynamicPaddingCollator(tokenizer), features, batch_size, rounds)
    theirs = per_batch_ms(DataCollatorWithPadding(tokenizer, padding="longest"), features, batch_size, rounds)
    return {f"b{batch_size}/nlp_transfer_ms": round(ours, 4), f"b{batch_size}/data_collator_with_padding_ms":
            round(theirs, 4), f"b{batch_size}/vs_data_collator_with_padding_speedup": round(theirs / ours, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/results.json")
    args = parser.parse_args()
    figures = {f"collate/sst2/{k}": v for k, v in speed(args.batch_size, args.rounds).items()}
    for key, value in figures.items():
        print(f"{key} = {value}")
    if args.record:
        from benchmarks.record_run import record

        record(figures, f"python -m benchmarks.collate_speed --batch-size {args.batch_size}")


if __name__ == "__main__":
    main()
