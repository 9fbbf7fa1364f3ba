"""Feature extraction with a probe: frozen encoder features + a scikit-learn linear model.

``strategy: {name: feature-extraction}`` in a classification recipe runs the pretrained encoder once over the
train and evaluation texts (features cached on disk by content hash, so a second run skips the encoder), fits
LogisticRegression (Ridge for regression; one-vs-rest for multi-label) with the regularisation strength chosen
on the evaluation split, and writes the same metrics.json / predictions / model card as fine-tuning, so the
two sit side by side. The probe's weights are saved as safetensors (no pickles); `load_model` rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .contrastive import ENCODER_DIR
from .jobs import Fitted, Job
from .linear import GRID, PROBE_FILE, logits, search_strength
from .tasks import classification as cls_task
from .tasks.base import row_groups
from .tasks.problems import problem_type as get_problem_type
from .encoders import Encoder, EmbedSettings, save_array_atomic
from .io import cache_folder



def cache_dir() -> Path:
    return cache_folder("features")


def features(encoder: Encoder, texts: list[str], pairs: list[str] | None, settings: EmbedSettings,
             cache: bool = True) -> np.ndarray:
    """Pooled features (cached by model, settings and texts unless ``cache`` is off: an encoder trained for this
    run is never met again); sentence pairs become [u, v, |u-v|, u*v]."""
    from .models import weights_fingerprint

    if not cache:
        return _pooled(encoder, texts, pairs, settings)

    key = {"model": encoder.name, "weights": weights_fingerprint(encoder.name), "settings": settings.__dict__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for text in texts + (pairs or []):
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    path = cache_dir() / f"{digest.hexdigest()}.npy"
    if path.is_file():
        return np.load(path)
    pooled = _pooled(encoder, texts, pairs, settings)
    save_array_atomic(path, pooled)
    return pooled


def _pooled(encoder: Encoder, texts: list[str], pairs: list[str] | None, settings: EmbedSettings) -> np.ndarray:
    first = encoder.encode(texts, settings)
    if pairs is None:
        return first
    second = encoder.encode(pairs, settings)
    return np.concatenate([first, second, np.abs(first - second), first * second], axis=1)


def _texts(dataset) -> tuple[list[str], list[str] | None]:
    pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else None
    return list(dataset["text"]), pairs


def _scored(eval_logits: np.ndarray, gold: np.ndarray, problem_type: str, threshold: float | None,
            label_names: list[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(metrics, decisions, scores) of a fitted probe's logits on the evaluation rows."""
    import torch

    scores = cls_task.scores_from_logits(torch.from_numpy(eval_logits).float(), problem_type).numpy()
    predicted = cls_task.decide(scores, problem_type, threshold)
    return cls_task.metrics_for(problem_type, predicted, gold, label_names), predicted, scores


def _fit_probe(recipe, data, train_x: np.ndarray, eval_x: np.ndarray):
    """The probe of the C (`linear.search_strength`, class weights as the Trainer's) that scores best on the evaluation
    split, among the strategy's `probe_grid` (one fixed C: nothing is chosen there): (the search, the chosen probe's
    metrics with per-group scores, StreamingMetrics holding its decisions)."""
    problem_type, label_names, threshold = data.problem_type, data.label_names, recipe.threshold
    train_y = np.asarray(data.splits[recipe.train_split]["label"])
    eval_y = np.asarray(data.splits[recipe.eval_split]["label"])
    main = cls_task.MAIN_METRIC[problem_type]
    weights = cls_task.class_weight_tensor(recipe.class_weights, list(train_y), problem_type, len(label_names))
    class_weight = None if weights is None else {i: float(w) for i, w in enumerate(weights)}

    def score(eval_logits: np.ndarray, gold: np.ndarray) -> float:
        return _scored(eval_logits, gold, problem_type, threshold, label_names)[0][main]

    chosen = search_strength(problem_type, len(label_names), (train_x, train_y), score, metric=main, seed=recipe.seed,
                             held_out=(eval_x, eval_y), class_weight=class_weight,
                             grid=recipe.strategy.probe_grid() or GRID)
    result, predicted, scores = _scored(logits(eval_x, chosen.weight, chosen.bias), eval_y, problem_type, threshold,
                                        label_names)
    result.update(cls_task.group_metrics(problem_type, predicted, eval_y, label_names,
                                         row_groups(data.splits[recipe.eval_split])))
    metrics_fn = cls_task.StreamingMetrics(problem_type, label_names, threshold)
    metrics_fn.decisions = {"predicted": predicted, "gold": eval_y,
                            "score": get_problem_type(problem_type).confidence(scores)}
    return chosen, result, metrics_fn


