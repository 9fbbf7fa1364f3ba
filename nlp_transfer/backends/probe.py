"""The probe backend: features of a frozen encoder (or one trained on pairs first: strategy contrastive) and a
scikit-learn linear model chosen on the evaluation split; the training lives in `nlp_transfer.probe`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import NLPTransferError
from ..runtime import Runtime
from .base import Backend, Fitted, Job, register


@register("probe")
class ProbeBackend(Backend):
    title = "scikit-learn probe"
    needs_eval = "the probe chooses its regularisation"

    def check(self, recipe, card) -> None:
        from ..tasks.problems import problem_type
        from .trainer import check_model

        if recipe.class_weights is not None and not problem_type(card.problem_type).exclusive:
            raise NLPTransferError(f"{recipe.source}: the probe weighs classes for single-label data only; remove "
                                   f"class_weights or train with strategy full")
        check_model(recipe)

    def fit(self, job: Job) -> Fitted:
        from ..probe import train_probe

        return train_probe(job)

    def load(self, folder: Path, sidecar: dict[str, Any], runtime: Runtime, trust_remote_code: bool = False,
             variant: str | None = None):
        from ..predictors import ProbeClassifier

        return ProbeClassifier(Path(folder), sidecar, trust_remote_code, runtime)
