"""What every task module shares: the `Prepared` bundle a task hands to training, per-language scoring and the
direction of each metric. No heavy imports: `compare` reads it too."""
from __future__ import annotations

# The one list of metrics where lower is better (checkpoint selection, early stopping, compare's ordering and its
# "best run"); every other metric a task reports is better higher.
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "mse", "mae"})


def greater_is_better(metric: str) -> bool:
    """Direction of a metric named as in metrics.json or by Trainer (``eval_`` prefix allowed)."""
    return metric.removeprefix("eval_") not in LOWER_IS_BETTER

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Prepared:
    """Everything task-specific a training run needs."""

    train_set: Any  # datasets.Dataset with model inputs, labels, length
    eval_set: Any | None  # sorted by length, read in order; None without an evaluation split
    model: Any
    metrics: Any | None  # streaming compute_metrics with ``details`` after each evaluation
    main_metric: str
    token_labels: bool  # labels are per token (padded with -100) rather than per row
    summary: str  # for the start-of-run line, e.g. "2 labels, single_label"
    pipeline_tag: str
    sidecar: dict[str, Any] = field(default_factory=dict)  # saved in nlp_transfer.json for load_model
    loss: Callable | None = None  # (logits, labels) -> loss, replacing the model's own
    preprocess_logits: Callable | None = None  # shrink logits before they are gathered for metrics
    prediction_rows: Callable[[], Iterable[dict]] | None = None  # the evaluation split with its predictions
    collator: Callable | None = None  # batches; default: dynamic padding
    evaluate_before: bool = False  # also evaluate the untouched model first (e.g. held-out perplexity before MLM)
    after_save: Callable | None = None  # (saved folder, model) -> None: final touches to the saved model


def per_language(languages: Iterable[Any], score: Callable[[list[int]], dict[str, Any]]) -> dict[str, dict] | None:
    """``{language: {"rows": n, <scalar scores>}}`` when the rows carry two or more languages, else None;
    ``score(indices)`` computes the metrics of the rows at ``indices`` (rows without a language are left out)."""
    groups: dict[str, list[int]] = {}
    for index, language in enumerate(languages):
        if language is not None:
            groups.setdefault(str(language), []).append(index)
    if len(groups) < 2:
        return None
    out = {}
    for language, indices in sorted(groups.items()):
        scores = score(indices)
        out[language] = {"rows": len(indices), **{k: v for k, v in scores.items() if isinstance(v, float)}}
    return out
