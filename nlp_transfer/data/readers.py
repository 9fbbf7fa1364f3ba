"""Reading a data card's files: rows of labelled splits, checked, into `datasets.Dataset` splits.

Every classification split comes out with the columns ``text`` (and ``text_pair`` for sentence pairs), ``label``
(an id, a multi-hot list or a float, by problem type) and ``line`` (where the row came from, so predictions and
errors can point back at the file); a token-classification split with ``tokens``, ``tags`` (IOB2 tag ids) and
``line``. Rows carry a ``language`` when the card has a ``language_column`` or is several cards read as one
(`cards.merge_cards`); per-language metrics group by it.

`read_labelled` is the one way to read a labelled split in a given label order (the model's, matched by name),
used by `load_data` (training), `evaluation.evaluate` and the static scorers.

We read CSV/TSV/JSONL ourselves rather than through `datasets.load_dataset("csv")` because every
bad row must be reported as ``file: line N: what is wrong; the fix``, which pandas' errors do not give.
"""
from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import NLPTransferError, did_you_mean
from ..io import check_input_file
from ..tasks.problems import find_data_kind, problem_type as get_problem_type
from .cards import FORMATS, DataCard, load_cards
from .files import decoded_lines, read_file
from .labels import (apply_label_map, check_iob2, encode_in_order, encode_tags, entity_types, infer_label_names,
                     map_entity_types)


# ---------------------------------------------------------------- raw rows

def _words(card: DataCard) -> bool:
    """The card's rows are pre-split words with one tag each (token classification)."""
    kind = find_data_kind(card.task)
    return kind is not None and kind.words


def _format_of(card: DataCard, path: str) -> str:
    if card.format:
        return card.format
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("csv", "tsv", "jsonl"):
        return suffix
    if suffix in ("conll", "bio", "iob", "txt") and _words(card):
        return "conll"
    if suffix == "json":
        return "jsonl"
    raise NLPTransferError(f"{card.source}: cannot tell the format of '{path}'; set 'format:' (one of {', '.join(FORMATS)})")


COLUMN_FIX = "fix the column name in the data card"
# what predict / embed / export read texts from (`read_texts`), and NER input as pre-split words (CoNLL)
TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".json")
CONLL_SUFFIXES = (".conll", ".bio", ".iob")
INPUT_FIX = ("give a text file: .txt (one text per line), .csv/.tsv or .jsonl (with --text-column), or .conll "
             "words for NER")


def _missing_column(path: str, line: int, column: str, columns: list[str], role: str,
                    fix: str = COLUMN_FIX) -> NLPTransferError:
    return NLPTransferError(
        f"{path}: line {line}: no {role} column '{column}'{did_you_mean(column, columns)} "
        f"(columns: {', '.join(map(str, columns))}); {fix}"
    )


def _iter_delimited(path: str, lines: Iterable[str], delimiter: str, needed: list[tuple[str, str]],
                    fix: str = COLUMN_FIX) -> Iterator[tuple[int, dict]]:
    # TSV files (GLUE among them) do not quote; quotes inside sentences are plain characters there.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True)
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


def _iter_jsonl(path: str, lines: Iterable[str], needed: list[tuple[str, str]],
                fix: str = COLUMN_FIX) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(lines, start=1):
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
    rows, path, names = iter_rows(card, split, labelled, fix)
    rows = list(rows)
    if not rows:
        raise NLPTransferError(f"{path}: split '{split}' has no rows; add data or remove the split from {card.source}")
    return rows, path, names


def iter_rows(card: DataCard, split: str, labelled: bool = True,
              fix: str = COLUMN_FIX) -> tuple[Iterator[dict], str, list[str] | None]:
    """`read_rows` of one card (not several merged), one row at a time as the file is read: memory stays flat in
    the file size, and a bad row is the same one-line error, raised when the reading reaches it."""
    path = card.split_path(split)
    needed = [(column, "text") for column in card.text]
    if labelled and card.label:
        needed.append((card.label, "label"))
    if card.language_column:
        needed.append((card.language_column, "language"))
    needed += [(group.column, "group") for group in card.groups or () if group.column]
    fmt = _format_of(card, path)
    names = None
    if fmt == "datasets":
        raw_rows, names = _iter_datasets(path, split, needed)
    else:
        lines = decoded_lines(path, card.encoding)
        if fmt == "jsonl":
            raw_rows = _iter_jsonl(path, lines, needed, fix)
        else:
            raw_rows = _iter_delimited(path, lines, "," if fmt == "csv" else "\t", needed, fix)
    return _checked_rows(card, raw_rows, path, "row" if fmt == "datasets" else "line", labelled), path, names


