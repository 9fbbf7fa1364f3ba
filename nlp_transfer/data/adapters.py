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

    Keeps only what the model needs plus ``labels``, ``length`` and a teacher's ``soft_labels``, so nothing the model
    needs can be silently dropped later and nothing it does not know reaches its forward()."""
    has_pair = "text_pair" in dataset.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["text"], batch["text_pair"] if has_pair else None,
                            truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        if "label" in batch:
            encoded["labels"] = batch["label"]
        if "soft_labels" in batch:  # a teacher's probabilities (strategy distill)
            encoded["soft_labels"] = batch["soft_labels"]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=desc)


class DynamicPaddingCollator:
    """Pads each batch to its longest row (optionally to a multiple of 8 for tensor cores) and
    drops bookkeeping columns such as ``length``. With ``token_labels`` the per-token labels are
    padded too (with -100, ignored by the loss).

    It fills preallocated arrays directly instead of going through `tokenizer.pad` (transformers'
    DataCollatorWithPadding), which costs about 2.4 ms per batch of 32 in Python: noise next to a CPU step, but a
    large share of a GPU step, and the DataLoader collates in the training process. The result is the same
    (pad id, mask 0, token type 0, labels -100; the tokenizer's padding side), which tests check against it."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None, token_labels: bool = False):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.multiple = pad_to_multiple_of
        self.token_labels = token_labels

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        fills = {"input_ids": self.pad_id, "attention_mask": 0, "token_type_ids": 0}
        if self.token_labels:
            fills["labels"] = -100
        batch = {}
        for key, fill in fills.items():
            if key not in features[0]:
                continue
            array = np.full((len(features), width), fill, dtype=np.int64)
            for row, feature in enumerate(features):
                values = feature[key]
                if self.left:
                    array[row, width - len(values):] = values
                else:
                    array[row, :len(values)] = values
            batch[key] = torch.from_numpy(array)
        if "labels" in features[0] and not self.token_labels:
            labels = [f["labels"] for f in features]
            dtype = torch.float32 if isinstance(labels[0], (float, list, tuple)) else torch.long
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        if "soft_labels" in features[0]:
            batch["soft_labels"] = torch.tensor([f["soft_labels"] for f in features], dtype=torch.float32)
        return batch


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of similar lengths (longest first, so memory peaks show up at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def encode_for_prediction(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int,
                          window: bool = False, stride: int = 64) -> tuple[list[dict[str, list[int]]], np.ndarray]:
    """Encode texts for inference. With ``window``, a text longer than max_length becomes several
    overlapping windows (``stride`` tokens shared); returns the encodings and, per encoding, the
    index of the text it came from (so window logits can be averaged back per text).

    For pairs, the windows slide over the second text and every window repeats the first one."""
    if not window:
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        return _rows(encoded), np.arange(len(encoded["input_ids"]))
    # Each window must bring new tokens: the stride has to stay below the room left for the windowed
    # text (max_length less the special tokens, and less the first text for pairs). That room differs per pair.
    # The windows are cut from the token ids (`windows.text_windows`), not by the tokenizer's overflow option,
    # whose windows depend on the tokenizers version.
    from .windows import SpecialTokens, text_windows

    room = np.full(len(texts), max_length - SpecialTokens.of(tokenizer, pair=pairs is not None).count)
    if pairs is not None:
        firsts = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        room -= np.asarray([len(ids) for ids in firsts], dtype=room.dtype)
        if len(room) and room.min() < 1:
            i = int(np.argmin(room))
            from ..errors import NLPTransferError

            raise NLPTransferError(
                f"text {i + 1}: the first text of the pair leaves no room for the second within "
                f"max_length={max_length}; raise max_length or put the long text second")
    strides = np.clip(np.minimum(room - 1, min(stride, max_length // 2)), 0, None)
    rows, owners = text_windows(tokenizer, texts, pairs, max_length, strides)
    return rows, np.asarray(owners, dtype=int)


def _rows(encoded) -> list[dict[str, list[int]]]:
    keys = [k for k in MODEL_INPUTS if k in encoded]
    return [{k: encoded[k][i] for k in keys} for i in range(len(encoded["input_ids"]))]
