"""Token-classification input: CoNLL-style column files and token JSONL, tag schemes, repairs.

A CoNLL file has one token per line and any number of columns, separated by tabs (when the line
has a tab) or else by runs of spaces; a blank line ends a sentence and ``-DOCSTART-`` lines are
skipped::

    EU NNP B-NP B-ORG
    rejects VBZ B-VP O

    Peter NNP B-NP B-PER

A token JSONL file has one sentence per line: ``{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}``.

Both readers return sentences as ``{"tokens", "tags", "line", "token_lines"}`` (``line``: where the
sentence starts; ``token_lines``: the line of every token, so any later error can name the exact
line) and a stats dict. Every problem is an `NLPTransferError` with one line ``file: line N: what
is wrong; the fix``.

Tag schemes (``SCHEMES``); the internal one is IOB2 and `normalise` converts everything to it:

- IOB2 (a.k.a. BIO): every entity starts with ``B-X``, continues with ``I-X``.
- IOB1: entities start with ``I-X``; ``B-X`` only marks the start of an entity that directly
  follows another entity of the same type.
- BIOES: ``B-X I-X* E-X`` for multi-token entities, ``S-X`` for single-token ones.
- IO: only ``I-X`` and ``O``. IO cannot represent two adjacent entities of the same type: converting
  them from IOB2 to IO merges them into one.

Pure Python: nothing here imports torch or datasets.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import NLPTransferError, did_you_mean
from .files import read_file

SCHEMES = ("IOB1", "IOB2", "BIOES", "IO")
SCHEME_ALIASES = {"BIO": "IOB2"}
PREFIXES = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES", "IO": "I"}
DOCSTART = "-DOCSTART-"

# Columns are split on ASCII whitespace only: tokens may contain U+00A0 or U+3000, which str.split() would cut.
_SPACES = re.compile(r"[ \t\r\f\v]+")
_ASCII_SPACE = " \t\r\f\v"


class TagRepairWarning(UserWarning):
    """`normalise` repaired invalid IOB2 tags (one warning per file, with the count)."""


# ---------------------------------------------------------------- reading

def column_index(columns: Sequence[str], name: str | int, source: str) -> int:
    """The index of column ``name`` in ``columns`` (e.g. ``columns: [token, pos, chunk, ner]`` and
    ``tags: ner`` in a data card); an int is returned as it is."""
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    names = [str(c) for c in columns]
    if str(name) in names:
        return names.index(str(name))
    raise NLPTransferError(
        f"{source}: no column '{name}'{did_you_mean(name, names)} (columns: {', '.join(names) or 'none'}); "
        f"fix the column name or the 'columns:' list in the data card"
    )


def _resolve(value: int | str, role: str, columns: Sequence[str] | None, source: str) -> int:
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        if columns is None:
            raise NLPTransferError(
                f"{source}: the {role} column is named '{value}' but no 'columns:' list names the file's columns; "
                f"add e.g. columns: [token, pos, chunk, ner] to the data card or give the {role} column as a number"
            )
        return column_index(columns, value, source)
    return int(value)


def _split_line(line: str) -> list[str]:
    if "\t" in line:
        return [field.strip(_ASCII_SPACE) for field in line.split("\t")]
    return _SPACES.split(line)


def read_conll(path: str | Path, tag_column: int | str = -1, token_column: int | str = 0, encoding: str = "utf-8",
               columns: Sequence[str] | None = None) -> tuple[list[dict], dict]:
    """Sentences of a CoNLL-style file and ``{"sentences", "tokens", "columns", "documents"}``.

    ``tag_column``/``token_column`` are column indices (negative ones count from the end) or, with
    ``columns`` (the names of all columns in order), column names."""
    path = str(path)
    tag_index = _resolve(tag_column, "tag", columns, path)
    token_index = _resolve(token_column, "token", columns, path)
    text = read_file(path, encoding)
    sentences: list[dict] = []
    current: dict | None = None
    width: int | None = None  # columns of the first token line; every token line must match it
    first_line = 0
    documents = 0
    tokens = 0
    # split("\n") rather than splitlines(): line numbers must match an editor's (and _decode's), and
    # splitlines() also breaks on \x0b, \x1c, \x85, U+2028 which can sit inside tokens.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(_ASCII_SPACE)
        if not line:
            current = None
            continue
        fields = _split_line(line)
        if fields[0] == DOCSTART:
            documents += 1
            current = None
            continue
        if width is None:
            width, first_line = len(fields), number
            if columns is not None and len(columns) != width:
                raise NLPTransferError(
                    f"{path}: line {number}: expected {len(columns)} columns ({', '.join(map(str, columns))}) "
                    f"as listed in 'columns:', found {width}; fix the 'columns:' list in the data card"
                )
            for index, role in ((tag_index, "tag"), (token_index, "token")):
                if not -width <= index < width:
                    raise NLPTransferError(
                        f"{path}: line {number}: {role} column {index} needs at least "
                        f"{index + 1 if index >= 0 else -index} columns, found {width}; "
                        f"set the {role} column to one of 0..{width - 1} (or -1 for the last)"
                    )
            if tag_index % width == token_index % width:
                raise NLPTransferError(
                    f"{path}: line {number}: the token and the tag are both column {token_index % width} "
                    f"of {width}; a CoNLL line needs a token column and a separate tag column (e.g. 'EU B-ORG')"
                )
        elif len(fields) != width:
            raise NLPTransferError(
                f"{path}: line {number}: expected {width} columns (like line {first_line}), found {len(fields)}; "
                f"every token line needs the same columns, and sentences are separated by an empty line"
            )
        token, tag = fields[token_index], fields[tag_index]
        for value, role, index in ((token, "token", token_index), (tag, "tag", tag_index)):
            if not value:
                raise NLPTransferError(
                    f"{path}: line {number}: empty {role} (column {index % width}); "
                    f"remove the stray tab or fill in the {role}"
                )
        if current is None:
            current = {"tokens": [], "tags": [], "line": number, "token_lines": []}
            sentences.append(current)
        current["tokens"].append(token)
        current["tags"].append(tag)
        current["token_lines"].append(number)
        tokens += 1
    if not sentences:
        raise NLPTransferError(
            f"{path}: no sentences (the file is empty or has only blank and {DOCSTART} lines); "
            f"write one 'token tag' line per token and an empty line between sentences"
        )
    return sentences, {"sentences": len(sentences), "tokens": tokens, "columns": width, "documents": documents}


def read_token_jsonl(path: str | Path, tokens_key: str = "tokens", tags_key: str = "tags",
                     encoding: str = "utf-8") -> tuple[list[dict], dict]:
    """Sentences of a JSONL file with one ``{"tokens": [...], "tags": [...]}`` object per line;
    returns the same sentences and stats as `read_conll`."""
    path = str(path)
    text = read_file(path, encoding)
    sentences = []
    tokens = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NLPTransferError(
                f"{path}: line {number}: not valid JSON ({exc.msg}); each line must be one JSON object "
                f"like {{\"{tokens_key}\": [...], \"{tags_key}\": [...]}}"
            ) from None
        if not isinstance(record, dict):
            raise NLPTransferError(
                f"{path}: line {number}: expected a JSON object like {{\"{tokens_key}\": [...], \"{tags_key}\": [...]}}"
            )
        values = {}
        for key, role in ((tokens_key, "tokens"), (tags_key, "tags")):
            if key not in record:
                raise NLPTransferError(
                    f"{path}: line {number}: no {role} key '{key}'{did_you_mean(key, list(record))} "
                    f"(keys: {', '.join(map(str, record)) or 'none'}); fix the key name in the data card"
                )
            value = record[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                found = type(value).__name__ if not isinstance(value, list) else \
                    next(type(v).__name__ for v in value if not isinstance(v, str))
                raise NLPTransferError(
                    f"{path}: line {number}: '{key}' must be a list of strings, found {found}; "
                    + ("write tag names such as \"B-PER\", not label ids" if role == "tags" else "write the tokens as strings")
                )
            values[role] = value
        if not values["tokens"]:
            raise NLPTransferError(f"{path}: line {number}: empty sentence (no tokens); remove the line")
        if len(values["tokens"]) != len(values["tags"]):
            raise NLPTransferError(
                f"{path}: line {number}: {len(values['tokens'])} tokens but {len(values['tags'])} tags; "
                f"give every token exactly one tag"
            )
        for position, token in enumerate(values["tokens"], start=1):
            if not token.strip():
                raise NLPTransferError(f"{path}: line {number}: token {position} is empty; remove it or fill it in")
        sentences.append({"tokens": values["tokens"], "tags": values["tags"], "line": number,
                          "token_lines": [number] * len(values["tokens"])})
        tokens += len(values["tokens"])
    if not sentences:
        raise NLPTransferError(f"{path}: no sentences (the file is empty); write one JSON object per line")
    return sentences, {"sentences": len(sentences), "tokens": tokens}


# ---------------------------------------------------------------- tags

def scheme_name(scheme: str) -> str:
    """Canonical scheme name: case-insensitive, and BIO is IOB2."""
    name = str(scheme).strip().upper()
    name = SCHEME_ALIASES.get(name, name)
    if name not in SCHEMES:
        raise NLPTransferError(
            f"tag scheme '{scheme}' is not one of {', '.join(SCHEMES)}{did_you_mean(str(scheme).upper(), SCHEMES)}"
        )
    return name


def _parts(tag: str) -> tuple[str, str]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", "")``; malformed tags give ``("", "")``."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-":
        return tag[0], tag[2:]
    return "", ""


def _tag_problem(tag: str, scheme: str | None) -> str | None:
    """Why ``tag`` is not a tag of ``scheme`` (any scheme when None), with the fix; None when it is fine."""
    prefix, _ = _parts(tag)
    if prefix == "O":
        return None
    if not prefix:
        return f"tag '{tag}' is not 'O' or PREFIX-TYPE like 'B-PER'; write it as O, B-TYPE, I-TYPE (or E-/S- for BIOES)"
    allowed = PREFIXES[scheme] if scheme else "BIES"
    if prefix in allowed:
        return None
    if prefix in "BIES":
        others = [s for s in SCHEMES if prefix in PREFIXES[s]]
        article = "an" if scheme.startswith("I") else "a"
        return (f"tag '{tag}' is not {article} {scheme} tag ({scheme} uses O and {', '.join(p + '-' for p in allowed)}); "
                f"set the tag scheme to {' or '.join(others)}")
    if prefix in "LU":
        return f"tag '{tag}' uses the BILOU prefix '{prefix}-'; rename L- to E- and U- to S- and use the BIOES scheme"
    return f"tag '{tag}' has the unknown prefix '{prefix}-'; use O, B-, I- (or E-, S- for BIOES)"


def _check(tags: Sequence[str], scheme: str | None) -> None:
    for position, tag in enumerate(tags):
        problem = _tag_problem(tag, scheme)
        if problem:
            raise NLPTransferError(f"position {position}: {problem}")


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Which of ``SCHEMES`` the tag sequences use.

    - any ``E-``/``S-`` -> BIOES;
    - every entity starts with ``B-`` (no ``I-X`` at the start, after O or after another type) -> IOB2;
    - some entity starts with ``I-`` and ``B-X`` appears only right after an ``X`` tag -> IOB1;
    - ``I-`` but never ``B-`` -> IOB1. IO and IOB1 without adjacent same-type entities are the very
      same sequences, and converting either to IOB2 gives the same result, so nothing is lost;
    - both ``B-`` starting entities and ``I-`` starting entities -> IOB2 with errors: `normalise`
      repairs and counts the ``I-`` starts (reading it as IOB1 would give the same IOB2 tags);
    - only ``O`` (or nothing) -> IOB2.
    """
    i_starts = b_starts = False
    for tags in tag_sequences:
        previous = ""
        for position, tag in enumerate(tags):
            prefix, kind = _parts(tag)
            if prefix == "O":
                previous = ""
                continue
            problem = _tag_problem(tag, None)
            if problem:
                raise NLPTransferError(f"position {position}: {problem}")
            if prefix in "ES":
                return "BIOES"
            if prefix == "B":
                b_starts = b_starts or kind != previous
            elif kind != previous:
                i_starts = True
            previous = kind
    if i_starts and not b_starts:
        return "IOB1"
    return "IOB2"


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert ``tags`` of ``scheme`` to IOB2. Invalid ``I-`` starts (IOB2/BIOES) are kept for `repair_iob2`."""
    scheme = scheme_name(scheme)
    _check(tags, scheme)
    out = []
    previous = ""
    for tag in tags:
        prefix, kind = _parts(tag)
        if prefix == "O":
            out.append("O")
        elif scheme in ("IOB1", "IO"):
            out.append(f"I-{kind}" if prefix == "I" and kind == previous else f"B-{kind}")
        elif scheme == "BIOES":
            out.append(f"{'B' if prefix in 'BS' else 'I'}-{kind}")
        else:
            out.append(tag)
        previous = kind
    return out


def from_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert IOB2 ``tags`` to ``scheme`` (an ``I-`` that starts an entity is read as ``B-``).

    ``from_iob2(to_iob2(x, s), s) == x`` for every valid sequence ``x`` of scheme ``s``. IO has no way
    to mark where an entity ends and the next same-type one begins, so adjacent entities merge."""
    scheme = scheme_name(scheme)
    _check(tags, "IOB2")
    parts = [_parts(tag) for tag in tags]
    out = []
    for position, (prefix, kind) in enumerate(parts):
        if prefix == "O":
            out.append("O")
            continue
        previous = parts[position - 1][1] if position else ""
        begins = prefix == "B" or kind != previous
        if scheme == "IOB2":
            out.append(f"{'B' if begins else 'I'}-{kind}")
        elif scheme == "IO":
            out.append(f"I-{kind}")
        elif scheme == "IOB1":
            out.append(f"{'B' if begins and kind == previous else 'I'}-{kind}")
        else:
            following = parts[position + 1] if position + 1 < len(parts) else ("O", "")
            ends = following != ("I", kind)
            if begins:
                out.append(f"{'S' if ends else 'B'}-{kind}")
            else:
                out.append(f"{'E' if ends else 'I'}-{kind}")
    return out


