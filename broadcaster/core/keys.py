"""Every Redis key name and every TTL the project uses, each with the reason for it.

All keys of one stream share one hash tag so that a Redis Cluster keeps them in one slot:
the append script touches several of them at once, which Cluster only allows inside one
slot. The tag is not the stream id but one of ``SLOT_GROUPS`` group tags chosen from it,
so that many streams share each slot deliberately and one blocking ``XREAD`` per group
serves them all (a multi-key ``XREAD`` must stay inside one slot). Stream ids are
validated before they get here (``names.is_stream_id``: ``[A-Za-z0-9_-]{1,64}``, the whole
string), so an id can never contain ``{``, ``}`` or ``:`` and add a tag of its own.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

from broadcaster.core import names

PREFIX = "bc"
"""Namespace for every key, so the project can share a Redis with other applications."""

STREAM_ID_RE = names.STREAM_ID_RE
"""The contract's stream id grammar (``names.STREAM_ID_RE``, whole strings only); nothing
else is ever put into a key. Check ids with ``names.is_stream_id``."""


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
    """A hash: kind, last seq, terminal type, generation status, usage, error, timestamps.
    Written by the append script (seq, tag, ended, usage, error, times), ``generations/``
    (status, owner, request, hold, attempts, a wait) and the worker's appends (its steps:
    ``steps_done``, ``steps_model``, ``usage_attempts``, ``provider_resume``); read through
    ``eventlog`` and ``generations.lifecycle``."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:meta"


def text_key(stream_id: str) -> str:
    """A string: a generation's text so far, APPENDed by the same script as its events."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:text"


def push_channel(stream_id: str, db: int = 0) -> str:
    """The pub/sub channel the append script publishes a stream's events on. Same hash
    tag as the stream's keys: on a Cluster the sharded channel lives on the stream's own
    shard. Pub/sub ignores databases, so the database is part of the name: deployments
    sharing a server in different databases never hear each other."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:push:{db}"


def waiting_key(stream_id: str) -> str:
    """A sorted set per slot group: the generations of the group that wait for a person
    (a tool's approval), scored by their deadline in ms. Under the stream's own tag, so
    that the append that suspends a generation, and the one that decides, move it in and
    out in the same atomic step; the front-ends' sweep reads the 256 sets."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:waiting"


def waiting_keys() -> list[str]:
    """Every group's waiting set, for the sweep of expired waits."""
    return [f"{PREFIX}:{{sg{g}}}:waiting" for g in range(SLOT_GROUPS)]


def unsettled_key(stream_id: str) -> str:
    """A sorted set per slot group: the generations of the group that ended and whose
    usage is not yet added to their user's totals (``usage_key``), scored by their end
    (ms). The append script that ends a generation adds it, in the same step; the one
    front-end whose ``ZREM`` removes it adds the usage (``generations/ledger.py``)."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:unsettled"


def unsettled_keys() -> list[str]:
    """Every group's set of unsettled generations, for the sweep of those no wake named."""
    return [f"{PREFIX}:{{sg{g}}}:unsettled" for g in range(SLOT_GROUPS)]


UNSETTLED_MAX = 100_000
"""Generations a group's unsettled set holds at most (the oldest are dropped beyond):
without a front-end to settle them, the set is bounded all the same."""


def _user_tag(user: str) -> str:
    # A hash: a user name may hold any character, and a key must keep one hash tag.
    return "u" + hashlib.sha256(user.encode()).hexdigest()[:16]


def usage_key(user: str, day: str) -> str:
    """A hash: what one user's generations used on one UTC day (``YYYY-MM-DD``), per
    provider, model and kind of token, and ``total`` (input and output, what a budget
    counts). Every day of a user shares the user's own hash tag, so a report of many
    days is one slot's pipeline."""
    return f"{PREFIX}:{{{_user_tag(user)}}}:usage:{day}"


def steer_key(stream_id: str) -> str:
    """A list: the chat messages sent to a running generation to steer it (``multitask``
    ``steer``), JSON each, oldest first. The worker records them in the stream and drops
    them from here in one append, before its next model call."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:steer"


def producers_key(stream_id: str) -> str:
    """A hash of a Durable Stream: producer id -> ``<epoch>:<last seq>``, written by the same
    script as the data it deduplicates (so a failover keeps both or neither)."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:producers"


