"""Linear models on fixed features, shared by the scikit-learn probe (`nlp_transfer.probe`), the averaged-vector
baseline (`nlp_transfer.static.baselines`) and the predictors that reopen them: fitting with scikit-learn, the one
search for the regularisation strength C both use (`search_strength`), the fitted model as plain (W, b) arrays (saved
as safetensors, no pickles), and logits from them."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from .tasks.problems import problem_type as get_problem_type

GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # C for LogisticRegression; alpha = 1/C for Ridge
PROBE_FILE = "probe.safetensors"  # a probe run's (W, b)


def fit_linear(problem_type: str, strength: float, x: np.ndarray, y: np.ndarray, seed: int,
               class_weight: dict[int, float] | None = None):
    """LogisticRegression (one-vs-rest for multi-label) or Ridge for regression; ``class_weight`` (single-label):
    a loss weight per class id, as `tasks.classification.class_weight_tensor` gives the Trainer."""
    return get_problem_type(problem_type).fit_linear(strength, x, y, seed, class_weight)


def linear_weights(model, problem_type: str, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [labels, dim], b [labels]) such that scores = x @ W.T + b are the logits."""
    return get_problem_type(problem_type).linear_weights(model, num_labels)


def logits(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x @ weight.T + bias


# ---------------------------------------------------------------- choosing C

Score = Callable[[np.ndarray, np.ndarray], float]  # (logits of the selection rows, their labels) -> higher is better


class StrengthSearch(NamedTuple):
    """What `search_strength` chose: C, the per-C table a run records (``search`` in metrics.json), (W, b) fitted
    with C on every training row, and C's selection score."""

    strength: float
    table: list[dict[str, float]]
    weight: np.ndarray
    bias: np.ndarray
    score: float


def cross_validation_folds(problem_type: str, y: np.ndarray, folds: int,
                           seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded k folds of the training rows, (fit rows, held-out rows) each: stratified by label for single-label
    classification when the most frequent label has a row for every fold, else plain shuffled k folds."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if get_problem_type(problem_type).exclusive and np.bincount(y).max() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed % 2**32)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed % 2**32)
    return list(splitter.split(np.zeros(len(y)), y))


def search_strength(problem_type: str, num_labels: int, train: tuple[np.ndarray, np.ndarray], score: Score, *,
                    metric: str, seed: int, held_out: tuple[np.ndarray, np.ndarray] | None = None,
                    folds: int | None = None, class_weight: dict[int, float] | None = None,
                    report: Callable[[float, float], None] | None = None,
                    grid: Sequence[float] = GRID) -> StrengthSearch:
    """Fit `fit_linear` for every C of ``grid`` on the training rows ``train`` = (x, y) and keep the C whose ``score``
    (of the logits of the selection rows against their labels) is highest; a later C must score strictly higher, so
    the first best is kept on ties.

    The selection rows are either ``held_out`` = (x, y) (the evaluation split: each C is fitted on every training row
    and scored there; table rows ``{"C": C, metric: score}``) or ``folds`` = k: seeded k-fold cross-validation on the
    training rows (`cross_validation_folds`), each C scored by the mean over the held-out folds, then the chosen C
    refitted on every training row (table rows ``{"C": C, "cv_<metric>": mean, "cv_<metric>_std": std}``); nothing
    but the training rows is read. ``report(C, score)`` is called after each C (progress lines)."""
    if (held_out is None) == (folds is None):
        raise ValueError("search_strength selects on held_out rows or by k-fold cross-validation (folds): one of them")
    x, y = train

    def fit(strength: float, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        fit_x, fit_y = (x, y) if rows is None else (x[rows], y[rows])
        model = fit_linear(problem_type, strength, fit_x, fit_y, seed, class_weight)
        return linear_weights(model, problem_type, num_labels)

    if held_out is not None:
        def evaluate(strength: float):
            weight, bias = fit(strength)
            value = score(logits(held_out[0], weight, bias), held_out[1])
            return value, {metric: value}, (weight, bias)
    else:
        splits = cross_validation_folds(problem_type, y, folds, seed)

        def evaluate(strength: float):
            values = [score(logits(x[held], *fit(strength, rows)), y[held]) for rows, held in splits]
            value = float(np.mean(values))
            return value, {f"cv_{metric}": value, f"cv_{metric}_std": float(np.std(values))}, None

    table, best = [], None
    for strength in grid:
        value, row, fitted = evaluate(strength)
        table.append({"C": strength, **row})
        if report is not None:
            report(strength, value)
        if best is None or value > best[0]:
            best = (value, strength, fitted)
    value, strength, fitted = best
    weight, bias = fitted if fitted is not None else fit(strength)  # cross-validated: refit on every training row
    return StrengthSearch(strength, table, weight, bias, value)
