"""The front-end's settings (``BROADCASTER_*``), read once at the entry point and passed
down. A command-line flag overrides its variable."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from broadcaster.chat.conversation import Rules
from broadcaster.core import names
from broadcaster.core.durability import DurabilitySettings, Policy
from broadcaster.core.settings import RedisSettings
from broadcaster.generations.request import PROVIDERS, Defaults
from broadcaster.generations.start import Admission
from broadcaster.webhooks.settings import WebhookSettings


class Settings(RedisSettings, WebhookSettings, DurabilitySettings):
    """The front-end (``python -m broadcaster serve``); its ``BROADCASTER_WEBHOOK_*``
    settings are ``WebhookSettings``', its ``BROADCASTER_DURABILITY*`` the ones it shares
    with the worker (``DurabilitySettings``)."""

    model_config = SettingsConfigDict(env_prefix="BROADCASTER_", extra="ignore")

    host: str = "127.0.0.1"
    """The address the front-end listens on (``--host``); beyond loopback only with API
    keys and a token secret, or ``--insecure``."""
    port: int = Field(8000, ge=0, le=65535)
    """The port the front-end listens on (``--port``)."""
    keepalive_seconds: float = Field(15.0, gt=0)
    """A ``: ping`` comment goes out after this much silence on an SSE response."""
    retry_ms: int = Field(500, ge=0)
    """The ``retry:`` an EventSource waits before reconnecting, at least: what a viewer of
    a front-end that dies waits before its first try, whatever the jitter. Lower brings
    such viewers back sooner (docs/performance.md), at more tries from each browser while
    its front-end stays unreachable (an EventSource does not back off)."""
    retry_jitter_ms: int = Field(1000, ge=0)
    """Each response's ``retry:`` is ``retry_ms`` plus a random share of this: the viewers
    of a front-end that dies come back spread over this window, not in the same instant
    (the herd's rate is its size over this window; the admission rate does the rest)."""
    drain_retry_ms: int = Field(1000, ge=0)
    """At SIGTERM each open SSE response ends with a ``retry:`` of at least this, and the
    notice ``: draining <ms>`` (docs/resuming.md)."""
    drain_window_ms: int = Field(10000, ge=0, le=3_600_000)
    """The drain's ``retry:`` is ``drain_retry_ms`` plus a random share (uniform) of this:
    the viewers of a draining front-end reconnect spread over this window."""
    admit_per_second: float = Field(2000.0, ge=0)
    """New SSE responses a front-end process starts per second, at most (a burst of as
    many), while its event loop is behind (``admit_lag_ms``): a reconnect storm is then
    spread out rather than taken all at once (0: no limit). Beyond, a viewer waits its
    turn, up to ``admit_wait_seconds``."""
    admit_lag_ms: int = Field(50, ge=0)
    """While the front-end's event loop runs its timers late by less than this, a new SSE
    viewer is admitted at once, whatever ``admit_per_second`` says: a storm is taken as
    fast as the loop takes it, and the rate paces viewers only while deliveries would be
    delayed (0: every viewer takes its turn at the rate)."""
    admit_wait_seconds: float = Field(5.0, ge=0)
    """Longest a new viewer waits for its turn at ``admit_per_second``; a viewer that
    would wait longer is answered 503 with a jittered ``Retry-After`` (1-3 s)."""
    socket_notsent_lowat: int = Field(65536, ge=0)
    """``TCP_NOTSENT_LOWAT`` of every connection: the most bytes the kernel holds unsent
    for a viewer, so one that stops reading costs bounded kernel memory (0: the kernel's
    default, which lets a socket hold megabytes)."""
    socket_sndbuf: int = Field(0, ge=0)
    """``SO_SNDBUF`` of every connection (0: the kernel's own, autotuned)."""
    gc_freeze: bool = True
    """Freeze what each full garbage collection leaves, so the next scans only what is new
    (an open viewer is about 80 objects, none garbage while it watches); thawed once a
    quarter of those viewers have left (``http/gcfreeze.py``). False: only start-up's
    objects are frozen."""
    quiet_check_seconds: float = Field(60.0, gt=0)
    """A watched stream that is not ended and heard nothing for this long is checked
    against the log: a lost last message would otherwise go unnoticed."""
    pubsub_probe_seconds: float = Field(5.0, gt=0)
    """How often each pub/sub connection is pinged and its channels' homes checked (a
    connection can stay attached to a dead or partitioned node)."""
    ds_long_poll_seconds: float = Field(20.0, gt=0, le=600)
    """How long a Durable Streams ``live=long-poll`` read waits for data before 204."""
    ds_wait_replicas: int = Field(0, ge=0, le=16)
    """The older name of ``BROADCASTER_DURABILITY=replicas``: above 0, and with
    ``BROADCASTER_DURABILITY`` unset, every write (Durable Streams' and all others) is
    acknowledged only once this many replicas have it (``durability_policy``)."""
    ds_wait_ms: int = Field(1000, ge=1, le=60_000)
    """The older name of ``BROADCASTER_DURABILITY_TIMEOUT_MS``, with
    ``BROADCASTER_DS_WAIT_REPLICAS``."""
    topic_linger_seconds: float = Field(5.0, ge=0)
    """A stream stays watched this long after its last viewer left, so the next long-poll
    or a reconnecting viewer finds it subscribed (0: stop watching at once)."""
    presence_heartbeat_seconds: float = Field(10.0, gt=0)
    """Each front-end says it is alive this often; one silent for two heartbeats (a
    ``kill -9``) has its viewers dropped from the counts within three."""
    events_max_streams: int = Field(1000, ge=1, le=100_000)
    """Streams one ``GET /v1/events`` connection follows at most (named, and under its
    prefixes); past it a prefix's further streams are not followed (``streams-limit``).
    Also the most positions of a resume point (``Last-Event-ID``) that are read."""
    events_max_prefixes: int = Field(16, ge=1, le=1000)
    """``prefix`` parameters one ``GET /v1/events`` connection names at most (400
    ``too_many_prefixes`` beyond): each is listed from the 256 groups' indexes (256
    range reads) when the connection opens and again after every interruption of the
    pub/sub connection."""
    viewer_buffer: int = Field(1024, ge=1)
    """Live events buffered per viewer; beyond, it catches up from Redis itself."""
    slow_viewer_timeout: float = Field(30.0, gt=0)
    """A viewer whose socket accepts nothing for this long is cut off (it resumes later)."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest request body (413 beyond)."""
    chat_max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest ``POST /v1/chat`` body (413 beyond): the AI SDK sends the whole chat each
    time, its files as ``data:`` URLs."""
    max_json_values: int = Field(100_000, ge=1000)
    """JSON values a request body may hold, counted as it streams in, before it is parsed
    (413 ``too_complex`` beyond; every ``[``, ``{``, ``,`` and ``:`` counts, in strings
    too): what bounds the work a body of small values costs, as the bytes bound a body of
    large ones."""
    chat_max_messages: int = Field(1000, ge=1, le=100_000)
    """Messages a ``POST /v1/chat`` or AG-UI run body may hold (422 ``too_many_messages``
    beyond, before any is checked or converted)."""
    body_threads: int = Field(1, ge=1, le=64)
    """Threads that parse, check and convert large request bodies (and decode, convert
    and encode whole chat histories) off the event loop. They share Python's interpreter
    lock with the loop: a second one does no more work in a second, and the loop waits
    for the lock behind both (docs/security.md, hostile bodies)."""
    body_waiting: int = Field(8, ge=0, le=10_000)
    """Large bodies that may wait for those threads; beyond, 503 ``busy`` with
    ``Retry-After``."""
    switch_interval_ms: float = Field(0.5, ge=0.05, le=100)
    """How long a thread may keep Python's interpreter lock while another waits for it
    (``sys.setswitchinterval``; Python's own default is 5). While those threads run Python
    code, the event loop waits up to this long for the lock after each system call."""
    idempotency_ttl_seconds: int = Field(86400, ge=60)
    """How long a request's ``Idempotency-Key`` answers its retries (``POST /v1/chat``,
    ``POST /v1/generations``, ``POST /v1/streams/{id}/events``): a retry with the same
    key and body within it gets the first answer, and nothing runs twice."""
    idempotency_pending_seconds: float = Field(30.0, gt=0)
    """How long an ``Idempotency-Key`` stays claimed by a request still being handled (a
    retry meanwhile is 409): a front-end that died mid-request frees it after this."""
    max_tokens_limit: int = Field(64000, ge=1)
    """Largest ``max_tokens`` a generation request may ask for."""
    default_provider: str = Field("anthropic", pattern=names.PROVIDER_NAME_PATTERN)
    """The provider of a request that names none: ``anthropic``, ``openai``, or the name
    of an agent a worker serves (``WORKER_AGENTS``)."""
    providers: str | None = None
    """Comma-separated providers the deployment serves (``anthropic,openai``, agent names
    beside them). A request for one of them is queued even while no worker is alive; one
    for any other is refused (422). Unset: the default provider, and every provider a
    worker has ever advertised."""
    chat_multitask: Literal["reject", "enqueue", "interrupt", "steer"] = "reject"
    """What a chat submit does while the chat's answer runs, unless its body says
    (``multitask``): refuse (409 ``chat_busy``), wait for its turn, cancel the running
    answer, or steer it at its next step."""
    chat_queue_max: int = Field(4, ge=1, le=100)
    """Messages a chat may hold waiting for their turn (``enqueue``); beyond, 409
    ``chat_queue_full``."""
    chat_client_history: Literal["take", "refuse"] = "take"
    """A ``POST /v1/chat`` that sends the whole chat (``{id, messages}``) whose earlier
    turns differ from the chat as the server keeps it: ``take`` the client's from the
    first difference on (as before), or ``refuse`` it (409 ``history_conflict``). A
    submit of only its new message (``{id, message}``) never rewrites earlier turns."""
    chat_job_history: Literal["record", "copy"] = "record"
    """What the job of a ``{id, message}`` submit holds of the chat: ``record`` names the
    chat's turns as its record keeps them (the worker reads them back), or ``copy``
    carries the whole model request, converted from the whole chat on each submit, as
    the previous version made it: set ``copy`` while workers of that version may still
    run (they cannot read a job that names the turns), and remove it once all are new."""
    chat_retention_seconds: int | None = Field(None, ge=0)
    """How long a chat's record (its history, owner, title) lives after its last change:
    0 keeps it until ``DELETE /v1/chat/{id}``. Unset: as long as its latest answer's
    stream can (``idle_ttl_seconds`` plus ``ended_ttl_seconds``), as before. A chat
    outlives the streams of its answers: its history holds each answer once it ended."""
    queued_timeout_seconds: float = Field(600.0, gt=0)
    """A generation no worker has worked on for this long (queued and never taken, or its
    worker died and none took it over) ends with ``error``."""
    worker_lease_seconds: float = Field(15.0, gt=0, le=3600)
    """The lease of a job a worker claimed over HTTP (``POST /v1/worker/claim``,
    docs/worker-protocol.md): renewed within it, or another worker takes the job over and
    the first one's writes are refused (409 ``fenced``). The Python worker's own is
    ``WORKER_LEASE_SECONDS``."""
    worker_claim_wait_seconds: float = Field(20.0, ge=0, le=60)
    """The longest a claim waits for a job (its ``wait_seconds`` is capped to it) before it
    answers 204."""
    default_model: str = "claude-sonnet-4-5"
    """The model of an Anthropic request that names none."""
    default_openai_model: str = "gpt-4.1-mini"
    """The model of an OpenAI request that names none (set it to the model your
    OpenAI-compatible server serves, such as ``llama3.2`` on Ollama)."""
    default_max_tokens: int = Field(1024, ge=1)
    """The ``max_tokens`` of a generation request that names none."""
    abandon_after_seconds: float | None = Field(None, gt=0)
    """A generation that has had no viewer for this long is cancelled (its stream ends
    with ``abort``, reason ``abandoned``), unless its request says otherwise. Unset: a
    generation runs to its end whoever watches."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT, so several ``serve`` processes share one port and the
    kernel spreads connections over them: one process per core (docs/performance.md)."""
    shutdown_seconds: float = Field(8.0, gt=0)
    """On SIGTERM, open responses are ended at once; this bounds the whole shutdown."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The lowest level of the log lines written to stderr."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one object per line with ``stream_id`` on lines about a stream."""

    # --- access control (see docs/security.md) ---
    api_keys: str | None = None
    """Comma-separated ``sha256:<hex>[:right+right]`` digests of the producers' API keys."""
    token_secret: SecretStr | None = None
    """Signs (HS256) and verifies tokens; with it, reading a stream needs a token for it."""
    # --- tokens: JWTs (docs/security.md, "Tokens") ---
    token_secrets: SecretStr | None = None
    """Comma-separated HS256 secrets instead of ``token_secret``: the first signs, all
    verify (rotating the secret without invalidating the tokens out there)."""
    token_audience: str | None = None
    """With it, a token must carry this ``aud``; without it, a token carrying any is refused.
    Set but empty: the start stops (an empty ``aud`` names no one)."""
    token_leeway_seconds: float = Field(5.0, ge=0, le=300)
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat``; an open response ends this long
    after its token's ``exp``."""
    max_revocations: int = Field(100_000, ge=1)
    """Revocations held at once (``POST /v1/tokens/revoke``), each until no token it names
    can be valid any more; beyond, 429 ``too_many_revocations``. Every front-end holds them
    all in memory (docs/security.md says how much)."""
    jwks_url: str | None = None
    """A JWKS (https, or http on loopback) whose keys verify RS256, ES256 and EdDSA tokens."""
    jwks_file: str | None = None
    """A JWKS file instead of a URL, read again whenever it changes."""
    jwks_max_age_seconds: float = Field(300.0, gt=0)
    """A fetched JWKS is fetched again once this old."""
    jwks_min_interval_seconds: float = Field(30.0, ge=0)
    """The least time between two loads of the JWKS that tokens cause (an unknown
    ``kid``): what a stranger's made-up ``kid``s can cost."""
    legacy_tokens: bool = False
    """Accept the deprecated ``v1.``/``c1.`` tokens (until 0.3.0), which carry no audience.
    Off unless turned on."""
    # --- end of tokens ---
    token_ttl_seconds: int = Field(3600, ge=1)
    """Lifetime of the viewer token returned by ``POST /v1/generations``."""
    token_max_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)
    """Longest lifetime ``POST /v1/streams/{id}/tokens`` grants, and no more than
    ``token_max_lifetime_seconds`` (``mint_ttl_cap``)."""
    token_max_lifetime_seconds: int = Field(86400, ge=1)
    """The longest a token may live, whoever minted it: one whose ``exp`` is further than
    this from now (plus the leeway), or whose ``exp - iat`` is longer, is refused (401).
    ``token_ttl_seconds`` above it stops the start."""
    insecure: bool = False
    """Serve beyond loopback without API keys and a token secret (logged loudly)."""
    metrics_key: SecretStr | None = None
    """With it, ``GET /metrics`` needs ``Authorization: Bearer <this key>`` (401 without);
    without it, ``/metrics`` is open to whoever reaches the front-end. Set but empty: the
    start stops."""
    cors_origins: str | None = None
    """Comma-separated origins allowed to call the API from a browser; none by default."""

    # --- limits, per front-end process unless said otherwise ---
    max_connections: int = Field(10_000, ge=1)
    """Open SSE responses; beyond, 503 with Retry-After."""
    max_viewers_per_stream: int = Field(5_000, ge=1)
    """Open SSE responses on one stream; beyond, 503 with Retry-After."""
    max_generations_in_flight: int = Field(1_000, ge=1)
    """Queued plus running generations, across the deployment; beyond, 503."""
    rate_limit_per_minute: int = Field(600, ge=0)
    """Requests per API key per minute, shared by all front-ends through Redis (0: off)."""
    submit_rate_per_minute: int = Field(120, ge=0)
    """Generations one API key, or one token subject, may start per minute (a chat
    submit, an AG-UI run, ``POST /v1/generations``), shared by all front-ends; beyond,
    429 ``rate_limited`` with Retry-After (0: off). Within ``rate_limit_per_minute``."""
    daily_token_budget: int = Field(0, ge=0)
    """Tokens (input, the cache's reads and writes included, and output) one user may use
    per UTC day: a chat submit, an AG-UI run or ``POST /v1/generations`` from a user at
    or over it is 429 ``budget_exhausted`` with ``Retry-After`` to midnight UTC; an
    answer running when it is crossed finishes (0: no budget). A user is a token's
    ``sub`` (a token naming none is its own user) or an API key's name; a token's
    ``daily_tokens`` claim lowers it for its holder (docs/cost.md)."""
    usage_retention_days: int = Field(35, ge=1, le=3660)
    """Days each user's daily usage (``GET /v1/usage``) is kept after the day ends."""
    max_connections_per_subject: int = Field(100, ge=0)
    """Open SSE responses and Durable Streams long-polls of one token subject (a JWT's
    ``sub``); beyond, 429 ``too_many_connections`` with Retry-After (0: no limit). Tokens
    naming no subject are not counted here (a stream's viewer token is often handed to
    all its viewers): mint them with ``sub`` to have them limited."""
    max_connections_per_address: int = Field(1000, ge=0)
    """Open SSE responses and Durable Streams long-polls of one client address; beyond,
    429 ``too_many_connections`` with Retry-After (0: no limit). Generous: a whole office
    behind one NAT address is one client here. Behind a proxy, set ``trusted_proxies``,
    or every client is the proxy's address."""
    trusted_proxies: str | None = None
    """Comma-separated addresses or networks (``10.0.0.0/8``) of the proxies whose
    ``X-Forwarded-For`` names the client (its last hop not among them; uvicorn's
    ``forwarded_allow_ips``); ``*`` trusts any peer (only when the front-end is not
    reachable but through the proxy). Unset: uvicorn's own default, the
    ``FORWARDED_ALLOW_IPS`` variable or else loopback only."""
    busy_eventsource_retry: bool = True
    """Past the admission rate or a connection limit, a browser's ``EventSource``
    (``Accept: text/event-stream``, ``Cache-Control: no-cache`` and ``Sec-Fetch-Dest:
    empty``) gets a 200 holding only a jittered ``retry:`` (1-3 s), which it follows,
    where a 503 or 429 would make it give up for good. False: the status, as for every
    other client (a proxy that passes a 503 on to another front-end then can)."""
    fork_bytes_per_minute: int = Field(64 * 1024 * 1024, ge=0)
    """Bytes a Durable Streams fork may copy from its source, per API key (or token
    subject, or client address without keys) per clock minute, shared by all front-ends
    through Redis; beyond, 429 ``rate_limited`` with Retry-After and no fork is made (0:
    off). One fork of more than this is 413 ``fork_too_large``."""
    keep_alive_seconds: float = Field(75.0, gt=0, le=3600)
    """How long an idle keep-alive connection stays open. Longer than the clients' own
    idle timeouts (Node's fetch 4 s, Python's httpx 5 s, Go 90 s with a proxy's own) and
    than a load balancer's (AWS ALB 60 s), so that the client, not the server, closes an
    idle connection: a server closing first races the client's next request on it, which
    then fails as if the server were down (uvicorn's own default is 5 s)."""
    max_header_bytes: int = Field(64 * 1024, ge=4096)
    """Largest request head (request line and headers), at most 256 headers; beyond, 431
    ``headers_too_large`` and the connection is closed (uvicorn's httptools parser keeps
    no limit of its own)."""

    def durability_policy(self) -> Policy:
        """``BROADCASTER_DURABILITY*``; or, when that is unset, the older
        ``BROADCASTER_DS_WAIT_REPLICAS``/``_MS`` mapped onto it (``replicas`` mode)."""
        if "durability" not in self.model_fields_set and self.ds_wait_replicas:
            return Policy("replicas", self.ds_wait_replicas, self.ds_wait_ms)
        return Policy.of(self)

    def token_secret_list(self) -> list[str]:
        """The HS256 secrets, the signing one first; ValueError when both forms are set."""
        if self.token_secret is not None and self.token_secrets is not None:
            raise ValueError("set BROADCASTER_TOKEN_SECRET or BROADCASTER_TOKEN_SECRETS, not both")
        if self.token_secrets is not None:
            found = [s.strip() for s in self.token_secrets.get_secret_value().split(",")]
            if not all(found):
                raise ValueError("BROADCASTER_TOKEN_SECRETS: an empty secret")
            return found
        return [self.token_secret.get_secret_value()] if self.token_secret else []

    def mint_ttl_cap(self) -> int:
        """The longest lifetime the token routes grant: ``token_max_ttl_seconds``, but
        never beyond ``token_max_lifetime_seconds`` (a longer token would be refused)."""
        return min(self.token_max_ttl_seconds, self.token_max_lifetime_seconds)

    def reads_guarded(self) -> bool:
        """Whether reading needs a token: a secret or a JWKS is configured."""
        return bool(self.token_secret or self.token_secrets or self.jwks_url or self.jwks_file)

    def served_providers(self) -> frozenset[str] | None:
        """``BROADCASTER_PROVIDERS`` parsed (None when unset); ValueError names a name that
        no provider can have (built-in providers and agents share one grammar)."""
        if self.providers is None:
            return None
        served = frozenset(n.strip() for n in self.providers.split(",") if n.strip())
        bad = sorted(n for n in served if not names.is_provider_name(n))
        if bad or not served:
            raise ValueError(
                f"BROADCASTER_PROVIDERS: not a provider name: {bad or '(none)'}; a name is "
                f"{names.PROVIDER_NAME_GRAMMAR} ({', '.join(PROVIDERS)} or an agent's)"
            )
        return served

    def admission(self) -> Admission:
        """What admits a new generation (``generations/start.py``)."""
        return Admission(
            self.served_providers(), self.default_provider, self.max_generations_in_flight
        )

    def chat_rules(self) -> Rules:
        """What the deployment says about a chat submit."""
        return Rules(
            self.request_defaults(), self.admission(), self.chat_multitask, self.chat_queue_max
        )

    def request_defaults(self) -> Defaults:
        """What a generation request that leaves them out gets, and its limits."""
        return Defaults(
            provider=self.default_provider,
            models=(("anthropic", self.default_model), ("openai", self.default_openai_model)),
            max_tokens=self.default_max_tokens,
            max_tokens_limit=self.max_tokens_limit,
            webhook_origins=self.webhook_origins(),
            abandon_after_seconds=self.abandon_after_seconds,
        )
