"""Reading data files as text: one place that decodes bytes and names the line of a bad byte, whole or line by line
(`decoded_lines`: memory flat in the file size), and a cheap line count for progress bars."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import NLPTransferError


def decode(raw: bytes, path: Path | str, encoding: str, first_line: int = 1) -> str:
    """``raw`` as text; a byte that is not valid in ``encoding`` is a one-line error naming its line (``raw`` starts
    at line ``first_line`` of the file). A BOM is dropped at the start of the file."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = first_line + raw[: exc.start].count(b"\n")
        raise NLPTransferError(
            f"{path}: line {line}: bytes that are not valid {encoding} ({raw[exc.start:exc.start + 1]!r}); "
            f"re-save the file as {encoding} or set 'encoding:' in the data card"
        ) from None
    return text.lstrip("\ufeff") if first_line == 1 else text


def _data_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.is_file():
        raise NLPTransferError(f"data file '{path}' not found; check the split paths in the data card (they are relative to the card)")
    return file


def read_file(path: str, encoding: str) -> str:
    return decode(_data_file(path).read_bytes(), path, encoding)


def decoded_lines(path: str | Path, encoding: str) -> Iterator[str]:
    """The file's lines (line endings kept, a leading BOM dropped), read and decoded one at a time with `decode`:
    memory flat in the file size, the same one-line error for a bad byte."""
    with _data_file(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            yield decode(raw, path, encoding, number)


def count_lines(path: str | Path, block: int = 1 << 20) -> int:
    """Newline-terminated lines of a file (plus a last unterminated one), counted in 1 MB blocks: a second or so
    per GB, for the total of a progress bar."""
    count, last = 0, b"\n"
    with Path(path).open("rb") as handle:
        while chunk := handle.read(block):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")
