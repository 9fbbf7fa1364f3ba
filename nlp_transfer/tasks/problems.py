"""What a classification problem type (single_label, multi_label, regression) and a card's kind of data
(sequence-classification, token-classification, text) mean, as objects the rest of the package asks.

    kind = problem_type("multi_label")
    kind.multi_hot, kind.exclusive, kind.labelled      # several labels per row / one / any label names at all
    kind.probabilities(logits)                          # sigmoid here; softmax for single_label; values for regression
    data_kind(card.task).words                          # token-classification: words in, one tag per word

Names stay strings wherever they are stored (cards, recipes, metrics.json, sidecars); code outside tasks/ turns
them into these objects instead of comparing the strings. numpy only; scikit-learn inside the linear-model methods.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from ..errors import NLPTransferError, did_you_mean


@dataclass(frozen=True)
class ProblemType:
    """One classification problem type and everything that depends on it outside the models themselves."""

    name: str
    labelled: bool  # labels are names (classes): calibration, thresholds, confusions, label order; False: a number
    exclusive: bool  # one label per row: stratified / per-class sampling, class weights by count, binary thresholds
    multi_hot: bool  # any number of labels per row: list cells, sigmoid, one threshold per label
    linear_model: str  # what the probe and the averaged-vector baseline fit: logistic-regression or ridge

    def __str__(self) -> str:
        return self.name

    # ---------------------------------------------------------------- scores and decisions (numpy, float64)

    def probabilities(self, logits) -> np.ndarray:
        """softmax (exclusive labels), sigmoid (multi-hot), or the value itself (regression: the first column)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.multi_hot:
            return 1.0 / (1.0 + np.exp(-logits))
        if not self.labelled:
            return logits.reshape(len(logits), -1)[:, 0]
        shifted = logits - logits.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=-1, keepdims=True)

    def decide(self, scores, threshold: float = 0.5, thresholds=None, positive_threshold: float | None = None):
        """Decisions from scores: the best label id (or, for a binary problem with a tuned threshold, label 1 when
        its probability reaches it), labels at or over the threshold(s), or the value itself."""
        scores = np.asarray(scores)
        if self.multi_hot:
            return scores >= (np.asarray(thresholds) if thresholds is not None else threshold)
        if self.exclusive:
            if positive_threshold is not None and scores.shape[-1] == 2:
                return (scores[:, 1] >= positive_threshold).astype(int)
            return scores.argmax(-1)
        return scores

    def confidence(self, scores) -> np.ndarray:
        """One number per row for "how sure": the top probability, or the predicted value (regression)."""
        scores = np.asarray(scores)
        return scores.max(axis=-1) if self.labelled else scores

    # ---------------------------------------------------------------- calibration maths (gold: ids or multi-hot)

    def negative_log_likelihood(self, logits, gold, temperature: float = 1.0) -> float:
        """Mean NLL of the gold labels (cross-entropy; binary cross-entropy per label for multi-hot)."""
        z = np.asarray(logits, dtype=np.float64) / temperature
        gold = np.asarray(gold)
        if self.multi_hot:  # log(1 + e^-z) for positives, log(1 + e^z) for negatives
            return float(np.mean(np.logaddexp(0.0, -z) * gold + np.logaddexp(0.0, z) * (1 - gold)))
        log_norm = np.logaddexp.reduce(z, axis=-1)
        return float(np.mean(log_norm - z[np.arange(len(z)), gold.astype(int)]))

    def events(self, probs, gold) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, correct) pairs calibration error is measured on: each row's top label (exclusive), or every
        (row, label) probability against whether the label applies (multi-hot)."""
        probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
        if self.multi_hot:
            return probs.ravel(), gold.astype(float).ravel()
        return probs.max(axis=-1), (probs.argmax(axis=-1) == gold.astype(int)).astype(float)

    def brier(self, probs, gold) -> float:
        """Mean over rows of the squared distance to the one-hot gold labels; per label for multi-hot."""
        probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
        if self.multi_hot:
            return float(np.mean((probs - gold) ** 2))
        onehot = np.zeros_like(probs)
        onehot[np.arange(len(probs)), gold.astype(int)] = 1.0
        return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))

    # ---------------------------------------------------------------- linear models on fixed features

    def fit_linear(self, strength: float, x: np.ndarray, y: np.ndarray, seed: int,
                   class_weight: dict[int, float] | None = None):
        """LogisticRegression (one-vs-rest for multi-hot) at C = ``strength``, or Ridge (alpha = 1 / strength)."""
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.multiclass import OneVsRestClassifier

        if not self.labelled:
            return Ridge(alpha=1.0 / strength).fit(x, y)
        model = LogisticRegression(C=strength, max_iter=2000, random_state=seed, class_weight=class_weight)
        return OneVsRestClassifier(model).fit(x, y) if self.multi_hot else model.fit(x, y)

    def linear_weights(self, model, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
        """(W [labels, dim], b [labels]) of a fitted `fit_linear` model, such that x @ W.T + b are the logits."""
        if self.multi_hot:
            coef = np.concatenate([e.coef_ for e in model.estimators_])
            bias = np.concatenate([np.atleast_1d(e.intercept_) for e in model.estimators_])
            return coef, bias
        if not self.labelled:
            return np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
        if num_labels == 2 and model.coef_.shape[0] == 1:  # binary: one logit; as two, softmax gives the same
            return (np.concatenate([-model.coef_ / 2, model.coef_ / 2]),
                    np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2]))
        return model.coef_, model.intercept_


PROBLEM_TYPES: dict[str, ProblemType] = {kind.name: kind for kind in (
    ProblemType("single_label", labelled=True, exclusive=True, multi_hot=False, linear_model="logistic-regression"),
    ProblemType("multi_label", labelled=True, exclusive=False, multi_hot=True, linear_model="logistic-regression"),
    ProblemType("regression", labelled=False, exclusive=False, multi_hot=False, linear_model="ridge"),
)}


def problem_type(name: str | ProblemType) -> ProblemType:
    """The `ProblemType` named ``name`` (an object passes through)."""
    if isinstance(name, ProblemType):
        return name
    try:
        return PROBLEM_TYPES[name]
    except KeyError:
        raise NLPTransferError(f"problem_type '{name}' is not one of {', '.join(PROBLEM_TYPES)}"
                               f"{did_you_mean(str(name), PROBLEM_TYPES)}") from None


def exclusive_labels(name: str | None) -> bool:
    """One label per row (single-label data): stratified and per-class sampling apply. False for the other problem
    types and for data that has none (token tags, plain text)."""
    kind = PROBLEM_TYPES.get(name) if isinstance(name, str) else None
    return kind is not None and kind.exclusive


def chosen_problem_type(recipe_value: str, card_value: str) -> str:
    """A recipe's ``problem_type`` over its card's: ``auto`` keeps the card's."""
    return card_value if recipe_value == "auto" else recipe_value


@dataclass(frozen=True)
class DataKind:
    """What a data card's ``task:`` says about its rows."""

    name: str
    words: bool  # rows are pre-split words with one tag each (CoNLL, token JSONL)
    labelled: bool  # rows carry a label (or tags); False: plain text (masked-LM pretraining)
    text_key: str  # the JSONL / datasets column of the text when the card does not say
    label_key: str | None  # ... and of the labels


DATA_KINDS: dict[str, DataKind] = {kind.name: kind for kind in (
    DataKind("sequence-classification", words=False, labelled=True, text_key="text", label_key="label"),
    DataKind("token-classification", words=True, labelled=True, text_key="tokens", label_key="tags"),
    DataKind("text", words=False, labelled=False, text_key="text", label_key=None),
)}


def find_data_kind(name) -> DataKind | None:
    """The `DataKind` named ``name``, or None for anything else (a card not validated yet, an unknown task)."""
    return DATA_KINDS.get(name) if isinstance(name, str) else None


def data_kind(name: str) -> DataKind:
    try:
        return DATA_KINDS[name]
    except KeyError:
        raise NLPTransferError(f"task '{name}' is not one of {', '.join(DATA_KINDS)}"
                               f"{did_you_mean(str(name), DATA_KINDS)}") from None
