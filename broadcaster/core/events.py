"""The event vocabulary shared by producers and the front-end: what an event is, which
types end a stream, and how an event object is turned into the one line of JSON that is
stored in Redis and sent, byte for byte, as the SSE ``data`` field; what a generation's
``finish`` says it used (``Usage``); and the strict JSON every parse of outside input goes
through (``loads_strict``), with its counterpart for encoding a large value a piece at a
time (``dumps_in_pieces``)."""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broadcaster.core import keys, names

TYPE_RE = names.EVENT_TYPE_RE
"""The event type grammar (``names.EVENT_TYPE_RE``, whole strings only); check types with
``names.is_event_type``."""
TERMINAL_TYPES = frozenset({"finish", "error", "abort"})

# Status of a generation once its stream ends with each terminal type.
STATUS_BY_TERMINAL = {"finish": "completed", "error": "failed", "abort": "cancelled"}


class InvalidEvent(ValueError):
    """An event object that does not follow the contract (bad or missing type, not JSON)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event: its seq, its type, its JSON object as compact UTF-8 bytes, and
    its history tag (empty for events stored before tags existed)."""

    seq: int
    type: str
    data: bytes
    tag: str = ""

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def json(self) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.data)
        return obj


USAGE_KINDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
"""The kinds of tokens a usage counts, as the HTTP API, webhooks and metrics name them."""


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens a generation's model calls used. ``input`` is all input, the cache's
    reads and writes included (as the AI SDK counts it: Anthropic's ``input_tokens``
    leaves them out); ``reasoning`` is part of ``output``."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def no_cache(self) -> int:
        """Input neither read from nor written to a cache."""
        return max(0, self.input - self.cache_read - self.cache_write)

    @property
    def total(self) -> int:
        return self.input + self.output

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, int, int, int, int]:
        """The counts in ``USAGE_KINDS``' order."""
        return (self.input, self.output, self.cache_read, self.cache_write, self.reasoning)

    def snake(self) -> dict[str, int]:
        """As the HTTP API, webhooks and AG-UI's ``RUN_FINISHED`` carry it."""
        return dict(zip(USAGE_KINDS, self.counts(), strict=True))

    @classmethod
    def from_snake(cls, value: Any) -> Usage:
        """From ``snake``'s shape; what it lacks (usage stored before it had the cache's
        kinds) counts 0, and anything that is not a count too."""
        got = value if isinstance(value, dict) else {}
        return cls(*(_count(got.get(kind)) for kind in USAGE_KINDS))

    def ai_sdk(self) -> dict[str, Any]:
        """The AI SDK's ``LanguageModelUsage``, as a ``finish`` event's
        ``messageMetadata.usage`` carries it."""
        return {
            "inputTokens": self.input,
            "inputTokenDetails": {
                "noCacheTokens": self.no_cache,
                "cacheReadTokens": self.cache_read,
                "cacheWriteTokens": self.cache_write,
            },
            "outputTokens": self.output,
            "outputTokenDetails": {
                "textTokens": max(0, self.output - self.reasoning),
                "reasoningTokens": self.reasoning,
            },
            "totalTokens": self.total,
        }

    @classmethod
    def from_ai_sdk(cls, value: Any) -> Usage:
        """From a ``LanguageModelUsage`` (what a worker's ``finish`` reports); a missing or
        malformed count is 0, and the deprecated top-level ``cachedInputTokens`` and
        ``reasoningTokens`` stand in for their details."""
        got = value if isinstance(value, dict) else {}
        inputs = got.get("inputTokenDetails")
        outputs = got.get("outputTokenDetails")
        inputs = inputs if isinstance(inputs, dict) else {}
        outputs = outputs if isinstance(outputs, dict) else {}
        return cls(
            _count(got.get("inputTokens")),
            _count(got.get("outputTokens")),
            _count(inputs.get("cacheReadTokens", got.get("cachedInputTokens"))),
            _count(inputs.get("cacheWriteTokens")),
            _count(outputs.get("reasoningTokens", got.get("reasoningTokens"))),
        )


