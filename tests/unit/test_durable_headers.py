"""What a Durable Streams answer in a stream's own content type adds so that stored bytes
never run as a page of the API's origin (``protocol.stored_bytes_headers``); over HTTP:
tests/integration/test_durable.py::test_stored_bytes_never_run_on_the_apis_origin."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from broadcaster.durable import protocol

INERT = {"application/json", "text/plain", "application/octet-stream"}


@given(st.from_regex(r"[\w.+-]{1,20}/[\w.+-]{1,30}", fullmatch=True))
@example("text/html")
@example("image/svg+xml")
@example("application/xhtml+xml")
@example("text/xml")
@example("application/pdf")
@example("multipart/x-mixed-replace")
@example("text/plain")
@example("application/json")
@example("application/octet-stream")
def test_every_type_but_json_plain_text_and_octet_stream_is_sandboxed(ct: str) -> None:
    """An allow-list, not a list of dangerous types: a type nobody thought of is
    sandboxed too. (Content types are stored normalized: lower case, no parameters.)"""
    headers = protocol.stored_bytes_headers(ct)
    if ct in INERT:
        assert headers == {}
    else:
        assert headers["content-security-policy"].split(";")[0] == "sandbox"
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["content-disposition"] == "attachment"


def test_a_declared_type_is_normalized_before_it_is_stored() -> None:
    """``Text/HTML; charset=utf-8`` is stored, and judged, as ``text/html``."""
    ct = protocol.normalize_content_type("Text/HTML; charset=utf-8")
    assert ct == "text/html" and protocol.stored_bytes_headers(ct) != {}
    assert protocol.stored_bytes_headers(protocol.normalize_content_type("TEXT/plain; x=y")) == {}
