"""Trustworthy scores: temperature scaling, calibration error, and decision thresholds tuned on validation.

    from nlp_transfer.calibration import Calibration, fit
    calibration, report = fit(logits, gold, "single_label", CalibrationConfig())   # on the validation split
    calibration.probabilities(test_logits, "single_label")    # softmax(logits / T)
    calibration.decide(probabilities, "single_label")         # argmax, or the tuned binary threshold

A fine-tuned classifier's probabilities are usually over-confident. One temperature ``T`` (Guo et al., 2017,
"On Calibration of Modern Neural Networks") divides the logits before softmax / sigmoid; it is fitted by minimising
the negative log-likelihood on the validation split, so the ranking of the labels (and single-label accuracy) does
not change. Expected calibration error (ECE) uses 15 equal-width confidence bins; the Brier score is the mean
squared distance between the probabilities and the one-hot gold labels.

Decision thresholds are tuned on the same validation probabilities (after the temperature) and never on a test
split: for multi-label, one threshold per label maximising that label's F1; for binary single-label, optionally a
threshold on the positive label's (index 1) probability for a target (``f1``, or ``precision>=0.9`` /
``recall>=0.9``: the best recall / precision that keeps it).

The maths per problem type (softmax / sigmoid, NLL, the ECE's events, the Brier score, decisions) is the
`tasks.problems.ProblemType`'s; the functions here take its name, as the rest of the package stores it.

Only numpy (and scipy's scalar minimiser) at call time; the module imports nothing heavy.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import NLPTransferError

CALIBRATION_FILE = "calibration.json"  # in a run folder, beside the weights; load_model reads it
TARGET = re.compile(r"^(f1|(precision|recall)\s*>=\s*(0?\.\d+|1(\.0*)?))$")
TEMPERATURE_RANGE = (0.05, 20.0)


def parse_target(text: str | None, where: str = "calibration.binary_target") -> tuple[str, float | None] | None:
    """``f1`` -> ("f1", None); ``precision>=0.9`` -> ("precision", 0.9); None -> None; else a one-line error."""
    if text is None:
        return None
    match = TARGET.match(str(text).strip().lower())
    if not match:
        raise NLPTransferError(f"{where}: '{text}' is not a target; use f1, precision>=0.9 or recall>=0.8")
    if match.group(1) == "f1":
        return "f1", None
    return match.group(2), float(match.group(3))


@dataclass
class Calibration:
    """What a run folder's ``calibration.json`` holds and `load_model` applies: a temperature and decision
    thresholds. The default (T = 1, no thresholds) leaves a model's scores as they are."""

    temperature: float = 1.0
    thresholds: list[float] | None = None  # multi-label: one per label (else the model's single threshold)
    positive_threshold: float | None = None  # binary single-label: label 1 when its probability >= this
    target: str | None = None  # what positive_threshold was tuned for
    split: str | None = None  # where it was fitted
    rows: int = 0
    bins: int = 15  # the ECE bins it was measured with (recipe calibration.bins); evaluate() scores with the same

    @property
    def fitted(self) -> bool:
        return self.split is not None

    def probabilities(self, logits, problem_type: str):
        """softmax / sigmoid of ``logits / T`` (float64 numpy); regression values pass through."""
        import numpy as np

        kind = _kind(problem_type)
        logits = np.asarray(logits, dtype=np.float64)
        return kind.probabilities(logits / self.temperature if kind.labelled else logits)

    def decide(self, probs, problem_type: str, threshold: float = 0.5):
        """Decisions from (calibrated) probabilities: label ids, multi-hot rows or values."""
        return _kind(problem_type).decide(probs, threshold, thresholds=self.thresholds,
                                          positive_threshold=self.positive_threshold)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def save(self, folder: str | Path) -> None:
        from .io import write_json_atomic

        write_json_atomic(Path(folder) / CALIBRATION_FILE, self.to_dict())

    @classmethod
    def read(cls, folder: str | Path) -> Calibration:
        """The folder's calibration, or the identity when it has none (runs from before calibration existed)."""
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            return cls(**values)
        except (ValueError, TypeError) as exc:
            raise NLPTransferError(f"{path}: not a calibration file ({str(exc).splitlines()[0]}); delete it to use "
                                   f"the model's raw scores, or run nlp-transfer calibrate on the folder") from None


def _kind(problem_type):
    """The `tasks.problems.ProblemType` of a name (imported here: the module imports nothing heavy)."""
    from .tasks.problems import problem_type as lookup

    return lookup(problem_type)


def probabilities(logits, problem_type: str):
    """softmax (single-label) or sigmoid (multi-label) of float64 logits, numerically stable."""
    return _kind(problem_type).probabilities(logits)