def _checked_rows(card: DataCard, raw_rows: Iterator[tuple[int, dict]], path: str, unit: str,
                  labelled: bool) -> Iterator[dict]:
    multi_hot = bool(labelled and card.label) and get_problem_type(card.problem_type).multi_hot
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
            row["label"] = _checked_label(card, record[card.label], multi_hot, f"{path}: {unit} {number}")
        if card.language_column:
            row["language"] = _language_of(record[card.language_column], path, unit, number, card.language_column)
        if card.groups:
            row["groups"] = _groups_of(card.groups, record, row, path, unit, number)
        yield row


def _checked_label(card: DataCard, value, multi_hot: bool, where: str):
    """A row's raw label, refused with one line when it is a list in single-label data or empty."""
    if isinstance(value, list) and not multi_hot:
        raise NLPTransferError(f"{where}: label {json.dumps(value, ensure_ascii=False)} in column '{card.label}' is a "
                               f"list, so the data is multi-label, but the card reads it as {card.problem_type}; set "
                               f"problem_type: multi_label in {card.source}")
    if _is_missing(value) if not isinstance(value, list) else not value:
        if not (card.allow_empty_labels and multi_hot):
            allow = " (or set allow_empty_labels: true in the card if no label applies to such rows)" if multi_hot else ""
            raise NLPTransferError(f"{where}: empty label in column '{card.label}'; fill it in or remove the row{allow}")
        value = []
    return value



def _groups_of(groups, record: dict, row: dict, path: str, unit: str, number: int) -> dict[str, str]:
    """A row's group values: its group columns (filled in) and its length buckets (words of the text(s))."""
    out = {}
    for group in groups:
        if group.column:
            value = record[group.column]
            if _is_missing(value):
                raise NLPTransferError(f"{path}: {unit} {number}: empty group value in column '{group.column}'; fill it "
                                       f"in (e.g. unknown) or remove '{group.column}' from the card's groups")
            out[group.name] = str(value).strip()
        else:
            words = len(row["text"].split()) + len(row.get("text_pair", "").split())
            out[group.name] = group.bucket(words)
    return out


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
        if _words(card) and part.scheme != card.scheme:
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
    return [text for _, text in iter_texts(path, column)]


def iter_texts(path: str, column: str = "text") -> Iterator[tuple[int, str]]:
    """`read_texts` one text at a time as the file is read, with its line number: memory flat in the file size. A
    bad row is the same one-line error, raised when the reading reaches it; a file without texts, at its end."""
    check_input_file(path, "input file", TEXT_SUFFIXES, INPUT_FIX)
    suffix = Path(path).suffix.lower()
    count = 0
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        for number, line in enumerate(decoded_lines(path, "utf-8"), start=1):
            for part in line.splitlines():  # the same breaks as str.splitlines on the whole file
                if part.strip():
                    count += 1
                    yield number, part
    else:
        card = DataCard(name=str(path), splits={"input": str(Path(path).resolve())}, text=[column], label=None)
        rows, _, _ = iter_rows(card, "input", labelled=False, fix="pass the right one with --text-column")
        for row in rows:
            count += 1
            yield row["line"], row["text"]
    if not count:
        raise NLPTransferError(f"{path}: no texts ({_why_no_texts(path, suffix)}); add texts to it (one per line, or "
                               f"rows under a header for .csv/.tsv)")


def _why_no_texts(path: str, suffix: str) -> str:
    if Path(path).stat().st_size == 0:
        return "the file is empty"
    blank = all(not line.strip() for line in decoded_lines(path, "utf-8"))
    if blank:
        return "the file has only blank lines"
    return "the file has only a header line" if suffix in (".csv", ".tsv") else "no row has a text"


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
    for group in card.groups or ():  # length buckets only (cards.parse_groups)
        for sentence in sentences:
            sentence.setdefault("groups", {})[group.name] = group.bucket(len(sentence["tokens"]))
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


# ---------------------------------------------------------------- a labelled split in a given label order

