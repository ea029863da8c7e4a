"""The headers of the answers, defined once: the security headers every answer carries,
and those of a streaming answer (SSE)."""

from __future__ import annotations

SECURITY = {
    "x-content-type-options": "nosniff",
    "cross-origin-resource-policy": "cross-origin",
}
"""On every answer, errors included (``http.app.SecurityHeaders``; the SSE route, which
runs below that middleware, sends them itself): no browser sniffs a stream's bytes into
something it would run, and a page on another origin may still ``fetch`` what its CORS
rules allow (Durable Streams asks for both)."""

STREAMING = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}
"""A streaming answer: not cached, not transformed, not buffered by a proxy (nginx)."""

UI_MESSAGES = STREAMING | {"x-vercel-ai-ui-message-stream": "v1"} | SECURITY
"""An answer of UI message chunks (the AI SDK's stream protocol), as the SSE route sends
it whichever way it is answered."""