def _sidecar(recipe, data, settings: EmbedSettings, trained: bool) -> dict[str, Any]:
    """nlp_transfer.json: what `load_model` needs to rebuild the probe."""
    return {"task": recipe.task, "strategy": recipe.strategy.name,
            "encoder": ENCODER_DIR if trained else recipe.model, "encoder_in_folder": trained,
            "base_model": recipe.model,
            "problem_type": data.problem_type, "threshold": recipe.threshold, "label_names": data.label_names,
            "pairs": "text_pair" in data.splits[recipe.train_split].column_names,
            "embedding": settings.__dict__}


def train_probe(job: Job, settings: EmbedSettings | None = None) -> Fitted:
    """Fit a probe and stage it in the run folder `nlp_transfer.rundir` chose (``job.run.work``); returns the run
    record in the same shape as a fine-tuning run's, for `nlp_transfer.outputs.finish` (which scores the test split
    and eval sets and writes everything). The probe's encoder is the strategy's `probe_encoder`: the recipe's model
    frozen (feature-extraction), or one trained for this run and saved into the folder (contrastive)."""
    from safetensors.numpy import save_file

    from .record import run_record, staging_folder
    from .reports import model_card
    from .runtime import Runtime
    from .sidecar import write_sidecar

    recipe, card, data = job.recipe, job.card, job.data
    job.start()
    problem_type = data.problem_type
    strategy = recipe.strategy
    settings = settings or EmbedSettings(**strategy.embedding(), max_length=recipe.max_length)
    started = time.perf_counter()
    runtime = job.runtime or Runtime.resolve("auto")  # CUDA when present
    staging = staging_folder(job.run.work)
    train_rows = data.splits[recipe.train_split]
    encoder_name, encoder_training = strategy.probe_encoder(
        recipe, list(train_rows["text"]), list(train_rows["label"]), staging / ENCODER_DIR, runtime.device)
    trained = encoder_training is not None
    encoder = Encoder(encoder_name, recipe.trust_remote_code, runtime)
    train_x = features(encoder, *_texts(train_rows), settings, cache=not trained)
    eval_x = features(encoder, *_texts(data.splits[recipe.eval_split]), settings, cache=not trained)
    feature_seconds = time.perf_counter() - started - (encoder_training or {}).get("seconds", 0.0)
    encoder_params = sum(p.numel() for p in encoder.model.parameters())
    main = cls_task.MAIN_METRIC[problem_type]
    chosen, result, metrics_fn = _fit_probe(recipe, data, train_x, eval_x)
    weight, bias = chosen.weight, chosen.bias
    train_seconds = time.perf_counter() - started
    metrics = run_record(
        recipe, card, backend="probe", problem_type=problem_type, main_metric=main, model=recipe.model,
        strategy=strategy.name, eval_scores=result, eval_split=recipe.eval_split,
        train={"runtime_s": round(train_seconds, 2), "feature_seconds": round(feature_seconds, 2),
               "probe": get_problem_type(problem_type).linear_model, "C": chosen.strength,
               "search": chosen.table, "global_step": 0,
               **({"contrastive": encoder_training} if trained else {})},
        params={"trainable": int(weight.size + bias.size) + (encoder_params if trained else 0),
                "total": int(weight.size + bias.size) + encoder_params},
        rows={split: len(rows) for split, rows in data.splits.items()})
    save_file({"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}, str(staging / PROBE_FILE))
    write_sidecar(staging, "probe", _sidecar(recipe, data, settings, trained))
    source = data.splits[recipe.eval_split]
    rows = ({"line": line, "text": text, **row}
            for line, text, row in zip(source["line"], source["text"], metrics_fn.decision_rows()))
    return Fitted(metrics, lambda final: model_card(recipe, card, final, data.label_names), runtime,
                  predictions=rows, calibration_rows=cls_task.texts_and_labels(source))
