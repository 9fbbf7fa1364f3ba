"""Sliding windows over token ids, computed here rather than by the tokenizer's overflow option.

A text longer than ``max_length`` becomes overlapping windows of at most ``room`` content tokens (``max_length``
less the special tokens, and less the first text for pairs); consecutive windows share ``stride`` tokens. The
text is tokenized once without special tokens, cut into windows, and each window gets the model's special tokens
from a template read off the tokenizer (`SpecialTokens`: what it puts before, between and after the texts, with
their token types).

Why not ``return_overflowing_tokens=True``: its windows depend on the `tokenizers` version. With tokenizers 0.23.2
(allowed by transformers 5, and installed on real GPU images) long texts came back in too few windows and 100+
tokens were silently dropped; 0.23.3 was right. Windows cut from the ids are the same on every version, and a test
checks that the windows of every text rebuild its token sequence exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import NLPTransferError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def spans(length: int, room: int, stride: int) -> list[tuple[int, int]]:
    """Token spans ``[start, end)`` covering ``range(length)``: at most ``room`` tokens each, consecutive spans sharing
    ``stride`` tokens (``0 <= stride < room``). An empty text gives one empty span."""
    if room < 1 or not 0 <= stride < room:
        raise ValueError(f"windows need room >= 1 and 0 <= stride < room, got room={room}, stride={stride}")
    out, start = [], 0
    while True:
        end = min(start + room, length)
        out.append((start, end))
        if end >= length:
            return out
        start = end - stride


def _find(sequence: list[int], part: list[int], start: int = 0) -> int:
    for i in range(start, len(sequence) - len(part) + 1):
        if sequence[i:i + len(part)] == part:
            return i
    return -1


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens a tokenizer adds around one text (``prefix`` + text + ``suffix``) or a pair (``prefix`` +
    first + ``middle`` + second + ``suffix``), each as (ids, token types); the token type of each text's own tokens
    in ``types``. Read off the tokenizer by encoding two probe words with and without special tokens."""

    prefix: tuple[tuple[int, ...], tuple[int, ...]]
    middle: tuple[tuple[int, ...], tuple[int, ...]]
    suffix: tuple[tuple[int, ...], tuple[int, ...]]
    types: tuple[int, int]
    token_types: bool  # whether the model takes token_type_ids

    @classmethod
    def of(cls, tokenizer, pair: bool = False) -> SpecialTokens:
        first = tokenizer("a", add_special_tokens=False)["input_ids"]
        second = tokenizer("b", add_special_tokens=False)["input_ids"]
        encoded = tokenizer("a", "b" if pair else None, add_special_tokens=True)
        ids = list(encoded["input_ids"])
        types = list(encoded["token_type_ids"]) if "token_type_ids" in encoded else [0] * len(ids)
        i = _find(ids, first)
        j = _find(ids, second, i + len(first)) if pair else i + len(first)
        if i < 0 or j < 0:
            raise NLPTransferError(f"cannot tell the special tokens of the {type(tokenizer).__name__} tokenizer apart "
                                   f"from the text; windows (long texts) are not available for this model")
        end = j + (len(second) if pair else 0)

        def part(a: int, b: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
            return tuple(ids[a:b]), tuple(types[a:b])

        return cls(part(0, i), part(i + len(first), j) if pair else ((), ()), part(end, len(ids)),
                   (types[i] if first else 0, types[j] if pair and second else 0), "token_type_ids" in encoded)

    @property
    def count(self) -> int:
        return len(self.prefix[0]) + len(self.middle[0]) + len(self.suffix[0])

    def build(self, ids: Sequence[int], pair_ids: Sequence[int] | None = None) -> dict[str, list[int]]:
        """Model inputs for one window: the special tokens around ``ids`` (and ``pair_ids``)."""
        input_ids = list(self.prefix[0]) + list(ids)
        types = list(self.prefix[1]) + [self.types[0]] * len(ids)
        if pair_ids is not None:
            input_ids += list(self.middle[0]) + list(pair_ids)
            types += list(self.middle[1]) + [self.types[1]] * len(pair_ids)
        input_ids += list(self.suffix[0])
        types += list(self.suffix[1])
        row = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids)}
        if self.token_types:
            row["token_type_ids"] = types
        return row

    def positions(self, content: int, pair_content: int | None = None) -> list[int | None]:
        """For each position of a built window: the index of the windowed text's token there, None elsewhere (the
        special tokens, and the first text of a pair)."""
        out: list[int | None] = [None] * len(self.prefix[0])
        if pair_content is None:
            out += list(range(content))
        else:
            out += [None] * (content + len(self.middle[0])) + list(range(pair_content))
        return out + [None] * len(self.suffix[0])


def text_windows(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int,
                 strides: Sequence[int]) -> tuple[list[dict[str, list[int]]], list[int]]:
    """Windows of each text (for pairs: of the second text, every window repeating the first), ``strides[i]`` tokens
    shared between consecutive windows of text i. Returns the model inputs and, per window, its text's index."""
    special = SpecialTokens.of(tokenizer, pair=pairs is not None)
    content = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    second = tokenizer(list(pairs), add_special_tokens=False)["input_ids"] if pairs is not None else None
    rows, owners = [], []
    for index, ids in enumerate(content):
        if second is None:
            room = max_length - special.count
            for start, end in spans(len(ids), room, int(strides[index])):
                rows.append(special.build(ids[start:end]))
                owners.append(index)
        else:
            room = max_length - special.count - len(ids)
            for start, end in spans(len(second[index]), room, int(strides[index])):
                rows.append(special.build(ids, second[index][start:end]))
                owners.append(index)
    return rows, owners


@dataclass
class WordWindows:
    """Windows over pre-split words: model inputs per window, the sentence it came from and, per position, the
    index of the word there (None for special tokens)."""

    rows: list[dict[str, list[int]]]
    owners: list[int]
    word_ids: list[list[int | None]]

    def column(self, key: str) -> list[list[int]]:
        return [row[key] for row in self.rows]


def word_windows(tokenizer, sentences: Sequence[Sequence[str]], max_length: int, stride: int) -> WordWindows:
    """Windows of at most ``max_length`` subwords over each sentence of pre-split words, ``stride`` subwords shared
    between consecutive windows (capped at half the room, so every window brings new words)."""
    special = SpecialTokens.of(tokenizer)
    room = max_length - special.count
    stride = max(0, min(stride, room // 2))
    encoded = tokenizer([list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False)
    rows, owners, word_ids = [], [], []
    for index, ids in enumerate(encoded["input_ids"]):
        words = encoded.word_ids(index)
        for start, end in spans(len(ids), room, stride):
            rows.append(special.build(ids[start:end]))
            owners.append(index)
            word_ids.append([None if p is None else words[start + p] for p in special.positions(end - start)])
    return WordWindows(rows, owners, word_ids)
