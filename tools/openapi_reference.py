"""The HTTP API's reference, made from the application's own OpenAPI document (the one a
front-end serves at ``/openapi.json``): one section per route, its parameters, request
body and answers. The document itself is published beside the page."""

from __future__ import annotations

import json
from typing import Any

from broadcaster.http.app import create_app
from broadcaster.http.settings import Settings

METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def document() -> dict[str, Any]:
    """``/openapi.json`` as a front-end with default settings serves it (no Redis needed
    to make it)."""
    return create_app(Settings(), "redis://127.0.0.1:1").openapi()


def _cell(text: object) -> str:
    return " ".join(str(text).replace("|", "\\|").split())


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        return " or ".join(_schema_name(s) for s in options)
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def _parameters(operation: dict[str, Any]) -> list[str]:
    params = operation.get("parameters", [])
    if not params:
        return []
    lines = [
        "| parameter | in | type | required | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in params:
        lines.append(
            f"| `{p['name']}` | {p['in']} | {_cell(_schema_name(p.get('schema', {})))} | "
            f"{'yes' if p.get('required') else 'no'} | {_cell(p.get('description', ''))} |"
        )
    return [*lines, ""]


def _body(operation: dict[str, Any]) -> list[str]:
    body = operation.get("requestBody")
    if not body:
        return []
    kinds = [
        f"`{media}` ({_schema_name(spec.get('schema', {}))})"
        for media, spec in body.get("content", {}).items()
    ]
    required = "required" if body.get("required") else "optional"
    return [f"**Request body** ({required}): " + ", ".join(kinds), ""]


def _responses(operation: dict[str, Any]) -> list[str]:
    lines = ["| status | content | description |", "| --- | --- | --- |"]
    for status, answer in operation.get("responses", {}).items():
        media = ", ".join(f"`{m}`" for m in answer.get("content", {})) or "none"
        lines.append(f"| {status} | {media} | {_cell(answer.get('description', ''))} |")
    return [*lines, ""]


def markdown(doc: dict[str, Any]) -> str:
    """The routes in the document's order, each a section."""
    lines: list[str] = []
    for path, item in doc["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            lines += [f"## `{method.upper()} {path}`", ""]
            summary = operation.get("summary")
            if summary:
                lines += [f"**{summary}**", ""]
            if operation.get("description"):
                lines += [operation["description"].strip(), ""]
            lines += _parameters(operation) + _body(operation) + _responses(operation)
    return "\n".join(lines)


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
