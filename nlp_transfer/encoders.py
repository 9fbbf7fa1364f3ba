"""Embedding extraction: pooled vectors from any encoder, in memory or streamed to disk in chunks.

    from nlp_transfer import embed
    vectors = embed("minilm-l6", ["a gorgeous film", "a dull film"], pooling="mean", normalize=True)
    embed("minilm-l6", texts, output="runs/emb")   # runs/emb/embeddings.npy + embeddings.json

Pooling: ``cls`` (first token), ``mean`` (over real tokens, padding masked), ``max`` (masked). ``layers``:
which hidden states to pool (``-1``: the last layer; ``[-4, -3, -2, -1]``: the mean of the last four;
``0``: the embedding layer). Texts are tokenized once, run in batches sorted by length (little padding),
and returned in input order.

On disk, texts are processed in chunks of ``chunk_size``; each finished chunk is saved atomically, so a killed
run resumes from the last finished chunk and gives the same array as an uninterrupted one. The chunks are then
copied into one ``embeddings.npy`` through a memory map, so memory stays bounded by one chunk.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import NLPTransferError
from .io import save_array_atomic
from .runtime import Runtime

POOLINGS = ("cls", "mean", "max")
DEFAULT_MAX_LENGTH = 256  # tokens embedded per text when the caller does not say (fewer if the model reads fewer)
DTYPES = ("float32", "float16")


@dataclass
class EmbedSettings:
    pooling: str = "mean"
    layers: list[int] = field(default_factory=lambda: [-1])
    normalize: bool = False
    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = 32
    dtype: str = "float32"

    def check(self) -> None:
        if self.pooling not in POOLINGS:
            raise NLPTransferError(f"pooling '{self.pooling}' is not one of {', '.join(POOLINGS)}")
        if self.dtype not in DTYPES:
            raise NLPTransferError(f"dtype '{self.dtype}' is not one of {', '.join(DTYPES)}")
        if not self.layers:
            raise NLPTransferError("layers must name at least one hidden layer, e.g. [-1] or [-4, -3, -2, -1]")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[batch, tokens, dim] + attention mask [batch, tokens] -> [batch, dim]."""
    if pooling == "cls":
        return hidden[:, 0]
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "mean":
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)
    return hidden.masked_fill(keep == 0, torch.finfo(hidden.dtype).min).max(dim=1).values


