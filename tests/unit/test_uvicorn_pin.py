"""uvicorn is pinned (``==0.54.*``) because ``broadcaster/transport/`` copies and
overrides parts of it. Each of those parts' source is hashed here: an upgrade that changes
any fails this test, which names what to re-read in the transport before the new hash is
written down. An upgrade is a deliberate act."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
from importlib.metadata import version
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

HTTP = "uvicorn.protocols.http.httptools_impl"
PINNED: dict[str, tuple[str, str]] = {
    # member: (sha256 of its source, first 16 hex; what of the transport to re-read)
    f"{HTTP}:HttpToolsProtocol.__init__": (
        "4f08999410347141",
        "wire.DirectWriteProtocol.__init__ (per-connection state set by hand; _SHARED)",
    ),
    f"{HTTP}:HttpToolsProtocol.connection_made": ("6efb565ff3d36b91", "wire.connection_made"),
    f"{HTTP}:HttpToolsProtocol.connection_lost": ("c91a4c9bf2e29c55", "wire.connection_lost"),
    f"{HTTP}:HttpToolsProtocol.data_received": (
        "010a7ae59a5d3b1a",
        "wire.data_received (dispatch after it)",
    ),
    f"{HTTP}:HttpToolsProtocol.on_message_begin": (
        "96d377fdc7c2baef",
        "wire.on_message_begin, _make_scope",
    ),
    f"{HTTP}:HttpToolsProtocol.on_url": ("37be44e962b04ca8", "wire.on_url"),
    f"{HTTP}:HttpToolsProtocol.on_header": ("65d62c044f61fdbd", "wire.on_header"),
    f"{HTTP}:HttpToolsProtocol.on_headers_complete": (
        "1ea8589acfad92d8",
        "wire.on_headers_complete, _to_app and _cycle (copies of its scope and cycle)",
    ),
    f"{HTTP}:HttpToolsProtocol.on_body": ("dba9c32aeba35b6a", "wire.on_body"),
    f"{HTTP}:HttpToolsProtocol.on_message_complete": (
        "1fbad42dc31fc01f",
        "wire.on_message_complete",
    ),
    f"{HTTP}:HttpToolsProtocol.on_response_complete": (
        "64e254f28e389e76",
        "wire._finish (calls it through on_response: the pipeline's next request), "
        "wire.on_response_complete (a lingering connection takes no next request)",
    ),
    f"{HTTP}:HttpToolsProtocol._start_asgi_task": ("9c08c2571ae9b038", "wire._start_asgi_task"),
    f"{HTTP}:HttpToolsProtocol.shutdown": (
        "d7351fa33f00d430",
        "wire: a detached cycle left open at shutdown",
    ),
    f"{HTTP}:RequestResponseCycle.__init__": (
        "4d2f220910c33c12",
        "wire._cycle (keyword arguments)",
    ),
    f"{HTTP}:RequestResponseCycle.run_asgi": (
        "0f33f2449a444bc2",
        "cycles.DetachableCycle.run_asgi (a copy)",
    ),
    f"{HTTP}:RequestResponseCycle.send": (
        "abdd8601b326a8da",
        "wire._finish and _answer (write the head and the end as send would)",
    ),
    "uvicorn.protocols.http.flow_control:FlowControl.__init__": (
        "0152d94a040758b5",
        "cycles.LeanFlow.__init__ (a copy)",
    ),
    "uvicorn.protocols.utils:get_local_addr": ("6be1e23931c77938", "wire._make_scope"),
    "uvicorn.middleware.proxy_headers:_TrustedHosts": (
        "3debe2af4a662daf",
        "serving._trusted (the fast path finds the client as the middleware does)",
    ),
    "uvicorn.middleware.proxy_headers:ProxyHeadersMiddleware.__call__": (
        "b601df964c02a3bb",
        "serving._trusted, viewers.ask.from_head (the client's address behind a proxy)",
    ),
    "uvicorn.server:Server.startup": ("2aa1d70a244bfcf2", "serving.DrainingServer.startup"),
    "uvicorn.server:Server.shutdown": ("9b33c50562992b1e", "serving.DrainingServer.shutdown"),
    "uvicorn.server:Server.handle_exit": ("553276efa26e09ea", "serving.DrainingServer.handle_exit"),
    "uvicorn.server:Server.serve": ("112ef41af52167e3", "serving.DrainingServer.serve"),
}


@functools.cache
def _as_defined(module: str) -> ModuleType:
    """The module as its file defines it, run anew (once per module): not the loaded one,
    on which another import of this process may have put its own (sse-starlette, which
    the OpenAI Agents SDK imports, replaces ``Server.handle_exit``)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.loader is not None, module
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    return fresh


def _source_hash(member: str) -> str:
    module, _, path = member.partition(":")
    obj: object = _as_defined(module)
    for name in path.split("."):
        obj = getattr(obj, name)
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]  # type: ignore[arg-type]


def test_uvicorn_is_the_release_the_transport_was_written_against() -> None:
    assert version("uvicorn").startswith("0.54."), version("uvicorn")


@pytest.mark.parametrize("member", sorted(PINNED))
def test_what_the_transport_copies_of_uvicorn_is_unchanged(member: str) -> None:
    expected, reread = PINNED[member]
    found = _source_hash(member)
    assert found == expected, (
        f"uvicorn's {member} changed (sha256 {found}, pinned {expected}): re-read "
        f"broadcaster/transport/{reread} against it, then pin the new hash here"
    )


def test_the_hash_tells_a_change() -> None:
    """The check can fail: two members' sources hash apart."""
    assert _source_hash(f"{HTTP}:HttpToolsProtocol.on_url") != _source_hash(
        f"{HTTP}:HttpToolsProtocol.on_header"
    )


def test_a_member_patched_in_this_process_is_read_as_uvicorn_defines_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What another import put on the loaded class is not what is hashed."""
    from uvicorn.server import Server

    member = "uvicorn.server:Server.handle_exit"
    monkeypatch.setattr(Server, "handle_exit", lambda self, sig, frame: None)
    assert _source_hash(member) == PINNED[member][0]
