"""The command line's reference, made from its argument parsers: each command and
subcommand with its usage and its options' help, as argparse itself prints them."""

from __future__ import annotations

import argparse
import os

from broadcaster.cli import build_parser as broadcaster_parser
from worker.cli import build_parser as worker_parser


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.items())
    return found


def _help(parser: argparse.ArgumentParser) -> str:
    """``--help``'s text at a fixed width, whatever the terminal that builds the site."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        return parser.format_help()
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _section(level: int, title: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"{'#' * level} `{title}`", "", "```text", _help(parser).rstrip(), "```", ""]
    for name, sub in _subcommands(parser):
        lines += _section(level + 1, f"{title} {name}", sub)
    return lines


def markdown() -> str:
    """Both programs, every subcommand nested under its command."""
    lines: list[str] = []
    for prog, parser in (
        ("python -m broadcaster", broadcaster_parser()),
        ("python -m worker", worker_parser()),
    ):
        lines += _section(2, prog, parser)
    return "\n".join(lines)
