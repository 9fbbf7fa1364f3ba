"""Scoring a trained model on any labelled split of a data card (or of several cards read as one).

    from nlp_transfer import evaluate
    evaluate("runs/conll03-e5", "data_cards/wikiann_de.md", "test")          # label_map from the run
    evaluate("runs/x", ["data_cards/wikiann_de.md", "data_cards/wikiann_nl.md"], "test")["per_language"]

When the rows carry groups (a card's ``groups``: columns or length buckets) or more than one language (a card's
``language_column``, or several cards), the result has a ``per_group`` block: per column, the scores of each group,
the worst group and the best-worst gap of the main metric (``per_language`` repeats the language table).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .data.cards import DataCard, load_cards
from .data.labels import entity_types
from .data.readers import iter_labelled, read_labelled
from .inference import load_model
from .tasks import classification as cls_task
from .tasks import get_task
from .tasks.base import row_groups
from .tasks.problems import problem_type


def evaluate(model: Any, data: str | Path | DataCard | list, split: str = "validation", batch_size: int = 64,
             window: bool = False, label_map: dict[str, str] | None = None, where: str | None = None,
             device: str | None = "auto", precision: str = "float32") -> dict[str, Any]:
    """Metrics of ``model`` (a trained folder, or a predictor `load_model` opened, scored as it is) on ``split`` of
    the data card ``data`` (labels named as the model's), computed on ``device`` (``auto``: CUDA when present) in
    ``precision`` (both for a folder).

    NER: ``label_map`` (default: the one the model was trained with) renames or drops entity types of the
    data; entity types that only the data or only the model has are left out of the scores, with one warning."""
    model_dir = str(model) if isinstance(model, (str, Path)) else None
    if model_dir is not None:
        model = load_model(model_dir, device, precision=precision)
    card = data if isinstance(data, DataCard) else load_cards(data)
    if get_task(model.task).words_input:  # a tagger: words in, entity scores out
        if label_map is None:  # the one it was trained with
            label_map = getattr(model, "label_map", None)
        return _evaluate_tagger(model, model_dir, card, split, batch_size, label_map, where)
    card = dataclasses.replace(card, problem_type=model.problem_type)  # read as the model predicts; the card stays
    label_names = model.label_names
    logits, gold, groups = _scored_stream(model, card, split, batch_size, window)
    scores = model.calibration.probabilities(logits, model.problem_type)
    predicted = model.calibration.decide(scores, model.problem_type, model.threshold)  # thresholds tuned on validation
    result = cls_task.metrics_for(model.problem_type, predicted, gold, label_names)
    if problem_type(model.problem_type).labelled:  # probabilities to calibrate (not a regression's values)
        result["calibration"] = _calibration_scores(logits, gold, model)
    by_group = cls_task.group_metrics(model.problem_type, predicted, gold, label_names, groups)
    return {"model": str(model_dir), "data": card.name, "split": split, "rows": len(gold), **result,
            **by_group}


def _scored_stream(model, card: DataCard, split: str, batch_size: int, window: bool):
    """(logits, gold labels, each row's groups or None) of a classification split, read and scored chunk by chunk:
    what is kept grows by a few numbers per row, never by the texts."""
    from tqdm.auto import tqdm

    parts, gold, groups = [], [], []
    with tqdm(desc="scoring", unit="row", mininterval=1.0) as bar:
        for chunk in iter_labelled(card, split, model.label_names):  # labels in the model's order, by name
            parts.append(np.asarray(model.logits(cls_task.model_inputs(chunk), batch_size=batch_size, window=window)))
            gold.extend(row["label"] for row in chunk)
            groups.extend(row_groups(chunk) or [{}] * len(chunk))
            bar.update(len(chunk))
    return np.concatenate(parts), np.asarray(gold), (groups if any(groups) else None)


def run_evaluation_data(folder: str | Path, data: Any = None, split: str | None = None) -> tuple[Any, Any, str]:
    """What a run folder is evaluated on: (its saved recipe or None, ``data`` or else the recipe's card path(s)
    resolved as training resolved them, ``split`` or else the recipe's eval_split). Shared by calibrate, errors and
    the ONNX parity check; one line when neither ``data`` nor a recipe.yaml names the data."""
    from .config import load_recipe, resolve_path
    from .errors import NLPTransferError

    saved = Path(folder) / "recipe.yaml"
    recipe = load_recipe(saved) if saved.is_file() else None
    if data is None:
        if recipe is None:
            raise NLPTransferError(f"{folder}: no recipe.yaml to find its data card in; pass --data CARD (and --split)")
        data = recipe.data if isinstance(recipe.data, list) else str(resolve_path(recipe.data, recipe))
    return recipe, data, split or (recipe.eval_split if recipe else "validation")


def _calibration_scores(logits, gold, model) -> dict[str, Any]:
    """ECE / Brier / NLL of the probabilities predict gives (the folder's temperature) and of the raw ones."""
    from .calibration import scores

    bins = model.calibration.bins
    return {**scores(logits, gold, model.problem_type, model.calibration.temperature, bins),
            "temperature": model.calibration.temperature,
            "raw": scores(logits, gold, model.problem_type, 1.0, bins)}


def calibrate(model_dir: str | Path, data: str | Path | DataCard | list, split: str = "validation",
              config: Any = None, batch_size: int = 64, device: str | None = "auto",
              precision: str = "float32") -> dict[str, Any]:
    """Fit the temperature and thresholds of a trained classifier on ``split`` of ``data`` (as `evaluate` reads
    it) and store them in the folder's calibration.json; returns the report (ECE, Brier, NLL before and after).
    ``config``: a `config.CalibrationConfig` (default: temperature, and per-label thresholds for multi-label)."""
    model = load_model(model_dir, device, precision=precision)
    card = data if isinstance(data, DataCard) else load_cards(data)
    card = dataclasses.replace(card, problem_type=getattr(model, "problem_type", card.problem_type))
    rows = read_labelled(card, split, getattr(model, "label_names", None)).rows
    texts = cls_task.model_inputs(rows)
    return fit_calibration(model_dir, texts, [r["label"] for r in rows], split, config, batch_size, model=model)


def fit_calibration(model_dir: str | Path, texts: list, gold: list, split: str, config: Any = None,
                    batch_size: int = 64, device: str | None = "auto", precision: str = "float32",
                    model: Any = None) -> dict[str, Any]:
    """`calibrate` on given texts and gold label ids (multi-hot rows for multi-label): the rows a run evaluated on."""
    from .calibration import fit
    from .config import CalibrationConfig
    from .errors import NLPTransferError
    from .tasks.classification import LabelPredictor

    model = model or load_model(model_dir, device, precision=precision)
    if not isinstance(model, LabelPredictor) or not problem_type(model.problem_type).labelled:
        raise NLPTransferError(f"{model_dir}: calibration applies to classifiers (single- or multi-label); this "
                               f"folder holds a {getattr(model, 'problem_type', None) or model.task} model")
    logits = model.logits(texts, batch_size=batch_size, progress=len(texts) > 2000)
    calibration, report = fit(logits, np.asarray(gold), model.problem_type, config or CalibrationConfig(), split,
                              model.label_names, model.threshold)
    calibration.save(model_dir)
    model.calibration = calibration
    return report.to_dict()


def _evaluate_tagger(tagger, model_dir, card: DataCard, split: str, batch_size: int,
                     label_map: dict[str, str] | None = None, where: str | None = None) -> dict[str, Any]:
    """Entity-level scores of a token tagger on a split, every word tagged (windows merged)."""
    from .tasks.ner import entity_metrics, group_entity_metrics, score_on_shared_types

    # IOB2 tags as strings after the label_map: types only the data or only the model has are scored below
    sentences = read_labelled(card, split, label_map=label_map).rows
    tagged = tagger.tag_words([s["tokens"] for s in sentences], batch_size=batch_size, progress=True)
    gold = [s["tags"] for s in sentences]
    predicted = [tags for tags, _ in tagged]
    declared = {t[2:] for t in card.labels or [] if t[:2] in ("B-", "I-")}  # the card's labels: list, when given
    declared = {(label_map or {}).get(t, t) for t in declared} - {"O"}
    data_types = entity_types(sentences) | declared
    gold, predicted, types = score_on_shared_types(gold, predicted, data_types, tagger.label_names,
                                                   where or f"{card.name} ({split})")
    return {"model": str(model_dir), "data": card.name, "split": split, "rows": len(sentences),
            **entity_metrics(gold, predicted, tagger.strict), **({"types": types} if types else {}),
            **group_entity_metrics(gold, predicted, row_groups(sentences), tagger.strict)}
