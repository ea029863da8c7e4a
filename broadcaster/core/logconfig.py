"""Logging: every line about a stream carries its id, and every line of a traced request
or generation its trace id, as text or as JSON.

The stream id and the ``traceparent`` travel in context variables, set where a request or
a job about a stream begins; a filter copies them onto every record logged in that
context (including records from libraries), so no call site has to remember them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

current_stream: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_stream", default=None
)
current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_trace", default=None
)
"""The W3C ``traceparent`` of the request or generation running in this context
(``tracing``); its trace id goes on every log line."""


class _StreamId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "stream_id", None) is None:
            record.stream_id = current_stream.get()
        if getattr(record, "trace_id", None) is None:
            parent = current_trace.get()
            record.trace_id = parent[3:35] if parent else None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(stream)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        sid = getattr(record, "stream_id", None)
        tid = getattr(record, "trace_id", None)
        record.stream = (f" [stream {sid}]" if sid else "") + (f" [trace {tid}]" if tid else "")
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, stream_id (when about a stream),
    trace_id (when in a traced request or generation)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        sid = getattr(record, "stream_id", None)
        if sid:
            out["stream_id"] = sid
        tid = getattr(record, "trace_id", None)
        if tid:
            out["trace_id"] = tid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_StreamId())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
