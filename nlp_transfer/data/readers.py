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

Languages: ``language: de`` names the card's language; ``language_column: lang`` reads a per-row language
from that column (CSV/TSV/JSONL/datasets) for splits that mix languages. Several cards can be read as one
(`merge_cards`, ``data: [a.md, b.md]`` in a recipe): their splits are concatenated and every row keeps its
card's language. Rows then carry a ``language`` column, which per-language metrics group by.

We read CSV/TSV/JSONL ourselves rather than through `datasets.load_dataset("csv")` because every
bad row must be reported as ``file: line N: what is wrong; the fix``, which pandas' errors do not give.
"""
from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import NLPTransferError, did_you_mean
from .files import decode, read_file

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
    allow_empty_labels: bool = False  # multi-label: an empty cell / [] means "no label applies" (else an error)
    columns: list[str] | None = None  # CoNLL: names of all columns, e.g. [token, pos, chunk, ner]
    tags: str | int = -1  # CoNLL: the tag column, by name (with columns) or index
    scheme: str = "auto"  # token tags: IOB1 | IOB2 | BIOES | IO | auto (detected); converted to IOB2
    language: str | list[str] | None = None  # ISO code(s) of the text, e.g. en
    language_column: str | None = None  # a column holding each row's language (splits that mix languages)
    license: str | None = None
    encoding: str = "utf-8"
    description: str = ""  # the Markdown body, for model cards
    path: Path | None = None  # the card file; split paths are relative to its folder
    parts: list[DataCard] | None = None  # several cards read as one (`merge_cards`)

    @property
    def source(self) -> str:
        if self.parts:
            return " + ".join(part.source for part in self.parts)
        return str(self.path) if self.path else f"data card '{self.name}'"

    def row_language(self) -> str:
        """The language given to this card's rows when it is merged with others and has no language column:
        its ``language``, else (none or several) its name."""
        return self.language if isinstance(self.language, str) and self.language else self.name

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


CARD_KEYS = {f.name for f in fields(DataCard)} - {"description", "path", "parts"}


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
    if card.language_column is not None and not isinstance(card.language_column, str):
        raise NLPTransferError(f"{source}: 'language_column' names one column (e.g. language_column: lang)")
    return card


def merge_cards(cards: list[DataCard]) -> DataCard:
    """Several cards read as one: each split is the concatenation of the cards that have it, and every row
    keeps its language (the card's ``language_column``, else the card's ``language``). The cards must hold
    the same task and problem type."""
    if len(cards) == 1:
        return cards[0]
    first = cards[0]
    for card in cards[1:]:
        for key in ("task", "problem_type"):
            if getattr(card, key) != getattr(first, key):
                raise NLPTransferError(f"cannot read {first.source} and {card.source} together: {key} "
                                       f"{getattr(first, key)} vs {getattr(card, key)}; list cards of one {key}")
    splits: dict[str, str] = {}
    for card in cards:
        for split in card.splits:
            splits[split] = "+".join(c.name for c in cards if split in c.splits)
    languages: list[str] = []
    for card in cards:
        for language in ([card.language] if isinstance(card.language, str) else card.language or []):
            if language not in languages:
                languages.append(language)
    licenses = list(dict.fromkeys(card.license for card in cards if card.license))
    same = {key: getattr(first, key) if all(getattr(c, key) == getattr(first, key) for c in cards) else None
            for key in ("labels", "format", "scheme")}
    return DataCard(
        name="+".join(card.name for card in cards), task=first.task, splits=splits, format=same["format"],
        text=first.text, label=first.label, labels=same["labels"], problem_type=first.problem_type,
        scheme=same["scheme"] or "IOB2",  # parts with different schemes are converted to IOB2 as they are read
        language=languages or None, license="; ".join(licenses) or None,
        description="\n\n".join(f"### {card.name}\n\n{card.description}" for card in cards if card.description),
        parts=list(cards),
    )


def load_cards(paths: str | Path | DataCard | list) -> DataCard:
    """One card, or several read as one (`merge_cards`), from paths or cards."""
    items = paths if isinstance(paths, (list, tuple)) else [paths]
    if not items:
        raise NLPTransferError("no data card given; name one card or a list of cards")
    return merge_cards([item if isinstance(item, DataCard) else load_card(item) for item in items])


def load_card(path: str | Path) -> DataCard:
    """Read a data card's YAML front matter (the Markdown below it is kept as the description)."""
    path = Path(path)
    if not path.is_file():
        raise NLPTransferError(f"data card '{path}' not found; check the path (cards live in data_cards/*.md)")
    text = decode(path.read_bytes(), path, "utf-8")
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
        from ..models import hub_reachable

        if not hub_reachable():
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

    Returns the rows, the file they came from and (for `datasets` ClassLabel columns) label names.
    Rows get a ``language`` when the card has a ``language_column`` or is several cards merged."""
    if card.parts:
        return _read_parts(card, split, lambda part: read_rows(part, split, labelled, fix))
    path = card.split_path(split)
    needed = [(column, "text") for column in card.text]
    if labelled and card.label:
        needed.append((card.label, "label"))
    if card.language_column:
        needed.append((card.language_column, "language"))
    fmt = _format_of(card, path)
    names = None
    if fmt == "datasets":
        raw_rows, names = _iter_datasets(path, split, needed)
    else:
        text = read_file(path, card.encoding)
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
            if _is_missing(value) if not isinstance(value, list) else not value:
                if not (card.allow_empty_labels and card.problem_type == "multi_label"):
                    allow = (" (or set allow_empty_labels: true in the card if no label applies to such rows)"
                             if card.problem_type == "multi_label" else "")
                    raise NLPTransferError(f"{path}: {unit} {number}: empty label in column '{card.label}'; fill it in "
                                           f"or remove the row{allow}")
                value = []
            row["label"] = value
        if card.language_column:
            row["language"] = _language_of(record[card.language_column], path, unit, number, card.language_column)
        rows.append(row)
    if not rows:
        raise NLPTransferError(f"{path}: split '{split}' has no rows; add data or remove the split from {card.source}")
    return rows, path, names


def _language_of(value: Any, path: str, unit: str, number: int, column: str) -> str:
    if _is_missing(value):
        raise NLPTransferError(f"{path}: {unit} {number}: empty language in column '{column}'; fill it in (e.g. en) "
                               f"or remove the row")
    return str(value).strip()


def _read_parts(card: DataCard, split: str, read) -> tuple[list, str, list[str] | None]:
    """Rows of ``split`` from every merged card that has it, each tagged with its language."""
    having = [part for part in card.parts if split in part.splits]
    if not having:
        raise NLPTransferError(f"{card.source}: no split '{split}'{did_you_mean(split, card.splits)} "
                               f"(splits: {', '.join(card.splits)})")
    rows, paths, names = [], [], None
    for part in having:
        part_rows, path, part_names = read(part)
        if card.task == "token-classification" and part.scheme != card.scheme:
            from . import conll

            conll.normalise(part_rows, part.scheme, path)  # to IOB2 here: the merged card reads as IOB2
        for row in part_rows:
            row.setdefault("language", part.row_language())
        rows.extend(part_rows)
        paths.append(path)
        names = names or part_names
    return rows, " + ".join(paths), names


def read_texts(path: str, column: str = "text") -> list[str]:
    """Texts to predict on: .txt (one per non-blank line), or the ``column`` of a .csv/.tsv/.jsonl file,
    checked exactly like a data card's files."""
    if not Path(path).is_file():
        raise NLPTransferError(f"input file '{path}' not found; check the path")
    suffix = Path(path).suffix.lower()
    content = read_file(path, "utf-8")
    lines = [line for line in content.splitlines() if line.strip()]
    header = 1 if suffix in (".csv", ".tsv") else 0
    if len(lines) <= header:
        what = ("the file is empty" if not content else "the file has only blank lines" if not lines
                else "the file has only a header line")
        raise NLPTransferError(f"{path}: no texts ({what}); add texts to it (one per line, or rows under a header "
                               f"for .csv/.tsv)")
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        return lines
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


