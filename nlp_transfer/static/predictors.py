"""Loading a finished static-baseline run (`nlp_transfer.static.baselines`) and predicting with it.

    from nlp_transfer import load_model
    model = load_model("runs/sst2-demo-glove")      # its sidecar says backend: static
    model.predict(["a gorgeous, witty film"])
    # [{'label': 'positive', 'score': 0.97, 'scores': {'negative': 0.03, 'positive': 0.97}}]

Everything is rebuilt from the run folder alone: ``model.safetensors`` (the embedding rows included, so the
vectors file is not needed), the sidecar (settings, labels, problem type) and ``vocabulary.json`` (the word
of each embedding row). Texts go through the same tokenizer (`nlp_transfer.static.words`), the same truncation
(``max_length`` words) and the same unknown-word row as in training, and the models are built by the same code
(`nlp_transfer.static.models`), so a run's ``predictions_<split>.jsonl`` is reproduced.

- `StaticClassifier` (``static-bilstm``, ``static-average*``): the API of `nlp_transfer.predictors.TextClassifier`:
  ``predict(texts)`` -> ``{"label", "score", "scores"}`` per text, ``logits(texts)``; text pairs as
  ``(text, text_pair)`` tuples when the run was trained on pairs.
- `StaticTagger` (token classification): the API of `nlp_transfer.predictors.TokenTagger`: ``predict(text)`` ->
  entity spans with character offsets, ``predict_tokens(sentences)``, ``tag_words(sentences)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NLPTransferError
from ..io import read_run_json
from ..runtime import resolve_device
from ..sidecar import read_sidecar, sidecar_path
from ..tasks import TASKS
from ..tasks.classification import LabelPredictor
from ..tasks.ner import WordTagger
from .models import (BiLSTMClassifier, BiLSTMTagger, StaticEmbedding, TextEncoder, classifier_logits, tagger_inputs,
                     tagger_logits, text_features)
from .settings import VOCABULARY_FILE, WEIGHTS_FILE, StaticConfig

__all__ = ["StaticClassifier", "StaticTagger", "load_static"]


def load_static(folder: str | Path, device: str | None = "auto",
                sidecar: dict[str, Any] | None = None) -> StaticClassifier | StaticTagger:
    """The predictor of a static run folder: a `StaticTagger` for token classification, else a `StaticClassifier`.
    ``device``: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda[:N]`` or ``mps``; ``sidecar``: the
    folder's `nlp_transfer.sidecar.read_sidecar` (read here when not given)."""
    folder = Path(folder)
    resolved = resolve_device(device)
    where = sidecar_path(folder)
    if sidecar is None:
        if not where.is_file():
            read_json(where, dict)  # the one-line "incomplete static run" error
        sidecar = read_sidecar(folder)
    for key in ("task", "strategy", "label_names", "static"):
        if key not in sidecar:
            raise NLPTransferError(f"{where}: has no '{key}'; this is not a complete static run, "
                                   f"train it again (nlp-transfer train {folder / 'recipe.yaml'})")
    vocabulary = read_json(folder / VOCABULARY_FILE, list)
    tensors = read_weights(folder / WEIGHTS_FILE)
    known = {f.name for f in fields(StaticConfig)}
    config = StaticConfig(**{k: v for k, v in sidecar["static"].items() if k in known})
    word_to_index = {word: row for row, word in enumerate(vocabulary) if word}
    task = TASKS.get(sidecar["task"]) if isinstance(sidecar["task"], str) else None
    if task is None or task.auto_model is None:  # no task of that name, or nothing it predicts (masked-LM)
        raise NLPTransferError(f"{where}: names task '{sidecar['task']}', which has no static predictor "
                               f"(sequence-classification and token-classification have)")
    predictor = StaticTagger if task.words_input else StaticClassifier
    return predictor(folder, sidecar, config, word_to_index, tensors, resolved)


def read_json(path: Path, kind: type) -> Any:
    """A run file's JSON (a ``kind``: dict or list), with one-line errors when it is missing or damaged."""
    if not path.is_file():
        raise NLPTransferError(f"{path}: not found; this static run is incomplete, train it again "
                               f"(nlp-transfer train {path.parent / 'recipe.yaml'})")
    return read_run_json(path, kind)


def read_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise NLPTransferError(f"{path}: not found; this static run is incomplete, train it again "
                               f"(nlp-transfer train {path.parent / 'recipe.yaml'})")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError on a damaged file
        raise NLPTransferError(f"{path}: not a readable safetensors file ({str(exc).strip().splitlines()[0]}); "
                               f"train the run again, or restore the file from a copy") from None


def load_weights(model: torch.nn.Module, tensors: dict[str, np.ndarray], path: Path) -> None:
    try:
        model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in tensors.items()})
    except RuntimeError as exc:
        raise NLPTransferError(f"{path}: its weights do not fit the model its sidecar describes "
                               f"({str(exc).strip().splitlines()[0]}); train the run again") from None