def _count(value: Any) -> int:
    """A token count: a non-negative integer, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**53:
        return 0
    return int(value)


MALFORMED_TEXT = "stored event %d of this stream is malformed"
"""The ``errorText`` a reader gets in place of a stored event that cannot be served as it
is (``malformed``)."""


def malformed(seq: int, tag: str = "") -> Event:
    """What a reader gets in place of the stored event ``seq`` when that event cannot be
    served as it is (a type or data that would split its SSE frame, a missing field,
    written by some program other than the append script): a terminal ``error``, the AI
    SDK's error part, with the event's id. Reading through it ends there, as at any
    terminal event; a reader that resumes after its id goes on with the next event."""
    text = (MALFORMED_TEXT % seq).encode()
    return Event(seq, "error", b'{"type":"error","errorText":"%s"}' % text, tag)


_EVENT_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
"""How an event is encoded: one encoder, as ``json.dumps`` with arguments makes per call."""


def dump_event(obj: Any, *, pieces: bool = False) -> tuple[str, bytes]:
    """Validate one event object and return ``(type, compact JSON bytes)``.

    The JSON is on one line by construction (``json.dumps`` escapes control characters),
    so it can be the single ``data:`` line of an SSE frame. ``type`` is moved first, as
    the AI SDK's own stream parts have it. With ``pieces``, the same bytes made a piece
    at a time (``dumps_in_pieces``: a large event checked off the event loop).
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("an event must be a JSON object")
    etype = obj.get("type")
    if not names.is_event_type(etype):
        raise InvalidEvent(
            f"an event needs a string 'type' matching {names.EVENT_TYPE_PATTERN}, got {etype!r}"[
                :200
            ]
        )
    ordered = {"type": etype, **{k: v for k, v in obj.items() if k != "type"}}
    try:
        data = (
            dumps_in_pieces(ordered, _EVENT_ENCODE) if pieces else _EVENT_ENCODE(ordered).encode()
        )
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event is not valid JSON: {exc}") from None
    return etype, data


def dump_batch(objs: list[Any], *, pieces: bool = False) -> list[tuple[str, bytes]]:
    """Validate a batch to be appended atomically: non-empty, terminal event only last
    (each event as ``dump_event`` makes it, with ``pieces``)."""
    if not objs:
        raise InvalidEvent("an event batch must not be empty")
    dumped = [dump_event(o, pieces=pieces) for o in objs]
    for etype, _ in dumped[:-1]:
        if etype in TERMINAL_TYPES:
            raise InvalidEvent(f"a terminal event ({etype!r}) may only be the last of a batch")
    return dumped


