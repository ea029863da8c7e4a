"""The site's reference pages made from the code (tools/): every setting has a
description (the docstring under its field) and a row, every subcommand of both programs
its section, every route of /openapi.json its section. The site's strict build
(``make lint``) checks the links; these check what the pages say."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcaster.http.settings import Settings
from tools import cli_reference, openapi_reference, settings_reference
from tools.openapi_reference import METHODS
from worker.settings import WorkerSettings


class _Partly(BaseSettings):
    """A settings class of the test's own: one field described, one not."""

    model_config = SettingsConfigDict(env_prefix="PARTLY_")

    described: int = Field(1, ge=0)
    """What it does."""
    bare: str = "x"


def test_every_setting_has_a_description() -> None:
    missing = settings_reference.undescribed()
    assert not missing, "settings without a docstring under their field: " + ", ".join(missing)


def test_a_setting_without_a_docstring_is_found() -> None:
    assert settings_reference.undescribed((("test", _Partly),)) == ["PARTLY_BARE"]
    [_, described] = settings_reference.rows((("test", _Partly),))
    assert (described.variable, described.default, described.description) == (
        "PARTLY_DESCRIBED",
        "1",
        "What it does.",
    )


def test_the_settings_table_has_every_variable_once() -> None:
    table = settings_reference.markdown()
    variables = [row.variable for row in settings_reference.rows()]
    assert len(variables) == len(set(variables))
    for name in ("REDIS_URL", "BROADCASTER_PORT", "WORKER_CONCURRENCY", "BROADCASTER_DURABILITY"):
        assert f"| `{name}` |" in table
    for cls in (Settings, WorkerSettings):
        assert len(cls.model_fields) <= len(variables)
    readers = {r.variable: r.readers for r in settings_reference.rows()}
    assert readers["BROADCASTER_DURABILITY"] == ("front-end", "worker", "webhooks run")


def test_the_cli_reference_has_every_subcommand() -> None:
    page = cli_reference.markdown()
    for command in (
        "python -m broadcaster serve",
        "python -m broadcaster demo",
        "python -m broadcaster tail",
        "python -m broadcaster bench",
        "python -m broadcaster webhooks",
        "python -m broadcaster hash-key",
        "python -m broadcaster providers",
        "python -m worker run",
    ):
        assert f"`{command}`" in page, command
    assert "--concurrency" in page and "--insecure" in page


def test_the_http_reference_has_every_route() -> None:
    document = openapi_reference.document()
    page = openapi_reference.markdown(document)
    routes = [
        f"## `{method.upper()} {path}`"
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    ]
    assert len(routes) > 20
    missing = [route for route in routes if route not in page]
    assert not missing, missing
