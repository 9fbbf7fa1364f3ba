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

from .calibration import Calibration
from .data.adapters import DynamicPaddingCollator, encode_for_prediction, length_sorted_batches
from .errors import NLPTransferError
from .io import read_run_json
from .checks import check_value
from .models import load_config, load_pretrained, load_tokenizer, max_positions, resolve
from .tasks.classification import LabelPredictor, short_problem_type
from .runtime import Runtime
from .tasks.base import TASKS, get_task
from .tasks.ner import WordTagger
from .tasks.embeddings import EmbedSettings, Encoder


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
        check_positions(folder, "embedding.max_length", self.settings.max_length, self.encoder.model.config)
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
                 runtime: Runtime | None = None):
        self.runtime = runtime or Runtime()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stride = stride
        self.strict = strict  # seqeval strict mode when this model is evaluated
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
        from .tasks.ner import STRATEGIES, WindowMerger, tokenize_words

        if strategy not in STRATEGIES:
            raise NLPTransferError(f"strategy '{strategy}' is not one of {', '.join(STRATEGIES)}")
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


ONNX_KINDS = ("classifier", "tagger", "encoder")  # what an export folder holds (nlp_transfer.onnx_export)


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


def load_onnx(path: str | Path, sidecar: dict[str, Any], variant: str | None = None, device: str | None = "cpu"):
    """An export folder's predictor: `OnnxClassifier`, `OnnxTagger` or `OnnxEncoder` by the kind it holds."""
    kind = sidecar["onnx"].get("kind")
    classes = {"classifier": OnnxClassifier, "tagger": OnnxTagger, "encoder": OnnxEncoder}
    if kind not in classes:
        raise NLPTransferError(f"{path}: nlp_transfer.json names ONNX kind {kind!r}, not one of {', '.join(ONNX_KINDS)}")
    return classes[kind](Path(path), sidecar, variant, device)


def load_adapter(folder: str, loader, base_model: str, trust_remote_code: bool = False):
    """A LoRA run's folder: the base model with the saved head config, then the adapter (and head) on top."""
    from peft import PeftModel

    config = load_config(folder, trust_remote_code=trust_remote_code)
    base = load_pretrained(loader, base_model, trust_remote_code, config=config)
    return PeftModel.from_pretrained(base, folder).eval()


