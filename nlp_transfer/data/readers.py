"""Data cards and the files they point to, read into `datasets.Dataset` splits with validation.

A data card is Markdown with YAML front matter (see data_cards/sst2.md):

    ---
    name: sst2
    task: sequence-classification
    splits: {train: ../samples/sst2/train.tsv, validation: ../samples/sst2/dev.tsv}
    format: tsv
    text: sentence
    label: label
    labels: [negative, positive]
    ---

Every split comes out with the columns ``text`` (and ``text_pair`` for sentence pairs), ``label``
(an id, a multi-hot list or a float, by problem type) and ``line`` (where the row came from, so
predictions and errors can point back at the file).

We read CSV/TSV/JSONL ourselves rather than through `datasets.load_dataset("csv")` because every
bad row must be reported as ``file: line N: what is wrong; the fix``, which pandas' errors do not give.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import NLPTransferError, did_you_mean

FORMATS = ("csv", "tsv", "jsonl", "conll", "datasets")
CARD_TASKS = ("sequence-classification", "token-classification", "text")
PROBLEM_TYPES = ("single_label", "multi_label", "regression")


@dataclass
class DataCard:
    name: str
    task: str = "sequence-classification"
    splits: dict[str, str] = field(default_factory=dict)
    format: str | None = None  # inferred from the file suffix when missing
    text: list[str] = field(default_factory=lambda: ["text"])  # one column, or two for sentence pairs
    label: str | None = "label"
    labels: list[str] | None = None  # index order = the ids used in the files
    problem_type: str = "single_label"
    label_separator: str = "|"  # multi-label names inside one CSV/TSV cell
    columns: list[str] | None = None  # CoNLL: names of all columns, e.g. [token, pos, chunk, ner]
    tags: str | int = -1  # CoNLL: the tag column, by name (with columns) or index
    scheme: str = "auto"  # token tags: IOB1 | IOB2 | BIOES | IO | auto (detected); converted to IOB2
    language: str | list[str] | None = None
    license: str | None = None
    encoding: str = "utf-8"
    description: str = ""  # the Markdown body, for model cards
    path: Path | None = None  # the card file; split paths are relative to its folder

    @property
    def source(self) -> str:
        return str(self.path) if self.path else f"data card '{self.name}'"

    def split_path(self, split: str) -> str:
        if split not in self.splits:
            raise NLPTransferError(
                f"{self.source}: no split '{split}'{did_you_mean(split, self.splits)} "
                f"(splits: {', '.join(self.splits) or 'none'})"
            )
        location = str(self.splits[split])
        if self.format == "datasets" and not Path(location).is_absolute() and self.path is not None:
            local = self.path.parent / location
            return str(local) if local.exists() else location  # else a hub id
        if self.path is not None and not Path(location).is_absolute():
            return str(self.path.parent / location)
        return location


CARD_KEYS = {f.name for f in fields(DataCard)} - {"description", "path"}


def card_from_dict(values: dict[str, Any], path: Path | None = None, description: str = "") -> DataCard:
    source = str(path) if path else "data card"
    unknown = [k for k in values if k not in CARD_KEYS]
    if unknown:
        raise NLPTransferError(f"{source}: unknown key '{unknown[0]}'{did_you_mean(unknown[0], CARD_KEYS)} in the front matter")
    values = dict(values)
    values.setdefault("name", path.stem if path else "data")
    if values.get("task") == "token-classification":  # JSONL / datasets keys for words and their tags
        values.setdefault("text", "tokens")
        values.setdefault("label", "tags")
    if isinstance(values.get("text"), str):
        values["text"] = [values["text"]]
    if values.get("labels") is not None:
        values["labels"] = [str(v) for v in values["labels"]]
    card = DataCard(**values, description=description, path=path)
    if not isinstance(card.splits, dict) or not card.splits:
        raise NLPTransferError(f"{source}: 'splits' must map split names to files, e.g. splits: {{train: train.csv}}")
    if card.task not in CARD_TASKS:
        raise NLPTransferError(f"{source}: task '{card.task}' is not one of {', '.join(CARD_TASKS)}{did_you_mean(card.task, CARD_TASKS)}")
    if card.problem_type not in PROBLEM_TYPES:
        raise NLPTransferError(
            f"{source}: problem_type '{card.problem_type}' is not one of {', '.join(PROBLEM_TYPES)}"
            f"{did_you_mean(card.problem_type, PROBLEM_TYPES)}"
        )
    if card.format is not None and card.format not in FORMATS:
        raise NLPTransferError(f"{source}: format '{card.format}' is not one of {', '.join(FORMATS)}{did_you_mean(card.format, FORMATS)}")
    if not 1 <= len(card.text) <= 2:
        raise NLPTransferError(f"{source}: 'text' names one column, or two for sentence pairs")
    return card


def load_card(path: str | Path) -> DataCard:
    """Read a data card's YAML front matter (the Markdown below it is kept as the description)."""
    path = Path(path)
    if not path.is_file():
        raise NLPTransferError(f"data card '{path}' not found; check the path (cards live in data_cards/*.md)")
    text = _decode(path.read_bytes(), path, "utf-8")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise NLPTransferError(f"{path}: line 1: a data card starts with '---' and YAML front matter; see data_cards/sst2.md")
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        raise NLPTransferError(f"{path}: the front matter is not closed; add a '---' line after it") from None
    try:
        values = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 2}" if mark else ""
        raise NLPTransferError(f"{path}{where}: invalid YAML in the front matter ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(values, dict):
        raise NLPTransferError(f"{path}: the front matter must be a YAML mapping")
    return card_from_dict(values, path, "\n".join(lines[end + 1:]).strip())


# ---------------------------------------------------------------- raw rows

def _decode(raw: bytes, path: Path | str, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise NLPTransferError(
            f"{path}: line {line}: bytes that are not valid {encoding} ({raw[exc.start:exc.start + 1]!r}); "
            f"re-save the file as {encoding} or set 'encoding:' in the data card"
        ) from None
    return text.lstrip("\ufeff")


def _read_file(path: str, encoding: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise NLPTransferError(f"data file '{path}' not found; check the split paths in the data card (they are relative to the card)")
    return _decode(file.read_bytes(), path, encoding)


def _format_of(card: DataCard, path: str) -> str:
    if card.format:
        return card.format
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("csv", "tsv", "jsonl"):
        return suffix
    if suffix in ("conll", "bio", "iob", "txt") and card.task == "token-classification":
        return "conll"
    if suffix == "json":
        return "jsonl"
    raise NLPTransferError(f"{card.source}: cannot tell the format of '{path}'; set 'format:' (one of {', '.join(FORMATS)})")


COLUMN_FIX = "fix the column name in the data card"


def _missing_column(path: str, line: int, column: str, columns: list[str], role: str,
                    fix: str = COLUMN_FIX) -> NLPTransferError:
    return NLPTransferError(
        f"{path}: line {line}: no {role} column '{column}'{did_you_mean(column, columns)} "
        f"(columns: {', '.join(map(str, columns))}); {fix}"
    )


def _iter_delimited(path: str, text: str, delimiter: str, needed: list[tuple[str, str]],
                    fix: str = COLUMN_FIX) -> Iterator[tuple[int, dict]]:
    # TSV files (GLUE among them) do not quote; quotes inside sentences are plain characters there.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise NLPTransferError(f"{path}: line 1: malformed header ({exc})") from None
    header = [h.strip() for h in header]
    for column, role in needed:
        if column not in header:
            raise _missing_column(path, 1, column, header, role, fix)
    while True:
        start = reader.line_num + 1  # an unclosed quote makes the reader run on to the end of the file
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise NLPTransferError(f"{path}: line {start}: malformed row ({exc}); check the quoting of this row") from None
        if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
            continue  # a blank line; in a one-column file an empty cell is an empty text, reported below
        if len(row) != len(header):
            hint = "quote fields that contain the delimiter" if delimiter != "\t" else "remove stray tabs inside the text"
            raise NLPTransferError(
                f"{path}: line {reader.line_num}: expected {len(header)} fields ({', '.join(header)}), found {len(row)}; {hint}"
            )
        yield reader.line_num, dict(zip(header, row))


def _iter_jsonl(path: str, text: str, needed: list[tuple[str, str]], fix: str = COLUMN_FIX) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NLPTransferError(f"{path}: line {number}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise NLPTransferError(f"{path}: line {number}: expected a JSON object like {{\"text\": ..., \"label\": ...}}")
        for column, role in needed:
            if column not in record:
                raise _missing_column(path, number, column, list(record), role, fix)
        yield number, record


def _iter_datasets(location: str, split: str, needed: list[tuple[str, str]]) -> tuple[Iterator[tuple[int, dict]], list[str] | None]:
    import datasets

    if Path(location).exists():
        loaded = datasets.load_from_disk(location)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise NLPTransferError(f"{location}: no split '{split}'{did_you_mean(split, loaded)} (splits: {', '.join(loaded)})")
            loaded = loaded[split]
    else:
        from ..models import _hub_reachable

        if not _hub_reachable():
            raise NLPTransferError(
                f"dataset '{location}' is not a local directory and the Hugging Face Hub cannot be reached; "
                f"save it with `datasets.load_dataset(...).save_to_disk(DIR)` where the hub is reachable and point the card at DIR"
            )
        loaded = datasets.load_dataset(location, split=split)
    for column, role in needed:
        if column not in loaded.column_names:
            raise _missing_column(location, 1, column, loaded.column_names, role)
    names = None
    label_column = next((c for c, role in needed if role == "label"), None)
    if label_column is not None:
        feature = loaded.features[label_column]
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
    return ((i + 1, row) for i, row in enumerate(loaded)), names


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def read_rows(card: DataCard, split: str, labelled: bool = True,
              fix: str = COLUMN_FIX) -> tuple[list[dict], str, list[str] | None]:
    """Rows of one split as ``{"text", "text_pair"?, "label"?, "line"}`` with texts checked.

    Returns the rows, the file they came from and (for `datasets` ClassLabel columns) label names."""
    path = card.split_path(split)
    needed = [(column, "text") for column in card.text]
    if labelled and card.label:
        needed.append((card.label, "label"))
    fmt = _format_of(card, path)
    names = None
    if fmt == "datasets":
        raw_rows, names = _iter_datasets(path, split, needed)
    else:
        text = _read_file(path, card.encoding)
        if fmt == "jsonl":
            raw_rows = _iter_jsonl(path, text, needed, fix)
        else:
            raw_rows = _iter_delimited(path, text, "," if fmt == "csv" else "\t", needed, fix)
    unit = "row" if fmt == "datasets" else "line"
    rows = []
    for number, record in raw_rows:
        row = {"line": number}
        for key, column in zip(("text", "text_pair"), card.text):
            value = record[column]
            if _is_missing(value):
                raise NLPTransferError(
                    f"{path}: {unit} {number}: empty or missing text in column '{column}'; fill it in or remove the row"
                )
            row[key] = str(value).strip()
        if labelled and card.label:
            value = record[card.label]
            if _is_missing(value) if not isinstance(value, list) else False:
                raise NLPTransferError(f"{path}: {unit} {number}: empty label in column '{card.label}'; fill it in or remove the row")
            row["label"] = value
        rows.append(row)
    if not rows:
        raise NLPTransferError(f"{path}: split '{split}' has no rows; add data or remove the split from {card.source}")
    return rows, path, names


def read_texts(path: str, column: str = "text") -> list[str]:
    """Texts to predict on: .txt (one per non-blank line), or the ``column`` of a .csv/.tsv/.jsonl file,
    checked exactly like a data card's files."""
    if not Path(path).is_file():
        raise NLPTransferError(f"input file '{path}' not found; check the path")
    if Path(path).suffix.lower() not in (".csv", ".tsv", ".jsonl", ".json"):
        return [line for line in _read_file(path, "utf-8").splitlines() if line.strip()]
    card = DataCard(name=str(path), splits={"input": str(Path(path).resolve())}, text=[column], label=None)
    rows, _, _ = read_rows(card, "input", labelled=False, fix="pass the right one with --text-column")
    return [row["text"] for row in rows]


# ---------------------------------------------------------------- labels

def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def infer_label_names(rows: list[dict], card: DataCard) -> list[str]:
    """Distinct label values of the training rows, numerically sorted when they are all integers."""
    if card.problem_type == "multi_label":
        values = {name for row in rows for name in _split_multi(row["label"], card)}
    else:
        values = {_label_text(row["label"]) for row in rows}
    if values and all(_as_int(v) is not None for v in values):
        return [str(v) for v in sorted(values, key=lambda v: _as_int(v))]
    return sorted(values)


def _label_text(value: Any) -> str:
    as_int = _as_int(value)
    return str(as_int) if as_int is not None else str(value).strip()


def _split_multi(value: Any, card: DataCard) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [part.strip() for part in str(value).split(card.label_separator) if part.strip()]


def _label_id(value: Any, label_names: list[str], where: str, source: str) -> int:
    text = str(value).strip()
    if text in label_names:
        return label_names.index(text)
    as_int = _as_int(value)
    if as_int is not None and 0 <= as_int < len(label_names):
        return as_int
    raise NLPTransferError(
        f"{where}: label '{text}' is not one of the labels [{', '.join(label_names)}]{did_you_mean(text, label_names)}; "
        f"fix the row or add the label to 'labels:' in {source}"
    )


def encode_labels(rows: list[dict], card: DataCard, label_names: list[str], path: str) -> None:
    """Replace each row's raw label by its training form, in place."""
    unit = "row" if card.format == "datasets" else "line"
    for row in rows:
        where = f"{path}: {unit} {row['line']}"
        if card.problem_type == "regression":
            try:
                row["label"] = float(row["label"])
            except (TypeError, ValueError):
                raise NLPTransferError(f"{where}: label '{row['label']}' is not a number; regression needs numeric labels") from None
        elif card.problem_type == "multi_label":
            hot = [0.0] * len(label_names)
            for name in _split_multi(row["label"], card):
                hot[_label_id(name, label_names, where, card.source)] = 1.0
            row["label"] = hot
        else:
            row["label"] = _label_id(row["label"], label_names, where, card.source)


@dataclass
class LoadedData:
    splits: dict[str, Any]  # split name -> datasets.Dataset
    label_names: list[str]
    problem_type: str
    card: DataCard
    files: dict[str, str]  # split name -> the file it was read from
    repairs: dict[str, int] = field(default_factory=dict)  # token tags: split -> invalid IOB2 tags repaired


def load_data(card: DataCard | str | Path, splits: list[str] | None = None, train_split: str = "train") -> LoadedData:
    """Read and validate the card's splits (all of them, or ``splits``)."""
    import datasets

    if not isinstance(card, DataCard):
        card = load_card(card)
    if card.task == "token-classification":
        return load_token_data(card, splits, train_split)
    if card.task == "text":  # unlabelled text (masked-LM pretraining)
        out, files = {}, {}
        for split in splits or list(card.splits):
            rows, files[split], _ = read_rows(card, split, labelled=False)
            out[split] = datasets.Dataset.from_list(rows)
        return LoadedData(out, [], "text", card, files)
    if card.task != "sequence-classification":
        raise NLPTransferError(f"{card.source}: task '{card.task}' cannot be read as sequence classification")
    wanted = splits or list(card.splits)
    rows_by_split, files, names = {}, {}, None
    for split in wanted:
        rows, path, split_names = read_rows(card, split)
        rows_by_split[split], files[split] = rows, path
        names = names or split_names
    if card.problem_type == "regression":
        label_names = [card.label or "score"]
    elif card.labels:
        label_names = card.labels
    elif names:
        label_names = [str(n) for n in names]
    else:
        source_split = train_split if train_split in rows_by_split else wanted[0]
        label_names = infer_label_names(rows_by_split[source_split], card)
    if card.problem_type != "regression" and len(label_names) < 2:
        raise NLPTransferError(
            f"{card.source}: only one label ({', '.join(label_names)}) found; classification needs at least two"
        )
    out = {}
    for split, rows in rows_by_split.items():
        encode_labels(rows, card, label_names, files[split])
        out[split] = datasets.Dataset.from_list(rows)
    return LoadedData(out, label_names, card.problem_type, card, files)


# ---------------------------------------------------------------- token classification

def read_token_rows(card: DataCard, split: str) -> tuple[list[dict], str, list[str] | None]:
    """Sentences of one split as ``{"tokens", "tags", "line"}`` with tags as read (any scheme)."""
    from . import conll

    path = card.split_path(split)
    fmt = _format_of(card, path)
    names = None
    if fmt == "conll":
        sentences, _ = conll.read_conll(path, tag_column=card.tags, columns=card.columns, encoding=card.encoding)
    elif fmt == "jsonl":
        sentences, _ = conll.read_token_jsonl(path, card.text[0], card.label, encoding=card.encoding)
    elif fmt == "datasets":
        sentences, names = _token_rows_from_datasets(card, path, split)
    else:
        raise NLPTransferError(f"{card.source}: token classification reads conll, jsonl or datasets files, not {fmt}")
    if not sentences:
        raise NLPTransferError(f"{path}: split '{split}' has no sentences; add data or remove the split from {card.source}")
    return sentences, path, names


def _token_rows_from_datasets(card: DataCard, location: str, split: str) -> tuple[list[dict], list[str] | None]:
    rows, names = _iter_datasets(location, split, [(card.text[0], "tokens"), (card.label, "label")])
    sentences = []
    for number, row in rows:
        tags = row[card.label]
        if names is not None:
            tags = [names[t] if isinstance(t, int) else t for t in tags]
        sentences.append({"tokens": [str(t) for t in row[card.text[0]]], "tags": [str(t) for t in tags],
                          "line": number, "token_lines": [number] * len(tags)})
    return sentences, names


def load_token_data(card: DataCard, splits: list[str] | None = None, train_split: str = "train") -> LoadedData:
    """Read the card's splits as sentences with IOB2 tag ids (columns tokens, tags, line)."""
    import datasets

    from . import conll

    wanted = splits or list(card.splits)
    sentences_by_split, files, repairs = {}, {}, {}
    for split in wanted:
        sentences, path, _ = read_token_rows(card, split)
        repairs[split] = conll.normalise(sentences, card.scheme, path)
        sentences_by_split[split], files[split] = sentences, path
    if card.labels:  # in IOB2, e.g. [O, B-PER, I-PER, ...]; a tag outside them is an error below
        label_names = list(card.labels)
    else:
        source_split = train_split if train_split in sentences_by_split else wanted[0]
        label_names = conll.label_list(sentences_by_split[source_split])
    out = {}
    for split, sentences in sentences_by_split.items():
        conll.validate_tags(sentences, label_names, files[split])
        index = {name: i for i, name in enumerate(label_names)}
        rows = [{"tokens": s["tokens"], "tags": [index[t] for t in s["tags"]], "line": s["line"]} for s in sentences]
        out[split] = datasets.Dataset.from_list(rows)
    return LoadedData(out, label_names, "token", card, files, repairs)
