"""A cheap HTTP/1.1 client for the Durable Streams drivers (``durable.py``): one keep-alive
connection making GETs, with no parsing beyond the head, so that what a run measures is
the server's cost and not the client's."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

# --- a cheap HTTP/1.1 client ---


class Http:
    """One keep-alive HTTP/1.1 connection making GETs whose answers have a Content-Length
    (as every Durable Streams answer but ``live=sse`` has): no parsing beyond the head."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        if self._r is None or self._w is None:
            self._r, self._w = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self._w.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        head = await self._r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise RuntimeError(f"GET {path}: a chunked answer, which this client does not read")
        size = int(headers.get("content-length", "0"))
        body = await self._r.readexactly(size) if size else b""
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, headers, body

    async def aclose(self) -> None:
        w, self._r, self._w = self._w, None, None
        if w is not None:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
