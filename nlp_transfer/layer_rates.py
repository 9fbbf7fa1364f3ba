"""The layer-rate options some strategies share: per-layer learning rates and the two-stage head warm-up.

A strategy that accepts them declares the small config as a base class (``class Full(LayerRates, HeadWarmup,
Strategy)``, see `nlp_transfer.strategy_configs`); a strategy without it refuses its keys with the message below.

- `LayerRates` (full, last-n, gradual): ``lr_decay`` (``lr * decay**depth``, depth 0 for the head and the top
  layer) or ``group_lrs`` (a learning rate per group of `GROUPS`), not both.
- `HeadWarmup` (full, last-n): ``head_warmup_steps`` or ``head_warmup_epochs``, the head alone at ``head_lr``
  first. ``head_lr`` alone is accepted, and does nothing, with any strategy (a shared recipe may switch strategy).

Torch-free: the recipe is checked before torch loads; `nlp_transfer.strategies` applies these options.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .checks import checked
from .errors import NLPTransferError, did_you_mean

GROUPS = ("embeddings", "lower", "upper", "head")  # discriminative groups, bottom to top


def check_group_lrs(group_lrs, source: str = "recipe") -> dict[str, float]:
    if group_lrs is None:
        return {}
    if not isinstance(group_lrs, dict):
        raise NLPTransferError(f"{source}: strategy.group_lrs must map groups ({', '.join(GROUPS)}) to learning rates")
    out = {}
    for key, value in group_lrs.items():
        if key not in GROUPS:
            raise NLPTransferError(f"{source}: strategy.group_lrs: unknown group '{key}'{did_you_mean(key, GROUPS)} "
                                   f"(groups: {', '.join(GROUPS)})")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise NLPTransferError(f"{source}: strategy.group_lrs.{key} must be a number, got {value!r}") from None
        if out[key] < 0:
            raise NLPTransferError(f"{source}: strategy.group_lrs.{key} must be >= 0, got {value!r}")
    return out


@dataclass
class LayerRates:
    """Layer-wise (``lr_decay``) or per-group (``group_lrs``) learning rates."""

    refusal: ClassVar[str] = "does not take lr_decay or group_lrs; use {accepting}"
    ignored_elsewhere: ClassVar[tuple[str, ...]] = ()
    shown: ClassVar[tuple[str, ...]] = ("lr_decay", "group_lrs")

    lr_decay: float | None = checked(None, low=0, high=1, low_open=True)  # e.g. 0.9: lr * decay**depth from the top
    group_lrs: dict[str, float] | None = None  # discriminative groups: {embeddings, lower, upper, head} -> lr

    def check(self, source: str) -> None:
        self.group_lrs = check_group_lrs(self.group_lrs, source) or None
        if self.group_lrs and self.lr_decay is not None:
            raise NLPTransferError(f"{source}: strategy: set either lr_decay or group_lrs, not both")
        super().check(source)

    def plan_options(self) -> dict[str, Any]:
        return {**super().plan_options(), "lr_decay": self.lr_decay, "group_lrs": self.group_lrs}


@dataclass
class HeadWarmup:
    """Two-stage fine-tuning: the head trains alone at ``head_lr`` for a number of steps or epochs first."""

    refusal: ClassVar[str] = "has no head warm-up stage; use it with {accepting}"
    ignored_elsewhere: ClassVar[tuple[str, ...]] = ("head_lr",)  # accepted, and unused, without a warm-up (as before)
    shown: ClassVar[tuple[str, ...]] = ("head_warmup_steps", "head_warmup_epochs")

    head_warmup_steps: int | None = checked(None, low=1)  # the head trains alone for this many steps first...
    head_warmup_epochs: float | None = checked(None, low=0, low_open=True)  # ... or this many epochs
    head_lr: float = checked(1e-3, low=0, low_open=True)  # the head's learning rate during the warm-up stage

    def check(self, source: str) -> None:
        if self.head_warmup_steps is not None and self.head_warmup_epochs is not None:
            raise NLPTransferError(f"{source}: strategy: set head_warmup_steps or head_warmup_epochs, not both")
        super().check(source)

    def plan_options(self) -> dict[str, Any]:
        return {**super().plan_options(), "head_warmup_steps": self.head_warmup_steps,
                "head_warmup_epochs": self.head_warmup_epochs, "head_lr": self.head_lr}


SHARED_OPTIONS = (LayerRates, HeadWarmup)  # in the order their options are listed and described
