"""Splits larger than memory: the checked rows of a split written once to a memory-mapped Arrow file, and read from
it by every later run (issue 29).

    dataset = cached_split(identity, rows, empty="no rows", name="train")   # a datasets.Dataset over CACHE/<key>.arrow

- **Written as read**: rows come from the streaming readers one at a time and go to disk in batches through
  ``datasets``' own `ArrowWriter`; memory stays flat in the file size, and a bad row is the readers' one-line error
  (the unfinished file is removed, nothing half-written is ever found by a later run: it is renamed into place only
  when complete).
- **Keyed by content**: ``identity`` holds the files' content digests (`file_identity`) and everything that shapes
  the rows (card settings, label order); a second run with the same files and settings opens the cached file
  without reading the text again, an edited file gets a new key.
- **Where**: ``$NLP_TRANSFER_CACHE/data``, by default ``~/.cache/nlp_transfer/data``; any file there may be deleted at any time
  (it is written again when needed). ``datasets`` keeps its tokenized copies (`Dataset.map`) beside it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import NLPTransferError
from ..io import cache_folder, write_text_atomic

FORMAT = 1  # bump when the rows written for the same inputs change, so old files are not read as new ones
WRITER_BATCH = 10_000  # rows per Arrow record batch: the memory held while writing
DIGEST_BLOCK = 8 << 20


def cache_dir() -> Path:
    return cache_folder("data")


def file_identity(location: str | Path) -> dict[str, Any]:
    """What decides whether a cached split is still the file's: the BLAKE2b digest of a file's bytes (about a second
    per GB, remembered for the file's path, size, inode and modification time, so an unchanged file is read once);
    for a saved ``datasets`` folder the names, sizes and modification times of its files; for a hub id the id (its
    cache pins a revision)."""
    path = Path(location)
    if path.is_file():
        return {"file": str(location), "blake2b": _content_digest(path)}
    if path.is_dir():
        stats = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                       for p in path.rglob("*") if p.is_file())
        return {"folder": str(location), "files": stats}
    return {"hub": str(location)}


def _content_digest(path: Path) -> str:
    stat = path.stat()
    seen = json.dumps([str(path.resolve()), stat.st_size, stat.st_ino, stat.st_mtime_ns])
    memo = cache_dir() / "digests" / f"{hashlib.sha256(seen.encode()).hexdigest()}.txt"
    if memo.is_file():
        return memo.read_text(encoding="utf-8").strip()
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as handle:
        while block := handle.read(DIGEST_BLOCK):
            digest.update(block)
    write_text_atomic(memo, digest.hexdigest())
    return digest.hexdigest()


def cache_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({**identity, "format": FORMAT}, sort_keys=True, default=str).encode()).hexdigest()


def cached_split(identity: Callable[[], dict[str, Any]], rows: Callable[[], Iterator[dict]], empty: str,
                 name: str = "split", total: Callable[[], int | None] | None = None):
    """The rows of ``rows()`` as a `datasets.Dataset` memory-mapped from the cache: opened when a file with this
    ``identity()`` is there, else written first, with a progress bar over ``total()`` rows (a cheap count, asked for
    only then). ``empty``: the error when there are no rows. Says in one line which it was and what it took. Under
    accelerate launch the main process writes and the others open what it wrote."""
    import datasets

    from ..runtime import is_main_process
    from .chunks import Shard

    started = time.perf_counter()
    with Shard.current().main_first():
        path = cache_dir() / f"{cache_key(identity())}.arrow"
        found = path.is_file()
        if not found:
            _write(path, rows(), f"caching {name}", total() if total else None, empty)
        dataset = datasets.Dataset.from_file(str(path))
    if is_main_process():
        print(f"nlp-transfer: {name}: {len(dataset):,} rows {'opened from' if found else 'written to'} the Arrow cache "
              f"in {time.perf_counter() - started:.1f} s ({path})", flush=True)
    return dataset


def _write(path: Path, rows: Iterator[dict], desc: str, total: int | None, empty: str) -> None:
    from datasets.arrow_writer import ArrowWriter
    from tqdm.auto import tqdm

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial")
    written = 0
    try:
        with tqdm(total=total, desc=desc, unit="row", mininterval=1.0, disable=total is not None and total < WRITER_BATCH) as bar:
            writer = ArrowWriter(path=str(tmp), writer_batch_size=WRITER_BATCH)
            try:
                for row in rows:
                    writer.write(row)
                    written += 1
                    if written % 1000 == 0:
                        bar.update(1000)
                if written and writer.finalize()[0] != written:  # (rows, bytes) as written
                    raise NLPTransferError(f"{path}: the Arrow cache lost rows while writing; delete {path.parent} and retry")
            finally:
                writer.close()
            bar.update(written % 1000)
        if not written:
            raise NLPTransferError(empty)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class MappedPages:
    """Hands back the pages of a cached split's memory map that reading has touched (Linux; elsewhere nothing).

    Reading rows of a memory-mapped file maps its pages into the process, and they stay counted in its resident
    memory until unmapped. Rows read at random touch pages all over the file, and the kernel maps more than the row
    around each one (here about 0.9 MB a row, the page cache's large folios): measured on 640 random rows, +142 MB
    for a 200 MB corpus and +581 MB for a 2 GB one. ``release()`` unmaps them (``madvise(MADV_DONTNEED)`` on a
    read-only file mapping: the data stays in the file and the page cache, the next read maps it again), so resident
    memory stays flat in the file size. A call takes well under a millisecond."""

    DONTNEED = 4

    def __init__(self, dataset):
        self.paths = {os.path.realpath(entry["filename"]) for entry in dataset.cache_files}
        self._ranges: list[tuple[int, int]] | None = None
        self._madvise = None

    def __getstate__(self) -> dict:  # a DataLoader worker finds its own mappings (addresses differ after spawn)
        return {"paths": self.paths, "_ranges": None, "_madvise": None}

    def release(self) -> None:
        if self._ranges is None:
            self._ranges, self._madvise = self._find()
        for start, end in self._ranges:
            self._madvise(start, end - start, self.DONTNEED)

    def _find(self):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            madvise = libc.madvise
            madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            with open("/proc/self/maps", encoding="utf-8") as maps:
                ranges = [tuple(int(x, 16) for x in fields[0].split("-")) for fields in map(str.split, maps)
                          if len(fields) >= 6 and fields[5] in self.paths and "w" not in fields[1]]
        except (OSError, AttributeError):  # not Linux: nothing to hand back this way
            return [], None
        return ranges, madvise