def export_merged(path: str | Path, output: str | Path) -> Path:
    """Fold a LoRA run's adapter into its base model and write a plain transformers folder (atomically)."""
    import shutil

    from .io import check_folder_target, move_contents

    output = check_folder_target(output, "output")
    if Path(output).resolve() == Path(path).resolve():
        raise NLPTransferError(f"output {output}: is the run folder itself; write the merged model to another folder")
    model = load_model(path)
    inner = model.model
    if not hasattr(inner, "merge_and_unload"):
        raise NLPTransferError(f"{path}: not a LoRA run (no adapter to merge); it already loads with plain transformers")
    merged = inner.merge_and_unload()
    output = Path(output)
    staging = output.parent / f".{output.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    model.tokenizer.save_pretrained(staging)
    sidecar = read_sidecar(path)
    sidecar.pop("adapter", None)
    (staging / "nlp_transfer.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    for name in ("metrics.json", "recipe.yaml", "README.md"):
        if (Path(path) / name).is_file():
            shutil.copy(Path(path) / name, staging / name)
    move_contents(staging, output)
    return output


SIDECAR = "nlp_transfer.json"
TASK_HEADS = {task.name: task.head_suffix for task in TASKS.values() if task.auto_model}  # tasks with a predictor
class NoTaskHeadError(NLPTransferError):
    """`load_model` on a folder that holds an encoder (a bare checkpoint or a masked-LM run), not a task model;
    callers that also take encoders (ONNX export) catch this one."""


NO_HEAD = ("Model", "ForMaskedLM", "ForPreTraining", "LMHeadModel", "ForCausalLM")  # encoders, language-model heads


# The sidecar's values that prediction uses, checked like a recipe's (types, ranges) when a folder is read: a file
# edited by hand or copied from another run fails here with the file and key, not deep inside the model.
SIDECAR_VALUES: dict[str, tuple[Any, dict[str, Any]]] = {
    "task": (str, {}),  # which tasks load is `_task_of`'s to say (an ONNX encoder export says "embedding")
    "max_length": (int, {"low": 8}),
    "stride": (int, {"low": 0}),
    "threshold": (float, {"low": 0, "high": 1, "low_open": True, "high_open": True}),
    "strict": (bool, {}),
    "label_names": (list[str], {}),
    "problem_type": (str, {"choices": ("single_label", "multi_label", "regression")}),
}
SIDECAR_FIX = "restore the value the run was trained with (see its recipe.yaml), or train the run again"


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The run's nlp_transfer.json ({} for a model from elsewhere), with a one-line error naming the file and key
    when it is corrupt or a value has the wrong type or range (`SIDECAR_VALUES`)."""
    sidecar_path = Path(path) / SIDECAR
    if not sidecar_path.is_file():
        return {}
    sidecar = read_run_json(sidecar_path)
    for key, (hint, limits) in SIDECAR_VALUES.items():
        if sidecar.get(key) is not None:
            try:
                sidecar[key] = check_value(sidecar[key], hint, limits, key, str(sidecar_path))
            except NLPTransferError as exc:
                raise NLPTransferError(f"{exc}; {SIDECAR_FIX}") from None
    return sidecar


def check_positions(path: str | Path, key: str, max_length: int, config) -> None:
    """``max_length`` (the sidecar's ``key``) fits the model's position embeddings, else a one-line error."""
    limit = max_positions(config)
    if limit is not None and max_length > limit:
        raise NLPTransferError(f"{Path(path) / SIDECAR}: {key} {max_length} is longer than the model reads ({limit} "
                               f"positions); set {key} to at most {limit} there, or train the run again")


def _task_of(path: str | Path, location: str, sidecar: dict[str, Any], trust_remote_code: bool) -> str:
    """Which head the folder holds: its sidecar says (our runs), else its config's architectures. A folder
    without a task head is refused: loading it would put a randomly initialised head on it, whose
    predictions are confident noise."""
    task = sidecar.get("task")
    fix = f"train a task on it first, e.g. model: {path} in a classification recipe"
    if task in TASKS and task not in TASK_HEADS:  # masked-LM: an adapted encoder, nothing to predict with
        raise NoTaskHeadError(f"{path}: this is a {TASKS[task]} run (domain-adapted encoder), not a task model; {fix} "
                               f"(nlp-transfer embed gives its embeddings as they are)")
    if task is not None:
        if task not in TASK_HEADS:
            raise NLPTransferError(f"{path}: {SIDECAR} names task '{task}', which has no predictor; load_model "
                                   f"loads {' and '.join(TASK_HEADS)} runs")
        return task
    architectures = list(load_config(location, trust_remote_code=trust_remote_code).architectures or [])
    for name, suffix in TASK_HEADS.items():
        if any(str(a).endswith(suffix) for a in architectures):
            return name
    if not architectures or all(str(a).endswith(NO_HEAD) for a in architectures):
        what = ", ".join(architectures) or "config.json names no architectures"
        raise NoTaskHeadError(f"{path}: this is a bare encoder / masked-LM checkpoint with no task head ({what}); "
                               f"{fix} (nlp-transfer embed gives its embeddings as they are)")
    raise NLPTransferError(f"{path}: its head ({', '.join(architectures)}) is neither a sequence nor a token "
                           f"classifier, the two heads load_model predicts with; {fix}")


def load_model(path: str | Path, device: str | None = "auto", trust_remote_code: bool = False,
               precision: str = "float32", variant: str | None = None):
    """Load a directory written by ``nlp-transfer train``: a `TextClassifier` or a `TokenTagger` (or a
    probe). A folder without a task head (a masked-LM run, a bare encoder) raises NLPTransferError. A classifier
    applies the folder's calibration.json (temperature, tuned thresholds); ``predict(..., calibrated=False)`` and
    ``logits`` give the raw scores.

    ``device``: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda[:N]`` or ``mps``; ``precision``:
    ``float32``, or ``bfloat16`` / ``float16`` autocast on an accelerator. An ONNX export (``nlp-transfer export
    --format onnx``) loads an onnxruntime predictor with the same API; ``variant`` picks its ``fp32`` or ``int8``
    graph (default: the one the export was asked for)."""
    sidecar = read_sidecar(path)
    if sidecar.get("backend") == "onnx":
        model = load_onnx(path, sidecar, variant, device)
    else:
        if variant is not None:
            raise NLPTransferError(f"{path}: variant={variant!r} picks the graph of an ONNX export; this folder is not one")
        model = _load(path, device, trust_remote_code, precision)
    if isinstance(model, LabelPredictor):  # the temperature and thresholds fitted on validation, if any
        model.calibration = Calibration.read(path)
    return model


def _load(path: str | Path, device: str | None, trust_remote_code: bool, precision: str):
    from .static.predictors import SIDECAR as STATIC_SIDECAR, load_static

    if (Path(path) / STATIC_SIDECAR).is_file():  # a static-embedding baseline's run (nlp_transfer.static)
        return load_static(path, device)
    runtime = Runtime.resolve(device, precision)
    import transformers

    sidecar = read_sidecar(path)
    if sidecar.get("backend") == "probe" or sidecar.get("strategy") == "feature-extraction":  # probe weights + encoder
        return ProbeClassifier(Path(path), sidecar, trust_remote_code, runtime)
    location = resolve(str(path))
    task = get_task(_task_of(path, location, sidecar, trust_remote_code))  # refuses a folder without a task head
    loader = getattr(transformers, task.auto_model)
    try:
        if sidecar.get("adapter"):
            model = load_adapter(location, loader, sidecar["adapter"]["base_model"], trust_remote_code)
        else:
            model = load_pretrained(loader, location, trust_remote_code)
    except (OSError, ValueError) as exc:  # peft's errors; load_pretrained raises one-line errors itself
        raise NLPTransferError(f"cannot load model '{path}': {str(exc).strip().splitlines()[0]}") from None
    model.to(runtime.device)
    check_positions(path, "max_length", sidecar.get("max_length", 128), model.config)
    tokenizer = load_tokenizer(location, trust_remote_code, for_words=task.words_input)
    if task.words_input:  # words in, one tag per word out
        return TokenTagger(model, tokenizer, sidecar.get("max_length", 128), sidecar.get("stride", 32),
                           sidecar.get("strict", False), runtime)
    return TextClassifier(model, tokenizer, sidecar.get("max_length", 128), sidecar.get("threshold", 0.5), runtime)
