"""The layout of nlp_transfer/cli.py (issue 28): small functions, and a handler for every command."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

from nlp_transfer import cli

LONGEST = 80  # lines, from ``def`` to the last line of the body


def test_no_function_in_cli_is_longer_than_80_lines():
    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    long = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > LONGEST}
    assert not long, f"functions in nlp_transfer/cli.py longer than {LONGEST} lines: {long}"


def test_every_subcommand_has_a_handler_in_commands():
    parser = cli.build_parser()
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    assert len(subparsers) == 1
    names = set(subparsers[0].choices)
    assert names, "build_parser declares no subcommands"
    assert names - set(cli.COMMANDS) == set(), "subcommands without an entry in cli.COMMANDS"
    assert set(cli.COMMANDS) - names == set(), "cli.COMMANDS entries without a subcommand"
    assert all(callable(handler) for handler in cli.COMMANDS.values())
