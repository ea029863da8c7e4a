"""``python -m broadcaster tail ID``: follow a stream live and render it as text.

Text deltas are printed as they arrive, reasoning dimmed (or prefixed with
``[reasoning]`` when stdout is not a terminal), each tool call, tool output and ``data-*``
event on one line, and the terminal event as a last line. A dropped connection is resumed by
``StreamClient``. Exit status: 0 after ``finish``, 1 after ``error`` or ``abort``, 2 when
the stream cannot be read (404, 409, 401/403).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any, TextIO

from broadcaster.clients.stream_client import (
    ClientEvent,
    StreamClient,
    StreamClientError,
    StreamUnavailable,
)
from broadcaster.core import names

DIM, RESET = "\x1b[2m", "\x1b[0m"

# parts with nothing worth a line of their own
QUIET = {
    "start",
    "start-step",
    "finish-step",
    "text-start",
    "reasoning-start",
    "tool-input-start",
    "tool-input-delta",
}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Renderer:
    def __init__(self, out: TextIO, *, color: bool) -> None:
        self.out = out
        self.color = color
        self.mid_line = False  # the last write did not end with a newline
        self.in_reasoning = False

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.mid_line = not text.endswith("\n")

    def _line(self, text: str) -> None:
        self._write(("\n" if self.mid_line else "") + text + "\n")

    def render(self, event: ClientEvent) -> None:
        data, kind = event.data, event.type
        if kind != "reasoning-delta" and self.in_reasoning:
            self.in_reasoning = False
            if self.mid_line:
                self._write("\n")
        if kind == "text-delta":
            self._write(str(data.get("delta", "")))
        elif kind == "reasoning-delta":
            delta = str(data.get("delta", ""))
            if self.color:
                self._write(f"{DIM}{delta}{RESET}")
            else:
                if not self.in_reasoning:
                    self._write(("\n" if self.mid_line else "") + "[reasoning] ")
                self._write(delta)
            self.in_reasoning = True
        elif kind in ("text-end", "reasoning-end"):
            if self.mid_line:
                self._write("\n")
        elif kind == "tool-input-available":
            self._line(f"[tool] {data.get('toolName')}({_compact(data.get('input'))})")
        elif kind == "tool-output-available":
            self._line(f"[tool output] {_compact(data.get('output'))}")
        elif kind == "tool-output-error":
            self._line(f"[tool error] {data.get('errorText', '')}")
        elif kind == "finish":
            self._line("[finish] " + _finish_summary(data))
        elif kind == "error":
            self._line(f"[error] {data.get('errorText', '')}")
        elif kind == "abort":
            self._line("[abort]" + (f" {data['reason']}" if data.get("reason") else ""))
        elif kind not in QUIET:
            rest = {k: v for k, v in data.items() if k != "type"}
            if list(rest) == ["data"]:  # an AI SDK data part: {"type", "data": {...}}
                rest = rest["data"]
            self._line(f"[{kind}] {_compact(rest)}")


def _finish_summary(data: dict[str, Any]) -> str:
    parts = [str(data.get("finishReason") or "done")]
    meta = data.get("messageMetadata")
    if isinstance(meta, dict):
        usage = meta.get("usage")
        if isinstance(usage, dict):
            parts.append(
                f"{usage.get('inputTokens', '?')} input / "
                f"{usage.get('outputTokens', '?')} output tokens"
            )
        if meta.get("model"):
            parts.append(str(meta["model"]))
    return ", ".join(parts)


async def tail(
    stream_id: str,
    urls: list[str],
    *,
    token: str | None = None,
    start: int | None = None,
    out: TextIO = sys.stdout,
    color: bool = False,
) -> int:
    if not names.is_stream_id(stream_id):
        print(
            f"tail: {stream_id!r} is not a stream id ({names.STREAM_ID_PATTERN})", file=sys.stderr
        )
        return 2
    renderer = Renderer(out, color=color)
    async with StreamClient(urls, token=token) as client:
        try:
            final: ClientEvent | None = None
            async for event in client.events(stream_id, last_event_id=start):
                renderer.render(event)
                final = event
            if final is None or not final.terminal:
                # 204: the stream had already ended at --from; its end decides the status
                final = await client.wait(stream_id, last_event_id=start)
        except StreamClientError as exc:
            print(f"tail: {stream_id}: {exc}", file=sys.stderr)
            return 2
        except StreamUnavailable as exc:
            print(f"tail: {stream_id}: {exc}", file=sys.stderr)
            return 2
    return 0 if final.type == "finish" else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stream_id", metavar="ID", help="the stream to follow")
    parser.add_argument(
        "--url",
        action="append",
        help="front-end base URL (default http://127.0.0.1:8000); repeat it to name "
        "several front-ends, used in turn when one fails",
    )
    parser.add_argument("--token", help="viewer token (needed when the server has a secret)")
    parser.add_argument(
        "--from",
        dest="start",
        type=int,
        metavar="N",
        help="start after event N (default: from the first event)",
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="tail: %(message)s", stream=sys.stderr)
    urls = args.url or ["http://127.0.0.1:8000"]
    try:
        return asyncio.run(
            tail(
                args.stream_id,
                urls,
                token=args.token,
                start=args.start,
                color=sys.stdout.isatty(),
            )
        )
    except KeyboardInterrupt:
        return 130
