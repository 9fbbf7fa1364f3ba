"""Label-issue ranking (`nlp_transfer.analysis.label_issues`): out-of-fold probabilities, cleanlab's ranking of known flipped
labels, the end-to-end call on a tiny real encoder, and the message when cleanlab is missing."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from conftest import SAMPLE_TRAIN, sample_rows
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.analysis.label_issues import find_label_issues, out_of_fold_probabilities, rank_label_issues

needs_cleanlab = pytest.mark.skipif(importlib.util.find_spec("cleanlab") is None,
                                    reason="cleanlab (nlp_transfer[errors], in the test extra) is not installed")

ROWS, FLIP = 400, 0.05


def blobs(rows: int = ROWS, dim: int = 8, classes: int = 2, seed: int = 0):
    """Gaussian blobs, one per class, well apart; labels with FLIP of them changed to another class.
    Returns (features, noisy labels, flipped mask)."""
    rng = np.random.default_rng(seed)
    clean = np.arange(rows) % classes
    centres = rng.normal(0, 3, size=(classes, dim))
    x = centres[clean] + rng.normal(0, 1, size=(rows, dim))
    flipped = np.zeros(rows, dtype=bool)
    flipped[rng.choice(rows, size=int(FLIP * rows), replace=False)] = True
    noisy = clean.copy()
    noisy[flipped] = (clean[flipped] + rng.integers(1, classes, size=flipped.sum())) % classes
    return x, noisy, flipped


def test_out_of_fold_probabilities_are_distributions_from_models_that_did_not_see_the_row():
    from sklearn.linear_model import LogisticRegression

    x, labels, flipped = blobs()
    # plus one identity column per row: a model fitted on a row can memorise its label through that column, a model
    # that never saw the row has a zero weight there
    x = np.concatenate([x, 3 * np.eye(len(x))], axis=1)
    oof = out_of_fold_probabilities(x, labels, folds=5, seed=0, C=100.0)
    assert oof.shape == (ROWS, 2)
    assert np.allclose(oof.sum(axis=1), 1.0) and (oof >= 0).all()
    given = oof[np.arange(ROWS), labels]
    seen = LogisticRegression(C=100.0, max_iter=2000).fit(x, labels).predict_proba(x)[np.arange(ROWS), labels]
    assert seen[flipped].mean() > 0.9  # fitted on them: the flipped labels are memorised
    assert given[flipped].mean() < 0.1  # out of fold: the blob wins, the flipped label gets little probability
    assert given[~flipped].mean() > 0.9
    assert np.array_equal(oof, out_of_fold_probabilities(x, labels, folds=5, seed=0, C=100.0))  # seeded


@needs_cleanlab
@pytest.mark.parametrize("classes", [2, 3])
def test_flipped_rows_rank_first_and_are_flagged(classes):
    from sklearn.metrics import roc_auc_score

    x, labels, flipped = blobs(classes=classes)
    oof = out_of_fold_probabilities(x, labels)
    ranking = rank_label_issues(labels, oof)
    assert sorted(item["row"] for item in ranking) == list(range(ROWS))
    assert set(ranking[0]) == {"row", "given", "suggested", "quality", "flagged"}
    qualities = [item["quality"] for item in ranking]
    assert qualities == sorted(qualities) and 0 <= qualities[0] and qualities[-1] <= 1
    for item in ranking:
        assert item["given"] == labels[item["row"]] and item["suggested"] == int(oof[item["row"]].argmax())
    quality = np.empty(ROWS)
    quality[[item["row"] for item in ranking]] = qualities
    assert roc_auc_score(flipped, -quality) >= 0.95
    flagged = np.array([item["row"] for item in ranking if item["flagged"]])
    caught = flipped[flagged].sum()
    assert caught >= 0.8 * flipped.sum()  # most flipped rows are flagged
    assert caught >= 0.5 * len(flagged)  # and most flagged rows were flipped
    top = [item["row"] for item in ranking[:flipped.sum()]]
    assert flipped[top].mean() >= 0.8


@needs_cleanlab
def test_bad_labels_and_shapes_are_one_line_errors():
    x, labels, _ = blobs()
    with pytest.raises(NLPTransferError, match="label id 1 has 3 rows; 5 folds"):
        out_of_fold_probabilities(x[:8], np.array([0, 0, 0, 0, 0, 1, 1, 1]))
    with pytest.raises(NLPTransferError, match="one row per label"):
        out_of_fold_probabilities(x[:10], labels)
    with pytest.raises(NLPTransferError, match="integer label ids"):
        rank_label_issues(np.array(["pos", "neg"]), np.full((2, 2), 0.5))
    with pytest.raises(NLPTransferError, match="a column for every label id"):
        rank_label_issues(np.array([0, 1, 2]), np.full((3, 2), 0.5))
    with pytest.raises(NLPTransferError, match="at least two labels"):
        rank_label_issues(np.zeros(4, dtype=int), np.full((4, 2), 0.5))


@needs_cleanlab
def test_find_label_issues_end_to_end_on_a_tiny_encoder(tiny_bert, feature_cache):
    rows = sample_rows(SAMPLE_TRAIN, 40, seed=3)
    texts = [text.strip() for text, _ in rows]
    labels = [int(label) for _, label in rows]
    ranking, stats = find_label_issues(str(tiny_bert), texts, labels, folds=4, seed=0, device="cpu")
    assert len(ranking) == 40 and sorted(item["row"] for item in ranking) == list(range(40))
    assert all(set(item) == {"row", "given", "suggested", "quality", "flagged"} for item in ranking)
    assert all(item["given"] == labels[item["row"]] for item in ranking)
    qualities = [item["quality"] for item in ranking]
    assert qualities == sorted(qualities)
    assert stats["rows"] == 40 and stats["folds"] == 4 and stats["labels"] == 2
    assert stats["flagged"] == sum(item["flagged"] for item in ranking)
    assert 0.0 <= stats["out_of_fold_accuracy"] <= 1.0
    assert len(list(feature_cache.glob("*.npy"))) == 1  # the features were cached
    again, _ = find_label_issues(str(tiny_bert), texts, labels, folds=4, seed=0, device="cpu")
    assert again == ranking  # from the cache, the same folds: the same ranking
    with pytest.raises(NLPTransferError, match="40 texts but 39 labels"):
        find_label_issues(str(tiny_bert), texts, labels[:-1])


def test_missing_cleanlab_says_how_to_install_it(monkeypatch):
    for name in ("cleanlab", "cleanlab.rank", "cleanlab.filter"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import cleanlab` meets when it is not installed
    _, labels, _ = blobs()
    with pytest.raises(NLPTransferError) as error:
        rank_label_issues(labels, np.full((ROWS, 2), 0.5))
    assert str(error.value) == "label-issue ranking needs cleanlab: pip install 'nlp_transfer[errors]'"


def test_the_benchmark_flips_exactly_its_share_and_scores_a_perfect_ranking_as_one():
    from benchmarks.label_issues import flip_labels, score, subset

    clean = np.arange(1000) % 3
    noisy, flipped = flip_labels(clean, 0.05, seed=0)
    assert flipped.sum() == 50 and (noisy[flipped] != clean[flipped]).all()
    assert (noisy[~flipped] == clean[~flipped]).all()
    assert np.array_equal(subset(1000, 200, 0), subset(1000, 200, 0)) and len(set(subset(1000, 200, 0))) == 200
    ranking = [{"row": int(i), "quality": float(not flipped[i]), "flagged": bool(flipped[i])}
               for i in np.argsort(~flipped, kind="stable")]
    figures = score(ranking, flipped)
    assert figures["auroc"] == 1.0 and figures["precision_at_k"] == 1.0
    assert figures["flagged_precision"] == 1.0 and figures["flagged_recall"] == 1.0 and figures["flipped"] == 50
