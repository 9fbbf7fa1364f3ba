"""Where and in what precision models run: resolved once, used by everything that runs a model.

    from nlp_transfer.runtime import Runtime
    runtime = Runtime.resolve("auto")          # CUDA when there is one, else the CPU; float32
    model.to(runtime.device)
    with runtime.autocast():                   # bf16/fp16 autocast on an accelerator when asked, else nothing
        logits = model(**batch).logits

Training takes its device and precision from TrainingArguments (`Runtime.from_training_args`), and the final
scoring of a run uses the same; `load_model`, `embed`, the probe's features and the static baselines take
``device="auto"`` (the CLI's ``--device``) by default. Process rank lives here too: the main process is the one
that writes.
"""
from __future__ import annotations

import os
import re
from contextlib import nullcontext
from dataclasses import dataclass

from .errors import NLPTransferError

DTYPES = ("float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def is_main_process() -> bool:
    """True on the process that writes outputs (rank 0), also before any Trainer exists."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` (or None): ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are
    checked against what this machine has."""
    import torch

    name = "auto" if device is None else str(device).strip().lower()
    if not _DEVICE.match(name):
        raise NLPTransferError(f"device '{device}' is not one of auto, cpu, cuda, cuda:N, mps")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NLPTransferError(f"device '{device}': torch sees no CUDA GPU here; use --device cpu (or auto)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise NLPTransferError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise NLPTransferError(f"device '{device}': torch sees no Apple GPU (mps) here; use --device cpu (or auto)")
    return name


@dataclass(frozen=True)
class Runtime:
    """A device and the precision models compute in there (``float32``, or autocast to bf16/fp16)."""

    device: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def resolve(cls, device: str | None = "auto", dtype: str | None = "float32") -> Runtime:
        dtype = dtype or "float32"
        if dtype not in DTYPES:
            raise NLPTransferError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
        resolved = resolve_device(device)
        if resolved == "cpu" and dtype != "float32":
            dtype = "float32"  # autocast is for accelerators; on the CPU it would only slow inference down
        return cls(resolved, dtype)

    @classmethod
    def from_training_args(cls, args) -> Runtime:
        """The device Trainer trained on and its mixed precision (bf16/fp16), for scoring the finished model."""
        dtype = "bfloat16" if getattr(args, "bf16", False) else "float16" if getattr(args, "fp16", False) else "float32"
        device = str(args.device)
        if device.startswith("cpu"):  # DDP on CPUs reports "cpu:0"; load_model and evaluate take "cpu"
            return cls("cpu", "float32")
        return cls(device, dtype)

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def autocast(self):
        """A context in which forward passes run in this runtime's precision (nothing to do in float32)."""
        if self.dtype == "float32":
            return nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=getattr(torch, self.dtype))
