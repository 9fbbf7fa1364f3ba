"""Scoring a trained model on any labelled split of a data card."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.readers import encode_labels, load_card, read_rows
from .inference import load_model
from .tasks import classification as cls_task


def evaluate(model_dir: str | Path, data: str | Path, split: str = "validation", batch_size: int = 64,
             window: bool = False) -> dict[str, Any]:
    """Metrics of ``model_dir`` on ``split`` of the data card ``data`` (labels named as the model's)."""
    model = load_model(model_dir)
    card = load_card(data)
    card.problem_type = model.problem_type
    rows, path, _ = read_rows(card, split)
    label_names = model.label_names
    if card.labels and model.problem_type != "regression":
        # ids in the files follow the card's order; names are mapped onto the model's
        encode_labels(rows, card, card.labels, path)
        remap = {i: label_names.index(name) for i, name in enumerate(card.labels) if name in label_names}
        for row in rows:
            if model.problem_type == "single_label":
                row["label"] = remap.get(row["label"], -1)
    else:
        encode_labels(rows, card, label_names, path)
    texts = [(r["text"], r["text_pair"]) if "text_pair" in r else r["text"] for r in rows]
    logits = model.logits(texts, batch_size=batch_size, window=window, progress=True)
    scores = cls_task.scores_from_logits(torch.from_numpy(logits), model.problem_type).numpy()
    gold = np.asarray([r["label"] for r in rows])
    if model.problem_type == "single_label":
        result = cls_task.classification_metrics(scores.argmax(-1), gold.astype(int), label_names)
    elif model.problem_type == "multi_label":
        result = cls_task.multi_label_metrics((scores >= model.threshold).astype(int), gold.astype(int), label_names)
    else:
        result = cls_task.regression_metrics(scores.astype(float), gold.astype(float))
    return {"model": str(model_dir), "data": card.name, "split": split, "rows": len(rows), **result}
