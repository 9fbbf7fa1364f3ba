"""Sequence classification: binary, multi-class, multi-label and regression.

Problem types use transformers' names in model configs (``single_label_classification``,
``multi_label_classification``, ``regression``); recipes and cards use the short forms.
Metrics come from scikit-learn (and scipy for correlations).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..calibration import Calibration
from . import problems

HF_PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
MAIN_METRIC = {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "pearson"}
METRIC_NAMES = {
    "single_label": ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "loss"),
    "multi_label": ("f1_micro", "f1_macro", "subset_accuracy", "loss"),
    "regression": ("pearson", "spearman", "mse", "mae", "loss"),
}


def short_problem_type(hf_name: str | None) -> str:
    for short, long in HF_PROBLEM_TYPES.items():
        if hf_name == long:
            return short
    return "single_label"


def scores_from_logits(logits: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Probabilities (softmax / sigmoid) or, for regression, the raw value."""
    logits = logits.float()
    if problem_type == "multi_label":
        return torch.sigmoid(logits)
    if problem_type == "regression":
        return logits.squeeze(-1)
    return torch.softmax(logits, dim=-1)


def classification_metrics(predicted: np.ndarray, gold: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "f1_macro": float(f1_score(gold, predicted, labels=ids, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(gold, predicted, labels=ids, average="micro", zero_division=0)),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": {"labels": list(label_names), "matrix": confusion_matrix(gold, predicted, labels=ids).tolist()},
    }


def multi_label_metrics(predicted: np.ndarray, gold: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, zero_division=0)
    return {
        "f1_micro": float(f1_score(gold, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(np.mean(np.all(gold == predicted, axis=1))),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
    }


def regression_metrics(predicted: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    from scipy.stats import pearsonr, spearmanr

    constant = np.all(predicted == predicted[0]) or np.all(gold == gold[0])
    return {
        "pearson": 0.0 if constant else float(pearsonr(predicted, gold)[0]),
        "spearman": 0.0 if constant else float(spearmanr(predicted, gold)[0]),
        "mse": float(np.mean((predicted - gold) ** 2)),
        "mae": float(np.mean(np.abs(predicted - gold))),
    }


def metrics_for(problem_type: str, predicted: np.ndarray, gold: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """All metrics of a problem type from decisions (ids, multi-hot rows or values) and gold labels."""
    if problem_type == "single_label":
        return classification_metrics(predicted.astype(int), gold.astype(int), label_names)
    if problem_type == "multi_label":
        return multi_label_metrics(predicted.astype(int), gold.astype(int), label_names)
    return regression_metrics(predicted.astype(float), gold.astype(float))


def group_metrics(problem_type: str, predicted: np.ndarray, gold: np.ndarray, label_names: list[str],
                  groups: list[dict[str, str]] | None) -> dict[str, Any]:
    """``per_group`` (and ``per_language``) blocks: the scalar metrics per value of each group column (the card's
    ``groups``, the rows' language), with the worst group and the best-worst gap of the main metric."""
    from .base import group_blocks, per_group

    if groups is None or len(groups) != len(gold):
        return {}
    return group_blocks(per_group(groups, lambda rows: metrics_for(problem_type, predicted[rows], gold[rows],
                                                                   label_names), MAIN_METRIC[problem_type]))


def decide(scores: np.ndarray, problem_type: str, threshold: float = 0.5) -> np.ndarray:
    """Decisions from scores: the best label id, labels over the threshold, or the value itself."""
    return problems.problem_type(problem_type).decide(scores, threshold)


class StreamingMetrics:
    """`compute_metrics` for Trainer's ``batch_eval_metrics=True`` mode.

    Called once per evaluation batch; it keeps only each example's decision and the score of
    that decision (never the full logits), and returns flat scalar metrics on the last batch.
    Per-class tables, the confusion matrix and the per-example decisions of the latest
    evaluation stay in ``details`` / ``decisions`` for metrics.json and the predictions file."""

    def __init__(self, problem_type: str, label_names: list[str], threshold: float = 0.5,
                 order: list[int] | None = None, groups: list[dict[str, str]] | None = None):
        self.problem_type = problem_type
        self.groups = groups  # per evaluated row (evaluation order): per-group scores (`tasks.base.row_groups`)
        self.order = order  # original row index of each evaluated row, when the set was reordered (by length)
        self.label_names = label_names
        self.threshold = threshold
        self.details: dict[str, Any] = {}
        self.decisions: dict[str, np.ndarray] = {}
        self._reset()

    def _reset(self) -> None:
        self._predicted, self._scores, self._gold = [], [], []

    def __call__(self, eval_pred, compute_result: bool = True) -> dict[str, float]:
        logits = eval_pred.predictions
        if isinstance(logits, (tuple, list)):  # models that also return hidden states / attentions
            logits = logits[0]
        logits = torch.as_tensor(logits).detach().cpu()
        gold = torch.as_tensor(eval_pred.label_ids).detach().cpu()
        scores = scores_from_logits(logits, self.problem_type)
        if self.problem_type == "single_label":
            top_score, predicted = scores.max(dim=-1)
            self._predicted.append(predicted.numpy())
            self._scores.append(top_score.numpy())
        elif self.problem_type == "multi_label":
            self._predicted.append((scores >= self.threshold).numpy())
            self._scores.append(scores.max(dim=-1).values.numpy())
        else:
            self._predicted.append(scores.numpy())
            self._scores.append(scores.numpy())
        self._gold.append(gold.numpy())
        if not compute_result:
            return {}
        return self._finish()

    def _finish(self) -> dict[str, float]:
        predicted = np.concatenate(self._predicted)
        gold = np.concatenate(self._gold)
        self.decisions = {"predicted": predicted, "score": np.concatenate(self._scores), "gold": gold}
        self._reset()
        details = metrics_for(self.problem_type, predicted, gold, self.label_names)
        details.update(group_metrics(self.problem_type, predicted, gold, self.label_names, self.groups))
        self.details = details
        return {k: v for k, v in details.items() if isinstance(v, float)}

    def decision_rows(self) -> list[dict[str, Any]]:
        """The latest evaluation's decisions, one dict per example, in the original row order."""
        rows = [{"label": self.describe(gold), "predicted": self.describe(predicted), "score": round(float(score), 6)}
                for predicted, score, gold in zip(self.decisions["predicted"], self.decisions["score"],
                                                  self.decisions["gold"])]
        if self.order is None:
            return rows
        restored: list[dict[str, Any]] = [{}] * len(rows)
        for position, row in zip(self.order, rows):
            restored[position] = row
        return restored

    def describe(self, value: Any) -> Any:
        if self.problem_type == "single_label":
            return self.label_names[int(value)]
        if self.problem_type == "multi_label":
            return [name for name, on in zip(self.label_names, value) if on]
        return float(value)


def class_weight_tensor(setting: Any, labels: list, problem_type: str, num_labels: int) -> torch.Tensor | None:
    """Loss weights: ``balanced`` (n_samples / (n_classes * count), as scikit-learn) or explicit."""
    if setting is None:
        return None
    if isinstance(setting, list):
        if len(setting) != num_labels:
            from ..errors import NLPTransferError

            raise NLPTransferError(f"class_weights has {len(setting)} numbers but there are {num_labels} labels; give one per label")
        return torch.tensor(setting, dtype=torch.float32)
    if problem_type == "multi_label":
        hot = np.asarray(labels, dtype=np.float64)
        positives = hot.sum(axis=0)
        negatives = len(hot) - positives
        # pos_weight = negatives / positives; at least 1 each, so a label positive in every row keeps weight > 0
        return torch.tensor(np.maximum(negatives, 1.0) / np.maximum(positives, 1.0), dtype=torch.float32)
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_labels).astype(np.float64)
    return torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1.0)), dtype=torch.float32)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, problem_type: str) -> torch.Tensor:
    weights = weights.to(logits.device)
    if problem_type == "multi_label":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
    return torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), weight=weights)


