"""Every name accepted from outside is checked whole, in ASCII, without control characters
(``core/names.py``), and nothing else in the project checks a name its own way.

Python's ``$`` matches before a final newline too: ``re.match(r"^x$", "x\\n")`` succeeds,
and so did the event type ``"x\\n"``, which split the ``event:`` line of the frames made
of it. The checks here:

- each function of ``names`` accepts its grammar's strings and refuses each of them with
  a line break before or after, any control character (C0, DEL, C1) anywhere, and a
  digit or a letter outside ASCII (Durable Streams paths, wider, take letters);
- every regular expression in ``broadcaster/`` and ``worker/`` (found in the source with
  ``ast``: ``re`` calls, ``.match``/``.search``/``.fullmatch``, ``pattern=``) is in
  ``names``, or listed below as no name with the reason;
- every compiled pattern a module holds refuses a string it accepts plus a newline
  however it is called (``match``, ``fullmatch`` or ``search``);
- every pydantic field with a pattern, validated with its model's configuration, and
  every pattern ``/openapi.json`` publishes, refuse it too.

The last tests show that these checks fail on a ``$``-terminated validator.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

import broadcaster
import worker
from broadcaster.agui import frames as agui_frames
from broadcaster.bench import viewers
from broadcaster.chat import framing
from broadcaster.core import keys, names, sse
from broadcaster.core.events import TYPE_RE
from broadcaster.dashboard import cursor
from broadcaster.durable import protocol
from broadcaster.http import app, chat_answers
from broadcaster.http.app import create_app
from broadcaster.http.settings import Settings
from broadcaster.transport import head
from tests.support import long_form
from tests.support.procs import ROOT

# --- the functions of names ---


def _mux(value: str) -> object:
    """A whole resume point of ``GET /v1/events``, as ``cursor.parse`` reads it."""
    try:
        return cursor.parse(value)
    except cursor.BadResumePoint:
        return None


VALIDATORS: dict[str, tuple[Callable[[str], object], list[str]]] = {
    "stream id": (names.is_stream_id, ["a", "job-42", "A_b-9", "x" * 64]),
    "chat id": (names.is_chat_id, ["chat-1", "Z"]),
    "prefix": (names.is_prefix, ["jobs-", "user42_"]),
    "run id": (names.parse_run_id, ["c~g~0", "chat-1~gen_2~123456789012"]),
    "event type": (names.is_event_type, ["x", "0", "data-progress", "a" * 64]),
    "webhook event type": (names.is_webhook_event_type, ["stream.ended", "a_1.b.c2"]),
    "resume point": (sse.parse_resume_point, ["0", "5", "5.0123abcd", "17.x_y-z", "3."]),
    "resume point of /v1/events": (_mux, ["-", "-.0=5", "0123456789abcdef.~job-1=3.0123abcd"]),
    "Durable Streams path": (names.is_ds_path, ["a", "docs/caf\u00e9/1", "x.y", "\ufffd"]),
    "Durable Streams offset": (names.ds_offset, ["-1", "now", "0_0", "0000000000000007_12"]),
    "decimal": (names.is_decimal, ["0", "007", "12"]),
    "canonical decimal": (names.is_canonical_decimal, ["0", "10"]),
    "producer id": (names.is_producer_id, ["p", "order-service-1", "a b", "x" * 256]),
    "media type": (names.is_media_type, ["text/plain", "application/vnd.x+json"]),
    "tool name": (names.is_tool_name, ["get_weather", "T-1"]),
    "server tool type": (names.is_server_tool_type, ["web_search_20250305"]),
}
WIDER = {"Durable Streams path"}
"""Grammars that take any letter: a digit or letter outside ASCII is no mistake there."""

CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]
FOREIGN = ["\u0663", "\uff13", "\u00b2", "\u00e9", "\u0131", "\u212a", "\u2028", "\ufeff"]
"""An Arabic-Indic 3, a fullwidth 3, a superscript 2 (``str.isdigit`` takes them all),
letters (``é``, a dotless i, the Kelvin sign, which case-insensitive ASCII classes may
take), a line separator and a byte order mark."""


def accepts(check: Callable[[str], object], value: str) -> bool:
    return check(value) not in (None, False)


@pytest.mark.parametrize("kind", VALIDATORS)
def test_a_name_is_accepted_whole_and_refused_with_anything_around_it(kind: str) -> None:
    check, samples = VALIDATORS[kind]
    for valid in samples:
        assert accepts(check, valid), (kind, valid)
        for bad in (valid + "\n", "\n" + valid, valid + "\r\n", valid + "\r", valid + "\x00"):
            assert not accepts(check, bad), (kind, bad)
        middle = len(valid) // 2
        for c in CONTROLS:
            for bad in (c + valid, valid[:middle] + c + valid[middle:], valid + c):
                assert not accepts(check, bad), (kind, bad)
        assert not accepts(check, valid + "\ud800"), (kind, "a lone surrogate")
        if kind in WIDER:
            continue
        for c in FOREIGN:
            for bad in (c + valid, valid[:middle] + c + valid[middle:], valid + c):
                assert not accepts(check, bad), (kind, bad)


@long_form.mark
@pytest.mark.parametrize("kind", VALIDATORS)
@settings(max_examples=long_form.budget(50, 200), deadline=None)
@given(value=st.text(max_size=80))
def test_what_a_check_accepts_holds_no_control_character(kind: str, value: str) -> None:
    check = VALIDATORS[kind][0]
    if not accepts(check, value):
        return
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in value), (kind, value)
    if kind not in WIDER:
        assert value.isascii() and value.isprintable(), (kind, value)


GRAMMARS = {
    names.is_stream_id: names.STREAM_ID_GRAMMAR,
    names.is_event_type: names.EVENT_TYPE_GRAMMAR,
    names.is_webhook_event_type: names.WEBHOOK_EVENT_TYPE_GRAMMAR,
    names.is_tool_name: names.TOOL_NAME_GRAMMAR,
}


@long_form.mark
@pytest.mark.parametrize("check", GRAMMARS, ids=lambda c: c.__name__)
@settings(max_examples=long_form.budget(25, 100), deadline=None)
@given(data=st.data())
def test_every_string_of_a_grammar_is_accepted(check: Callable[[str], bool], data: Any) -> None:
    value = data.draw(st.from_regex(GRAMMARS[check], fullmatch=True))
    assert check(value)


def test_the_old_names_are_the_new_patterns() -> None:
    """Code that imports the names the patterns always had gets the whole-string ones."""
    assert keys.STREAM_ID_RE is names.STREAM_ID_RE
    assert TYPE_RE is names.EVENT_TYPE_RE
    assert keys.DS_PATH_MAX == names.DS_PATH_MAX
    assert keys.STREAM_ID_RE.match("abc\n") is None and TYPE_RE.match("x\n") is None
    assert chat_answers.parse_run_id("c~g~\u00b2") is None  # int("²") fails: it was a 500
    assert keys.ds_name("abc") == "abc" and keys.ds_name("abc\n") != "abc\n"


def test_a_durable_streams_path_is_bounded_in_bytes() -> None:
    assert names.is_ds_path("x" * names.DS_PATH_MAX)
    assert not names.is_ds_path("x" * (names.DS_PATH_MAX + 1))
    assert not names.is_ds_path("\u00e9" * (names.DS_PATH_MAX // 2 + 1))
    assert not names.is_ds_path("")
    assert not protocol.valid_content_type("t\u00e9xt/plain")
    with pytest.raises(protocol.BadRequest):
        protocol.parse_offset("0_0\n")


# --- every regular expression of the project ---

NOT_NAMES: dict[tuple[str, str], str] = {
    ("broadcaster/core/events.py", "space"): "skips JSON's whitespace between the items of "
    "a large body parsed in pieces (the json module's own pattern)",
    ("broadcaster/agui/frames.py", "_TEXT_DELTA"): "reads the part id and delta of a stored "
    "text-delta (JSON this server's append wrote), to map it without parsing",
    ("broadcaster/agui/frames.py", "_DELTA_RUN"): "recognises a run of stored text deltas "
    "of one part (JSON this server's append wrote), to map it as bytes",
    ("broadcaster/agui/frames.py", "_EVENTS"): "reads the event frames of a run the fan-out "
    "delivers (this server's SSE encoding) into id, seq and data",
    ("broadcaster/http/app.py", "EVENTS_PATH"): "routes a path to the SSE route below "
    "FastAPI; the stream id it captures is checked by check_stream_id",
    ("broadcaster/chat/framing.py", "_LAST_ID"): "finds the last id: line in frames "
    "this server made",
    ("broadcaster/chat/framing.py", "_ENDED_FRAME"): "finds an abort or error frame in "
    "frames this server made",
    ("broadcaster/durable/protocol.py", "_LINE_BREAK"): "splits a text stream's payload at "
    "its line breaks, so that no line of it ends an SSE event",
    ("broadcaster/auth/tokens.py", "_JWT_SHAPE"): "a credential's shape, which routes it to "
    "PyJWT (whole-string, and checked for line breaks below like a name)",
    ("broadcaster/auth/tokens.py", "_LEGACY_SHAPE"): "a credential's shape, which routes it to "
    "the legacy verifier (whole-string, and checked for line breaks below like a name)",
    ("broadcaster/bench/viewers.py", "_ID"): "the load generator reading the server's SSE",
    ("broadcaster/bench/viewers.py", "_IDS"): "the load generator reading the server's SSE",
    ("broadcaster/bench/viewers.py", "_T"): "the load generator reading its own events",
    ("broadcaster/bench/viewers.py", "_RETRY"): "the load generator reading the server's SSE",
    ("broadcaster/bench/viewers.py", "_RETRY_AFTER"): "the load generator reading headers",
    ("broadcaster/bench/viewers.py", "self._mine"): "the load generator finding its stream",
    ("worker/providers/fake.py", "re.search"): "the fake provider finding a tool's name in "
    "a prompt",
    ("broadcaster/http/app.py", "TRACED_PATHS"): "picks the requests traced (a span, no "
    "key): the routes check their own names",
    ("broadcaster/transport/head.py", "_REQUEST_LINE"): "reads a request line (bytes) the "
    "HTTP parser would read alike; anything else goes to the parser",
    ("broadcaster/transport/head.py", "_HEADER"): "reads the header lines (bytes) of a head "
    "the HTTP parser would read alike; a head with a line it does not read goes to the parser",
    ("broadcaster/transport/head.py", "_MAYBE_NOT_PLAIN"): "finds a header (bytes) that may "
    "make a head no plain GET, to look at it closer",
    ("broadcaster/core/tracing.py", "_TRACEPARENT"): "a W3C traceparent header, rebuilt from "
    "its parts (whole-string, and checked for line breaks below like a name)",
}
"""Regular expressions outside ``names`` that check no name, and why."""

NOT_NAME_PATTERNS = {
    "^https?://": "a URL's scheme, a prefix: a URL is passed on, never made a key, a "
    "header or an SSE line",
    "^(https?://[^/]+)?/v1/stream/.+$": "Stream-Forked-From: a URL or path, whose path is "
    "then checked by names.is_ds_path",
    "^[0-9]+$": "a number of seconds (Retry-After) or a producer's epoch or seq",
    "^0*[0-9]{1,15}$": "a producer's epoch or seq, below 2^53",
    "^-?[0-9]+$": "an index the server sends (x-workflow-stream-tail-index)",
    "^(0|[1-9][0-9]{0,8})$": "Stream-TTL in seconds",
    "^(0|[1-9][0-9]{0,14})$": "Stream-Fork-Sub-Offset",
    "^[0-9]{16,20}_[0-9]{16}$": "an offset the server sends (Stream-Next-Offset)",
}
"""``pattern=`` strings that are no name's grammar, and why."""