def _repair_positions(tags: Sequence[str]) -> list[int]:
    previous = ""
    positions = []
    for position, tag in enumerate(tags):
        prefix, kind = _parts(tag)
        if prefix == "I" and kind != previous:
            positions.append(position)
        previous = kind
    return positions


def repair_iob2(tags: Sequence[str]) -> tuple[list[str], int]:
    """Turn every ``I-X`` that starts an entity (at the start, after O or after another type) into
    ``B-X``; returns the repaired tags and the number of repairs."""
    _check(tags, "IOB2")
    out = list(tags)
    positions = _repair_positions(out)
    for position in positions:
        out[position] = "B-" + out[position][2:]
    return out, len(positions)


def validate_tags(sentences: Sequence[dict], label_set: Iterable[str], path: str | Path) -> None:
    """Raise on the first tag that is not in ``label_set``, naming the file and the line of its token."""
    labels = sorted(label_set) if isinstance(label_set, (set, frozenset)) else list(label_set)
    known = set(labels)
    for sentence in sentences:
        for position, tag in enumerate(sentence["tags"]):
            if tag not in known:
                raise NLPTransferError(
                    f"{path}: line {_line_of(sentence, position)}: tag '{tag}' (token '{sentence['tokens'][position]}') "
                    f"is not one of the labels [{', '.join(labels)}]{did_you_mean(tag, labels)}; "
                    f"fix the tag or add it to 'labels:' in the data card"
                )


