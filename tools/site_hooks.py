"""mkdocs hooks (mkdocs.yml, ``hooks:``): the reference pages made from the code at build
time, ARCHITECTURE.md included as the architecture page, and the strict build's last
check: a page kept out of the navigation must still be linked from a page in it.

A page asks for generated content with a marker line, ``<!-- generated: NAME -->``:
``settings``, ``cli``, ``http-api`` or ``include:PATH`` (a file of the repository, from
its root)."""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mkdocs loads a hook by its path, not as a package's module
    sys.path.insert(0, str(ROOT))

from tools import cli_reference, openapi_reference, settings_reference  # noqa: E402

MARKER = re.compile(r"^<!-- generated: (\S+) -->$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
OPENAPI = "reference/openapi.json"

_linked: set[str] = set()


DOCS_LINK = re.compile(r"\]\(docs/([^)]+)\)")


def _include(path: str, page_dir: str) -> str:
    """A repository file's text without its first heading (the page has its own), its
    links into ``docs/`` made relative to the page that includes it."""
    text = (ROOT / path).read_text()
    text = text.split("\n", 1)[1] if text.startswith("# ") else text
    return DOCS_LINK.sub(lambda m: f"]({posixpath.relpath(m[1], page_dir or '.')})", text)


def _generated(name: str, page_dir: str) -> str:
    if name == "settings":
        return settings_reference.markdown()
    if name == "cli":
        return cli_reference.markdown()
    if name == "http-api":
        return openapi_reference.markdown(openapi_reference.document())
    if name.startswith("include:"):
        return _include(name.removeprefix("include:"), page_dir)
    raise PluginError(f"unknown generated content {name!r}")


def on_files(files: Files, config: Any) -> Files:
    """The OpenAPI document, published beside its page."""
    document = openapi_reference.dumps(openapi_reference.document())
    files.append(File.generated(config, OPENAPI, content=document))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Fill the page's markers, and note the pages it links to."""
    here = posixpath.dirname(page.file.src_uri)
    filled = MARKER.sub(lambda m: _generated(m.group(1), here), markdown)
    for target in LINK.findall(filled):
        _linked.add(posixpath.normpath(posixpath.join(here, target)))
    return filled


def on_post_build(config: Any) -> None:
    """A page out of the navigation that no page links to is an orphan: fail."""
    kept_out = config.get("not_in_nav")
    if kept_out is None:
        return
    docs = Path(config["docs_dir"])
    orphans = [
        str(p.relative_to(docs))
        for p in sorted(docs.rglob("*.md"))
        if kept_out.match_file(str(p.relative_to(docs))) and str(p.relative_to(docs)) not in _linked
    ]
    _linked.clear()
    if orphans:
        raise PluginError("pages in no navigation and linked from no page: " + ", ".join(orphans))
