"""Loading a trained output directory and predicting with it.

    from nlp_transfer import load_model
    model = load_model("runs/sst2-demo")
    model.predict(["a gorgeous, witty film"])
    # [{'label': 'positive', 'score': 0.98, 'scores': {'negative': 0.02, 'positive': 0.98}}]

Batches are sorted by length (little padding) and results come back in input order. With
``window=True`` a text longer than max_length is split into overlapping windows whose logits are
averaged, so the end of a long review still counts.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.adapters import DynamicPaddingCollator, encode_for_prediction, length_sorted_batches
from .errors import NLPTransferError
from .models import load_tokenizer, resolve
from .tasks.classification import scores_from_logits, short_problem_type


class TextClassifier:
    """A fine-tuned sequence classifier with its tokenizer and label names."""

    def __init__(self, model, tokenizer, max_length: int = 128, threshold: float = 0.5):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.threshold = threshold
        self.problem_type = short_problem_type(model.config.problem_type)
        self.label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self._collate = DynamicPaddingCollator(tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def logits(self, texts: Sequence[str] | Sequence[tuple[str, str]], batch_size: int = 32, window: bool = False,
               stride: int = 64, progress: bool = False) -> np.ndarray:
        """Raw logits, one row per input text (window logits averaged per text)."""
        if isinstance(texts, str):
            texts = [texts]
        firsts, pairs = _split_pairs(texts)
        rows, owner = encode_for_prediction(self.tokenizer, firsts, pairs, self.max_length, window, stride)
        window_logits = np.zeros((len(rows), self.model.config.num_labels), dtype=np.float32)
        batches = length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size)
        bar = _progress(len(rows), progress)
        with torch.inference_mode():
            for indices in batches:
                batch = self._collate([rows[i] for i in indices])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                window_logits[indices] = self.model(**batch).logits.float().cpu().numpy()
                if bar:
                    bar.update(len(indices))
        if bar:
            bar.close()
        if not window:
            return window_logits
        summed = np.zeros((len(firsts), window_logits.shape[1]), dtype=np.float64)
        np.add.at(summed, owner, window_logits)
        counts = np.bincount(owner, minlength=len(firsts))[:, None]
        return (summed / counts).astype(np.float32)

    def predict(self, texts: Sequence[str] | Sequence[tuple[str, str]] | str, batch_size: int = 32,
                window: bool = False, stride: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """One dict per text: ``label`` (a name; a list of names for multi-label; a number for
        regression), ``score`` (its probability) and ``scores`` (every label's probability)."""
        single = isinstance(texts, str)
        logits = self.logits([texts] if single else texts, batch_size, window, stride, progress)
        scores = scores_from_logits(torch.from_numpy(logits), self.problem_type).numpy()
        results = [self._describe(row) for row in scores]
        return results[0] if single else results

    def _describe(self, row: np.ndarray) -> dict[str, Any]:
        if self.problem_type == "regression":
            return {"label": float(row), "score": float(row)}
        named = {name: round(float(p), 6) for name, p in zip(self.label_names, row)}
        if self.problem_type == "multi_label":
            chosen = [name for name, p in named.items() if p >= self.threshold]
            return {"label": chosen, "score": max(named.values()), "scores": named}
        best = int(np.argmax(row))
        return {"label": self.label_names[best], "score": float(row[best]), "scores": named}


def _split_pairs(texts) -> tuple[list[str], list[str] | None]:
    texts = list(texts)
    if texts and isinstance(texts[0], (tuple, list)):
        return [str(t[0]) for t in texts], [str(t[1]) for t in texts]
    return [str(t) for t in texts], None


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predicting", unit="text")


def load_model(path: str | Path, device: str | None = None, trust_remote_code: bool = False) -> TextClassifier:
    """Load a directory written by ``nlp-transfer train`` (or any sequence-classification model)."""
    from transformers import AutoModelForSequenceClassification

    location = resolve(str(path))
    sidecar_path = Path(location) / "nlp_transfer.json"
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    task = sidecar.get("task", "sequence-classification")
    if task != "sequence-classification":
        raise NLPTransferError(f"{path}: a '{task}' model cannot be loaded as a text classifier")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(location, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise NLPTransferError(f"cannot load model '{path}': {str(exc).strip().splitlines()[0]}") from None
    if device:
        model.to(device)
    tokenizer = load_tokenizer(location, trust_remote_code)
    return TextClassifier(model, tokenizer, sidecar.get("max_length", 128), sidecar.get("threshold", 0.5))
