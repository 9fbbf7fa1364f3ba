"""A seeded shuffle of a training set too large to hold its permutation in Python (issue 29).

torch's `RandomSampler` draws ``torch.randperm(n).tolist()`` each epoch: a Python list of n ints, about 36 bytes a
row (720 MB for 20 million rows), and transformers' length-grouped sampler also reads every row's length into a
list. `ScatteredOrder` computes the i-th index of the epoch's order on the fly instead: a keyed Feistel network on
the bits of the index, with cycle-walking to stay below n, is a bijection on ``range(n)``, so every row comes once
per epoch, in an order fixed by (seed, epoch) and different each epoch, in O(1) memory. A resumed run that skips
the first k batches of an epoch gets the same order as the uninterrupted one (the order depends on nothing else).
"""
from __future__ import annotations

from collections.abc import Iterator

ROUNDS = 4
_MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """SplitMix64's finaliser: 64 well-mixed bits from any 64."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class ScatteredOrder:
    """Every index of ``range(size)`` once per epoch, in a pseudo-random order set by ``seed`` and the epoch
    (``set_epoch``, called by transformers / accelerate at each epoch start)."""

    def __init__(self, size: int, seed: int):
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size, self.seed, self.epoch = size, seed, 0
        self._half = max(1, ((max(size, 2) - 1).bit_length() + 1) // 2)  # bits of each Feistel half
        self._low = (1 << self._half) - 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        keys = [_mix(_mix(self.seed) ^ (self.epoch * ROUNDS + r)) for r in range(ROUNDS)]
        for index in range(self.size):
            value = self._permute(index, keys)
            while value >= self.size:  # cycle-walking: the permutation of range(4**half) restricted to range(size)
                value = self._permute(value, keys)
            yield value

    def _permute(self, value: int, keys: list[int]) -> int:
        left, right = value >> self._half, value & self._low
        for key in keys:
            left, right = right, left ^ (_mix(right ^ key) & self._low)
        return (left << self._half) | right