@dataclass(frozen=True)
class LabelledSplit:
    """One split read by `read_labelled`. ``rows`` are classification rows ``{"text", "text_pair"?, "label",
    "line", "language"?}`` or token-classification sentences ``{"tokens", "tags", "line", "token_lines",
    "language"?}``; their labels are ids in ``label_names`` order, or as read when ``label_names`` is None."""

    rows: list[dict]
    path: str  # the file(s) the rows came from
    label_names: list[str] | None  # the order of the label ids; None: labels as read
    declared: list[str] | None = None  # label names a `datasets` ClassLabel declares, in id order
    repairs: int = 0  # token tags: invalid IOB2 tags repaired
    types_read: frozenset[str] = frozenset()  # token tags: entity types in the files, before the label_map


def read_labelled(card: DataCard, split: str, label_names: list[str] | None = None,
                  label_map: dict[str, str] | None = None) -> LabelledSplit:
    """The one way to read a labelled split: ``split`` of ``card`` with every label an id in ``label_names``
    order (a model's labels, say), matched by name.

    Classification (by the card's ``problem_type``): a single-label id, a multi-hot list in ``label_names``
    order, or a float (regression). The files' labels are read in the card's order (``labels:``, else a
    ``datasets`` ClassLabel, else by name) and mapped onto ``label_names`` by name; a label outside them is an
    error naming the file and line. Token classification: tags converted to IOB2 (repaired), entity types
    renamed or dropped by ``label_map`` (``{MISC: O}``), checked against ``label_names`` and turned into ids.

    ``label_names`` None keeps the labels as read (classification: the raw values; tokens: IOB2 tags after the
    label_map, checked to be IOB2), to infer the names from before `encode_split`."""
    if _words(card):
        from . import conll

        sentences, path, _ = read_token_rows(card, split)
        repairs = conll.normalise(sentences, card.scheme, path)
        types_read = frozenset(entity_types(sentences))
        apply_label_map(sentences, label_map)
        check_iob2(sentences, path)
        labelled = LabelledSplit(sentences, path, None, None, repairs, types_read)
    else:
        if label_map:
            raise NLPTransferError(f"{card.source}: label_map maps entity types and applies to token-classification data only")
        rows, path, declared = read_rows(card, split)
        labelled = LabelledSplit(rows, path, None, declared)
    return labelled if label_names is None else encode_split(card, labelled, label_names)


def iter_labelled(card: DataCard, split: str, label_names: list[str], size: int = 4096) -> Iterator[list[dict]]:
    """`read_labelled` of a classification split in chunks of ``size`` rows, each encoded as it is read: memory
    stays flat in the split's size, and a bad row is the same one-line error when the reading reaches it."""
    from .chunks import chunked

    if _words(card):
        raise NLPTransferError(f"{card.source}: token-classification splits are read whole (read_labelled)")
    rows, path, declared = _split_rows(card, split, True)
    empty = True
    for chunk in chunked(rows, size):
        empty = False
        encode_in_order(chunk, card, label_names, path, declared)
        yield chunk
    if empty:
        raise NLPTransferError(f"{path}: split '{split}' has no rows; add data or remove the split from {card.source}")


def encode_split(card: DataCard, labelled: LabelledSplit, label_names: list[str]) -> LabelledSplit:
    """A split read with its labels as read (`read_labelled` without names), its labels now ids in
    ``label_names`` order (the rows are encoded in place)."""
    if labelled.label_names is not None:
        raise NLPTransferError(f"{labelled.path}: the labels are already encoded")
    if _words(card):
        encode_tags(labelled.rows, label_names, labelled.path)
    else:
        encode_in_order(labelled.rows, card, label_names, labelled.path, labelled.declared)
    return replace(labelled, label_names=list(label_names))


@dataclass
class LoadedData:
    splits: dict[str, Any]  # split name -> datasets.Dataset
    label_names: list[str]
    problem_type: str
    card: DataCard
    files: dict[str, str]  # split name -> the file it was read from
    repairs: dict[str, int] = field(default_factory=dict)  # token tags: split -> invalid IOB2 tags repaired
    teacher: dict[str, Any] | None = None  # strategy distill: what the teacher labelled (`distillation.attach_teacher`)


STORAGES = ("auto", "memory", "arrow")
ARROW_FROM_BYTES = 256 << 20  # auto: a split whose files reach this size goes to the Arrow cache, smaller ones to memory
ENCODE_ROWS = 10_000  # rows of a cached split whose labels are read or encoded together


