"""Embedding extraction: pooled vectors from any encoder, in memory or streamed to disk in chunks.

    from nlp_transfer import embed
    vectors = embed("minilm-l6", ["a gorgeous film", "a dull film"], pooling="mean", normalize=True)
    embed("minilm-l6", texts, output="runs/emb")   # runs/emb/embeddings.npy + embeddings.json

Pooling: ``cls`` (first token), ``mean`` (over real tokens, padding masked), ``max`` (masked). ``layers``:
which hidden states to pool (``-1``: the last layer; ``[-4, -3, -2, -1]``: the mean of the last four;
``0``: the embedding layer). Texts are tokenized once, run in batches sorted by length (little padding),
and returned in input order.

On disk (``output=``), texts of any iterable are read ``chunk_size`` at a time and never held whole; each finished
chunk is saved atomically with the digest of its texts, so a killed run resumes (every chunk whose texts and settings
match is read again but not encoded again) and gives the same array as an uninterrupted one. Under accelerate launch /
torchrun chunk k is encoded by process k mod N (`data.chunks.Shard`). The chunks are then joined into one
``embeddings.npy``, one chunk in memory at a time.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.chunks import Shard, chunked, release_freed_memory
from .errors import NLPTransferError
from .io import save_array_atomic, write_json_atomic
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


def embed(model: Any, texts: Iterable[str], output: str | Path | None = None, pooling: str = "mean",
          layers: int | Sequence[int] = -1, normalize: bool = False, batch_size: int = 32, max_length: int | None = None,
          dtype: str = "float32", chunk_size: int = 8192, progress: bool = False,
          trust_remote_code: bool = False, device: str | None = "auto", precision: str = "float32",
          total: int | None = None) -> np.ndarray:
    """Embeddings of ``texts`` (input order). Without ``output`` they are computed in memory and returned as an array.

    With ``output`` (a folder) ``texts`` may be any iterable, a generator included: it is read once, ``chunk_size``
    texts at a time, each chunk's vectors are saved as soon as they are ready, and at the end the chunks are joined into
    ``output/embeddings.npy`` (+ ``embeddings.json``), returned as a read-only memory map. The same call after a kill
    keeps the saved chunks whose texts and settings match; under ``accelerate launch`` / ``torchrun`` chunk k is
    encoded by process k mod N and the main process joins them into the file one process would write.

    ``device`` (``auto``: CUDA when present) and ``precision`` (autocast on an accelerator) say where the encoder
    runs; ``dtype`` is the storage type of the vectors; ``total`` (the texts expected, e.g. a file's line count)
    gives the progress bar its length when ``texts`` has none."""
    settings = EmbedSettings(pooling, [layers] if isinstance(layers, int) else list(layers), normalize,
                             max_length or DEFAULT_MAX_LENGTH, batch_size, dtype)
    settings.check()
    if chunk_size < 1:
        raise NLPTransferError(f"chunk_size {chunk_size}: give at least 1 (texts embedded and saved together)")
    shard = Shard()
    if output is not None:  # before the model loads: a wrong path fails fast, nothing is touched
        from .io import check_folder_target

        check_folder_target(output, "output")
        shard = Shard.current()
    # an Encoder, or anything that encodes like one (an ONNX export's OnnxEncoder), or a model name / folder
    if isinstance(model, (str, Path)):
        runtime = Runtime.resolve(device, precision)
        model = Encoder(str(model), trust_remote_code, replace(runtime, device=shard.local_device(runtime.device)))
    _fit_max_length(model, settings, max_length)
    bar = None
    if progress and shard.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts) if total is None and isinstance(texts, Sized) else total, desc="embedding",
                   unit="text", smoothing=0.05)
    try:
        if output is None:
            return model.encode([str(t) for t in texts], settings, bar).astype(dtype, copy=False)
        return _embed_to_disk(model, texts, Path(output), settings, chunk_size, bar, shard)
    finally:
        if bar is not None:
            bar.close()


def _fit_max_length(encoder: Encoder, settings: EmbedSettings, asked: int | None) -> None:
    """Without a length asked for: 256 tokens, or fewer when the model reads fewer (an ONNX export: what it was made
    with). A length asked for is refused before anything is written when the model reads fewer."""
    if asked is None:
        settings.max_length = (min(DEFAULT_MAX_LENGTH, encoder.positions or DEFAULT_MAX_LENGTH)
                               if isinstance(encoder, Encoder) else
                               getattr(getattr(encoder, "settings", None), "max_length", DEFAULT_MAX_LENGTH))
    elif isinstance(encoder, Encoder):
        encoder.check_max_length(settings.max_length)


def _embed_to_disk(encoder: Encoder, texts: Iterable[str], out: Path, settings: EmbedSettings, chunk_size: int,
                   bar, shard: Shard) -> np.ndarray:
    """``texts`` read once, chunk by chunk: each chunk this process owns is encoded and saved, unless an unfinished
    run saved it from the same texts with the same settings; then the main process joins them into embeddings.npy."""
    started = time.perf_counter()
    key = hashlib.sha256(json.dumps({"model": encoder.name, **asdict(settings), "chunk_size": chunk_size},
                                    sort_keys=True).encode()).hexdigest()
    chunks = ChunkFiles(out / ".chunks")
    finished = chunks.open(key, shard)
    if bar is not None and shard.world > 1:
        print(f"nlp-transfer: embedding on {shard.world} processes (chunk k on process k mod {shard.world})", flush=True)
    if bar is not None and finished:
        print(f"nlp-transfer: resuming: {len(finished)} chunks of an unfinished run in {chunks.folder} (those of the "
              f"same texts are kept)", flush=True)
    digests, counts = [], []
    for number, part in enumerate(chunked(_read(texts, chunks.folder), chunk_size)):
        digests.append(_texts_digest(part))
        counts.append(len(part))
        if shard.owns(number) and chunks.digest(number) != digests[-1]:
            chunks.save(number, digests[-1], encoder.encode(part, settings, bar).astype(settings.dtype))
            release_freed_memory()
        elif bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.total = bar.n  # a line count includes blank lines and headers: a finished run ends at 100%
    shard.wait()
    final = out / "embeddings.npy"
    if shard.is_main:
        chunks.join(final, digests, counts, encoder.dim, settings.dtype)
        write_json_atomic(out / "embeddings.json", {
            "model": encoder.name, **asdict(settings), "dim": encoder.dim, "count": sum(counts),
            "input_sha256": hashlib.sha256((key + "".join(digests)).encode()).hexdigest(), "chunks": len(digests),
            "resumed_chunks": sum(finished.get(number) == digest for number, digest in enumerate(digests)),
            "seconds": round(time.perf_counter() - started, 2)})
        shutil.rmtree(chunks.folder)
    shard.wait()
    return np.load(final, mmap_mode="r")


def _read(texts: Iterable[str], kept: Path) -> Iterator[str]:
    """``texts`` as strings; a bad row (a reader's one-line error) also says where the chunks before it are kept."""
    try:
        for text in texts:
            yield str(text)
    except NLPTransferError as exc:
        raise NLPTransferError(f"{exc} (the chunks embedded before it are kept in {kept}: the same command resumes "
                               f"from them once the row is fixed)") from None


def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class ChunkFiles:
    """The chunks of an unfinished ``embed(..., output=folder)`` run, in ``folder/.chunks``: per finished chunk k
    ``chunk-<k>.npy`` (its vectors) and then ``chunk-<k>.json`` (the digest of its texts and their count), and
    ``settings.json`` (the digest of the model and settings every chunk was made with). Each process writes only the
    chunks it owns; any process may read them all."""

    folder: Path

    def path(self, number: int, suffix: str) -> Path:
        return self.folder / f"chunk-{number:06d}{suffix}"

    def open(self, key: str, shard: Shard) -> dict[int, str]:
        """Ready for a run with settings ``key``: the main process removes an unfinished run of other settings (the
        others wait for it). Returns (main process) the chunks finished before: number -> digest of their texts."""
        finished = {}
        if shard.is_main:
            state = self.folder / "settings.json"
            try:
                same = json.loads(state.read_text(encoding="utf-8")).get("settings_sha256") == key
            except (OSError, ValueError, AttributeError):
                same = False
            if self.folder.is_dir() and not same:
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(state, {"settings_sha256": key})
            numbers = (int(path.stem.removeprefix("chunk-")) for path in self.folder.glob("chunk-*.json"))
            finished = {number: digest for number in numbers if (digest := self.digest(number))}
        shard.wait()
        return finished

    def digest(self, number: int) -> str | None:
        """The digest of the texts of chunk ``number`` when it is finished (vectors and record saved), else None."""
        try:
            record = json.loads(self.path(number, ".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record.get("texts_sha256") if self.path(number, ".npy").is_file() else None

    def save(self, number: int, digest: str, vectors: np.ndarray) -> None:
        save_array_atomic(self.path(number, ".npy"), vectors)
        write_json_atomic(self.path(number, ".json"), {"texts_sha256": digest, "count": len(vectors)})

    def join(self, final: Path, digests: list[str], counts: list[int], dim: int, dtype: str) -> None:
        """Every chunk, in order, into the .npy file ``final``, one chunk in memory at a time and with plain writes (the
        pages of a memory map being written would count the whole array in the process's RSS). It is written in the
        chunk folder and renamed into place: a kill while joining leaves no partial file beside the output. Each chunk
        must hold the texts this process read (a process that wrote another input's chunk is an error)."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": (sum(counts), dim)}
        joined = self.folder / "embeddings.npy.joining"
        with joined.open("wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            for number, (digest, count) in enumerate(zip(digests, counts)):
                vectors = np.load(self.path(number, ".npy"))
                if self.digest(number) != digest or vectors.shape != (count, dim):
                    raise NLPTransferError(f"{self.path(number, '.npy')}: holds other texts than chunk {number} of "
                                           f"this input; remove {self.folder} and run again")
                handle.write(np.ascontiguousarray(vectors, dtype=dtype).data)
        os.replace(joined, final)


def load_embeddings(folder: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """An ``embed(..., output=folder)`` result: the memory-mapped array and its sidecar."""
    folder = Path(folder)
    return np.load(folder / "embeddings.npy", mmap_mode="r"), json.loads((folder / "embeddings.json").read_text())
