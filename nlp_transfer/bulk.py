"""Predicting on files of any size: the input is read in chunks of rows, each chunk is predicted and its rows are
appended to ``OUTPUT.partial`` as soon as they are ready, so memory stays flat in the input size.

    predict_file(rows_of, "big.txt", "big.jsonl", settings={...})   # rows_of(texts) -> one output row per text

- **Resumable**: after each chunk the rows are flushed to disk and ``OUTPUT.partial.json`` records how many chunks
  and bytes are complete. The same command after a kill truncates the partial file to the last complete chunk and
  continues with the next one (no duplicates, no gaps). Other settings or a changed input start over.
- **Never presented as complete too early**: the output gets its name only when every row is written; until then, and
  after a bad row stops the run, the rows so far are in ``OUTPUT.partial``.
- **Sharded under accelerate launch / torchrun**: chunk k goes to process k mod N (`data.chunks.Shard`, shared with
  `encoders.embed`); each process writes its own part (``OUTPUT.partial-rank<r>``, resumable the same way) and the main
  process joins them in input order, so the output is identical to one process's.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.chunks import Shard, chunked, release_freed_memory
from .errors import NLPTransferError
from .io import atomic_open, write_json_atomic

CHUNK_ROWS = 4096  # rows predicted and written together: the resume granularity


@dataclass(frozen=True)
class Part:
    """This process's part of the output: its chunks (``shard``) written to ``path``, their progress in ``state``."""

    shard: Shard
    path: Path
    state: Path

    @classmethod
    def of(cls, output: Path) -> Part:
        """The whole output in one process (``OUTPUT.partial``), a rank's part under accelerate launch / torchrun."""
        shard = Shard.current()
        name = f"{output.name}.partial" if shard.world == 1 else f"{output.name}.partial-rank{shard.rank}"
        path = output.with_name(name)
        return cls(shard, path, path.with_name(path.name + ".json"))


def predict_file(rows_of: Callable[[list], list[dict]], inputs: Iterable[tuple[int, Any]], output: str | Path,
                 settings: dict[str, Any], source: str | Path, chunk_rows: int = CHUNK_ROWS,
                 total: int | None = None) -> int:
    """Predict every input (``(line, text)`` pairs, read lazily) in chunks with ``rows_of`` and write one JSON line per
    input to ``output`` in input order; returns the rows written. ``settings`` (model, options) and ``source`` (the
    input file: its path, size and modification time) decide whether an unfinished run may be resumed."""
    output = Path(output)
    part = Part.of(output)
    shard = part.shard
    key = _resume_key(source, settings, chunk_rows, shard.world)
    done, offset = _resume(part, key)
    bar = _bar(total, shard.is_main)
    counts = list(done)
    try:
        with open(part.path, "r+b" if offset else "wb") as handle:
            handle.truncate(offset)
            handle.seek(offset)
            for chunk, rows in enumerate(chunked(inputs, chunk_rows)):
                if not shard.owns(chunk) or chunk // shard.world < len(done):
                    _advance(bar, len(rows))
                    continue
                for row in rows_of([text for _, text in rows]):
                    handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
                counts.append(len(rows))
                write_json_atomic(part.state, {"key": key, "chunks": counts, "bytes": handle.tell()})
                _advance(bar, len(rows))
                release_freed_memory()
            write_json_atomic(part.state, {"key": key, "chunks": counts, "bytes": handle.tell()})  # even with none
        if bar is not None:
            bar.total = bar.n  # the line count included blank lines and headers: a finished run ends at 100%
    except NLPTransferError as exc:
        raise NLPTransferError(f"{exc} (the predictions before it are in {part.path}, which is not complete)") from None
    finally:
        if bar is not None:
            bar.close()
    return _complete(output, part, counts)


def _resume_key(source: str | Path, settings: dict[str, Any], chunk_rows: int, world: int) -> str:
    stat = Path(source).stat()
    identity = {"input": str(Path(source).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "settings": settings, "chunk_rows": chunk_rows, "world": world}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _resume(part: Part, key: str) -> tuple[list[int], int]:
    """(row counts of the chunks this part completed, bytes of its file they fill) to continue from; nothing when
    there is no unfinished run of the same input and settings."""
    try:
        state = json.loads(part.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], 0
    if state.get("key") != key or not part.path.is_file() or part.path.stat().st_size < state.get("bytes", 0):
        return [], 0
    if part.shard.is_main and state["chunks"]:
        print(f"nlp-transfer: resuming after {sum(state['chunks'])} rows already in {part.path}", flush=True)
    return list(state["chunks"]), int(state["bytes"])


def _complete(output: Path, part: Part, counts: list[int]) -> int:
    """Give the finished output its name: the one part renamed, or (main process, once every process is done)
    the parts joined in input order. Returns the rows of the whole output."""
    shard = part.shard
    if shard.world == 1:
        os.replace(part.path, output)
        part.state.unlink(missing_ok=True)
        return sum(counts)
    shard.wait()
    rows = _join(output, shard.world) if shard.is_main else 0
    shard.wait()
    return rows


def _join(output: Path, world: int) -> int:
    """Interleave the ranks' parts chunk by chunk (chunk k came from rank k mod world) into ``output``."""
    parts = [output.with_name(f"{output.name}.partial-rank{rank}") for rank in range(world)]
    counts = [json.loads(part.with_name(part.name + ".json").read_text(encoding="utf-8"))["chunks"] for part in parts]
    handles = [part.open("rb") for part in parts]
    rows = 0
    try:
        with atomic_open(output, binary=True) as out:
            for chunk in range(sum(len(c) for c in counts)):
                rank, index = chunk % world, chunk // world
                for _ in range(counts[rank][index]):
                    out.write(handles[rank].readline())
                rows += counts[rank][index]
    finally:
        for handle in handles:
            handle.close()
    for part in parts:
        part.unlink()
        part.with_name(part.name + ".json").unlink(missing_ok=True)
    return rows


def _bar(total: int | None, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predicting", unit="row", smoothing=0.05)


def _advance(bar, rows: int) -> None:
    if bar is not None:
        bar.update(rows)