def negative_log_likelihood(logits, gold, problem_type: str, temperature: float = 1.0) -> float:
    """Mean NLL of the gold labels (cross-entropy; binary cross-entropy per label for multi-label)."""
    return _kind(problem_type).negative_log_likelihood(logits, gold, temperature)


def fit_temperature(logits, gold, problem_type: str) -> float:
    """The temperature minimising the validation NLL (bounded scalar search over log T)."""
    import numpy as np
    from scipy.optimize import minimize_scalar

    nll = _kind(problem_type).negative_log_likelihood
    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    result = minimize_scalar(lambda log_t: nll(logits, gold, float(np.exp(log_t))),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def reliability(probs, gold, problem_type: str, bins: int = 15) -> list[dict[str, float]]:
    """Per equal-width confidence bin: rows, mean confidence and accuracy (empty bins left out)."""
    import numpy as np

    confidence, correct = _kind(problem_type).events(probs, gold)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        members = which == b
        if members.any():
            out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "rows": int(members.sum()),
                        "confidence": float(confidence[members].mean()), "accuracy": float(correct[members].mean())})
    return out


def expected_calibration_error(probs, gold, problem_type: str, bins: int = 15) -> float:
    """Sum over bins of (bin share) x |accuracy - confidence|."""
    table = reliability(probs, gold, problem_type, bins)
    total = sum(b["rows"] for b in table)
    return float(sum(b["rows"] / total * abs(b["accuracy"] - b["confidence"]) for b in table)) if total else 0.0


def brier_score(probs, gold, problem_type: str) -> float:
    """Mean over rows of the squared distance to the one-hot (multi-hot) gold labels; per label for multi-label."""
    return _kind(problem_type).brier(probs, gold)


def scores(logits, gold, problem_type: str, temperature: float = 1.0, bins: int = 15) -> dict[str, float]:
    """ECE, Brier score and NLL of the probabilities at ``temperature``."""
    probs = probabilities_at(logits, problem_type, temperature)
    return {"ece": expected_calibration_error(probs, gold, problem_type, bins),
            "brier": brier_score(probs, gold, problem_type),
            "nll": negative_log_likelihood(logits, gold, problem_type, temperature)}


def probabilities_at(logits, problem_type: str, temperature: float):
    import numpy as np

    return probabilities(np.asarray(logits, dtype=np.float64) / temperature, problem_type)