def forks_key(stream_id: str) -> str:
    """A set of a Durable Stream: the names of the streams forked from it, while they live.
    Deleting a stream with forks is soft (410) until the last of them goes."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:forks"


def ds_keys(stream_id: str) -> list[str]:
    """The keys of a Durable Stream, in the order its Lua scripts expect them."""
    return [log_key(stream_id), meta_key(stream_id), producers_key(stream_id), forks_key(stream_id)]


DS_PATH_MAX = names.DS_PATH_MAX
"""Longest Durable Streams path (bytes of UTF-8) a stream may have."""


def ds_name(path: str) -> str:
    """The stream name of a Durable Streams path. A path that is a valid stream id *is* that
    stream, so ``/v1/stream/{id}`` serves every stream of this project too; any other path
    gets ``~`` and its base64url, which can never be a stream id (``~`` is not in the id
    alphabet) nor add a hash tag of its own (base64url has no ``{}:``). ``path`` is
    checked first (``names.is_ds_path``)."""
    if names.is_stream_id(path):
        return path
    return "~" + base64.urlsafe_b64encode(path.encode()).rstrip(b"=").decode()


def names_key(stream_id: str) -> str:
    """A sorted set of a slot group: the names of its streams (all scores 0, so it is
    ordered by name and ``ZRANGEBYLEX`` lists a prefix's). Written by the script that
    creates a stream, in its slot, so the listing of a prefix subscription misses none;
    names of streams that expired are pruned when found."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:names"


def names_keys() -> list[str]:
    """Every group's names, in group order."""
    return [f"{PREFIX}:{{sg{g}}}:names" for g in range(SLOT_GROUPS)]


def created_channel(stream_id: str, db: int = 0) -> str:
    """The channel a group's new streams are announced on (their name), by the script
    that creates them: a front-end following a prefix learns of new streams from the 256
    of these, one message per stream created, nothing per event. Sharded on a Cluster
    like the streams' own channels."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:created:{db}"


def created_channels(db: int = 0) -> list[str]:
    return [f"{PREFIX}:{{sg{g}}}:created:{db}" for g in range(SLOT_GROUPS)]


def wake_channel(stream_id: str, db: int = 0) -> str:
    """The channel that wakes the front-ends' timed work instead of their polling it
    (``fanout/wakes.py``): the append script publishes ``end <id>`` when a generation ends
    and ``wait <ms> <id>`` when one joins its group's waiting set (``waiting_key``), and a
    chat with something waiting publishes ``chat <id>``. One per slot group, sharded on a
    Cluster like the streams' own channels; a few messages per generation, none per
    event."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:wake:{db}"


def wake_channels(db: int = 0) -> list[str]:
    return [f"{PREFIX}:{{sg{g}}}:wake:{db}" for g in range(SLOT_GROUPS)]


def stream_keys(stream_id: str) -> list[str]:
    """The keys of one stream in the order the Lua scripts expect them."""
    return [log_key(stream_id), meta_key(stream_id), text_key(stream_id)]


def chat_key(chat_id: str) -> str:
    """A hash: the chat's latest generation (``generation``, none for a chat seeded and
    not answered since), the id of the assistant message it writes (``message_id``), its
    turns (``turn``) and how many are settled (``settled``), its owner, title, times,
    version (``version``: one more at each change of its history) and the latest turn's
    end (``status``); records of older versions hold their messages here (``messages``,
    JSON). One key, so the script that swaps the generation touches one slot; the
    generation's own keys live under its own tag."""
    return f"{PREFIX}:{{{_group(chat_id)}}}:{chat_id}:chat"


def chat_history_key(chat_id: str) -> str:
    """A list: the chat's UI messages, one JSON each, oldest first: those its latest
    generation was started with, then, once its turn is settled, that generation's
    answer (what ``chat_key`` held as one ``messages`` field before), so that a page of
    history is one ``LRANGE``, not the whole chat parsed."""
    return f"{PREFIX}:{{{_group(chat_id)}}}:{chat_id}:history"


def chat_positions_key(chat_id: str) -> str:
    """A hash: each message id of ``chat_history_key`` to its index there, so that a
    history page's cursor (``before=<message id>``) is found in one ``HGET``."""
    return f"{PREFIX}:{{{_group(chat_id)}}}:{chat_id}:positions"


def chat_model_key(chat_id: str) -> str:
    """A list beside ``chat_history_key``, entry for entry: each UI message's model turns
    (``generations/chat_turns.py``), converted and checked once, when the message was
    added, so that a submit converts only its own message and a job names the chat's
    turns (``chat_key``'s ``model_for``/``model_upto``) rather than carrying them."""
    return f"{PREFIX}:{{{_group(chat_id)}}}:{chat_id}:model"


def chat_turns_key(chat_id: str) -> str:
    """A hash: each turn of the chat (1, 2, ...: one a generation started as the chat's
    latest; ``chat_key``'s ``turn`` is the last) to JSON ``{generation, message}``, the
    user message that started it: what the chat's stream announces and follows."""
    return f"{PREFIX}:{{{_group(chat_id)}}}:{chat_id}:turns"


def idempotency_key(scope: str, route: str, key: str) -> str:
    """A hash: what answered a request with ``Idempotency-Key: key`` on ``route`` for the
    caller ``scope`` (a hash of its API key or token subject): the body's hash, its state
    (``pending`` while the first request is handled, then ``done``) and the answer, for a
    day (``generations/idempotency.py``). Its own slot group: one key, one slot."""
    digest = hashlib.sha256(f"{scope}\0{route}\0{key}".encode()).hexdigest()[:32]
    return f"{PREFIX}:{{{_group(digest)}}}:idem:{digest}"


def chat_queue_key(chat_id: str) -> str:
    """A list: the chat's messages waiting for their turn (``multitask`` ``enqueue``),
    JSON each (the generation made for it, the message, the body's generation fields),
    oldest first; started one by one as each answer ends (``chat.pump``)."""
    return f"{PREFIX}:{{{_group(chat_id)}}}:{chat_id}:queue"


CHATS_PENDING_KEY = f"{PREFIX}:{{chats}}:pending"
"""A sorted set: the chats with messages waiting (queued, or steering left over when an
answer ended without a next step), by when one was added: what the pump looks at."""


CHATS_UNSETTLED_KEY = f"{PREFIX}:{{chats}}:unsettled"
"""A sorted set: the chats whose latest turn is not settled yet (its answer not in the
chat's history list, its ``chat.turn.finished`` webhook not queued), each scored by when
a front-end looks at it next (Unix ms): added before a turn starts, taken out once it is
settled (``chat/settle.py``)."""


def chat_settling_key(chat_id: str) -> str:
    """A string: held (``SET NX PX``) by the front-end settling the chat's turns, so that
    one folds an answer while the others, woken by the same end, do nothing."""
    return f"{PREFIX}:{{chats}}:settling:{chat_id}"


def chat_noticed_key(generation: str, what: str) -> str:
    """A string (``SET NX EX``): a notice of ``generation`` (``what``: a wait's deadline)
    was put in its owner's lifecycle feed, by the one front-end that set it."""
    return f"{PREFIX}:{{chats}}:noticed:{what}:{generation}"


def owner_chats_key(owner_hash: str) -> str:
    """A sorted set: the chats of one owner (``owner_hash``: a hash of who it is), each
    scored by when it last changed (Unix ms): ``GET /v1/chats``, newest first."""
    return f"{PREFIX}:{{{_group(owner_hash)}}}:owner:{owner_hash}:chats"


def chat_ttl(idle_ttl: int, ended_ttl: int) -> int:
    """A chat's record lives as long as its latest generation can (idle while it runs,
    then ended): set again at every submit. A record that outlives its generation anyway
    counts as no chat (the routes check the generation)."""
    return idle_ttl + ended_ttl


JOBS_TAG = "{jobs}"
"""The hash tag of the job queues and the providers' advertisements: in a Cluster they all
live on one node, so one ``XREADGROUP`` reads every queue a worker serves, and the
front-end learns a provider's queue depth and whether anyone serves it in one round trip.
Fine for queues of small entries (they carry only ids)."""


def jobs_key(provider: str) -> str:
    """The job queue of one provider (a Redis Stream read by a consumer group): a job
    reaches only a worker that serves its provider."""
    return f"{PREFIX}:{JOBS_TAG}:queue:{provider}"


LEGACY_JOBS_KEY = f"{PREFIX}:{JOBS_TAG}:queue"
"""The single queue of versions that knew one provider. Front-ends of that version still
enqueue there during a rolling upgrade, and jobs may be waiting in it: workers that serve
``anthropic`` (the only provider then) read it too, as an Anthropic queue."""

STARTING_KEY = f"{PREFIX}:{JOBS_TAG}:starting"
"""A sorted set: the generations whose start is under way (id -> when it began, Unix ms).
A start touches three slots (the generation's, the chat's, the queue's), so it cannot be
one script on a Cluster: it is added here first, and the script that queues its job
removes it in the same step (same tag). One left here is a start cut off between its
steps: the front-ends' sweep ends its generation (``generations/overdue.py``)."""

JOBS_GROUP = "workers"
"""The consumer group every worker joins on every queue, so each job goes to one worker."""

HTTP_CONSUMER = "http"
"""The consumer, in ``JOBS_GROUP``, that holds the jobs workers claimed over HTTP
(``POST /v1/worker/claim``): every front-end reads for them under this one name, so no
consumer is made per claim. Who owns a job is its generation's ``owner`` (the lease
token), and a lapsed one is taken over by each entry's idle time, not by consumer."""

WORKERS_KEY = f"{PREFIX}:{JOBS_TAG}:workers"
"""A hash: each worker that keeps a liveness subscription (``alive_channel``) -> what the
others make of it: ``a<ms>`` subscribed, ``s<ms>`` its subscription gone since then
(suspected), ``d<ms>`` found dead then. A consumer not in it (an older worker, the HTTP
consumer) is judged by its lease alone (``generations/liveness.py``)."""

DEAD_WORKERS_KEY = f"{PREFIX}:{JOBS_TAG}:dead"
"""A set: the workers found dead that still hold jobs, for the next worker with a free
slot to take them over; each leaves it once none is left."""

LIVENESS_JUDGE_LOCK = f"{PREFIX}:{JOBS_TAG}:judged"
"""Held for a moment by the worker that judged who is dead: one judgement per moment for
the whole deployment, however many workers look."""

LIVENESS_SCAN_LOCK = f"{PREFIX}:{JOBS_TAG}:workers:scan"
"""Held between two looks at every registered worker (``WORKERS_KEY``), which forget the
workers that died holding nothing."""


def alive_channel(consumer: str) -> str:
    """The channel a worker stays subscribed to while its process lives: its subscriber
    count is what tells a dead worker from a live one. Under ``{jobs}``, so that on a
    Cluster the (sharded) subscription lives on the node that holds the job queues, where
    the liveness script counts it."""
    return f"{PREFIX}:{JOBS_TAG}:alive:{consumer}"


def provider_key(provider: str) -> str:
    """Present while a live worker serves ``provider``: each running worker sets it again
    every third of its lease, with a TTL of ``PROVIDER_TTL_LEASES`` leases. ``/readyz``
    reports it; admission does not need it (``PROVIDERS_SEEN_KEY``)."""
    return f"{PREFIX}:{JOBS_TAG}:serves:{provider}"


PROVIDERS_SEEN_KEY = f"{PREFIX}:{JOBS_TAG}:providers"
"""A hash: every provider a worker has ever advertised -> when it last did (Unix ms). A
front-end accepts and queues a request for a provider in it even while no worker is alive
(a cold start, every worker restarting at once), rather than refusing work the deployment
will do in a moment. Never expires: ``python -m broadcaster providers --forget NAME``
removes a provider the deployment stopped serving."""

PROVIDER_TTL_LEASES = 3
"""An advertisement outlives a few missed refreshes (a slow Redis, a paused process); a
provider whose last worker died shows as without live workers (``/readyz``) after three
leases (45 s by default). A worker that stops cleanly cannot delete it: others may serve
the same provider."""

QUEUE_SWEEP_LOCK = f"{PREFIX}:{JOBS_TAG}:sweep"

WAIT_SWEEP_LOCK = f"{PREFIX}:{JOBS_TAG}:waitsweep"
"""Held for a round by the front-end that sweeps the waiting sets (expired approvals)."""

CHAT_PUMP_LOCK = f"{PREFIX}:{JOBS_TAG}:chatpump"
"""Held for a round by the front-end that starts chats' queued messages."""

SETTLE_SWEEP_LOCK = f"{PREFIX}:{JOBS_TAG}:settlesweep"
"""Held for a round by the front-end that settles ended generations no wake named."""
"""Held (``SET NX PX``) by the front-end that looks for overdue jobs this round, so that
one front-end, not every one, does the looking."""


REVOKED_KEY = f"{PREFIX}:{{revoked}}"
"""Tokens revoked before their expiry (``auth/revocations.py``): a sorted set whose
members are ``j:<jti>`` (that token) or ``s:<revoked at, ms>:<sub>`` (the subject's tokens
issued before then), each scored by when it may be forgotten (Unix seconds: once no
token it names can be valid any more). Every front-end holds all of it in memory, loaded
at start and kept by the wake channels."""


def ratelimit_key(key_name: str, minute: int) -> str:
    """A counter of one API key's requests in one minute (INCR + EXPIRE on this one key).
    The shared tag puts every counter on one Cluster node: two tiny commands per
    authenticated request, which one node serves easily."""
    return f"{PREFIX}:{{ratelimit}}:{key_name}:{minute}"


RATELIMIT_TTL = 120
"""A minute's counter outlives its minute, so a request at its very end still counts."""


def hash_tag(key: str) -> str:
    """The part of ``key`` a Cluster hashes (its ``{tag}``, or the whole key)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def barrier_key(key: str) -> str:
    """The durability barrier (``durability.py``) of a batch whose first key is ``key``:
    under the same hash tag (the same slot, so the same node of a Cluster). The tags are
    few (slot groups, the jobs' tag), so these keys are few, and each expires in
    ``committer.BARRIER_TTL_MS``."""
    return f"{PREFIX}:{{{hash_tag(key)}}}:durability"


def mux_base_key(token: str) -> str:
    """The snapshot of positions a dashboard connection's ids refer to
    (``dashboard/cursor.py``; its own hash tag: spread)."""
    return f"{PREFIX}:{{mux{token[:4]}}}:{token}"


# --- Durable Streams: the type of each entry of a stream's log (the fan-out ends a
# reader's run at a closure, so it knows this too) ---

DATA = ".p"
"""An entry that ends what one POST appended: a chunk of bytes, or a batch's last message."""
MORE = ".d"
"""A JSON message followed by more of the same POST's batch."""
CLOSE = ".c"
"""The closure marker: no data; what a closed stream ends with."""


# --- presence: who watches each stream, across front-ends ---


def presence_key(stream_id: str) -> str:
    """A hash of a stream's viewers: per front-end (its instance id) how many it serves,
    and (``<instance>:s``) the subjects of those whose tokens name one; ``#total`` is the
    count last published. Under the stream's tag, beside its meta and outbox, so one
    script updates it, notices the first viewer and the last, and queues the webhook."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:{stream_id}:presence"


PRESENCE_TTL = 24 * 3600
"""A presence hash outlives its last write by a day: the counts in it are only read
beside the front-ends' heartbeats, and a stream watched that long is written to again."""

PRESENCE_TAG = "{presence}"
"""The front-ends' heartbeats and what each of them counts, on one Cluster node."""

FRONTENDS_KEY = f"{PREFIX}:{PRESENCE_TAG}:frontends"
"""A sorted set: front-end instance -> when it is dead unless it beats again (Unix ms,
two heartbeats after its last). A front-end past it is dead: its counts no longer count,
and the first front-end to notice removes them (a ``kill -9`` leaves them behind)."""


def frontend_streams_key(instance: str) -> str:
    """A set of the streams a front-end counts viewers of: what to clean up if it dies."""
    return f"{PREFIX}:{PRESENCE_TAG}:fe:{instance}:streams"


def reap_lock_key(instance: str) -> str:
    """Held (``SET NX PX``) by the one front-end removing a dead one's counts."""
    return f"{PREFIX}:{PRESENCE_TAG}:reap:{instance}"


# --- webhooks: the outbox the append script writes, and the deliverer's streams ---


def outbox_key(stream_id: str) -> str:
    """The outbox of a stream's slot group: a Redis Stream of webhook events waiting to be
    delivered (a stream's end, written by the append script with its terminal event;
    others by ``webhooks/outbox.py``). One per group, under the stream's own hash tag,
    because a script may only touch keys of one slot: the end of a stream and its
    webhook are one atomic step, so a writer that dies right after cannot lose it."""
    return f"{PREFIX}:{{{_group(stream_id)}}}:outbox"


def outbox_keys() -> list[str]:
    """Every group's outbox, in group order: what the deliverer reads."""
    return [f"{PREFIX}:{{sg{g}}}:outbox" for g in range(SLOT_GROUPS)]


OUTBOX_MAX_LEN = 100_000
"""Entries an outbox keeps (``XADD MAXLEN ~``) when nothing delivers them (no deliverer
running): 256 groups of 100,000, a bound on Redis memory. A running deliverer keeps each
outbox near empty; beyond the bound the oldest events are dropped."""

WEBHOOKS_TAG = "{webhooks}"
"""The hash tag of the deliverer's own streams: on a Cluster they live on one node, so
moving an event into the deliveries and settling one are single-slot scripts."""

WEBHOOK_DELIVERIES_KEY = f"{PREFIX}:{WEBHOOKS_TAG}:deliveries"
"""A Redis Stream with one entry per (event, receiver), read by a consumer group: an entry
stays pending until its receiver answered 2xx, and its idle time and delivery count are
its retry schedule, so a deliverer that dies mid-retry leaves nothing only it knew."""

WEBHOOK_DEAD_KEY = f"{PREFIX}:{WEBHOOKS_TAG}:dead"
"""A Redis Stream of deliveries that failed for the whole retry schedule, for an operator
to list and replay (``python -m broadcaster webhooks dead|replay``)."""

WEBHOOK_DEAD_MAX_LEN = 100_000
"""Dead deliveries kept (``MAXLEN ~``): the newest, so a receiver down for weeks cannot
fill Redis."""

WEBHOOK_DELIVERIES_MAX_LEN = 1_000_000
"""Deliveries waiting at most: beyond, the deliverer stops moving events out of the
outboxes (which then fill up to ``OUTBOX_MAX_LEN``) instead of growing this stream."""

WEBHOOK_DELIVERERS_KEY = f"{PREFIX}:{WEBHOOKS_TAG}:deliverers"
"""A sorted set of the running deliverers (consumer names), each scored with the time (ms)
until which it says it is alive, renewed every sweep: one whose time has passed is gone,
and what it had taken from the outboxes is reclaimed by another."""

WEBHOOK_GROUP = "webhooks"
"""The consumer group of every deliverer, on the outboxes and on the deliveries: each
event is moved, and each delivery attempted, by one deliverer at a time."""


def webhook_moved_key(webhook_id: str) -> str:
    """Set when an outbox entry was moved into the deliveries: a move done again (its
    deliverer died between moving and acknowledging) adds nothing twice."""
    return f"{PREFIX}:{WEBHOOKS_TAG}:moved:{webhook_id}"


WEBHOOK_MOVED_TTL = 3600
"""A move is done again only after its outbox entry was idle for
``webhooks.mover.RECLAIM_IDLE_MS`` (seconds), so an hour covers it many times over."""

# --- TTLs (seconds). Defaults; each is configurable through Settings. ---

ENDED_TTL = 24 * 3600
"""An ended stream is kept this long for late joiners and resumes, then expires whole."""

IDLE_TTL = 7 * 24 * 3600
"""A stream that is not ended expires after this long without an append. Running streams
are never trimmed; this only reclaims streams whose producer vanished without ending them.
Refreshed by every append."""

# --- limits that are not settings ---

PUSH_MAX_BYTES = 64 * 1024
"""A published batch carries its encoded frames up to this size; a larger one carries only
its seqs, and front-ends read it from the log (a reader's pub/sub buffer in Redis is
bounded: ``client-output-buffer-limit pubsub``)."""

MAX_JSON_DEPTH = 128
"""Deepest nesting of arrays and objects a request body may have (422 beyond). Python's
JSON encoder recurses: without a bound, a body that parsed could fail to be stored."""
