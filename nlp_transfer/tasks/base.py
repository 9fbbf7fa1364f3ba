"""What every task module shares: the `Prepared` bundle a task hands to training, per-language scoring and the
direction of each metric, per-group scoring. No heavy imports: `compare` reads it too."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import NLPTransferError

# The one list of metrics where lower is better (checkpoint selection, early stopping, compare's ordering and its
# "best run"); every other metric a task reports is better higher.
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "mse", "mae"})


def greater_is_better(metric: str) -> bool:
    """Direction of a metric named as in metrics.json or by Trainer (``eval_`` prefix allowed)."""
    return metric.removeprefix("eval_") not in LOWER_IS_BETTER


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
    calibration_rows: Callable[[], tuple[list, list]] | None = None  # evaluation (texts, gold): calibration is fitted on
    train_sampler: Any | None = None  # the training order (e.g. data.order.ScatteredOrder); None: the Trainer's own


def row_groups(rows) -> list[dict[str, str]] | None:
    """Each row's groups: the card's ``groups`` columns and length buckets (``row["groups"]``) and, for rows from
    several languages, ``language``. ``rows``: a list of row dicts or a `datasets.Dataset`; None when no row has any."""
    if hasattr(rows, "column_names"):  # a datasets.Dataset: read the two columns, not every row
        columns = {name: list(rows[name]) for name in ("groups", "language") if name in rows.column_names}
        rows = [{name: values[i] for name, values in columns.items()} for i in range(len(rows))] if columns else []
    out = []
    for row in rows:
        groups = {k: str(v) for k, v in (row.get("groups") or {}).items() if v is not None}
        if row.get("language") is not None:
            groups["language"] = str(row["language"])
        out.append(groups)
    return out if any(out) else None


def per_group(groups: list[dict[str, str]] | None, score: Callable[[list[int]], dict[str, Any]],
              main_metric: str) -> dict[str, dict] | None:
    """Per group column with two or more values: ``{"metric", "groups": {value: {"rows": n, <scalar scores>}},
    "worst", "best", "gap"}`` (worst/best by ``main_metric``, gap = |best - worst|). ``score(indices)`` computes the
    metrics of the rows at ``indices``; rows without a value for a column are left out of that column's table."""
    if not groups:
        return None
    out = {}
    columns = sorted({column for row in groups for column in row}, key=lambda c: (c == "language", c))
    for column in columns:
        members: dict[str, list[int]] = {}
        for index, row in enumerate(groups):
            if column in row:
                members.setdefault(row[column], []).append(index)
        if len(members) < 2:
            continue
        table = {}
        for value in sorted(members, key=_natural):
            scores = score(members[value])
            table[value] = {"rows": len(members[value]), **{k: v for k, v in scores.items() if isinstance(v, float)}}
        ranked = sorted(table, key=lambda v: table[v].get(main_metric, 0.0), reverse=greater_is_better(main_metric))
        best, worst = ranked[0], ranked[-1]
        out[column] = {"metric": main_metric, "groups": table, "worst": worst, "best": best,
                       "gap": abs(table[best].get(main_metric, 0.0) - table[worst].get(main_metric, 0.0))}
    return out or None


def _natural(value: str):
    """Order group values with their leading numbers read as numbers (length buckets 1-9 before 10-24)."""
    import re

    head = re.match(r"\D*(\d+)", value)
    return (0, int(head.group(1)), value) if head else (1, 0, value)


def group_blocks(by_group: dict[str, dict] | None) -> dict[str, Any]:
    """The keys a result gets from `per_group`: ``per_group``, and ``per_language`` (the language column's table,
    as results had it before groups existed)."""
    if not by_group:
        return {}
    out: dict[str, Any] = {"per_group": by_group}
    if "language" in by_group:
        out["per_language"] = by_group["language"]["groups"]
    return out


class TaskImplementation(Protocol):
    """What a task module (tasks/classification.py, ner.py, mlm.py) provides to training and scoring."""

    def main_metric(self, problem_type: str) -> str: ...

    def metric_names(self, problem_type: str) -> tuple[str, ...]: ...

    def derived_metrics(self, scores: dict[str, Any]) -> dict[str, Any]: ...

    def prepare(self, recipe: Any, data: Any, tokenizer: Any, has_eval: bool) -> Prepared: ...


@dataclass(frozen=True)
class Task:
    """A task as the rest of the package sees it: plain facts (cheap to import, so recipes are checked without
    torch) plus its implementation module, loaded when a run needs it. Nothing outside tasks/ branches on a
    task's name; it asks its `Task`."""

    name: str
    module: str  # nlp_transfer.tasks.<module>: a TaskImplementation
    card_tasks: tuple[str, ...]  # data cards it trains on
    auto_model: str | None  # the transformers Auto class of a trained folder; None: nothing load_model predicts with
    head_suffix: str | None  # the architecture name ending of that head, e.g. ForSequenceClassification
    peft_task_type: str | None  # peft TaskType for LoRA; None: no LoRA
    words_input: bool  # the tokenizer reads pre-split words (byte-level BPE needs add_prefix_space)
    scored_sets: bool  # test_split and eval_sets apply (masked-LM reports held-out perplexity instead)
    label_map: bool  # entity types can be renamed or dropped (label_map)
    probe: bool  # the scikit-learn probe (feature extraction) can train it
    calibrated: bool = False  # a temperature / thresholds are fitted on validation (`nlp_transfer.calibration`)
    distils: bool = False  # a teacher run's soft predictions can train it (strategy distill)
    title: str = ""  # for messages, e.g. "masked-LM"; the name when empty

    def __str__(self) -> str:
        return self.title or self.name

    def implementation(self) -> TaskImplementation:
        import importlib

        return importlib.import_module(f"nlp_transfer.tasks.{self.module}")


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("sequence-classification", "classification", ("sequence-classification",), "AutoModelForSequenceClassification",
         "ForSequenceClassification", "SEQ_CLS", words_input=False, scored_sets=True, label_map=False, probe=True,
         calibrated=True, distils=True),
    Task("token-classification", "ner", ("token-classification",), "AutoModelForTokenClassification",
         "ForTokenClassification", "TOKEN_CLS", words_input=True, scored_sets=True, label_map=True, probe=False),
    Task("masked-lm", "mlm", ("text", "sequence-classification"),  # a classification card's texts serve too
         None, None, None, words_input=False, scored_sets=False, label_map=False, probe=False, title="masked-LM"),
)}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise NLPTransferError(f"task '{name}' is not one of {', '.join(TASKS)}") from None