NAMES_FILE = "broadcaster/core/names.py"
SEARCHED_IN_NAMES = {"_CONTROL_RE"}
"""The one pattern of ``names`` that is searched for, not matched whole."""


def source_files() -> Iterator[tuple[str, ast.Module]]:
    for folder in ("broadcaster", "worker"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))


def regex_uses(tree: ast.Module) -> Iterator[tuple[int, str, str]]:
    """``(line, how, what)`` of each regular expression the code uses: ``re`` calls (what:
    the name a compiled pattern is assigned to, else the function), ``.match``,
    ``.search`` and ``.fullmatch`` calls (what: the object called), ``pattern=``
    arguments (what: the argument's source)."""
    assigned: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            assigned[id(node.value)] = ast.unparse(target)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "re":
                if func.attr not in ("escape", "Pattern"):
                    yield node.lineno, f"re.{func.attr}", assigned.get(id(node), f"re.{func.attr}")
            elif func.attr in ("match", "search", "fullmatch"):
                yield node.lineno, f".{func.attr}", ast.unparse(func.value)
        for kw in node.keywords:
            if kw.arg == "pattern":
                yield node.lineno, "pattern=", ast.unparse(kw.value)


def unexplained(path: str, tree: ast.Module) -> list[str]:
    """The regular expressions of one file that are neither ``names``' nor listed as no
    name; in ``names``, any ``match`` (its checks are ``fullmatch``)."""
    found = []
    for line, how, what in regex_uses(tree):
        where = f"{path}:{line} {how} {what}"
        if path == NAMES_FILE:
            if how in (".match", "re.match") or (
                how == ".search" and what not in SEARCHED_IN_NAMES
            ):
                found.append(where + " (names checks whole strings: fullmatch)")
        elif how == "pattern=":
            literal = ast.literal_eval(what) if what.startswith(("'", '"')) else None
            if not (what.startswith("names.") or literal in NOT_NAME_PATTERNS):
                found.append(where)
        elif (path, what) not in NOT_NAMES:
            found.append(where)
    return found


