"""The run record (``metrics.json``: one versioned schema for every backend) and the staging folder a backend
writes its model files into before `nlp_transfer.outputs.finish` moves them into the run folder."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .version import __version__

RECORD_SCHEMA = 1  # metrics.json: raise when a key changes meaning or goes away (new keys keep the number)
STAGING = ".final-staging"


def staging_folder(out: Path) -> Path:
    """Where a backend writes its model files before `finish` moves everything into ``out``."""
    staging = Path(out) / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def run_record(recipe, card, *, backend: str, problem_type: str, main_metric: str, model: str, strategy: str,
               eval_scores: dict[str, Any], train: dict[str, Any], params: dict[str, int],
               eval_split: str | None = None, predict_rate: float | None = None,
               history: list[dict[str, Any]] | None = None, rows: dict[str, int] | None = None,
               world_size: int = 1, **extra: Any) -> dict[str, Any]:
    """metrics.json as every backend writes it: the same keys in the same order, backend-specific ones after."""
    return {
        "schema": RECORD_SCHEMA,
        "backend": backend,
        "task": recipe.task,
        "problem_type": problem_type,
        "model": model,
        "data": card.name,
        "strategy": strategy,
        "eval_split": eval_split,
        "main_metric": main_metric,
        "eval": eval_scores,
        "train": train,
        "params": params,
        "predict": {"samples_per_second": predict_rate},  # evaluation-split throughput of the trained model
        "history": history or [],  # train loss and eval metrics per logging step or epoch: learning curves
        "rows": rows or {},
        "world_size": world_size,
        "seed": recipe.seed,
        "nlp_transfer_version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
