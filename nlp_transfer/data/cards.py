"""Data cards: what a dataset is and where its files are, read from Markdown with YAML front matter.

A data card (see data_cards/sst2.md):

    ---
    name: sst2
    task: sequence-classification
    splits: {train: ../samples/sst2/train.tsv, validation: ../samples/sst2/dev.tsv}
    format: tsv
    text: sentence
    label: label
    labels: [negative, positive]
    ---

Groups: ``groups: [source, {name: length, words: [10, 25]}]`` names columns whose values split the rows into groups
(e.g. source, gender, domain) and length buckets by word count (0-9, 10-24, 25+ words); metrics are then also
reported per group, with the worst group and the best-worst gap (`tasks.base.per_group`).

Languages: ``language: de`` names the card's language; ``language_column: lang`` reads a per-row language
from that column (CSV/TSV/JSONL/datasets) for splits that mix languages. Several cards can be read as one
(`merge_cards`, ``data: [a.md, b.md]`` in a recipe): their splits are concatenated and every row keeps its
card's language.

A card is not changed after it is loaded: derive another with ``dataclasses.replace``.
Reading a card's files is `readers`; its labels, `labels`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import NLPTransferError, did_you_mean
from ..io import check_input_file
from ..tasks.problems import DATA_KINDS, PROBLEM_TYPES as PROBLEM_TYPE_KINDS, find_data_kind
from .files import decode

FORMATS = ("csv", "tsv", "jsonl", "conll", "datasets")
CARD_TASKS = tuple(DATA_KINDS)  # sequence-classification, token-classification, text
PROBLEM_TYPES = tuple(PROBLEM_TYPE_KINDS)  # single_label, multi_label, regression
CARD_SUFFIXES = (".md",)
CARD_FIX = ("a data card is one .md file with YAML front matter that names the data files (see data_cards/sst2.md); "
            "check the path")


@dataclass(frozen=True)
class Group:
    """One way of splitting a card's rows into groups for per-group metrics: a column's values, or the number of
    words (tokens, for NER) bucketed at ``words`` edges."""

    name: str
    column: str | None = None
    words: tuple[int, ...] | None = None

    def bucket(self, count: int) -> str:
        """``0-9``, ``10-24``, ``25+`` for edges (10, 25)."""
        low = 0
        for edge in self.words or ():
            if count < edge:
                return f"{low}-{edge - 1}"
            low = edge
        return f"{low}+"


def parse_groups(value: Any, source: str) -> tuple[Group, ...] | None:
    """A card's ``groups``: column names, or ``{name: N, words: [edges]}`` length buckets; one-line errors."""
    if value is None:
        return None
    example = "groups: [source, {name: length, words: [10, 25]}]"
    if not isinstance(value, list) or not value:
        raise NLPTransferError(f"{source}: 'groups' is a list of columns or length buckets, e.g. {example}")
    out = []
    for item in value:
        if isinstance(item, str) and item.strip():
            out.append(Group(item.strip(), column=item.strip()))
            continue
        if isinstance(item, dict) and set(item) <= {"name", "words"} and "words" in item:
            edges = item["words"]
            if (not isinstance(edges, list) or not edges or not all(isinstance(e, int) and e > 0 for e in edges)
                    or sorted(set(edges)) != edges):
                raise NLPTransferError(f"{source}: groups: 'words' takes increasing positive word counts, e.g. "
                                       f"words: [10, 25]")
            out.append(Group(str(item.get("name", "length")), words=tuple(edges)))
            continue
        raise NLPTransferError(f"{source}: groups: {item!r} is neither a column name nor a length bucket; e.g. {example}")
    names = [g.name for g in out]
    if len(set(names)) != len(names) or "language" in names:
        raise NLPTransferError(f"{source}: groups: names must differ from each other and from 'language' (per-language "
                               f"scores come from language / language_column); got {', '.join(names)}")
    return tuple(out)


@dataclass(frozen=True)
class DataCard:
    """A data card, read by `load_card` / `card_from_dict`; frozen (derive another with ``dataclasses.replace``)."""

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
    groups: tuple[Group, ...] | None = None  # per-group metrics: columns or length buckets (`parse_groups`)
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


def _aliases(target: str, *spellings: str) -> dict[str, str]:
    return {spelling: target for spelling in spellings}


# what other tools call the card's keys (datasets, pandas, simpletransformers, ...): the message names the real one
CARD_ALIASES = {
    **_aliases("problem_type: multi_label", "multi_label", "multilabel", "is_multi_label", "multi_labels"),
    **_aliases("problem_type: regression", "regression"),
    **_aliases("problem_type", "problem", "task_type"),
    **_aliases("labels (the label names, in id order)", "num_labels", "n_labels", "num_classes", "n_classes",
               "classes", "class_names", "label_names", "label_list", "id2label", "names"),
    **_aliases("text", "text_column", "text_columns", "text_col", "text_field", "text_key", "sentence_column",
               "input_column", "texts"),
    **_aliases("label", "label_column", "label_col", "label_field", "label_key", "target", "target_column"),
    **_aliases("tags", "tag_column", "tags_column", "tag_col", "ner_column", "ner_tags"),
    **_aliases("splits (e.g. splits: {train: train.csv, validation: dev.csv})", "files", "data_files", "paths",
               "path", "split", "train", "validation", "dev", "test"),
    **_aliases("label_separator", "label_sep", "labels_separator", "multi_label_separator"),
    **_aliases("format (csv or tsv: the delimiter comes from it)", "delimiter", "sep", "separator"),
    **_aliases("language", "lang", "languages"),
    **_aliases("license", "licence"),
    **_aliases("scheme", "tag_scheme", "tagging_scheme"),
}


def card_from_dict(values: dict[str, Any], path: Path | None = None, description: str = "") -> DataCard:
    source = str(path) if path else "data card"
    unknown = [k for k in values if k not in CARD_KEYS]
    if unknown:
        raise NLPTransferError(f"{source}: unknown key '{unknown[0]}' in the front matter"
                               f"{did_you_mean(unknown[0], CARD_KEYS, aliases=CARD_ALIASES)}")
    values = dict(values)
    values.setdefault("name", path.stem if path else "data")
    kind = find_data_kind(values.get("task"))  # None: checked after the card is built
    if kind is not None and kind.words:  # JSONL / datasets keys for words and their tags
        values.setdefault("text", kind.text_key)
        values.setdefault("label", kind.label_key)
    if isinstance(values.get("text"), str):
        values["text"] = [values["text"]]
    if values.get("labels") is not None:
        values["labels"] = [str(v) for v in values["labels"]]
    values["groups"] = parse_groups(values.get("groups"), source)
    columns = [g.column for g in values["groups"] or () if g.column]
    if columns and kind is not None and kind.words:
        raise NLPTransferError(f"{source}: groups: column '{columns[0]}': token data takes length buckets only "
                               f"({{name: length, words: [10, 25]}}); for groups of sentences, write one card per group "
                               f"and list them together (data: [a.md, b.md]): each reads as a language")
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


def is_card(path: Path) -> bool:
    """A Markdown file that starts with YAML front matter (``---``): a data card, not a README beside the data."""
    try:
        with path.open("rb") as handle:
            return handle.readline().strip() == b"---"
    except OSError:
        return False


def load_card(path: str | Path) -> DataCard:
    """Read a data card's YAML front matter (the Markdown below it is kept as the description)."""
    path = check_input_file(path, "data card", CARD_SUFFIXES, CARD_FIX, is_card)
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