def _label_id(value: Any, label_names: list[str], where: str, source: str, ids: bool) -> int:
    """The index of a row's label, matched by name; a number stands for an index only when ``ids`` (the names were
    declared in id order: the card's ``labels:`` or a ``datasets`` ClassLabel). Inferred names never match by
    position: with training labels {0, 2}, a 1 elsewhere is an unknown label, not the second class."""
    text = _label_text(value)
    if text in label_names:
        return label_names.index(text)
    as_int = _as_int(value)
    if ids and as_int is not None and 0 <= as_int < len(label_names):
        return as_int
    fix = (f"fix the row or add the label to 'labels:' in {source}" if ids else
           f"fix the row, or list every label under 'labels:' in {source} (labels match by name; numbers are label "
           f"ids only in the order 'labels:' gives)")
    raise NLPTransferError(f"{where}: label '{text}' is not one of the labels [{', '.join(label_names)}]"
                           f"{did_you_mean(text, label_names)}; {fix}")


def encode_labels(rows: list[dict], card: DataCard, label_names: list[str], path: str, ids: bool | None = None) -> None:
    """Replace each row's raw label by its training form, in place. ``ids``: numbers in the files may be label
    indexes (default: when the card declares ``labels:``); otherwise labels match by name only."""
    ids = bool(card.labels) if ids is None else ids
    unit = "row" if card.format == "datasets" else "line"
    for row in rows:
        where = f"{path}: {unit} {row['line']}"
        if card.problem_type == "regression":
            try:
                row["label"] = float(row["label"])
            except (TypeError, ValueError):
                raise NLPTransferError(f"{where}: label '{row['label']}' is not a number; regression needs numeric labels") from None
        elif card.problem_type == "multi_label":
            names = _split_multi(row["label"], card)
            if not names and not card.allow_empty_labels:  # a cell of separators only ("|")
                raise NLPTransferError(f"{where}: no label in column '{card.label}'; give at least one, or set "
                                       f"allow_empty_labels: true in {card.source} if no label applies to such rows")
            hot = [0.0] * len(label_names)
            for name in names:
                hot[_label_id(name, label_names, where, card.source, ids)] = 1.0
            row["label"] = hot
        else:
            row["label"] = _label_id(row["label"], label_names, where, card.source, ids)


