"""Scoring a trained model on any labelled split of a data card."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.readers import DataCard, encode_labels, load_card, read_rows, read_token_rows
from .errors import NLPTransferError
from .inference import TokenTagger, load_model
from .tasks import classification as cls_task


def evaluate(model_dir: str | Path, data: str | Path, split: str = "validation", batch_size: int = 64,
             window: bool = False) -> dict[str, Any]:
    """Metrics of ``model_dir`` on ``split`` of the data card ``data`` (labels named as the model's)."""
    model = load_model(model_dir)
    card = data if isinstance(data, DataCard) else load_card(data)
    if isinstance(model, TokenTagger):
        return _evaluate_tagger(model, model_dir, card, split, batch_size)
    card.problem_type = model.problem_type
    rows, path, _ = read_rows(card, split)
    label_names = model.label_names
    names_in_files = card.labels if card.labels and model.problem_type != "regression" else label_names
    encode_labels(rows, card, names_in_files, path)
    if names_in_files != label_names:
        _to_model_order(rows, names_in_files, label_names, model.problem_type, card.source)
    texts = [(r["text"], r["text_pair"]) if "text_pair" in r else r["text"] for r in rows]
    logits = model.logits(texts, batch_size=batch_size, window=window, progress=True)
    scores = cls_task.scores_from_logits(torch.from_numpy(logits), model.problem_type).numpy()
    gold = np.asarray([r["label"] for r in rows])
    predicted = cls_task.decide(scores, model.problem_type, model.threshold)
    result = cls_task.metrics_for(model.problem_type, predicted, gold, label_names)
    return {"model": str(model_dir), "data": card.name, "split": split, "rows": len(rows), **result}


def _to_model_order(rows: list[dict], names_in_files: list[str], label_names: list[str], problem_type: str,
                    source: str) -> None:
    """Map labels encoded in the card's order onto the model's label ids, by name."""
    unknown = [name for name in names_in_files if name not in label_names]
    if unknown:
        raise NLPTransferError(f"{source}: label '{unknown[0]}' is not one the model knows ({', '.join(label_names)})")
    index = [label_names.index(name) for name in names_in_files]
    for row in rows:
        if problem_type == "single_label":
            row["label"] = index[row["label"]]
        else:
            hot = [0.0] * len(label_names)
            for position, value in enumerate(row["label"]):
                hot[index[position]] = value
            row["label"] = hot


def _evaluate_tagger(tagger: TokenTagger, model_dir, card: DataCard, split: str, batch_size: int) -> dict[str, Any]:
    """Entity-level scores of a token tagger on a split, every word tagged (windows merged)."""
    from .data import conll
    from .tasks.ner import entity_metrics

    sentences, path, _ = read_token_rows(card, split)
    conll.normalise(sentences, card.scheme, path)
    unknown = sorted({t for s in sentences for t in s["tags"]} - set(tagger.label_names))
    if unknown:
        raise NLPTransferError(f"{path}: tag '{unknown[0]}' is not one the model knows ({', '.join(tagger.label_names)})")
    tagged = tagger.tag_words([s["tokens"] for s in sentences], batch_size=batch_size, progress=True)
    gold = [s["tags"] for s in sentences]
    predicted = [tags for tags, _ in tagged]
    return {"model": str(model_dir), "data": card.name, "split": split, "rows": len(sentences),
            **entity_metrics(gold, predicted, tagger.strict)}