def progress_bar(total: int, enabled: bool, what: str = "text"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predicting", unit=what)


class StaticClassifier(LabelPredictor):
    """A static baseline's text classifier (BiLSTM, or averaged vectors + a linear model) with its label names;
    `predict` and `logits` behave as `nlp_transfer.predictors.TextClassifier`'s."""

    task = "sequence-classification"  # the registry entry (tasks.TASKS) this predictor serves

    def __init__(self, folder: Path, sidecar: dict[str, Any], config: StaticConfig, word_to_index: dict[str, int],
                 tensors: dict[str, np.ndarray], device: str = "cpu"):
        self.folder, self.config = folder, config
        self.strategy = sidecar["strategy"]
        self.problem_type = sidecar.get("problem_type", "single_label")
        self.label_names = list(sidecar["label_names"])
        self.threshold = sidecar.get("threshold", 0.5)
        self.pairs = bool(sidecar.get("pairs", False))
        self.max_length = config.max_length  # words per text, as in training
        self.encode = TextEncoder(word_to_index, config)
        self.model: BiLSTMClassifier | None = None
        if self.strategy.startswith("static-average"):
            self.device = "cpu"  # a sparse average and one matrix product: numpy on the CPU
            self.matrix, self.weight, self.bias = tensors["embedding"], tensors["weight"], tensors["bias"]
            self.mean, self.scale = tensors["feature_mean"], tensors["feature_scale"]
            self.idf = tensors.get("idf")
            self.pool_matrix = (tensors.get("pool_embedding", self.matrix)
                                if config.average_pooling == "mean-max-min" else None)
            self.outputs = int(self.weight.shape[0])
        else:
            self.device = device
            self.outputs = int(tensors["head.weight"].shape[0])
            self.model = BiLSTMClassifier(StaticEmbedding.from_weights(tensors), config, self.outputs, self.pairs)
            load_weights(self.model, tensors, folder / WEIGHTS_FILE)
            self.model.to(device).eval()

    def logits(self, texts: Sequence[str] | Sequence[tuple[str, str]] | str, batch_size: int = 32,
               window: bool = False, stride: int = 64, progress: bool = False) -> np.ndarray:
        """Raw logits, one row per text. ``window``/``stride`` do not apply: as in training, a text is read up to
        its first ``max_length`` words."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        firsts, pairs = self.split_pairs(texts)
        ids = self.encode(firsts)
        pair_ids = self.encode(pairs) if pairs is not None else None
        if self.model is None:
            x = text_features(ids, pair_ids, self.matrix, self.idf, self.config.quadratic, self.pool_matrix)
            from ..linear import logits as linear_logits

            return linear_logits((x - self.mean) / self.scale, self.weight, self.bias).astype(np.float32)
        bar = progress_bar(len(ids), progress)
        try:
            return classifier_logits(self.model, ids, pair_ids, self.outputs, self.device, max(int(batch_size), 1),
                                     bar)
        finally:
            if bar is not None:
                bar.close()

    def split_pairs(self, texts: list) -> tuple[list[str], list[str] | None]:
        is_pair = [isinstance(t, (tuple, list)) for t in texts]
        if self.pairs and not all(is_pair):
            raise NLPTransferError(f"{self.folder}: this model was trained on text pairs; pass (text, text_pair) "
                                   f"tuples")
        if not self.pairs and any(is_pair):
            raise NLPTransferError(f"{self.folder}: this model reads single texts, not (text, text_pair) pairs")
        if not self.pairs:
            return [str(t) for t in texts], None
        if any(len(t) != 2 for t in texts):
            raise NLPTransferError(f"{self.folder}: a text pair is a (text, text_pair) tuple of two texts")
        return [str(t[0]) for t in texts], [str(t[1]) for t in texts]


class StaticTagger(WordTagger):
    """A static baseline's BiLSTM tagger (NER): words in, one IOB2 tag per word and entity spans out; the methods
    behave as `nlp_transfer.predictors.TokenTagger`'s. Each word has one vector, so ``strategy`` (how subword
    scores become a word's) changes nothing; it is accepted for the same calls."""

    task = "token-classification"  # the registry entry (tasks.TASKS) this predictor serves

    def __init__(self, folder: Path, sidecar: dict[str, Any], config: StaticConfig, word_to_index: dict[str, int],
                 tensors: dict[str, np.ndarray], device: str = "cpu"):
        self.folder, self.config, self.device = folder, config, device
        self.strategy = sidecar["strategy"]
        self.label_names = list(sidecar["label_names"])
        self.strict = bool(sidecar.get("strict", False))  # seqeval strict mode when this model is evaluated
        self.word_to_index = word_to_index
        self.model = BiLSTMTagger(StaticEmbedding.from_weights(tensors), config, len(self.label_names))
        load_weights(self.model, tensors, folder / WEIGHTS_FILE)
        self.model.to(device).eval()

    def tag_words(self, sentences: Sequence[Sequence[str]], strategy: str = "first", batch_size: int = 32,
                  progress: bool = False) -> list[tuple[list[str], list[float]]]:
        """For each pre-split sentence: (one tag per word, the probability of that tag)."""
        from ..data.conll import repair_iob2
        from ..tasks.ner import SUBWORD_MERGES

        if strategy not in SUBWORD_MERGES:
            raise NLPTransferError(f"strategy '{strategy}' is not one of {', '.join(SUBWORD_MERGES)}")
        sentences = [[str(w) for w in words] for words in sentences]
        ids, shapes = tagger_inputs(sentences, self.word_to_index, self.config.lowercase)
        bar = progress_bar(len(sentences), progress, "sentence")
        try:
            logits = tagger_logits(self.model, ids, shapes, self.device, max(int(batch_size), 1), bar)
        finally:
            if bar is not None:
                bar.close()
        results = []
        for sentence_logits in logits:
            probs = torch.softmax(torch.from_numpy(sentence_logits), dim=-1).numpy()
            best = probs.argmax(-1)
            tags = repair_iob2([self.label_names[i] for i in best])[0]
            results.append((tags, [float(probs[w, i]) for w, i in enumerate(best)]))
        return results


