"""User-facing errors.

Every problem caused by the user's input (a recipe, a data file, a model name) is raised as
`NLPTransferError` with a one-line message that names the place (file, line or key) and the fix.
The CLI prints it as ``error: ...`` and exits with code 2, without a traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class NLPTransferError(Exception):
    """A problem with the user's input; the message is one line and says how to fix it."""


class NoTaskHeadError(NLPTransferError):
    """`load_model` on a folder that holds an encoder (a bare checkpoint or a masked-LM run), not a task model;
    callers that also take encoders (ONNX export) catch this one."""


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "", aliases: Mapping[str, str] | None = None) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice (written as ``prefix + x``), or ``""``.

    ``aliases`` maps spellings other tools use for an option to what this package calls it (``multilabel`` ->
    ``problem_type: multi_label``); they are matched case-, dash- and space-insensitively, before close matches."""
    if aliases:
        alias = aliases.get(str(word).strip().lower().replace("-", "_").replace(" ", "_"))
        if alias is not None:
            return f"; did you mean '{alias}'?"
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{matches[0]}'?" if matches else ""