def iso_ms(epoch_ms: int) -> str:
    """A moment as events write it (``expiresAt``): ISO 8601 UTC with milliseconds, as
    JavaScript's ``Date.prototype.toISOString`` does: ``2026-11-26T15:04:05.123Z``."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class InvalidJson(ValueError):
    """Text that is not strict JSON (``loads_strict``); ``code`` says which way:
    ``invalid_json`` (not JSON, not UTF-8), ``too_deep`` or ``invalid_request`` (a value
    no JSON text can carry to another program: NaN, an infinity, a lone surrogate)."""

    def __init__(self, message: str, code: str = "invalid_json") -> None:
        super().__init__(message)
        self.code = code


_SURROGATE_ESCAPES = ("\\ud", "\\uD")
"""How an escape that may make a surrogate begins; without one no string of the text holds
a lone surrogate (UTF-8 cannot encode one: the decoder refuses it)."""


def _constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON", "invalid_request")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"{text[:40]} is out of range", "invalid_request")
    return value


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_finite)
PIECE_CHARS = 256 * 1024
"""Text longer than this is decoded and parsed in pieces (``_walk``): no one call into C
holds the interpreter for long, so a large body parsed in a thread leaves the event loop
its turns."""
WALKED_DEPTH = 4
"""The levels of arrays and objects ``_walk`` takes apart by hand; below them a value is
parsed in one call (the bounds on a body keep it small)."""
_SCALAR_START = frozenset('-0123456789tfn"')
"""How an array item that is no array or object begins: such items are parsed many to a
call (``_run``)."""


_Piece = tuple[Any, int, int, int, int]
"""A value ``_walk`` parsed in one call: the value, its level, its text's start and end,
and 1 for a run (``_run``: its items in a list that stands for their array, whose bracket
is not in that text), else 0."""


def _pieces_too_deep(text: str, pieces: list[_Piece], limit: int) -> bool:
    """Whether a piece nests deeper than ``limit`` allows at its level: only a piece whose
    text opens more arrays and objects than its level leaves room for is walked
    (``too_deep``)."""
    for value, level, start, end, wrapper in pieces:
        room = limit - level
        if _opens_over(text, start, end, room - wrapper) and too_deep(value, room):
            return True
    return False


def _opens_over(text: str, start: int, end: int, most: int) -> bool:
    """Whether ``text[start:end]`` holds more than ``most`` ``[`` and ``{``: where it holds
    no more, a value parsed from it nests no deeper. Looked for one by one (``find``
    searches far faster than ``count``), no further than ``most``."""
    seen = 0
    for bracket in "[{":
        at = text.find(bracket, start, end)
        while at >= 0:
            seen += 1
            if seen > most:
                return True
            at = text.find(bracket, at + 1, end)
    return False


def loads_strict(text: str | bytes, depth: int = keys.MAX_JSON_DEPTH) -> Any:
    """``text`` as JSON, strictly: UTF-8 only (Python's parser alone would also take UTF-16
    and UTF-32), no ``NaN`` or ``Infinity`` nor a number beyond a float's range, no lone
    surrogate (``"\\ud800"``: not UTF-8, so no provider or client can be sent it), nested at
    most ``depth`` deep; else ``InvalidJson``, never another error. A long text is parsed
    in pieces (``PIECE_CHARS``)."""
    if isinstance(text, bytes):
        text = _utf8(text)
    try:
        value, deep = _parsed(text, depth)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nested deeper than {depth}", "too_deep") from None
    except (ValueError, IndexError) as exc:  # JSONDecodeError; an int's digit limit
        raise InvalidJson(f"not valid JSON: {exc}"[:300]) from None
    if deep:
        raise InvalidJson(f"nests arrays and objects deeper than {depth}", "too_deep")
    if _may_hold_surrogate(text) and _lone_surrogate(value):
        raise InvalidJson("a lone surrogate is not text", "invalid_request")
    return value


def _parsed(text: str, depth: int) -> tuple[Any, bool]:
    """``text``'s value, and whether it nests deeper than ``depth``."""
    if len(text) <= PIECE_CHARS or depth <= WALKED_DEPTH:
        value = _DECODER.decode(text) if len(text) <= PIECE_CHARS else _walked(text, None)
        return value, _opens_over(text, 0, len(text), depth) and too_deep(value, depth)
    pieces: list[_Piece] = []
    value = _walked(text, pieces)
    return value, _pieces_too_deep(text, pieces, depth)


def _walked(text: str, pieces: list[_Piece] | None) -> Any:
    value, end = _walk(text, _skip(text, 0), 0, pieces)
    if _skip(text, end) != len(text):
        raise ValueError(f"extra data at {end}")
    return value


def _may_hold_surrogate(text: str) -> bool:
    """Whether ``text`` holds one of ``_SURROGATE_ESCAPES``: looked for a piece
    (``PIECE_CHARS``) at a time, each piece reaching into the next by an escape's length
    less one, so no one search holds the interpreter long on a large text."""
    reach = len(_SURROGATE_ESCAPES[0]) - 1
    return any(
        text.find(escape, start, start + PIECE_CHARS + reach) >= 0
        for start in range(0, max(len(text), 1), PIECE_CHARS)
        for escape in _SURROGATE_ESCAPES
    )


def _utf8(data: bytes) -> str:
    """``data`` decoded as UTF-8, piece by piece; ``InvalidJson`` if it is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        parts = [
            decoder.decode(data[i : i + PIECE_CHARS]) for i in range(0, len(data), PIECE_CHARS)
        ]
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"not UTF-8: {exc}"[:300]) from None
    return "".join(parts)


def _walk(text: str, i: int, level: int, pieces: list[_Piece] | None) -> tuple[Any, int]:
    """The value at ``text[i]`` and where it ends: the arrays and objects of the top
    ``WALKED_DEPTH`` levels item by item (an array's scalars many at a time: ``_run``),
    each parsed in a call of its own and noted in ``pieces``."""
    opening = text[i : i + 1]
    if level >= WALKED_DEPTH or opening not in ("[", "{"):
        value, end = _DECODER.raw_decode(text, i)
        if pieces is not None and opening in ("[", "{"):  # a scalar nests nothing
            pieces.append((value, level, i, end, 0))
        return value, end
    closing = "]" if opening == "[" else "}"
    items: list[Any] = []
    pairs: dict[str, Any] = {}
    runs = opening == "["
    i = _skip(text, i + 1)
    if text[i : i + 1] == closing:
        return (items if opening == "[" else pairs), i + 1
    while True:
        if opening == "{":
            key, i = _DECODER.raw_decode(text, i) if text[i : i + 1] == '"' else (None, i)
            i = _skip(text, i)
            if not isinstance(key, str) or text[i : i + 1] != ":":
                raise ValueError(f"expected a key and ':' at {i}")
            item, i = _walk(text, _skip(text, i + 1), level + 1, pieces)
            pairs[key] = item
        else:
            tried = runs and text[i : i + 1] in _SCALAR_START
            run = _run(text, i) if tried else None
            if run is None:
                # One try an array: where a run does not parse, its items are parsed one
                # by one to its end, as before, and an error among them says where it is.
                runs = runs and not tried
                item, i = _walk(text, i, level + 1, pieces)
                items.append(item)
            else:
                found, end = run
                items += found
                if pieces is not None:
                    pieces.append((found, level, i, end, 1))
                i = end
        i = _skip(text, i)
        if text[i : i + 1] == closing:
            return (items if opening == "[" else pairs), i + 1
        if text[i : i + 1] != ",":
            raise ValueError(f"expected ',' or {closing!r} at {i}")
        i = _skip(text, i + 1)


def _run(text: str, i: int) -> tuple[list[Any], int] | None:
    """The array items from ``text[i]`` up to the last comma before the next ``]`` (at most
    ``PIECE_CHARS`` on), parsed in one call as the items of an array, and where they end
    (at that comma); None unless that parses whole. Parsing from an item's start, a text
    that ends at a comma parses as items only where that comma is the array's own (a comma
    inside a string or a nested value leaves one open), and the items are then the ones
    the array holds."""
    stop = text.find("]", i, i + PIECE_CHARS)
    end = text.rfind(",", i, stop if stop >= 0 else i + PIECE_CHARS)
    if end <= i:
        return None
    wrapped = "[" + text[i:end] + "]"
    try:
        found, parsed = _DECODER.raw_decode(wrapped)
    except (ValueError, RecursionError):  # InvalidJson too: the items one by one say it
        return None
    return (found, end) if parsed == len(wrapped) else None


def _skip(text: str, i: int) -> int:
    """Where the whitespace at ``text[i]`` ends (JSON's whitespace: the parser's own
    pattern)."""
    space: re.Pattern[str] = json.decoder.WHITESPACE  # type: ignore[attr-defined]
    found = space.match(text, i)
    return found.end() if found else i


def _lone_surrogate(value: Any) -> bool:
    """Whether a string of ``value`` (a key or a value) holds a lone surrogate: each is
    encoded on its own, never the whole value at once."""
    stack = [value]
    while stack:
        item = stack.pop()
        strings: list[Any] = []
        if isinstance(item, dict):
            strings, children = list(item), list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            strings, children = [item], []
        for found in strings:
            if isinstance(found, str):
                try:
                    found.encode()
                except UnicodeEncodeError:
                    return True
        stack.extend(c for c in children if isinstance(c, dict | list | str))
    return False


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts deeper than ``limit`` (iterative: a deep
    value must not exhaust the stack here either)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return False


_CONTAINERS = (dict, list, tuple)


def dumps_in_pieces(value: Any, encode: Callable[[Any], str]) -> bytes:
    """``encode(value)`` as UTF-8, the same bytes, made a piece at a time: the arrays and
    objects of the top ``WALKED_DEPTH`` levels item by item (what holds scalars only, and
    an array's scalars, ``RUN_ITEMS`` at a time, in one call), a string longer than
    ``PIECE_CHARS`` a slice at a time, so that no one call into C holds the interpreter
    long (``loads_strict``'s counterpart). ``encode`` is a ``json.JSONEncoder``'s, with
    ``","`` and ``":"`` as its separators and no indent."""
    parts: list[str] = []
    _encoded(value, encode, 0, parts)
    return b"".join([part.encode() for part in parts])


def _encoded(value: Any, encode: Callable[[Any], str], level: int, parts: list[str]) -> None:
    if isinstance(value, str) and len(value) > PIECE_CHARS:
        # Every character is escaped on its own: slices encode to the whole's text.
        parts.append('"')
        for start in range(0, len(value), PIECE_CHARS):
            parts.append(encode(value[start : start + PIECE_CHARS])[1:-1])
        parts.append('"')
    elif level >= WALKED_DEPTH or not isinstance(value, _CONTAINERS) or _whole(value):
        parts.append(encode(value))
    elif isinstance(value, dict):
        opening = "{"
        for key, item in value.items():
            parts.append(opening + encode(key) + ":")
            _encoded(item, encode, level + 1, parts)
            opening = ","
        parts.append("}")
    else:
        _encoded_items(value, encode, level, parts)


def _whole(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> bool:
    """Whether a container is encoded in one call: it holds scalars only, their strings
    (and keys) ``PIECE_CHARS`` at most in all; or it has keys that are no strings (the
    encoder's own rules turn them into text)."""
    if not value:
        return True
    if not isinstance(value, dict):
        return _small_scalars(value, 0)
    if set(map(type, value)) != {str}:
        return True
    return _small_scalars(value.values(), sum(map(len, value)))


def _small_scalars(values: Collection[Any], weight: int) -> bool:
    """Whether ``values`` are scalars whose strings, with ``weight``, are ``PIECE_CHARS``
    at most in all (what they are is found in C: ``map``)."""
    kinds = set(map(type, values))
    if not kinds <= _SCALARS:
        return False
    if str in kinds:
        weight += sum(len(v) for v in values if type(v) is str)
    return weight <= PIECE_CHARS


def _encoded_items(
    items: list[Any] | tuple[Any, ...], encode: Callable[[Any], str], level: int, parts: list[str]
) -> None:
    """An array, ``RUN_ITEMS`` at a time: a run of small scalars (``_small_scalars``) in
    one call, the items of any other run one by one."""
    opening = "["
    for start in range(0, len(items), RUN_ITEMS):
        run = items[start : start + RUN_ITEMS]
        if _small_scalars(run, 0):
            parts.append(opening + encode(list(run))[1:-1])
            opening = ","
            continue
        for item in run:
            parts.append(opening)
            _encoded(item, encode, level + 1, parts)
            opening = ","
    parts.append("]")


RUN_ITEMS = 4096
"""Scalars of an array encoded in one call (``dumps_in_pieces``)."""
_SCALARS = frozenset({int, float, bool, type(None), str})
