"""Scoring a trained model on any labelled split of a data card (or of several cards read as one).

    from nlp_transfer import evaluate
    evaluate("runs/conll03-e5", "data_cards/wikiann_de.md", "test")          # label_map from the run
    evaluate("runs/x", ["data_cards/wikiann_de.md", "data_cards/wikiann_nl.md"], "test")["per_language"]

When the rows carry more than one language (a card's ``language_column``, or several cards), the result
has a ``per_language`` block with the main scores of each language.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.cards import DataCard, load_cards
from .data.labels import entity_types
from .data.readers import read_labelled
from .inference import load_model, read_sidecar
from .tasks import classification as cls_task
from .tasks import get_task


def evaluate(model_dir: str | Path, data: str | Path | DataCard | list, split: str = "validation", batch_size: int = 64,
             window: bool = False, label_map: dict[str, str] | None = None, where: str | None = None,
             device: str | None = "auto", precision: str = "float32") -> dict[str, Any]:
    """Metrics of ``model_dir`` on ``split`` of the data card ``data`` (labels named as the model's), computed on
    ``device`` (``auto``: CUDA when present) in ``precision``.

    NER: ``label_map`` (default: the one the model was trained with) renames or drops entity types of the
    data; entity types that only the data or only the model has are left out of the scores, with one warning."""
    model = load_model(model_dir, device, precision=precision)
    card = data if isinstance(data, DataCard) else load_cards(data)
    if get_task(model.task).words_input:  # a tagger: words in, entity scores out
        if label_map is None:
            label_map = _trained_label_map(model_dir)
        return _evaluate_tagger(model, model_dir, card, split, batch_size, label_map, where)
    card = dataclasses.replace(card, problem_type=model.problem_type)  # read as the model predicts; the card stays
    label_names = model.label_names
    rows = read_labelled(card, split, label_names).rows  # labels in the model's order, matched by name
    texts = [(r["text"], r["text_pair"]) if "text_pair" in r else r["text"] for r in rows]
    logits = model.logits(texts, batch_size=batch_size, window=window, progress=True)
    scores = cls_task.scores_from_logits(torch.from_numpy(logits), model.problem_type).numpy()
    gold = np.asarray([r["label"] for r in rows])
    predicted = cls_task.decide(scores, model.problem_type, model.threshold)
    result = cls_task.metrics_for(model.problem_type, predicted, gold, label_names)
    by_language = cls_task.per_language_metrics(model.problem_type, predicted, gold, label_names,
                                                [r.get("language") for r in rows])
    return {"model": str(model_dir), "data": card.name, "split": split, "rows": len(rows), **result,
            **({"per_language": by_language} if by_language else {})}


def _trained_label_map(model_dir) -> dict[str, str] | None:
    return read_sidecar(model_dir).get("label_map")


def _evaluate_tagger(tagger, model_dir, card: DataCard, split: str, batch_size: int,
                     label_map: dict[str, str] | None = None, where: str | None = None) -> dict[str, Any]:
    """Entity-level scores of a token tagger on a split, every word tagged (windows merged)."""
    from .tasks.ner import entity_metrics, per_language_entity_metrics, score_on_shared_types

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
    by_language = per_language_entity_metrics(gold, predicted, [s.get("language") for s in sentences], tagger.strict)
    return {"model": str(model_dir), "data": card.name, "split": split, "rows": len(sentences),
            **entity_metrics(gold, predicted, tagger.strict), **({"types": types} if types else {}),
            **({"per_language": by_language} if by_language else {})}