def load_data(card: DataCard | str | Path | list, splits: list[str] | None = None, train_split: str = "train",
              label_map: dict[str, str] | None = None, storage: str = "memory") -> LoadedData:
    """Read and validate the card's splits (all of them, or ``splits``); a list of cards is read as one.
    ``label_map`` (token classification) renames or drops entity types as they are read.

    ``storage``: ``memory`` reads each split into a list and an in-memory `datasets.Dataset`; ``arrow`` streams it
    into a memory-mapped Arrow file keyed by the files' content (`arrow_cache`: memory flat in the file size, a
    second run opens the file without reading the text); ``auto``: arrow for splits of ``ARROW_FROM_BYTES`` or
    more. The rows are the same either way. Token-classification data is read into memory."""
    import datasets

    if not isinstance(card, DataCard):
        card = load_cards(card)
    if storage not in STORAGES:
        raise NLPTransferError(f"data_storage '{storage}' is not one of {', '.join(STORAGES)}{did_you_mean(storage, STORAGES)}")
    kind = find_data_kind(card.task)
    if kind is not None and kind.words:
        if storage == "arrow":
            raise NLPTransferError(f"{card.source}: data_storage: arrow streams text data; token-classification "
                                   f"sentences are read into memory: set data_storage to auto or memory")
        return load_token_data(card, splits, train_split, label_map)
    if label_map:
        raise NLPTransferError(f"{card.source}: label_map maps entity types and applies to token-classification data only")
    wanted = splits or list(card.splits)
    on_arrow = {split: _on_arrow(card, split, storage) for split in wanted}
    if kind is not None and not kind.labelled:  # unlabelled text (masked-LM pretraining)
        out, files = {}, {}
        for split in wanted:
            if on_arrow[split]:
                out[split], files[split] = _cached_rows(card, split, labelled=False)
            else:
                rows, files[split], _ = read_rows(card, split, labelled=False)
                out[split] = datasets.Dataset.from_list(rows)
        return LoadedData(out, [], "text", card, files)
    if kind is None:  # neither words nor plain text: sequence classification is the one kind left
        raise NLPTransferError(f"{card.source}: task '{card.task}' cannot be read as sequence classification")
    first = train_split if train_split in wanted else wanted[0]
    out, files = {}, {}
    for split in wanted:  # labels as read; the names may come from the first split's
        if on_arrow[split]:
            out[split], files[split] = _cached_rows(card, split, labelled=True)
    raw = None if on_arrow[first] else read_labelled(card, first)
    declared = raw.declared if raw is not None else _split_rows(card, first, True)[2]
    label_names = _label_names(card, declared, raw.rows if raw is not None else lambda: _label_column(out[first]))
    for split in _first_then_rest(wanted, first):
        if on_arrow[split]:
            out[split] = _encode_cached(out[split], card, label_names, files[split], declared)
            continue
        read = encode_split(card, raw, label_names) if split == first else read_labelled(card, split, label_names)
        out[split], files[split] = datasets.Dataset.from_list(read.rows), read.path
    return LoadedData({split: out[split] for split in wanted}, label_names, card.problem_type, card, files)


def _label_names(card: DataCard, declared: list[str] | None, rows) -> list[str]:
    """The label order of a classification card: its ``labels:``, else a `datasets` ClassLabel's names, else the
    distinct labels of ``rows`` (a list, or a function giving them one at a time: read only when needed)."""
    problem = get_problem_type(card.problem_type)
    if not problem.labelled:
        label_names = [card.label or "score"]
    elif card.labels:
        label_names = list(card.labels)
    elif declared:
        label_names = [str(n) for n in declared]
    else:
        label_names = infer_label_names(rows() if callable(rows) else rows, card)
    if problem.labelled and len(label_names) < 2:
        raise NLPTransferError(
            f"{card.source}: only one label ({', '.join(label_names)}) found; classification needs at least two"
        )
    return label_names


def _split_files(card: DataCard, split: str) -> list[str]:
    if card.parts:
        return [path for part in card.parts if split in part.splits for path in _split_files(part, split)]
    return [card.split_path(split)]


def _on_arrow(card: DataCard, split: str, storage: str) -> bool:
    if storage != "auto":
        return storage == "arrow"
    files = [Path(path) for path in _split_files(card, split)]
    size = sum(p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
               for p in files if p.exists())
    return size >= ARROW_FROM_BYTES