@dataclass
class LoadedData:
    splits: dict[str, Any]  # split name -> datasets.Dataset
    label_names: list[str]
    problem_type: str
    card: DataCard
    files: dict[str, str]  # split name -> the file it was read from
    repairs: dict[str, int] = field(default_factory=dict)  # token tags: split -> invalid IOB2 tags repaired


def load_data(card: DataCard | str | Path | list, splits: list[str] | None = None, train_split: str = "train",
              label_map: dict[str, str] | None = None) -> LoadedData:
    """Read and validate the card's splits (all of them, or ``splits``); a list of cards is read as one.
    ``label_map`` (token classification) renames or drops entity types as they are read."""
    import datasets

    if not isinstance(card, DataCard):
        card = load_cards(card)
    if card.task == "token-classification":
        return load_token_data(card, splits, train_split, label_map)
    if label_map:
        raise NLPTransferError(f"{card.source}: label_map maps entity types and applies to token-classification data only")
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
        encode_labels(rows, card, label_names, files[split], ids=bool(card.labels or names))
        out[split] = datasets.Dataset.from_list(rows)
    return LoadedData(out, label_names, card.problem_type, card, files)


# ---------------------------------------------------------------- token classification

def read_token_rows(card: DataCard, split: str) -> tuple[list[dict], str, list[str] | None]:
    """Sentences of one split as ``{"tokens", "tags", "line"}`` with tags as read (any scheme)."""
    from . import conll

    if card.parts:
        return _read_parts(card, split, lambda part: read_token_rows(part, split))
    path = card.split_path(split)
    fmt = _format_of(card, path)
    names = None
    if card.language_column and fmt == "conll":
        raise NLPTransferError(f"{card.source}: language_column needs token JSONL or datasets files; CoNLL files have "
                               f"no per-sentence column, so write one card per language and list them together "
                               f"(data: [a.md, b.md])")
    if fmt == "conll":
        sentences, _ = conll.read_conll(path, tag_column=card.tags, columns=card.columns, encoding=card.encoding)
    elif fmt == "jsonl":
        sentences, _ = conll.read_token_jsonl(path, card.text[0], card.label, encoding=card.encoding)
        if card.language_column:
            _jsonl_languages(sentences, path, card)
    elif fmt == "datasets":
        sentences, names = _token_rows_from_datasets(card, path, split)
    else:
        raise NLPTransferError(f"{card.source}: token classification reads conll, jsonl or datasets files, not {fmt}")
    if not sentences:
        raise NLPTransferError(f"{path}: split '{split}' has no sentences; add data or remove the split from {card.source}")
    return sentences, path, names


