"""Find likely mislabelled training rows: rank every row by how much a model that never saw it doubts its label.

    from nlp_transfer.analysis.label_issues import find_label_issues
    ranking, stats = find_label_issues("minilm-l6", texts, labels)
    ranking[0]   # {"row": 812, "given": 1, "suggested": 0, "quality": 0.004, "flagged": True}

Three steps. (1) Features: the pretrained encoder, frozen, mean-pooled (`nlp_transfer.probe.features`, cached on
disk by model, settings and texts, so a second call skips the encoder). (2) Out-of-fold probabilities: the rows are
split into K stratified folds and each fold is scored by a LogisticRegression fitted on the other K-1, so no row's
probabilities come from a model that saw its label (a model scoring its own training rows tends to agree with their
labels, right or wrong). (3) The ranking, by cleanlab: confident learning (Northcutt, Jiang and Chuang, "Confident
Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021) estimates the joint distribution of given and true
labels from the out-of-fold probabilities and per-class confidence thresholds, and flags the rows it counts as
label errors (`cleanlab.filter.find_label_issues`); every row also gets a label quality score in [0, 1]
(`cleanlab.rank.get_label_quality_scores`, self-confidence: the out-of-fold probability of the given label), by
which the rows are sorted, most suspect first. cleanlab is the reference implementation of the method and the
usual tool for it; it is an optional dependency (``pip install 'nlp_transfer[errors]'``).

The probabilities come from cross-validated probes on frozen features: K fits of a linear model, seconds on CPUs
once the features exist. Out-of-fold probabilities of a fine-tuned model would usually separate the errors better,
but cost K fine-tunings. Single-label classification only.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import NLPTransferError

MISSING_CLEANLAB = "label-issue ranking needs cleanlab: pip install 'nlp_transfer[errors]'"
QUALITY_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


def check_labels(labels, folds: int | None = None) -> np.ndarray:
    """Labels as an int array of ids 0..K-1 (K >= 2), every id present; with ``folds``, each with at least that
    many rows (stratified folds need a row of every label in every fold)."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise NLPTransferError(f"labels must be one label id per row (single-label), got shape {array.shape}")
    if array.size == 0:
        raise NLPTransferError("no rows: label issues need labelled rows")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise NLPTransferError("labels must be integer label ids 0..K-1 (map label names to ids first)")
        array = array.astype(np.int64)
    if array.min() < 0:
        raise NLPTransferError(f"label id {int(array.min())} is negative; labels must be ids 0..K-1")
    counts = np.bincount(array)
    if len(counts) < 2:
        raise NLPTransferError("every row has the same label; label issues need at least two labels")
    for label, count in enumerate(counts):
        if count == 0:
            raise NLPTransferError(f"label id {label} has no rows; labels must be ids 0..K-1 with every id used "
                                   f"(renumber them)")
    if folds is not None:
        if folds < 2:
            raise NLPTransferError(f"folds must be 2 or more, got {folds}")
        for label, count in enumerate(counts):
            if count < folds:
                raise NLPTransferError(
                    f"label id {label} has {count} rows; {folds} folds need at least {folds} rows of every label "
                    f"id (use fewer folds or more rows)")
    return array.astype(np.int64, copy=False)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0,
                              C: float = 1.0) -> np.ndarray:
    """[rows, K] predicted probabilities; row i's from a LogisticRegression(C) fitted on the other folds only
    (StratifiedKFold, shuffled with ``seed``). Rows sum to 1; columns are label ids 0..K-1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = check_labels(labels, folds)
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != len(labels):
        raise NLPTransferError(f"features must be [rows, dim] with one row per label: got {features.shape} for "
                               f"{len(labels)} labels")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    return cross_val_predict(model, features, labels, cv=splitter, method="predict_proba")


def rank_label_issues(labels, probabilities: np.ndarray, method: str = "self_confidence") -> list[dict[str, Any]]:
    """Every row, most suspect first (lowest label quality; ties in row order):
    ``{"row", "given", "suggested" (the most probable label id), "quality" (cleanlab's label quality score, 0: surely
    wrong, 1: surely right), "flagged" (cleanlab's confident-learning filter counts it as a label error)}``.
    ``probabilities`` should be out-of-fold (`out_of_fold_probabilities`); ``method``: cleanlab's scoring method."""
    try:
        import cleanlab.filter
        import cleanlab.rank
    except ImportError as error:
        raise NLPTransferError(MISSING_CLEANLAB) from error
    if method not in QUALITY_METHODS:
        raise NLPTransferError(f"method '{method}' is not one of {', '.join(QUALITY_METHODS)}")
    labels = check_labels(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels) or probabilities.shape[1] <= labels.max():
        raise NLPTransferError(f"probabilities must be [rows, labels] with one row per label and a column for every "
                               f"label id: got {probabilities.shape} for {len(labels)} labels up to id {labels.max()}")
    quality = cleanlab.rank.get_label_quality_scores(labels, probabilities, method=method)
    flagged = cleanlab.filter.find_label_issues(labels, probabilities, n_jobs=1)  # n_jobs=1: no worker processes
    suggested = probabilities.argmax(axis=1)
    order = np.argsort(quality, kind="stable")
    return [{"row": int(i), "given": int(labels[i]), "suggested": int(suggested[i]), "quality": float(quality[i]),
             "flagged": bool(flagged[i])} for i in order]


def find_label_issues(model_name: str, texts: list[str], labels: list[int], folds: int = 5, seed: int = 0,
                      settings=None, device: str = "auto", C: float = 1.0,
                      method: str = "self_confidence") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rank ``texts``' ``labels`` (ids 0..K-1) most suspect first with frozen ``model_name`` features (an
    `EmbedSettings`; default mean pooling, max_length 64), K-fold LogisticRegression(C) probabilities and cleanlab.
    Returns ``(ranking, stats)``: the ranking as `rank_label_issues` gives it, and stats ``{"rows", "labels",
    "folds", "flagged", "out_of_fold_accuracy", "feature_seconds", "probe_seconds"}``."""
    from ..probe import features
    from ..encoders import EmbedSettings, Encoder

    texts = [str(text) for text in texts]
    if len(texts) != len(labels):
        raise NLPTransferError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
    label_ids = check_labels(labels, folds)
    if method not in QUALITY_METHODS:  # before the encoder runs
        raise NLPTransferError(f"method '{method}' is not one of {', '.join(QUALITY_METHODS)}")
    settings = settings or EmbedSettings(pooling="mean", max_length=64, batch_size=64)
    started = time.perf_counter()
    x = features(Encoder(model_name, False, device), texts, None, settings)
    feature_seconds = time.perf_counter() - started
    probabilities = out_of_fold_probabilities(x, label_ids, folds, seed, C)
    probe_seconds = time.perf_counter() - started - feature_seconds
    ranking = rank_label_issues(label_ids, probabilities, method)
    stats = {"rows": len(texts), "labels": int(label_ids.max()) + 1, "folds": folds,
             "flagged": sum(item["flagged"] for item in ranking),
             "out_of_fold_accuracy": float((probabilities.argmax(axis=1) == label_ids).mean()),
             "feature_seconds": round(feature_seconds, 2), "probe_seconds": round(probe_seconds, 2)}
    return ranking, stats