def _split_rows(card: DataCard, split: str, labelled: bool) -> tuple[Iterator[dict], str, list[str] | None]:
    """`iter_rows` of a card or of several merged ones (each row then tagged with its card's language)."""
    if not card.parts:
        return iter_rows(card, split, labelled)
    having = [part for part in card.parts if split in part.splits]
    if not having:
        raise NLPTransferError(f"{card.source}: no split '{split}'{did_you_mean(split, card.splits)} "
                               f"(splits: {', '.join(card.splits)})")
    read = [(part, *iter_rows(part, split, labelled)) for part in having]

    def rows() -> Iterator[dict]:
        for part, part_rows, _, _ in read:
            for row in part_rows:
                row.setdefault("language", part.row_language())
                yield row

    return rows(), " + ".join(path for _, _, path, _ in read), next((names for *_, names in read if names), None)


def _cached_rows(card: DataCard, split: str, labelled: bool):
    """(the split as a memory-mapped Arrow dataset, its files): rows as `read_rows` gives them (labels as read),
    written to the cache once per content and settings."""
    from .arrow_cache import cached_split, file_identity
    from .files import count_lines

    files = _split_files(card, split)
    identity = lambda: {"rows": "labelled" if labelled else "text", "card": _card_settings(card),  # noqa: E731
                        "split": split, "files": [file_identity(path) for path in files]}

    def total() -> int | None:
        return sum(count_lines(path) for path in files) if all(Path(p).is_file() for p in files) else None

    empty = f"{' + '.join(files)}: split '{split}' has no rows; add data or remove the split from {card.source}"
    return (cached_split(identity, lambda: _split_rows(card, split, labelled)[0], empty, split, total),
            " + ".join(files))


def _label_column(dataset) -> Iterator[dict]:
    """The rows of a cached split as ``{"label"}`` only, read column-wise in batches."""
    from .chunks import dataset_rows

    for (value,) in dataset_rows(dataset, ["label"], ENCODE_ROWS):
        yield {"label": value}


def _encode_cached(dataset, card: DataCard, label_names: list[str], path: str, declared: list[str] | None):
    """A cached split with its labels encoded in ``label_names`` order (`encode_in_order`, a batch at a time; the
    result is cached by `datasets` beside the rows)."""
    def encode(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        encode_in_order(rows, card, label_names, path, declared)
        return {"label": [row["label"] for row in rows]}

    return dataset.map(encode, batched=True, batch_size=ENCODE_ROWS, desc="encoding labels")


def _card_settings(card: DataCard) -> dict[str, Any]:
    """What of a card shapes its rows (not its prose, name or licence)."""
    settings = {key: value for key, value in vars(card).items()
                if key not in ("description", "path", "name", "license", "parts", "splits")}
    settings["parts"] = [_card_settings(part) for part in card.parts or ()]
    return settings


def load_token_data(card: DataCard, splits: list[str] | None = None, train_split: str = "train",
                    label_map: dict[str, str] | None = None) -> LoadedData:
    """Read the card's splits as sentences with IOB2 tag ids (columns tokens, tags, line[, language]),
    entity types renamed or dropped by ``label_map`` (e.g. ``{MISC: O}``)."""
    import datasets

    from . import conll

    wanted = splits or list(card.splits)
    first = train_split if train_split in wanted else wanted[0]
    raw = read_labelled(card, first, label_map=label_map)  # IOB2 tags as strings: the names may come from them
    if card.labels:  # in IOB2, e.g. [O, B-PER, I-PER, ...]; a tag outside them is an error
        label_names = list(dict.fromkeys(map_entity_types(card.labels, label_map)))
    else:
        label_names = conll.label_list(raw.rows)
    read = {split: encode_split(card, raw, label_names) if split == first
            else read_labelled(card, split, label_names, label_map) for split in _first_then_rest(wanted, first)}
    seen = set().union(*(labelled.types_read for labelled in read.values()))
    for key in label_map or {}:
        if key not in seen:
            warnings.warn(f"{card.source}: label_map key '{key}' matches no entity type in the data "
                          f"(types: {', '.join(sorted(seen)) or 'none'}){did_you_mean(key, seen)}", stacklevel=2)
    out, files, repairs = {}, {}, {}
    for split in wanted:
        rows = [{"tokens": s["tokens"], "tags": s["tags"], "line": s["line"],
                 **({"language": s["language"]} if "language" in s else {})} for s in read[split].rows]
        out[split], files[split], repairs[split] = datasets.Dataset.from_list(rows), read[split].path, read[split].repairs
    return LoadedData(out, label_names, "token", card, files, repairs)


def _first_then_rest(wanted: list[str], first: str) -> list[str]:
    return [first] + [split for split in wanted if split != first]