def best_threshold(scores, positive, target: tuple[str, float | None] = ("f1", None)) -> tuple[float, dict] | None:
    """The threshold on ``scores`` (predict positive when score >= it) that is best for ``target`` on these rows:
    the highest F1, or the highest recall with precision >= the bound (highest precision with recall >= it).
    Candidates are midpoints between consecutive distinct scores. None when no threshold meets the bound or
    there are no positives."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive).astype(bool)
    if positive.sum() == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    last_of_run = np.r_[ranked[1:] != ranked[:-1], True]  # cut only between distinct scores
    tp = np.cumsum(hits)[last_of_run]
    predicted = (np.arange(len(ranked)) + 1)[last_of_run]
    cut_values = ranked[last_of_run]
    below = np.r_[cut_values[1:], cut_values[-1] - 1e-6]
    thresholds = (cut_values + below) / 2  # between this score and the next lower one
    precision = tp / predicted
    recall = tp / positive.sum()
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    kind, bound = target
    if kind == "f1":
        best = int(np.argmax(f1))
    else:
        keep = precision >= bound if kind == "precision" else recall >= bound
        if not keep.any():
            return None
        other = recall if kind == "precision" else precision
        candidates = np.flatnonzero(keep)
        best = int(candidates[np.argmax(other[candidates])])
    return float(thresholds[best]), {"precision": float(precision[best]), "recall": float(recall[best]),
                                     "f1": float(f1[best])}


@dataclass
class CalibrationReport:
    """What `fit` measured on the split it fitted on (for metrics.json, the model card and compare)."""

    split: str | None
    rows: int
    temperature: float
    before: dict[str, float]
    after: dict[str, float]
    crossfit: dict[str, float] | None  # 2-fold: T fitted on one half, scored on the other (an honest estimate)
    reliability: dict[str, list[dict[str, float]]]
    thresholds: dict[str, Any] = field(default_factory=dict)
    bins: int = 15
    rejected: dict[str, float] | None = None  # the fitted temperature and its scores, when it raised the ECE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def summary_line(report: dict[str, Any]) -> str:
    """A calibration report (`CalibrationReport.to_dict`) as one console line: the temperature and ECE / Brier / NLL
    before and after, or why the temperature was not applied."""
    before, after, rejected = report["before"], report["after"], report.get("rejected")
    if rejected is not None:
        return (f"temperature {rejected['temperature']:.3f} not applied: it would raise the ECE {before['ece']:.4f} -> "
                f"{rejected['ece']:.4f} on the rows it was fitted on (NLL {before['nll']:.4f} -> "
                f"{rejected['nll']:.4f}); scores stay raw (T = 1)")
    return (f"temperature {report['temperature']:.3f}; ECE {before['ece']:.4f} -> {after['ece']:.4f}, Brier "
            f"{before['brier']:.4f} -> {after['brier']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f}")


def fit(logits, gold, problem_type: str, config, split: str | None = None,
        label_names: list[str] | None = None, default_threshold: float = 0.5) -> tuple[Calibration, CalibrationReport]:
    """Fit the temperature (``config.temperature``) and thresholds (``config.thresholds`` for multi-label,
    ``config.binary_target`` for binary) on one split's logits and gold labels."""
    import numpy as np

    kind = _kind(problem_type)
    logits = np.asarray(logits, dtype=np.float64)
    gold = np.asarray(gold)
    bins = config.bins
    before = scores(logits, gold, problem_type, 1.0, bins)
    fitted = fit_temperature(logits, gold, problem_type) if config.temperature else 1.0
    at_fitted = scores(logits, gold, problem_type, fitted, bins)
    # T minimises the NLL, so the NLL never rises on this split; the binned ECE can. A temperature that makes the
    # calibration error worse on the very rows it was fitted on is not applied: the scores stay raw (T = 1).
    applied = at_fitted["ece"] <= before["ece"]
    temperature = fitted if applied else 1.0
    crossfit = _crossfit(logits, gold, problem_type, bins) if config.temperature and len(gold) >= 40 else None
    calibration = Calibration(temperature=temperature, split=split, rows=int(len(gold)), bins=bins)
    report = CalibrationReport(
        split=split, rows=int(len(gold)), temperature=temperature, bins=bins,
        before=before, after=at_fitted if applied else before, crossfit=crossfit,
        rejected=None if applied else {"temperature": fitted, **at_fitted},
        reliability={"before": reliability(probabilities_at(logits, problem_type, 1.0), gold, problem_type, bins),
                     "after": reliability(probabilities_at(logits, problem_type, temperature), gold, problem_type, bins)})
    probs = probabilities_at(logits, problem_type, temperature)
    names = label_names or [str(i) for i in range(probs.shape[-1])]
    if kind.multi_hot and config.thresholds:
        tuned, per_label = [], {}
        for k, name in enumerate(names):
            found = best_threshold(probs[:, k], gold[:, k])
            tuned.append(found[0] if found else default_threshold)
            per_label[name] = {"threshold": tuned[-1], **(found[1] if found else {"note": "no positive rows: default"})}
        calibration.thresholds = tuned
        report.thresholds = {"per_label": per_label}
    target = parse_target(config.binary_target)
    if target is not None and kind.exclusive:
        if probs.shape[-1] != 2:
            raise NLPTransferError(f"calibration.binary_target tunes the threshold of a binary classifier; this one has "
                                   f"{probs.shape[-1]} labels: remove binary_target")
        found = best_threshold(probs[:, 1], gold.astype(int) == 1, target)
        if found is None:
            report.thresholds = {"binary": {"target": config.binary_target, "label": names[1],
                                            "note": f"no threshold reaches {config.binary_target} on {split}: "
                                                    f"decisions stay argmax"}}
        else:
            calibration.positive_threshold, calibration.target = found[0], str(config.binary_target)
            report.thresholds = {"binary": {"target": config.binary_target, "label": names[1], "threshold": found[0],
                                            **found[1]}}
    return calibration, report


def _crossfit(logits, gold, problem_type: str, bins: int) -> dict[str, float]:
    """Calibration scores when T is fitted on one half of the rows and applied to the other (both ways, seeded
    split): how the stored temperature should do on rows it was not fitted on."""
    import numpy as np

    order = np.random.default_rng(0).permutation(len(gold))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    probs = np.zeros((len(gold),) + np.asarray(logits).shape[1:])
    losses = []
    for fit_on, score_on in (halves, halves[::-1]):
        t = fit_temperature(logits[fit_on], gold[fit_on], problem_type)
        probs[score_on] = probabilities_at(logits[score_on], problem_type, t)
        losses.append(negative_log_likelihood(logits[score_on], gold[score_on], problem_type, t) * len(score_on))
    nll = float(sum(losses) / len(gold))
    return {"ece": expected_calibration_error(probs, gold, problem_type, bins),
            "brier": brier_score(probs, gold, problem_type), "nll": nll}