def _line_of(sentence: dict, position: int) -> int:
    lines = sentence.get("token_lines")
    return lines[position] if lines and position < len(lines) else sentence["line"]


def normalise(sentences: list[dict], scheme: str | None, path: str | Path) -> int:
    """Convert every sentence's tags (in place) from ``scheme`` to repaired IOB2; ``scheme`` None or
    ``"auto"`` means `detect_scheme`. Warns once (`TagRepairWarning`) with the count when tags were
    repaired, and returns that count."""
    auto = scheme is None or str(scheme).lower() == "auto"
    name = None if auto else scheme_name(scheme)
    for sentence in sentences:
        for position, tag in enumerate(sentence["tags"]):
            problem = _tag_problem(tag, name)
            if problem:
                raise NLPTransferError(f"{path}: line {_line_of(sentence, position)}: {problem}")
    if auto:
        name = detect_scheme(sentence["tags"] for sentence in sentences)
    repairs = 0
    first = None
    for sentence in sentences:
        tags = to_iob2(sentence["tags"], name)
        positions = _repair_positions(tags)
        if positions:
            tags, _ = repair_iob2(tags)
            repairs += len(positions)
            first = first if first is not None else _line_of(sentence, positions[0])
        sentence["tags"] = tags
    if repairs:
        plural = "tags that" if repairs > 1 else "tag that"
        warnings.warn(
            f"{path}: repaired {repairs} I- {plural} followed O, another entity type or the sentence start "
            f"(made B-, as IOB2 requires; tags read as {name}); first at line {first}",
            TagRepairWarning, stacklevel=2,
        )
    return repairs


def label_list(sentences: Iterable[dict]) -> list[str]:
    """IOB2 labels of the sentences: ``O`` first, then ``B-X``, ``I-X`` for every entity type X, sorted."""
    kinds = {_parts(tag)[1] for sentence in sentences for tag in sentence["tags"]} - {""}
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(kinds) for prefix in "BI"]


__all__ = [
    "SCHEMES", "TagRepairWarning", "column_index", "detect_scheme", "from_iob2", "label_list", "normalise",
    "read_conll", "read_token_jsonl", "repair_iob2", "scheme_name", "to_iob2", "validate_tags",
]
