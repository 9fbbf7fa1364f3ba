"""Small file helpers: every file we write appears whole or not at all (temp file + rename)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on success it is renamed onto ``path``, on any error
    it is removed, so ``path`` is never left half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the mode a plain open() would
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def read_run_json(path: str | Path, kind: type = dict) -> Any:
    """A run file's JSON (``kind``: dict or list), with a one-line error naming the file when it is not valid JSON
    or not of that kind. The caller decides what a missing file means."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        from .errors import NLPTransferError

        where = f" (line {exc.lineno} column {exc.colno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
        raise NLPTransferError(f"{path}: not valid JSON{where}; train the run again, or restore the file "
                               f"from a copy") from None
    if not isinstance(value, kind):
        from .errors import NLPTransferError

        expected = "an object" if kind is dict else "a list"
        raise NLPTransferError(f"{path}: a JSON {type(value).__name__}, expected {expected}; train the run again, "
                               f"or restore the file from a copy")
    return value


def save_array_atomic(path: str | Path, array) -> None:
    """A numpy array as a ``.npy`` file, written whole or not at all (no pickles: plain numeric arrays)."""
    import numpy as np

    with atomic_open(path, binary=True) as handle:
        np.save(handle, array, allow_pickle=False)


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> int:
    """Stream rows to a temp file beside ``path`` and rename it into place; returns the row count."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def remove_tree(path: str | Path, what: str = "") -> bool:
    """Remove a folder (or file); a failure is reported on stderr, never silently ignored. Returns success."""
    import sys

    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return True
    except OSError as exc:
        print(f"nlp-transfer: warning: could not remove {what + ' ' if what else ''}{path} ({exc.strerror or exc}); "
              f"remove it by hand", file=sys.stderr, flush=True)
        return False


def move_contents(source: Path, target: Path) -> None:
    """Move every entry of ``source`` into ``target`` (replacing same-named entries), then remove ``source``."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(entry, destination)
    source.rmdir()


# ---------------------------------------------------------------------------------------------- input checks

def check_input_file(path: str | Path, what: str, suffixes: tuple[str, ...], fix: str,
                     is_kind: Callable[[Path], bool] | None = None) -> Path:
    """``path`` is an existing file, else a one-line error: a folder is named as a folder (with the files of the
    right kind it holds, to pick from, or what it holds instead), a missing path as not found (with the closest
    file name beside it). ``what`` names the input ("data card", "input file"); ``suffixes`` the kinds of file it
    takes (".md"); ``is_kind`` tells a file of that kind when the suffix alone does not; ``fix`` what to do."""
    from .errors import NLPTransferError, did_you_mean

    path = Path(path)
    if path.is_file():
        return path

    def of_kind(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                      and (is_kind is None or is_kind(p)))

    kinds = "/".join(suffixes)
    if path.is_dir():
        found = [str(p) for p in of_kind(path)]
        if found:
            listing = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise NLPTransferError(f"{what} '{path}' is a folder; name one of its {kinds} files: {listing}")
        held = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        holds = (f"it holds {', '.join(held[:4])}{' and more' if len(held) > 4 else ''}, but no {what}" if held
                 else "it is empty")
        raise NLPTransferError(f"{what} '{path}' is a folder, not a file ({holds}); {fix}")
    parent = path.parent
    nearby = {p.stem: p for p in of_kind(parent)} if parent.is_dir() else {}  # stems: the suffix is shared
    hint = did_you_mean(path.stem, nearby)
    if hint:
        hint = f"; did you mean '{nearby[hint.split(chr(39))[1]]}'?"
    raise NLPTransferError(f"{what} '{path}' not found{hint}; {fix}")


# ---------------------------------------------------------------------------------------------- output checks
# Called before any model loads or data is read, so a wrong output path fails fast and nothing is touched.

def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_writable_under(path: Path, option: str) -> None:
    """Every existing ancestor of ``path`` must be a folder, and the nearest one writable."""
    from .errors import NLPTransferError

    ancestor = _first_existing(path.parent)
    if not ancestor.is_dir():
        raise NLPTransferError(f"{option} {path}: {ancestor} is a file, so nothing can be written under it; "
                               f"choose a path inside a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise NLPTransferError(f"{option} {path}: the folder {ancestor} is not writable; choose another path "
                               f"or fix its permissions")


def check_file_target(path: str | Path, option: str = "--output", example: str | None = None) -> Path:
    """A file will be written at ``path``: refuse an existing folder there (or a file on the way to it).
    ``option`` names the setting in the message (``--output``); ``example`` is a file name to suggest."""
    from .errors import NLPTransferError

    path = Path(path)
    if path.is_dir():
        hint = f", e.g. {path / example}" if example else ""
        raise NLPTransferError(f"{option} {path}: is an existing folder, but a file is written here; "
                               f"give a file path instead{hint}")
    _check_writable_under(path, option)
    return path


def check_folder_target(path: str | Path, option: str = "--output") -> Path:
    """A folder will be written at ``path`` (created if missing): refuse an existing file there (or on the way)."""
    from .errors import NLPTransferError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NLPTransferError(f"{option} {path}: is an existing file, but a folder is written here; "
                               f"give a folder path instead (a new one, or an existing folder)")
    if not path.exists():
        _check_writable_under(path, option)
    elif not os.access(path, os.W_OK | os.X_OK):
        raise NLPTransferError(f"{option} {path}: the folder is not writable; choose another one or fix its permissions")
    return path


def cache_folder(name: str) -> Path:
    """The package's cache of one kind (``features``, ``vectors``, ``data``): ``$NLP_TRANSFER_CACHE/<name>``, by
    default under ``~/.cache/nlp_transfer``. Everything there is derived and may be deleted at any time."""
    return Path(os.environ.get("NLP_TRANSFER_CACHE") or Path.home() / ".cache" / "nlp_transfer") / name