def test_every_regular_expression_is_a_name_of_names_or_no_name() -> None:
    found = [where for path, tree in source_files() for where in unexplained(path, tree)]
    assert not found, (
        "a regular expression outside core/names.py: define the name there and call its "
        "function (or, if it checks no name, list it in NOT_NAMES with the reason):\n"
        + "\n".join(found)
    )


FRAMEWORK_ADAPTERS = {
    "worker.agents.langgraph_agent",
    "worker.agents.openai_agents",
    "worker.agents.pydantic_agent",
    "worker.providers.anthropic",
    "worker.providers.openai",
    "worker.providers.openai_responses",
}
"""The modules that import an agent framework (an optional extra) or a provider's SDK
(``anthropic``, ``openai``): left out of the parametrized checks below, which are made
when the tests are collected, in every test process (LangGraph and the Agents SDK take
two seconds to import, the two provider SDKs as long again); they are checked to define
no pattern at all instead (``test_the_framework_adapters_define_no_pattern``)."""


def project_modules(*, adapters: bool = False) -> list[Any]:
    modules = []
    for package in (broadcaster, worker):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(".__main__"):
                continue
            if adapters or info.name not in FRAMEWORK_ADAPTERS:
                modules.append(importlib.import_module(info.name))
    return modules


NOT_NAME_OBJECTS = [
    agui_frames._TEXT_DELTA,
    agui_frames._EVENTS,
    agui_frames._DELTA_RUN,
    app.EVENTS_PATH,
    framing._LAST_ID,
    framing._ENDED_FRAME,
    protocol._LINE_BREAK,
    viewers._ID,
    viewers._IDS,
    viewers._T,
    viewers._RETRY,
    viewers._RETRY_AFTER,
    names._CONTROL_RE,
    head._REQUEST_LINE,  # bytes of an HTTP head, read whole (NOT_NAMES)
    head._HEADER,
    head._MAYBE_NOT_PLAIN,
]
"""The compiled patterns of ``NOT_NAMES`` (and ``names``' search for control characters)."""