def main_metric(problem_type: str) -> str:
    return MAIN_METRIC[problem_type]


def derived_metrics(scores: dict[str, Any]) -> dict[str, Any]:
    """Nothing is derived from this task's scores (masked-LM derives perplexity)."""
    return {}


def metric_names(problem_type: str) -> tuple[str, ...]:
    return METRIC_NAMES[problem_type]


def prepare(recipe, data, tokenizer, has_eval: bool):
    """Tokenize the splits, load the model with a classification head, set up metrics and loss."""
    from functools import partial

    from ..data.adapters import tokenize_dataset
    from ..models import load_for_sequence_classification
    from .base import Prepared, row_groups

    problem_type = data.problem_type
    train_set = tokenize_dataset(data.splits[recipe.train_split], tokenizer, recipe.max_length, "tokenizing train")
    eval_set, metrics = None, None
    if has_eval:
        eval_set = tokenize_dataset(data.splits[recipe.eval_split], tokenizer, recipe.max_length, "tokenizing eval")
        eval_set = eval_set.add_column("row", list(range(len(eval_set)))).sort("length", reverse=True)
        by_row = row_groups(data.splits[recipe.eval_split])
        groups = [by_row[row] for row in eval_set["row"]] if by_row else None  # in evaluation (length-sorted) order
        metrics = StreamingMetrics(problem_type, data.label_names, recipe.threshold, order=eval_set["row"],
                                   groups=groups)
    model = load_for_sequence_classification(recipe.model, data.label_names, HF_PROBLEM_TYPES[problem_type],
                                             recipe.trust_remote_code)
    weights = class_weight_tensor(recipe.class_weights, data.splits[recipe.train_split]["label"], problem_type,
                                  len(data.label_names))

    def prediction_rows():
        source = data.splits[recipe.eval_split]
        texts, lines = source["text"], source["line"]
        pairs = source["text_pair"] if "text_pair" in source.column_names else None
        languages = list(source["language"]) if "language" in source.column_names else None
        for i, row in enumerate(metrics.decision_rows()):
            yield {"line": lines[i], **({"language": languages[i]} if languages else {}), "text": texts[i],
                   **({"text_pair": pairs[i]} if pairs else {}), **row}

    return Prepared(
        train_set=train_set, eval_set=eval_set, model=model, metrics=metrics, main_metric=MAIN_METRIC[problem_type],
        token_labels=False, summary=f"{len(data.label_names)} labels, {problem_type}", pipeline_tag="text-classification",
        sidecar={"problem_type": problem_type, "threshold": recipe.threshold, "text_columns": data.card.text},
        loss=partial(weighted_loss, weights=weights, problem_type=problem_type) if weights is not None else None,
        prediction_rows=prediction_rows if has_eval else None,
        calibration_rows=(lambda: texts_and_labels(data.splits[recipe.eval_split])) if has_eval else None,
    )


