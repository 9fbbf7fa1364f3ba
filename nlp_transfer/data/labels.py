"""Labels: their names, encoding them as ids in a given order, and entity types (cross-dataset NER).

Labels match by name. A number in a file stands for a label id only when the names were declared in id order
(the card's ``labels:``, or a ``datasets`` ClassLabel); names inferred from the training rows never match by
position. Labels read in the card's order are mapped onto a model's order by name (`to_model_order`).
"""
from __future__ import annotations

from typing import Any

from ..errors import NLPTransferError, did_you_mean
from ..tasks.problems import problem_type as get_problem_type
from .cards import DataCard

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
    if get_problem_type(card.problem_type).multi_hot:
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
    kind = get_problem_type(card.problem_type)
    for row in rows:
        where = f"{path}: {unit} {row['line']}"
        if not kind.labelled:
            try:
                row["label"] = float(row["label"])
            except (TypeError, ValueError):
                raise NLPTransferError(f"{where}: label '{row['label']}' is not a number; regression needs numeric labels") from None
        elif kind.multi_hot:
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


def file_order(card: DataCard, label_names: list[str], declared: list[str] | None = None) -> tuple[list[str], bool]:
    """The label order the card's files use, and whether numbers in them are ids in that order: the card's
    ``labels:``, else the names a ``datasets`` ClassLabel ``declared``, else ``label_names`` by name only."""
    if get_problem_type(card.problem_type).labelled:
        if card.labels:
            return list(card.labels), True
        if declared:
            return [str(name) for name in declared], True
    return list(label_names), False


def to_model_order(rows: list[dict], names_in_files: list[str], label_names: list[str], problem_type: str,
                   source: str) -> None:
    """Map labels encoded in the card's order onto the model's label ids, by name."""
    unknown = [name for name in names_in_files if name not in label_names]
    if unknown:
        raise NLPTransferError(f"{source}: label '{unknown[0]}' is not one the model knows ({', '.join(label_names)})")
    index = [label_names.index(name) for name in names_in_files]
    exclusive = get_problem_type(problem_type).exclusive
    for row in rows:
        if exclusive:
            row["label"] = index[row["label"]]
        else:
            hot = [0.0] * len(label_names)
            for position, value in enumerate(row["label"]):
                hot[index[position]] = value
            row["label"] = hot


def encode_in_order(rows: list[dict], card: DataCard, label_names: list[str], path: str,
                    declared: list[str] | None = None) -> None:
    """Encode every row's raw label (in place) as an id, multi-hot list or float in ``label_names`` order: read in
    the files' order (`file_order`), then mapped onto ``label_names`` by name (`to_model_order`)."""
    names_in_files, ids = file_order(card, label_names, declared)
    encode_labels(rows, card, names_in_files, path, ids=ids)
    if get_problem_type(card.problem_type).labelled and names_in_files != list(label_names):
        to_model_order(rows, names_in_files, list(label_names), card.problem_type, card.source)


# ---------------------------------------------------------------- token tags

def encode_tags(sentences: list[dict], label_names: list[str], path: str) -> None:
    """Replace every sentence's IOB2 tags (in place) by their ids in ``label_names``; a tag outside them is an
    error naming the file and the line of its token."""
    from . import conll

    conll.validate_tags(sentences, label_names, path)
    index = {name: i for i, name in enumerate(label_names)}
    for sentence in sentences:
        sentence["tags"] = [index[tag] for tag in sentence["tags"]]


def check_iob2(sentences: list[dict], path: str) -> None:
    """Every tag is ``O``, ``B-TYPE`` or ``I-TYPE`` (after a label_map)."""
    bad = sorted({t for s in sentences for t in s["tags"] if t != "O" and t[:2] not in ("B-", "I-")})
    if bad:
        raise NLPTransferError(f"{path}: tag '{bad[0]}' is not an IOB2 tag; map entity types to types or O in label_map")


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