def compiled_patterns(*, adapters: bool = False) -> dict[str, re.Pattern[str]]:
    exempt = {id(p) for p in NOT_NAME_OBJECTS}
    found: dict[int, tuple[str, re.Pattern[str]]] = {}
    for module in project_modules(adapters=adapters):
        for attr, value in vars(module).items():
            if isinstance(value, re.Pattern) and id(value) not in exempt:
                found.setdefault(id(value), (f"{module.__name__}.{attr}", value))
    return dict(found.values())


PATTERNS = compiled_patterns()


SAMPLES = long_form.budget(5, 25)
"""Strings drawn per pattern: whether a pattern takes a line break after a string it
matches is its own (its ``$``, its flags), not the string's, which any sample shows."""


def takes_a_line_break(pattern: re.Pattern[str], sample: str) -> list[str]:
    """How ``pattern`` takes ``sample`` with a line break around it, if it does."""
    found = []
    for bad in (sample + "\n", "\n" + sample, sample + "\r\n"):
        for how in ("match", "fullmatch", "search"):
            if getattr(pattern, how)(bad) is not None:
                found.append(f"{how}({bad!r})")
    return found


def test_the_compiled_patterns_were_found() -> None:
    assert "broadcaster.core.keys.STREAM_ID_RE" in PATTERNS
    assert len(PATTERNS) >= 15


