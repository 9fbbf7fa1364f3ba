"""Typed recipe values: a field's allowed range or choices (`checked`), coercion of a YAML value to a type
annotation (`coerce_type`) and the one-line errors for a value of the wrong type or range (`check_value`) or an
unknown key (`check_keys`). Used by the recipe (`nlp_transfer.config`) and the strategies' own options
(`nlp_transfer.strategy_configs`)."""
from __future__ import annotations

import enum
import types
import typing
from dataclasses import field
from typing import Any

from .errors import NLPTransferError, did_you_mean


def checked(default: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False, choices: tuple | None = None):
    """A recipe field with its allowed range or choices, checked by `check_value` when a recipe is built."""
    limits = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "choices": choices}
    return field(default=default, metadata=limits)


def _describe_type(hint: Any) -> str:
    """``int | None`` -> 'an integer or null', for messages."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
             list: "a list", dict: "a mapping"}
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if str in args and any(isinstance(a, type) and issubclass(a, enum.Enum) for a in args):
            args = tuple(a for a in args if a is not str)
        return " or ".join(_describe_type(a) for a in args)
    if origin is list:
        return f"a list of {_describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in hint)
    return names.get(hint, getattr(hint, "__name__", str(hint)))


_NOT = object()  # "does not match"


def coerce_type(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (int, float, bool, str, enums, lists, dicts, unions of them), or `_NOT`.

    Numbers written as strings (YAML reads ``3e-5`` as a string) become numbers; an integral float may stand for an
    integer; nothing else is converted."""
    if hint is Any or hint is object:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and str in args:  # `SchedulerType | str`: the string must name a member
            args = tuple(a for a in args if a is not str)
        for arg in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):  # str last: "3" -> 3
            out = coerce_type(value, arg)
            if out is not _NOT:
                return out
        return _NOT
    if origin is list:
        if not isinstance(value, list):
            return _NOT
        items = [coerce_type(item, args[0]) if args else item for item in value]
        return _NOT if any(item is _NOT for item in items) else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return _NOT
        if len(args) == 2:
            pairs = {k: coerce_type(v, args[1]) for k, v in value.items()}
            return _NOT if any(v is _NOT for v in pairs.values()) else pairs
        return value
    if hint is type(None):
        return None if value is None else _NOT
    if hint is bool:
        return value if isinstance(value, bool) else _NOT
    if hint in (int, float):
        if isinstance(value, str):
            try:
                value = float(value.strip()) if hint is float else int(value.strip())
            except ValueError:
                return _NOT
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
            return _NOT
        if hint is int:
            return int(value) if float(value).is_integer() else _NOT
        return value if isinstance(value, int) else float(value)  # 20 stays 20 in the saved recipe
    if hint is str:
        return value if isinstance(value, str) else _NOT
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = {m.value for m in hint}
        return value if isinstance(value, hint) or value in values else _NOT
    return value  # a type we do not check (the class using it does)


def _limits_text(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def check_value(value: Any, hint: Any, limits: dict[str, Any], key: str, source: str) -> Any:
    """``value`` converted to ``hint`` and inside ``limits`` (low/high/open ends/choices), else a one-line error."""
    out = coerce_type(value, hint)
    if out is _NOT:
        members = [str(m.value) for a in (typing.get_args(hint) or (hint,))
                   if isinstance(a, type) and issubclass(a, enum.Enum) for m in a]
        if members and isinstance(value, str):
            raise NLPTransferError(f"{source}: {key} '{value}' is not supported{did_you_mean(value, members)} "
                                   f"(choose from {', '.join(members)})")
        raise NLPTransferError(f"{source}: {key} must be {_describe_type(hint)}, got {value!r}")
    choices = limits.get("choices")
    if choices and out not in choices:
        raise NLPTransferError(f"{source}: {key} '{out}' is not supported{did_you_mean(out, choices)} "
                               f"(choose from {', '.join(choices)})")
    low, high = limits.get("low"), limits.get("high")
    if isinstance(out, (int, float)) and not isinstance(out, bool) and (low is not None or high is not None):
        too_low = low is not None and (out <= low if limits.get("low_open") else out < low)
        too_high = high is not None and (out >= high if limits.get("high_open") else out > high)
        if too_low or too_high:
            raise NLPTransferError(f"{source}: {key} must be "
                                   f"{_limits_text(low, high, limits.get('low_open'), limits.get('high_open'))}, "
                                   f"got {value!r}")
    return out


def check_keys(values: dict, allowed: set[str], where: str, source: str, aliases: dict[str, str] | None = None) -> None:
    """Every key of ``values`` is in ``allowed``, else a one-line error with the closest key (or, from ``aliases``,
    what this package calls an option that other tools spell differently)."""
    for key in values:
        if key not in allowed:
            listing = ("see the transformers TrainingArguments documentation" if where == "training."
                       else f"valid keys: {', '.join(sorted(allowed))}" if len(allowed) <= 30
                       else "the README's 'From a recipe' section lists every key")
            raise NLPTransferError(f"{source}: unknown key '{where}{key}'{did_you_mean(key, allowed, where, aliases)} "
                                   f"({listing})")
