"""Reading data files as text: one place that decodes bytes and names the line of a bad byte."""
from __future__ import annotations

from pathlib import Path

from ..errors import NLPTransferError


def decode(raw: bytes, path: Path | str, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise NLPTransferError(
            f"{path}: line {line}: bytes that are not valid {encoding} ({raw[exc.start:exc.start + 1]!r}); "
            f"re-save the file as {encoding} or set 'encoding:' in the data card"
        ) from None
    return text.lstrip("\ufeff")


def read_file(path: str, encoding: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise NLPTransferError(f"data file '{path}' not found; check the split paths in the data card (they are relative to the card)")
    return decode(file.read_bytes(), path, encoding)
