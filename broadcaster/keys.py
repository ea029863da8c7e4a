"""Every Redis key name and every TTL the project uses, each with the reason for it.

All keys of one stream share one hash tag so that a Redis Cluster keeps them in one slot:
the append script touches several of them at once, which Cluster only allows inside one
slot. The tag is not the stream id but one of ``SLOT_GROUPS`` group tags chosen from it,
so that many streams share each slot deliberately and one blocking ``XREAD`` per group
serves them all (a multi-key ``XREAD`` must stay inside one slot). Stream ids are
validated before they get here (``^[A-Za-z0-9_-]{1,64}$``), so an id can never contain
``{``, ``}`` or ``:`` and add a tag of its own.
"""

from __future__ import annotations

import re
import zlib

PREFIX = "bc"
"""Namespace for every key, so the project can share a Redis with other applications."""

STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""The contract's stream id grammar; nothing else is ever put into a key."""


SLOT_GROUPS = 256
"""Hash tags the streams are spread over. On a Cluster a front-end reads with one blocking
``XREAD`` per group it watches, so this bounds its reading connections (256, not one per
stream); and 256 groups, each on a pseudo-random slot, still spread streams evenly over
any realistic number of primaries. Changing it renames every stream's keys."""


def _group(stream_id: str) -> str:
    # crc32, not hash(): every process, whatever its PYTHONHASHSEED, must agree.
    return f"sg{zlib.crc32(stream_id.encode()) % SLOT_GROUPS}"


def log_key(stream_id: str) -> str:
    """The Redis Stream holding the events; entry ids are ``<seq>-0``, so seq == entry id."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:log"


def meta_key(stream_id: str) -> str:
    """A hash: kind, last seq, terminal type, generation status, usage, error, timestamps."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:meta"


def text_key(stream_id: str) -> str:
    """A string: a generation's text so far, APPENDed by the same script as its events."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:text"


def stream_keys(stream_id: str) -> list[str]:
    """The keys of one stream in the order the Lua scripts expect them."""
    return [log_key(stream_id), meta_key(stream_id), text_key(stream_id)]


JOBS_KEY = f"{PREFIX}:{{jobs}}:queue"
"""The generation job queue (a Redis Stream read by a consumer group). Its own hash tag:
in a Cluster it lives on one node, which is fine for a queue of small entries."""

JOBS_GROUP = "workers"
"""The consumer group every worker joins, so each job is delivered to one worker."""


def ratelimit_key(key_name: str, minute: int) -> str:
    """A counter of one API key's requests in one minute (INCR + EXPIRE on this one key).
    The shared tag puts every counter on one Cluster node: two tiny commands per
    authenticated request, which one node serves easily."""
    return f"{PREFIX}:{{ratelimit}}:{key_name}:{minute}"


RATELIMIT_TTL = 120
"""A minute's counter outlives its minute, so a request at its very end still counts."""

# --- TTLs (seconds). Defaults; each is configurable through Settings. ---

ENDED_TTL = 24 * 3600
"""An ended stream is kept this long for late joiners and resumes, then expires whole."""

IDLE_TTL = 7 * 24 * 3600
"""A stream that is not ended expires after this long without an append. Running streams
are never trimmed; this only reclaims streams whose producer vanished without ending them.
Refreshed by every append."""

# --- limits that are not settings ---

MAX_JSON_DEPTH = 128
"""Deepest nesting of arrays and objects a request body may have (422 beyond). Python's
JSON encoder recurses: without a bound, a body that parsed could fail to be stored."""
