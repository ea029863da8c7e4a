"""docs/api/index.md's summary table and the app's own OpenAPI document name the same routes
with the same statuses, both ways, so the two cannot drift apart; and its tables of a
generation request's fields and content blocks name what the request model takes. The
app is only built, never started: its Redis connection is made in the lifespan, which
this does not run."""

from __future__ import annotations

from typing import Any

from broadcaster.generations.blocks import BLOCK_TYPES
from broadcaster.http.app import create_app
from broadcaster.http.settings import Settings
from tests.support.procs import ROOT

DOC = ROOT / "docs" / "api" / "index.md"
"""The HTTP API's front page: its summary table."""
GENERATIONS = ROOT / "docs" / "api" / "generations.md"
"""Its page on generations: the request's fields and content blocks."""
HEADER = "| method | path | statuses |"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

Routes = dict[tuple[str, str], set[str]]


def summary_table(text: str) -> Routes:
    """The rows of the table under ``HEADER``: (method, path) -> statuses."""
    lines = text.splitlines()
    assert lines.count(HEADER) == 1, f"{DOC.name} needs exactly one table headed {HEADER}"
    rows: Routes = {}
    for line in lines[lines.index(HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        method, path, statuses = (cell.strip() for cell in line.strip().strip("|").split("|"))
        key = (method.upper(), path)
        assert key not in rows, f"{key} has two rows"
        rows[key] = {s.strip() for s in statuses.split(",") if s.strip()}
    return rows


def openapi_routes(schema: dict[str, Any]) -> Routes:
    return {
        (method.upper(), path): set(operation["responses"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in METHODS
    }


def differences(documented: Routes, served: Routes) -> list[str]:
    """What the table says that the OpenAPI document does not, and the reverse."""
    found = [f"{m} {p}: in /openapi.json, not in the table" for m, p in served.keys() - documented]
    found += [f"{m} {p}: in the table, not in /openapi.json" for m, p in documented.keys() - served]
    for route in sorted(documented.keys() & served.keys()):
        if documented[route] != served[route]:
            found.append(
                f"{route[0]} {route[1]}: the table says {sorted(documented[route])}, "
                f"/openapi.json {sorted(served[route])}"
            )
    return found


def served_routes() -> Routes:
    app = create_app(Settings(), "redis://127.0.0.1:1")
    return openapi_routes(app.openapi())


def test_the_summary_table_is_the_openapi_document() -> None:
    documented = summary_table(DOC.read_text())
    served = served_routes()
    assert len(served) >= 8, sorted(served)
    assert differences(documented, served) == []


def test_the_check_notices_a_status_or_a_route_removed_or_added() -> None:
    """The comparison can fail: the same doc with one status or one row changed."""
    text = DOC.read_text()
    served = served_routes()
    row = "| POST | /v1/generations | 202, 400, 401, 403, 409, 413, 422, 429, 503, 507 |"
    assert row in text
    for changed in (
        row.replace(", 507", ""),
        row.replace("507", "504, 507"),
        row.replace("| POST |", "| PUT |"),
        row + "\n| GET | /v1/nowhere | 200 |",
    ):
        assert differences(summary_table(text.replace(row, changed)), served), changed
    without_row = text.replace(row + "\n", "")
    assert differences(summary_table(without_row), served) == [
        "POST /v1/generations: in /openapi.json, not in the table"
    ]


FIELDS_HEADER = "| field | type | |"
BLOCKS_HEADER = "| `type` | fields | |"


def first_cells(text: str, header: str) -> set[str]:
    """The back-quoted names in the first column of the table under ``header``."""
    lines = text.splitlines()
    assert lines.count(header) == 1, f"the page needs exactly one table headed {header}"
    names = set()
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        names.add(line.strip("|").split("|")[0].strip())
    return names


def test_every_field_of_a_generation_request_is_documented() -> None:
    """The request table of docs/api/generations.md names exactly the fields of the request body in
    /openapi.json (which is the validating model's own schema)."""
    app = create_app(Settings(), "redis://127.0.0.1:1")
    body = app.openapi()["paths"]["/v1/generations"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False  # unknown fields are refused
    documented = first_cells(GENERATIONS.read_text(), FIELDS_HEADER)
    assert documented == {f"`{name}`" for name in schema["properties"]}


def test_every_content_block_type_is_documented() -> None:
    documented = first_cells(GENERATIONS.read_text(), BLOCKS_HEADER)
    assert documented == {f"`{kind}`" for kind in BLOCK_TYPES} | {"any other"}