class Encoder:
    """A pretrained encoder (no task head) with its tokenizer, for embeddings and frozen features."""

    def __init__(self, name: str, trust_remote_code: bool = False, runtime: Runtime | str | None = "auto"):
        """``runtime``: a `Runtime`, or a device name (``auto``: CUDA when present)."""
        from transformers import AutoModel

        from .models import load_pretrained, load_tokenizer

        self.name = name
        self.tokenizer = load_tokenizer(name, trust_remote_code)
        self.model = load_pretrained(AutoModel, name, trust_remote_code).eval()
        self.runtime = runtime if isinstance(runtime, Runtime) else Runtime.resolve(runtime)
        self.model.to(self.runtime.device)
        self.num_layers = int(getattr(self.model.config, "num_hidden_layers", 0))
        self.dim = int(getattr(self.model.config, "hidden_size", 0))

    def check_layers(self, layers: Sequence[int]) -> None:
        for layer in layers:
            if not -(self.num_layers + 1) <= layer <= self.num_layers:
                raise NLPTransferError(
                    f"layer {layer} does not exist: {self.name} has hidden states 0 (embeddings) to {self.num_layers} "
                    f"(or -1 for the last)"
                )

    @property
    def positions(self) -> int | None:
        """How many tokens the model reads at most (None when its config does not say)."""
        from .models import max_positions

        return max_positions(self.model.config)

    def check_max_length(self, max_length: int, where: str = "max_length") -> None:
        """``max_length`` tokens fit the model's position embeddings (``where`` names the setting in the message)."""
        limit = self.positions
        if limit is not None and max_length > limit:
            raise NLPTransferError(f"{where} {max_length} is longer than {self.name} reads ({limit} positions); give "
                                   f"at most {limit}")

    def encode(self, texts: Sequence[str], settings: EmbedSettings, progress=None) -> np.ndarray:
        """float32 [len(texts), dim] in input order."""
        from .data.adapters import length_sorted_batches

        settings.check()
        self.check_layers(settings.layers)
        self.check_max_length(settings.max_length)
        encoded = self.tokenizer(list(texts), truncation=True, max_length=settings.max_length)
        ids = encoded["input_ids"]
        types = encoded.get("token_type_ids")
        pad = self.tokenizer.pad_token_id or 0
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        last_only = list(settings.layers) == [-1] or list(settings.layers) == [self.num_layers]
        device = next(self.model.parameters()).device
        batches = length_sorted_batches([len(i) for i in ids], settings.batch_size)
        vectors_by_batch = []  # kept on the device: one copy to the host at the end, not a sync per batch on a GPU
        with torch.inference_mode():
            for batch in batches:
                width = max(len(ids[i]) for i in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                token_types = torch.zeros((len(batch), width), dtype=torch.long) if types is not None else None
                for row, i in enumerate(batch):
                    n = len(ids[i])
                    input_ids[row, :n] = torch.tensor(ids[i])
                    mask[row, :n] = 1
                    if token_types is not None:
                        token_types[row, :n] = torch.tensor(types[i])
                inputs = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
                if token_types is not None:
                    inputs["token_type_ids"] = token_types.to(device)
                with self.runtime.autocast():
                    output = self.model(**inputs, output_hidden_states=not last_only)
                if last_only:
                    hidden = output.last_hidden_state
                else:
                    hidden = torch.stack([output.hidden_states[layer] for layer in settings.layers]).mean(dim=0)
                vectors = pool(hidden.float(), inputs["attention_mask"], settings.pooling)
                if settings.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                vectors_by_batch.append(vectors)
                if progress is not None:
                    progress.update(len(batch))
            if batches:
                out[np.concatenate(batches)] = torch.cat(vectors_by_batch).cpu().numpy()
        return out


def _input_hash(texts: Sequence[str], model: str, settings: EmbedSettings) -> str:
    digest = hashlib.sha256(json.dumps({"model": model, **asdict(settings)}, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def embed(model: Any, texts: Sequence[str], output: str | Path | None = None, pooling: str = "mean",
          layers: int | Sequence[int] = -1, normalize: bool = False, batch_size: int = 32, max_length: int | None = None,
          dtype: str = "float32", chunk_size: int = 8192, progress: bool = False,
          trust_remote_code: bool = False, device: str | None = "auto", precision: str = "float32") -> np.ndarray:
    """Embeddings of ``texts`` (input order). With ``output`` (a folder) they are streamed to
    ``output/embeddings.npy`` chunk by chunk (resumable) and returned as a read-only memory map.
    ``device`` (``auto``: CUDA when present) and ``precision`` (autocast on an accelerator) say where the encoder
    runs; ``dtype`` is the storage type of the vectors."""
    settings = EmbedSettings(pooling, [layers] if isinstance(layers, int) else list(layers), normalize,
                             max_length or DEFAULT_MAX_LENGTH, batch_size, dtype)
    settings.check()
    if output is not None:  # before the model loads: a wrong path fails fast, nothing is touched
        from .io import check_folder_target

        check_folder_target(output, "output")
    texts = [str(t) for t in texts]
    # an Encoder, or anything that encodes like one (an ONNX export's OnnxEncoder), or a model name / folder
    encoder = (Encoder(str(model), trust_remote_code, Runtime.resolve(device, precision))
               if isinstance(model, (str, Path)) else model)
    if max_length is None:  # 256 tokens, or fewer when the model reads fewer; an ONNX export: what it was made with
        settings.max_length = (min(DEFAULT_MAX_LENGTH, encoder.positions or DEFAULT_MAX_LENGTH)
                               if isinstance(encoder, Encoder) else
                               getattr(getattr(encoder, "settings", None), "max_length", DEFAULT_MAX_LENGTH))
    elif isinstance(encoder, Encoder):  # a length the user asked for: refused before anything is written
        encoder.check_max_length(settings.max_length)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="embedding", unit="text")
    try:
        if output is None:
            return encoder.encode(texts, settings, bar).astype(dtype, copy=False)
        return _embed_to_disk(encoder, texts, Path(output), settings, chunk_size, bar)
    finally:
        if bar is not None:
            bar.close()


def _embed_to_disk(encoder: Encoder, texts: list[str], out: Path, settings: EmbedSettings, chunk_size: int,
                   bar) -> np.ndarray:
    out.mkdir(parents=True, exist_ok=True)
    chunks = out / ".chunks"
    digest = _input_hash(texts, encoder.name, settings)
    state_file = chunks / "state.json"
    if chunks.is_dir():
        try:
            same = json.loads(state_file.read_text()).get("input_sha256") == digest
        except (OSError, ValueError):
            same = False
        if not same:  # an unfinished run of other texts or settings: start over
            shutil.rmtree(chunks)
    chunks.mkdir(exist_ok=True)
    state_file.write_text(json.dumps({"input_sha256": digest}))
    started = time.perf_counter()
    starts = range(0, len(texts), chunk_size)
    resumed = 0
    for number, start in enumerate(starts):
        path = chunks / f"chunk-{number:06d}.npy"
        part = texts[start:start + chunk_size]
        if path.is_file():
            resumed += 1
            if bar is not None:
                bar.update(len(part))
            continue
        save_array_atomic(path, encoder.encode(part, settings, bar).astype(settings.dtype))
    final = out / "embeddings.npy"
    tmp = out / ".embeddings.npy.tmp"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=settings.dtype, shape=(len(texts), encoder.dim))
    for number, start in enumerate(starts):
        array[start:start + chunk_size] = np.load(chunks / f"chunk-{number:06d}.npy")
    array.flush()
    del array
    os.replace(tmp, final)
    sidecar = {"model": encoder.name, **asdict(settings), "dim": encoder.dim, "count": len(texts),
               "input_sha256": digest, "chunks": len(starts), "resumed_chunks": resumed,
               "seconds": round(time.perf_counter() - started, 2)}
    from .io import write_json_atomic

    write_json_atomic(out / "embeddings.json", sidecar)
    shutil.rmtree(chunks)
    return np.load(final, mmap_mode="r")


def load_embeddings(folder: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """An ``embed(..., output=folder)`` result: the memory-mapped array and its sidecar."""
    folder = Path(folder)
    return np.load(folder / "embeddings.npy", mmap_mode="r"), json.loads((folder / "embeddings.json").read_text())
