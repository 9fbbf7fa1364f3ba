"""Predictors: a trained model with its tokenizer and label names, that predicts and scores in input order.

    TextClassifier   fine-tuned sequence classifier (logits, windows over long texts, calibrated scores)
    ProbeClassifier  frozen encoder + linear probe, with the same API
    TokenTagger      fine-tuned token classifier: words in, one IOB2 tag per word and entity spans out
    Onnx*            the same, run by onnxruntime on an exported graph

`nlp_transfer.load_model` opens a folder into one of these (through its backend, `nlp_transfer.backends`). Batches
are sorted by length (little padding); with ``window=True`` a text longer than max_length is split into overlapping
windows whose logits are averaged, so the end of a long review still counts.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.adapters import DynamicPaddingCollator, encode_for_prediction, length_sorted_batches
from .errors import NLPTransferError
from .models import load_tokenizer
from .runtime import Runtime
from .sidecar import check_positions
from .tasks.classification import LabelPredictor, short_problem_type
from .encoders import EmbedSettings, Encoder
from .tasks.ner import WordTagger


class TextClassifier(LabelPredictor):
    """A fine-tuned sequence classifier with its tokenizer and label names (`predict` from `LabelPredictor`)."""

    task = "sequence-classification"  # the registry entry (tasks.TASKS) this predictor serves

    def __init__(self, model, tokenizer, max_length: int = 128, threshold: float = 0.5,
                 runtime: Runtime | None = None):
        self.runtime = runtime or Runtime()
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

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Float logits of one padded batch (on the model's device); the ONNX predictor runs its session here."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with self.runtime.autocast():
            return self.model(**batch).logits.float()

    def logits(self, texts: Sequence[str] | Sequence[tuple[str, str]], batch_size: int = 32, window: bool = False,
               stride: int = 64, progress: bool = False) -> np.ndarray:
        """Raw logits, one row per input text (window logits averaged per text)."""
        if isinstance(texts, str):
            texts = [texts]
        firsts, pairs = _split_pairs(texts)
        rows, owner = encode_for_prediction(self.tokenizer, firsts, pairs, self.max_length, window, stride)
        window_logits = np.zeros((len(rows), len(self.label_names)), dtype=np.float32)
        batches = length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size)
        bar = _progress(len(rows), progress)
        outputs = []  # kept on the device: one copy to the host at the end, not a sync per batch on a GPU
        with torch.inference_mode():
            for indices in batches:
                outputs.append(self.forward(self._collate([rows[i] for i in indices])))
                if bar:
                    bar.update(len(indices))
            if batches:
                window_logits[np.concatenate(batches)] = torch.cat(outputs).cpu().numpy()
        if bar:
            bar.close()
        if not window:
            return window_logits
        summed = np.zeros((len(firsts), window_logits.shape[1]), dtype=np.float64)
        np.add.at(summed, owner, window_logits)
        counts = np.bincount(owner, minlength=len(firsts))[:, None]
        return (summed / counts).astype(np.float32)


class ProbeClassifier(TextClassifier):
    """A frozen encoder + linear probe; `predict` is `TextClassifier.predict` over the probe's logits."""

    def __init__(self, folder: Path, sidecar: dict[str, Any], trust_remote_code: bool = False,
                 runtime: Runtime | None = None):
        from safetensors.numpy import load_file

        from .linear import PROBE_FILE

        tensors = load_file(str(folder / PROBE_FILE))
        self.weight, self.bias = tensors["weight"], tensors["bias"]
        self.runtime = runtime or Runtime()
        # the encoder: the base model's name, or (contrastive) the one trained for this run, inside the folder
        encoder = str(folder / sidecar["encoder"]) if sidecar.get("encoder_in_folder") else sidecar["encoder"]
        self.encoder = Encoder(encoder, trust_remote_code, self.runtime)
        self.settings = EmbedSettings(**sidecar["embedding"])
        check_positions(folder, "embedding.max_length", self.settings.max_length, self.encoder.positions)
        self.problem_type = sidecar["problem_type"]
        self.threshold = sidecar.get("threshold", 0.5)
        self.label_names = sidecar["label_names"]
        self.pairs = sidecar.get("pairs", False)

    def logits(self, texts, batch_size: int = 32, window: bool = False, stride: int = 64,
               progress: bool = False) -> np.ndarray:
        """Probe logits; ``window``/``stride`` do not apply (features are pooled over max_length tokens)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        firsts = [t[0] if isinstance(t, (tuple, list)) else t for t in texts]
        settings = EmbedSettings(**{**self.settings.__dict__, "batch_size": batch_size})
        x = self.encoder.encode(firsts, settings)
        if self.pairs:
            second = self.encoder.encode([t[1] for t in texts], settings)
            x = np.concatenate([x, second, np.abs(x - second), x * second], axis=1)
        from .linear import logits

        return logits(x, self.weight, self.bias).astype(np.float32)


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


class TokenTagger(WordTagger):
    """A fine-tuned token classifier (NER): words in, one IOB2 tag per word and entity spans out.

        tagger = load_model("runs/conll03-minilm")
        tagger.predict("Angela Merkel visited Paris.")
        # [{'type': 'PER', 'text': 'Angela Merkel', 'start': 0, 'end': 13, 'score': 0.99, 'words': [0, 2]},
        #  {'type': 'LOC', 'text': 'Paris', 'start': 22, 'end': 27, 'score': 0.99, 'words': [3, 4]}]

    Raw text is split into words (`tasks.ner.split_words`: letter/digit runs, single punctuation marks,
    single CJK characters) with character offsets; sentences longer than max_length are tagged in
    overlapping windows and merged so every word gets exactly one tag. ``strategy`` sets how a word's
    subword scores become the word's: ``first`` subword (as trained), ``average`` or ``max``."""

    task = "token-classification"  # the registry entry (tasks.TASKS) this predictor serves

    def __init__(self, model, tokenizer, max_length: int = 128, stride: int = 32, strict: bool = False,
                 runtime: Runtime | None = None, label_map: dict[str, str] | None = None):
        self.runtime = runtime or Runtime()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stride = stride
        self.strict = strict  # seqeval strict mode when this model is evaluated
        self.label_map = label_map  # entity types renamed or dropped when it was trained: applied to data it scores
        self.label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self._collate = DynamicPaddingCollator(tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Tag probabilities [batch, tokens, tags] of one padded batch; the ONNX tagger runs its session here."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self.runtime.autocast():
            logits = self.model(**batch).logits
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def tag_words(self, sentences: Sequence[Sequence[str]], strategy: str = "first", batch_size: int = 32,
                  progress: bool = False) -> list[tuple[list[str], list[float]]]:
        """For each pre-split sentence: (one tag per word, the probability of that tag)."""
        from .tasks.ner import SUBWORD_MERGES, WindowMerger, tokenize_words

        if strategy not in SUBWORD_MERGES:
            raise NLPTransferError(f"strategy '{strategy}' is not one of {', '.join(SUBWORD_MERGES)}")
        sentences = [list(words) for words in sentences]
        merger = WindowMerger([len(words) for words in sentences], strategy)
        if any(sentences):
            encoded = tokenize_words(self.tokenizer, [s or [""] for s in sentences], self.max_length, self.stride)
            rows, owners = encoded.rows, encoded.owners
            bar = _progress(len(rows), progress)
            with torch.inference_mode():
                for indices in length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
                    probs = self.forward(self._collate([rows[i] for i in indices]))
                    for row_probs, window in zip(probs, indices):
                        word_ids = [-1 if w is None else w for w in encoded.word_ids[int(window)]]
                        if sentences[owners[window]]:
                            merger.add(owners[window], word_ids, row_probs[: len(word_ids)])
                    if bar:
                        bar.update(len(indices))
            if bar:
                bar.close()
        outside = self.label_names.index("O") if "O" in self.label_names else 0
        results = []
        for index in range(len(sentences)):
            scores = merger.word_scores(index, len(self.label_names), outside)
            best = scores.argmax(-1) if len(scores) else np.zeros(0, dtype=int)
            tags = _valid_iob2([self.label_names[i] for i in best])
            results.append((tags, [float(scores[w, i]) for w, i in enumerate(best)]))
        return results


def _valid_iob2(tags: list[str]) -> list[str]:
    """Repair predicted tags so they read as IOB2 (an I-X that starts an entity becomes B-X)."""
    from .data.conll import repair_iob2

    return repair_iob2(tags)[0]


class OnnxSession:
    """An onnxruntime session over an exported graph: padded torch batches in (as int64 arrays, by input name), one
    named output back as numpy."""

    def __init__(self, path: Path, device: str | None = "cpu"):
        try:
            import onnxruntime
        except ImportError:
            raise NLPTransferError(f"{path}: an ONNX export runs in onnxruntime: pip install 'nlp_transfer[onnx]'") from None
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        threads = torch.get_num_threads()  # the same thread budget as torch (OMP_NUM_THREADS)
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path = path

    def run(self, output: str, batch: dict[str, Any]) -> np.ndarray:
        feed = {name: np.asarray(batch[name].cpu() if hasattr(batch[name], "cpu") else batch[name], dtype=np.int64)
                for name in self.inputs}
        return self.session.run([output], feed)[0]


def _onnx_file(folder: Path, sidecar: dict[str, Any], variant: str | None) -> Path:
    files = sidecar["onnx"]["files"]
    variant = variant or sidecar["onnx"]["default"]
    if variant not in files:
        raise NLPTransferError(f"{folder}: this export has {' and '.join(files)} graphs, not {variant}; pass "
                               f"variant={' or '.join(repr(v) for v in files)}")
    return folder / files[variant]


class OnnxClassifier(TextClassifier):
    """An exported sequence classifier (or probe) run by onnxruntime; `predict`, windows and calibration are
    `TextClassifier`'s, only the forward pass differs."""

    def __init__(self, folder: Path, sidecar: dict[str, Any], variant: str | None = None, device: str | None = "cpu"):
        self.session = OnnxSession(_onnx_file(folder, sidecar, variant), device)
        self.runtime = Runtime()
        self.tokenizer = load_tokenizer(str(folder))
        self.max_length = sidecar.get("max_length", 128)
        self.threshold = sidecar.get("threshold", 0.5)
        self.problem_type = sidecar["problem_type"]
        self.label_names = sidecar["label_names"]
        self._collate = DynamicPaddingCollator(self.tokenizer)

    @property
    def device(self) -> str:
        return "cpu"

    def forward(self, batch) -> torch.Tensor:
        return torch.from_numpy(self.session.run("logits", batch))


class OnnxTagger(TokenTagger):
    """An exported token tagger run by onnxruntime; words, windows and entity spans are `TokenTagger`'s."""

    def __init__(self, folder: Path, sidecar: dict[str, Any], variant: str | None = None, device: str | None = "cpu"):
        self.session = OnnxSession(_onnx_file(folder, sidecar, variant), device)
        self.runtime = Runtime()
        self.tokenizer = load_tokenizer(str(folder), for_words=True)
        self.max_length = sidecar.get("max_length", 128)
        self.stride = sidecar.get("stride", 32)
        self.strict = sidecar.get("strict", False)
        self.label_map = sidecar.get("label_map")
        self.label_names = sidecar["label_names"]
        self._collate = DynamicPaddingCollator(self.tokenizer)

    @property
    def device(self) -> str:
        return "cpu"

    def forward(self, batch) -> np.ndarray:
        return self.session.run("probabilities", batch)


class OnnxEncoder:
    """An exported encoder with its pooling (and normalisation) inside the graph: ``encode(texts)`` gives the
    embeddings; `nlp_transfer.embed(encoder, texts, ...)` takes it like an `Encoder` (with the export's pooling)."""

    task = "embedding"

    def __init__(self, folder: Path, sidecar: dict[str, Any], variant: str | None = None, device: str | None = "cpu"):
        self.session = OnnxSession(_onnx_file(folder, sidecar, variant), device)
        self.tokenizer = load_tokenizer(str(folder))
        self.name = sidecar.get("base_model") or str(folder)
        self.settings = EmbedSettings(**sidecar["embedding"])
        self.dim = int(sidecar["dim"])
        self._collate = DynamicPaddingCollator(self.tokenizer)

    def encode(self, texts: Sequence[str], settings: EmbedSettings | None = None, progress=None) -> np.ndarray:
        """float32 [len(texts), dim] in input order; ``settings`` may change the batch size only (pooling, layers,
        normalisation and max_length are fixed in the graph)."""
        if settings is not None:
            fixed = ("pooling", "layers", "normalize", "max_length")
            changed = [k for k in fixed if getattr(settings, k) != getattr(self.settings, k)]
            if changed:
                raise NLPTransferError(f"this ONNX encoder was exported with {', '.join(f'{k}={getattr(self.settings, k)}' for k in changed)}; "
                                       f"export it again for other settings")
        batch_size = settings.batch_size if settings is not None else self.settings.batch_size
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.settings.max_length)
        rows = [{k: encoded[k][i] for k in encoded.keys()} for i in range(len(texts))]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for indices in length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
            out[indices] = self.session.run("embeddings", self._collate([rows[i] for i in indices]))
            if progress is not None:
                progress.update(len(indices))
        return out
