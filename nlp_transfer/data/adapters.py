"""From rows to model inputs: tokenization, dynamic padding, sliding windows, length-sorted batches.

No padding happens at tokenization time; each batch is padded to its own longest row by
`DynamicPaddingCollator`, and training batches are grouped by length (the ``length`` column),
so little compute goes to padding tokens.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize_dataset(dataset, tokenizer, max_length: int, desc: str = "tokenizing"):
    """Tokenize a split read by `readers.load_data` (columns text[, text_pair], label, line).

    Keeps only what the model needs plus ``labels`` and ``length``, so nothing the model
    needs can be silently dropped later and nothing it does not know reaches its forward()."""
    has_pair = "text_pair" in dataset.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["text"], batch["text_pair"] if has_pair else None,
                            truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        if "label" in batch:
            encoded["labels"] = batch["label"]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=desc)


class DynamicPaddingCollator:
    """Pads each batch to its longest row (optionally to a multiple of 8 for tensor cores) and
    drops bookkeeping columns such as ``length``."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        from transformers import DataCollatorWithPadding

        self._pad = DataCollatorWithPadding(tokenizer, padding="longest", pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [{k: v for k, v in f.items() if k in MODEL_INPUTS or k == "labels"} for f in features]
        return self._pad(kept)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of similar lengths (longest first, so memory peaks show up at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def encode_for_prediction(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int,
                          window: bool = False, stride: int = 64) -> tuple[list[dict[str, list[int]]], np.ndarray]:
    """Encode texts for inference. With ``window``, a text longer than max_length becomes several
    overlapping windows (``stride`` tokens shared); returns the encodings and, per encoding, the
    index of the text it came from (so window logits can be averaged back per text)."""
    kwargs: dict[str, Any] = {"truncation": True, "max_length": max_length}
    if window:
        if pairs is not None:
            kwargs["truncation"] = "only_second"
        kwargs.update(return_overflowing_tokens=True, stride=min(stride, max_length // 2))
    encoded = tokenizer(texts, pairs, **kwargs)
    keys = [k for k in MODEL_INPUTS if k in encoded]
    rows = [{k: encoded[k][i] for k in keys} for i in range(len(encoded["input_ids"]))]
    if window:
        owner = np.asarray(encoded["overflow_to_sample_mapping"])
    else:
        owner = np.arange(len(rows))
    return rows, owner
