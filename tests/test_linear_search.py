"""`linear.search_strength`: the one search for the regularisation strength C that the probe and the averaged-vectors
baseline share: the best score on the selection rows wins, the first best on ties, cross-validation reads only the
training rows and refits the chosen C on all of them."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from nlp_transfer.linear import (GRID, cross_validation_folds, fit_linear, linear_weights, logits,
                                 search_strength)


def problem(rows: int, seed: int, noise: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Two noisy classes in 6 dimensions: C matters (the score changes along the grid)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    x = rng.normal(0.0, noise, (rows, 6)) + y[:, None] * np.array([1.0, 0.6, 0.3, 0.0, 0.0, 0.0])
    return x, y


def accuracy(scores: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=1) == gold))


def fitted(strength: float, x: np.ndarray, y: np.ndarray, seed: int = 0, class_weight=None):
    return linear_weights(fit_linear("single_label", strength, x, y, seed, class_weight), "single_label", 2)


def test_picks_the_strength_that_scores_best_on_the_held_out_rows():
    (x, y), (held_x, held_y) = problem(120, 0), problem(200, 1)
    reported = []
    chosen = search_strength("single_label", 2, (x, y), accuracy, metric="accuracy", seed=0,
                             held_out=(held_x, held_y), report=lambda c, value: reported.append((c, value)))
    expected = [accuracy(logits(held_x, *fitted(c, x, y)), held_y) for c in GRID]
    assert chosen.table == [{"C": c, "accuracy": value} for c, value in zip(GRID, expected)]
    assert reported == [(c, value) for c, value in zip(GRID, expected)]
    assert chosen.strength == GRID[int(np.argmax(expected))] and chosen.score == max(expected)
    weight, bias = fitted(chosen.strength, x, y)  # fitted on every training row
    assert np.array_equal(chosen.weight, weight) and np.array_equal(chosen.bias, bias)


def test_keeps_the_first_best_on_ties():
    x, y = problem(60, 2)
    chosen = search_strength("single_label", 2, (x, y), lambda scores, gold: 0.5, metric="accuracy", seed=0,
                             held_out=(x, y))
    assert chosen.strength == GRID[0]
    backwards = search_strength("single_label", 2, (x, y), lambda scores, gold: 0.5, metric="accuracy", seed=0,
                                held_out=(x, y), grid=GRID[::-1])
    assert backwards.strength == GRID[-1]  # the first of the grid as given, not the smallest

    # a later strength that only equals the best does not replace it; one that beats it does
    values = iter([0.2, 0.7, 0.7, 0.9, 0.9])
    chosen = search_strength("single_label", 2, (x, y), lambda scores, gold: next(values), metric="accuracy",
                             seed=0, held_out=(x, y))
    assert chosen.strength == GRID[3] and chosen.score == 0.9


def test_class_weights_and_seed_reach_every_fit():
    x, y = problem(80, 3)
    weights = {0: 3.0, 1: 0.5}
    chosen = search_strength("single_label", 2, (x, y), accuracy, metric="accuracy", seed=5, held_out=(x, y),
                             class_weight=weights)
    weight, bias = fitted(chosen.strength, x, y, seed=5, class_weight=weights)
    assert np.array_equal(chosen.weight, weight) and np.array_equal(chosen.bias, bias)
    unweighted = fitted(chosen.strength, x, y, seed=5)
    assert not np.allclose(chosen.bias, unweighted[1])


def test_cross_validation_reads_only_the_training_rows_and_refits_the_chosen_strength():
    x, y = problem(100, 4)
    seen: list[np.ndarray] = []

    def score(scores: np.ndarray, gold: np.ndarray) -> float:
        seen.append(gold)
        return accuracy(scores, gold)

    chosen = search_strength("single_label", 2, (x, y), score, metric="accuracy", seed=7, folds=4)
    splits = cross_validation_folds("single_label", y, 4, 7)
    assert len(seen) == len(GRID) * 4  # every C on every fold, and nothing else scored
    for i, gold in enumerate(seen):
        assert np.array_equal(gold, y[splits[i % 4][1]])  # the held-out training rows of that fold
    table = []
    for c in GRID:
        values = [accuracy(logits(x[held], *fitted(c, x[rows], y[rows], seed=7)), y[held]) for rows, held in splits]
        table.append({"C": c, "cv_accuracy": float(np.mean(values)), "cv_accuracy_std": float(np.std(values))})
    assert chosen.table == table
    best = max(range(len(GRID)), key=lambda i: (table[i]["cv_accuracy"], -i))  # the first best
    assert chosen.strength == GRID[best] and chosen.score == table[best]["cv_accuracy"]
    weight, bias = fitted(chosen.strength, x, y, seed=7)  # refitted on every training row
    assert np.array_equal(chosen.weight, weight) and np.array_equal(chosen.bias, bias)


def test_cross_validation_folds_are_seeded_and_stratified_for_single_label():
    y = np.array([0] * 30 + [1] * 10)
    first, again = cross_validation_folds("single_label", y, 5, 3), cross_validation_folds("single_label", y, 5, 3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert sorted(np.concatenate([held for _, held in first]).tolist()) == list(range(40))  # each row held out once
    assert all(np.bincount(y[held]).tolist() == [6, 2] for _, held in first)  # the label mix of every fold
    other = cross_validation_folds("single_label", y, 5, 4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other))
    scores = np.linspace(0.0, 1.0, 12)  # regression (and multi-label): plain seeded KFold
    assert sorted(np.concatenate([held for _, held in cross_validation_folds("regression", scores, 4, 0)]).tolist()) \
        == list(range(12))


def test_selects_on_held_out_rows_or_by_cross_validation_not_both():
    x, y = problem(30, 5)
    with pytest.raises(ValueError):
        search_strength("single_label", 2, (x, y), accuracy, metric="accuracy", seed=0)
    with pytest.raises(ValueError):
        search_strength("single_label", 2, (x, y), accuracy, metric="accuracy", seed=0, held_out=(x, y), folds=3)


def test_regression_uses_ridge_with_alpha_one_over_c():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.1, 50)
    chosen = search_strength("regression", 1, (x, y), lambda scores, gold: -float(np.mean((scores[:, 0] - gold) ** 2)),
                             metric="neg_mse", seed=0, held_out=(x, y))
    assert chosen.strength == GRID[-1]  # the weakest penalty fits the training rows best
    assert chosen.weight.shape == (1, 3) and chosen.bias.shape == (1,)


def test_the_module_stays_light_and_imports_nothing_above_it():
    """numpy at import (scikit-learn inside the functions); within the package only the problem types it fits models
    for: the probe and the static baseline import it, not back."""
    import subprocess
    import sys

    import nlp_transfer.linear as linear

    tree = ast.parse(Path(linear.__file__).read_text(encoding="utf-8"))
    inner = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert inner <= {"tasks.problems"}
    loaded = subprocess.run([sys.executable, "-c", "import sys, nlp_transfer.linear; "
                             "print(sorted(m for m in ('torch', 'sklearn', 'scipy', 'transformers') if m in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"