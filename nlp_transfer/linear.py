"""Linear models on fixed features, shared by the scikit-learn probe (`nlp_transfer.probe`), the averaged-vector
baseline (`nlp_transfer.static.baselines`) and the predictors that reopen them: fitting with scikit-learn, the fitted
model as plain (W, b) arrays (saved as safetensors, no pickles), and logits from them."""
from __future__ import annotations

import numpy as np

GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # C for LogisticRegression; alpha = 1/C for Ridge
PROBE_FILE = "probe.safetensors"  # a probe run's (W, b)


def fit_linear(problem_type: str, strength: float, x: np.ndarray, y: np.ndarray, seed: int,
               class_weight: dict[int, float] | None = None):
    """LogisticRegression (one-vs-rest for multi-label) or Ridge for regression; ``class_weight`` (single-label):
    a loss weight per class id, as `tasks.classification.class_weight_tensor` gives the Trainer."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier

    if problem_type == "regression":
        return Ridge(alpha=1.0 / strength).fit(x, y)
    model = LogisticRegression(C=strength, max_iter=2000, random_state=seed, class_weight=class_weight)
    if problem_type == "multi_label":
        return OneVsRestClassifier(model).fit(x, y)
    return model.fit(x, y)


def linear_weights(model, problem_type: str, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [labels, dim], b [labels]) such that scores = x @ W.T + b are the logits."""
    if problem_type == "multi_label":
        coef = np.concatenate([e.coef_ for e in model.estimators_])
        bias = np.concatenate([np.atleast_1d(e.intercept_) for e in model.estimators_])
        return coef, bias
    if problem_type == "regression":
        return np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
    if num_labels == 2 and model.coef_.shape[0] == 1:  # binary: one logit; as two, softmax gives the same
        return np.concatenate([-model.coef_ / 2, model.coef_ / 2]), np.array([-model.intercept_[0] / 2,
                                                                             model.intercept_[0] / 2])
    return model.coef_, model.intercept_


def logits(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x @ weight.T + bias