@long_form.mark
@pytest.mark.parametrize("name", sorted(PATTERNS))
@settings(max_examples=SAMPLES, deadline=None)
@given(data=st.data())
def test_no_compiled_pattern_takes_a_name_with_a_line_break(name: str, data: Any) -> None:
    pattern = PATTERNS[name]
    sample = data.draw(st.from_regex(pattern, fullmatch=True))
    assert pattern.fullmatch(sample)
    assert not takes_a_line_break(pattern, sample), (name, sample)


def pydantic_fields(*, adapters: bool = False) -> Iterator[tuple[str, type[BaseModel], str, Any]]:
    """``(where, model, field, pattern)`` of each field of the project's models that has a
    pattern."""
    seen: set[type[BaseModel]] = set()
    for module in project_modules(adapters=adapters):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__.startswith(("broadcaster", "worker"))
                and value not in seen
            ):
                seen.add(value)
                for field_name, field in value.model_fields.items():
                    for meta in field.metadata:
                        if getattr(meta, "pattern", None) is not None:
                            where = f"{value.__module__}.{value.__name__}.{field_name}"
                            yield where, value, field_name, meta.pattern


FIELDS = {where: (model, field, pattern) for where, model, field, pattern in pydantic_fields()}


def test_the_framework_adapters_define_no_pattern() -> None:
    """With the adapters imported, no compiled pattern and no field with a pattern more
    than the parametrized checks see: one defined there must be moved out of them (or
    they into the checks)."""
    assert set(compiled_patterns(adapters=True)) == set(PATTERNS)
    assert {where for where, *_ in pydantic_fields(adapters=True)} == set(FIELDS)


STRING_CONFIG = ("regex_engine", "str_strip_whitespace", "str_to_lower", "str_to_upper", "strict")


def field_adapter(model: type[BaseModel], field: str) -> TypeAdapter[Any]:
    """The field's own validation: its type, its constraints, its model's string config
    (``regex_engine="python-re"`` or stripped whitespace would let a newline through)."""
    info = model.model_fields[field]
    config = {k: model.model_config[k] for k in STRING_CONFIG if k in model.model_config}
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)], config=ConfigDict(**config))


def test_the_pydantic_fields_with_patterns_were_found() -> None:
    assert "broadcaster.chat.convert.ChatBody.id" in FIELDS
    assert "broadcaster.generations.request.GenerationRequest.id" in FIELDS
    assert "broadcaster.generations.request.CustomTool.name" in FIELDS


