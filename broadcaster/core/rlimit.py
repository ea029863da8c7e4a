"""The open-file limit: every viewer is a socket, and so is every bench connection."""

from __future__ import annotations

import resource


def raise_nofile_limit() -> int:
    """Raise the open-file soft limit to the hard limit (often 1,024 vs much more): each
    viewer is a socket. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
