"""The static backend: GloVe / word2vec / fastText baselines (averaged vectors + a linear model, frozen-embedding
BiLSTMs for classification and tagging); the models and their training live in `nlp_transfer.static`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runtime import Runtime
from .base import Backend, Fitted, Job, register


@register("static")
class StaticBackend(Backend):
    title = "static-embedding baseline"
    needs_eval = "static baselines choose C / the best epoch"

    def check(self, recipe, card) -> None:
        from ..static.baselines import check_static

        check_static(recipe)

    def fit(self, job: Job) -> Fitted:
        from ..static.baselines import check_static, train_static

        return train_static(job, check_static(job.recipe))

    def model_name(self, recipe) -> str:
        return recipe.static.get("vectors")

    def load(self, folder: Path, sidecar: dict[str, Any], runtime: Runtime, trust_remote_code: bool = False,
             variant: str | None = None):
        from ..static.predictors import load_static

        return load_static(folder, runtime.device, sidecar)