@long_form.mark
@pytest.mark.parametrize("where", sorted(FIELDS))
@settings(max_examples=SAMPLES, deadline=None)
@given(data=st.data())
def test_no_pydantic_field_takes_a_name_with_a_line_break(where: str, data: Any) -> None:
    model, field, pattern = FIELDS[where]
    if pattern in NOT_NAME_PATTERNS:
        return
    adapter = field_adapter(model, field)
    sample = data.draw(st.from_regex(pattern, fullmatch=True))
    adapter.validate_python(sample)
    for bad in (sample + "\n", "\n" + sample, sample + "\r\n", sample + "\u0663"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


PUBLISHED = {
    names.STREAM_ID_PATTERN: names.STREAM_ID_GRAMMAR,
    names.EVENT_TYPE_PATTERN: names.EVENT_TYPE_GRAMMAR,
    names.TOOL_NAME_PATTERN: names.TOOL_NAME_GRAMMAR,
    names.TOOL_USE_ID_PATTERN: names.TOOL_USE_ID_GRAMMAR,
    names.BLOCK_TYPE_PATTERN: names.BLOCK_TYPE_GRAMMAR,
    names.CHAT_STREAM_PATTERN: names.CHAT_STREAM_GRAMMAR,
    names.RESUME_POINT_PATTERN: names.RESUME_POINT_GRAMMAR,
    names.MUX_RESUME_POINT_PATTERN: names.MUX_RESUME_POINT_GRAMMAR,
    names.DS_OFFSET_PATTERN: names.DS_OFFSET_GRAMMAR,
    names.DS_READ_OFFSET_PATTERN: names.DS_READ_OFFSET_GRAMMAR,
    names.PRODUCER_ID_PATTERN: names.PRODUCER_ID_GRAMMAR,
    names.AGUI_EVENT_TYPE_PATTERN: names.AGUI_EVENT_TYPE_GRAMMAR,
    names.LEASE_PATTERN: names.LEASE_GRAMMAR,
    names.CHATS_CURSOR_PATTERN: names.CHATS_CURSOR_GRAMMAR,
    names.DAY_PATTERN: names.DAY_GRAMMAR,
    names.SERVER_TOOL_TYPE_PATTERN: names.SERVER_TOOL_TYPE_GRAMMAR,
}


def published_patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from published_patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from published_patterns(value)


def test_the_openapi_document_publishes_only_the_grammars_of_names() -> None:
    """JSON Schema's ``$`` (ECMAScript's, without the ``m`` flag) is the end of the
    string: ``^...$`` of a grammar refuses a final newline there; ``\\A`` or ``\\Z``
    would mean other things (ECMAScript has neither)."""
    document = create_app(Settings(), "redis://127.0.0.1:1").openapi()
    found = set(published_patterns(document))
    assert names.STREAM_ID_PATTERN in found and names.EVENT_TYPE_PATTERN in found
    for pattern in found - set(NOT_NAME_PATTERNS):
        assert pattern in PUBLISHED, f"{pattern!r} is not a grammar of core/names.py"
        grammar = PUBLISHED[pattern]
        assert pattern == f"^{grammar}$" and "\\" not in grammar.replace("\\.", "")


@long_form.mark
@pytest.mark.parametrize("pattern", sorted(PUBLISHED))
@settings(max_examples=SAMPLES, deadline=None)
@given(data=st.data())
def test_a_published_grammar_is_the_one_python_checks(pattern: str, data: Any) -> None:
    whole = re.compile(rf"\A(?:{PUBLISHED[pattern]})\Z", re.ASCII)
    sample = data.draw(st.from_regex(whole, fullmatch=True))
    assert not takes_a_line_break(whole, sample)
    assert re.fullmatch(pattern, sample) and not re.fullmatch(pattern, sample + "\n")


# --- the checks above can fail ---


def test_the_source_check_notices_a_dollar_terminated_match() -> None:
    source = (
        "import re\n"
        'ID = re.compile(r"^[a-z]+$")\n'
        "def ok(v): return ID.match(v) is not None\n"
        "class M: name: str = Field(pattern=r'^[a-z]+$')\n"
    )
    found = unexplained("broadcaster/core/example.py", ast.parse(source))
    assert sorted(f.split(" ", 1)[1] for f in found) == [
        ".match ID",
        "pattern= '^[a-z]+$'",
        "re.compile ID",
    ]
    in_names = unexplained(NAMES_FILE, ast.parse("X.match(v)\n_CONTROL_RE.search(v)\n"))
    assert in_names == [f"{NAMES_FILE}:1 .match X (names checks whole strings: fullmatch)"]


def test_the_pattern_checks_notice_a_final_newline() -> None:
    assert takes_a_line_break(re.compile(r"^[a-z]+$"), "abc") == [
        "match('abc\\n')",
        "search('abc\\n')",
    ]
    assert takes_a_line_break(re.compile(r"[a-z]+"), "abc")
    assert not takes_a_line_break(re.compile(r"\A[a-z]+\Z"), "abc")

    class Loose(BaseModel):
        model_config = ConfigDict(regex_engine="python-re")
        name: str = Field(pattern=r"^[a-z]+$")

    class Stripped(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True)
        name: str = Field(pattern=r"^[a-z]+$")

    for model in (Loose, Stripped):
        field_adapter(model, "name").validate_python("abc\n")  # what the check refuses