def model_inputs(rows: list[dict]) -> list:
    """What a classifier reads of labelled row dicts (`data.readers.read_labelled`): a text, or a (text, pair)."""
    return [(r["text"], r["text_pair"]) if "text_pair" in r else r["text"] for r in rows]


def texts_and_labels(rows) -> tuple[list, list]:
    """A labelled split's model inputs (a text, or a (text, pair) tuple) and gold labels (ids, multi-hot rows)."""
    texts = list(rows["text"])
    if "text_pair" in rows.column_names:
        texts = list(zip(texts, rows["text_pair"]))
    return texts, list(rows["label"])


class LabelPredictor:
    """What every text classifier predicts from its `logits` (one row per text): label names with their
    probabilities. Shared by the fine-tuned `inference.TextClassifier` (and the probe) and the static baselines'
    `static.predictors.StaticClassifier`, which each supply ``logits``, ``problem_type``, ``label_names`` and
    ``threshold``. ``calibration`` (the run folder's calibration.json, set by `load_model`) divides the logits by its
    temperature and holds the tuned decision thresholds; ``calibrated=False`` gives the raw scores."""

    problem_type: str
    label_names: list[str]
    threshold: float
    calibration: Calibration = Calibration()  # the identity until load_model reads the folder's

    def logits(self, texts, batch_size: int = 32, window: bool = False, stride: int = 64,
               progress: bool = False) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, texts, batch_size: int = 32, window: bool = False, stride: int = 64,
                      progress: bool = False, calibrated: bool = True) -> np.ndarray:
        """Probabilities (values for regression) per text: calibrated, or the raw softmax / sigmoid."""
        logits = self.logits(texts, batch_size, window, stride, progress)
        return self._rule(calibrated).probabilities(logits, self.problem_type)

    def _rule(self, calibrated: bool) -> Calibration:
        return self.calibration if calibrated else Calibration()

    def predict(self, texts, batch_size: int = 32, window: bool = False, stride: int = 64,
                progress: bool = False, calibrated: bool = True) -> list[dict[str, Any]] | dict[str, Any]:
        """One dict per text: ``label`` (a name; a list of names for multi-label; a number for regression),
        ``score`` (its probability) and ``scores`` (every label's probability); one dict for one string.
        ``calibrated=False``: the raw probabilities and the untuned decision rule."""
        single = isinstance(texts, str)
        scores = self.probabilities([texts] if single else texts, batch_size, window, stride, progress, calibrated)
        decisions = self._rule(calibrated).decide(scores, self.problem_type, self.threshold)
        results = [self.describe(row, decision) for row, decision in zip(scores, decisions)]
        return results[0] if single else results

    def describe(self, row: np.ndarray, decision: Any = None) -> dict[str, Any]:
        """One text's scores as names, with its decision (default: argmax, or the multi-label threshold)."""
        if self.problem_type == "regression":
            return {"label": float(row), "score": float(row)}
        if decision is None:
            decision = self.calibration.decide(row[None], self.problem_type, self.threshold)[0]
        named = {name: round(float(p), 6) for name, p in zip(self.label_names, row)}
        if self.problem_type == "multi_label":
            chosen = [name for name, on in zip(self.label_names, decision) if on]
            return {"label": chosen, "score": max(named.values()), "scores": named}
        return {"label": self.label_names[int(decision)], "score": float(row[int(decision)]), "scores": named}
