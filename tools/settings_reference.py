"""Every setting in one table, made from the pydantic settings classes: the environment
variable, its type, its default, the processes that read it, and what it does (the
attribute docstring under the field). A setting without a docstring has no description:
``undescribed`` lists those, and a unit test fails on any."""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from broadcaster.core.settings import variable_of
from broadcaster.http.settings import Settings
from broadcaster.webhooks.settings import DelivererSettings
from worker.settings import WorkerSettings

PROCESSES: tuple[tuple[str, type[BaseSettings]], ...] = (
    ("front-end", Settings),
    ("worker", WorkerSettings),
    ("webhooks run", DelivererSettings),
)
"""Each process's settings class, as the site names the process."""


@dataclass(frozen=True)
class Row:
    variable: str
    type: str
    default: str
    readers: tuple[str, ...]
    description: str


@functools.cache
def _docstrings(cls: type) -> dict[str, str]:
    """The attribute docstrings of ``cls``'s own fields: the string under each one (its
    source parsed once, not once per field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    found: dict[str, str] = {}
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            found[field.target.id] = inspect.cleandoc(doc.value.value)
    return found


def _description(cls: type[BaseSettings], name: str) -> str:
    """The docstring of field ``name``, from the class in ``cls``'s MRO that declares it."""
    for base in cls.__mro__:
        if name in getattr(base, "__annotations__", {}):
            return _docstrings(base).get(name, "")
    return ""


def _type(annotation: Any) -> str:
    """The field's type as a reader writes the value: ``one of a, b``, ``secret``, ``int``,
    with ``or unset`` for an optional one."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in rest) + " or unset"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _default(value: Any) -> str:
    if value is PydanticUndefined or value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else '""'


def rows(
    processes: tuple[tuple[str, type[BaseSettings]], ...] = PROCESSES,
) -> list[Row]:
    """One row per environment variable, in alphabetical order."""
    seen: dict[str, Row] = {}
    for process, cls in processes:
        for name, info in cls.model_fields.items():
            variable = variable_of(cls, name)
            if variable in seen:
                row = seen[variable]
                seen[variable] = Row(
                    row.variable, row.type, row.default, (*row.readers, process), row.description
                )
                continue
            seen[variable] = Row(
                variable,
                _type(info.annotation),
                _default(info.default),
                (process,),
                _description(cls, name),
            )
    return sorted(seen.values(), key=lambda row: row.variable)


def undescribed(
    processes: tuple[tuple[str, type[BaseSettings]], ...] = PROCESSES,
) -> list[str]:
    """The variables whose field has no docstring."""
    return [row.variable for row in rows(processes) if not row.description]


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def markdown() -> str:
    """The reference page's table."""
    lines = [
        "| variable | type | default | read by | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows():
        cells = [
            f"`{row.variable}`",
            _cell(row.type),
            f"`{_cell(row.default)}`",
            ", ".join(row.readers),
            _cell(row.description),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