def _jsonl_languages(sentences: list[dict], path: str, card: DataCard) -> None:
    """Add each sentence's ``language`` from its JSONL object (the token reader keeps tokens and tags only)."""
    lines = read_file(path, card.encoding).split("\n")
    for sentence in sentences:
        record = json.loads(lines[sentence["line"] - 1])
        if card.language_column not in record:
            raise _missing_column(path, sentence["line"], card.language_column, list(record), "language")
        sentence["language"] = _language_of(record[card.language_column], path, "line", sentence["line"],
                                            card.language_column)


def _token_rows_from_datasets(card: DataCard, location: str, split: str) -> tuple[list[dict], list[str] | None]:
    needed = [(card.text[0], "tokens"), (card.label, "label")]
    if card.language_column:
        needed.append((card.language_column, "language"))
    rows, names = _iter_datasets(location, split, needed)
    sentences = []
    for number, row in rows:
        tags = row[card.label]
        if names is not None:
            tags = [names[t] if isinstance(t, int) else t for t in tags]
        sentence = {"tokens": [str(t) for t in row[card.text[0]]], "tags": [str(t) for t in tags],
                    "line": number, "token_lines": [number] * len(tags)}
        if card.language_column:
            sentence["language"] = _language_of(row[card.language_column], location, "row", number, card.language_column)
        sentences.append(sentence)
    return sentences, names


def load_token_data(card: DataCard, splits: list[str] | None = None, train_split: str = "train",
                    label_map: dict[str, str] | None = None) -> LoadedData:
    """Read the card's splits as sentences with IOB2 tag ids (columns tokens, tags, line[, language]),
    entity types renamed or dropped by ``label_map`` (e.g. ``{MISC: O}``)."""
    import datasets

    from . import conll

    wanted = splits or list(card.splits)
    sentences_by_split, files, repairs, seen = {}, {}, {}, set()
    for split in wanted:
        sentences, path, _ = read_token_rows(card, split)
        repairs[split] = conll.normalise(sentences, card.scheme, path)
        seen |= entity_types(sentences)
        apply_label_map(sentences, label_map)
        sentences_by_split[split], files[split] = sentences, path
    for key in label_map or {}:
        if key not in seen:
            warnings.warn(f"{card.source}: label_map key '{key}' matches no entity type in the data "
                          f"(types: {', '.join(sorted(seen)) or 'none'}){did_you_mean(key, seen)}", stacklevel=2)
    if card.labels:  # in IOB2, e.g. [O, B-PER, I-PER, ...]; a tag outside them is an error below
        label_names = list(dict.fromkeys(map_entity_types(card.labels, label_map)))
    else:
        source_split = train_split if train_split in sentences_by_split else wanted[0]
        label_names = conll.label_list(sentences_by_split[source_split])
    out = {}
    for split, sentences in sentences_by_split.items():
        conll.validate_tags(sentences, label_names, files[split])
        index = {name: i for i, name in enumerate(label_names)}
        rows = [{"tokens": s["tokens"], "tags": [index[t] for t in s["tags"]], "line": s["line"],
                 **({"language": s["language"]} if "language" in s else {})} for s in sentences]
        out[split] = datasets.Dataset.from_list(rows)
    return LoadedData(out, label_names, "token", card, files, repairs)


# ---------------------------------------------------------------- entity type mapping (cross-dataset NER)

def entity_types(sentences: list[dict]) -> set[str]:
    """Entity types (``PER`` from ``B-PER``/``I-PER``) in the sentences' IOB2 tags."""
    return {tag[2:] for sentence in sentences for tag in sentence["tags"] if tag[:2] in ("B-", "I-")}


def map_entity_types(tags: list[str], label_map: dict[str, str] | None) -> list[str]:
    """IOB2 tags with entity types renamed by ``label_map`` (``{PERSON: PER}``); a type mapped to ``O``
    disappears (``B-MISC``, ``I-MISC`` -> ``O``). Whole entities map together, so the result stays valid IOB2."""
    if not label_map:
        return list(tags)
    out = []
    for tag in tags:
        target = label_map.get(tag[2:]) if tag[:2] in ("B-", "I-") else None
        out.append(tag if target is None else "O" if target == "O" else tag[:2] + target)
    return out


def apply_label_map(sentences: list[dict], label_map: dict[str, str] | None) -> None:
    """`map_entity_types` on every sentence, in place."""
    if label_map:
        for sentence in sentences:
            sentence["tags"] = map_entity_types(sentence["tags"], label_map)
