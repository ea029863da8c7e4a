"""Worker settings (``WORKER_*``), read once at the entry point."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from broadcaster.core.durability import DurabilitySettings
from broadcaster.core.settings import RedisSettings
from broadcaster.generations.request import MAX_STEPS, PROVIDERS
from worker.agents.spec import agent_names

PROVIDER_NAMES = (*PROVIDERS, "fake")


class WorkerSettings(RedisSettings, DurabilitySettings):
    """The worker's settings; ``BROADCASTER_DURABILITY*`` are the front-end's names too."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    provider: Literal["anthropic", "openai", "fake"] = "anthropic"
    """The provider served when ``providers`` is not set (and no ``agents`` are)."""
    providers: str | None = None
    """Comma-separated providers this worker serves (``anthropic,openai``), agents'
    names among them (``anthropic,support``); ``fake`` stands in for every built-in
    provider and is listed alone, or beside agents."""
    agents: str | None = None
    """Agents this worker serves, each under its own provider name (docs/agents.md):
    ``name=package.module:attr``, comma-separated (``support=myapp.agents:support``).
    Each attr is an async callable of the job yielding AI SDK UI message chunks or
    Anthropic raw stream events, or a pydantic-ai ``Agent`` (the ``pydantic-ai``
    extra). A request names one as its ``provider``; the front-ends accept it once a
    worker advertises it. Unless ``providers`` (or ``provider``) is set too, a worker
    with agents serves only them, and needs no model API key. Checked at start-up."""
    openai_max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = (
        "max_completion_tokens"
    )
    """The field ``max_tokens`` is sent as to an OpenAI-compatible server: OpenAI's
    reasoning models refuse the old ``max_tokens``; Ollama knows only it."""
    openai_api: Literal["chat-completions", "responses"] = "chat-completions"
    """The API the ``openai`` provider calls: Chat Completions (any OpenAI-compatible
    server), or OpenAI's Responses API, whose responses run in the background and are
    stored (``background``, ``store``), so a worker that takes a generation over streams
    the rest of the same response instead of calling the model again. Not for an
    organisation with zero data retention (it cannot store responses)."""
    openai_continue_final_message: bool = False
    """The OpenAI-compatible server continues the assistant's last message itself
    (vLLM's ``continue_final_message`` with ``add_generation_prompt: false``): a cut
    answer is continued that way instead of with a synthetic user turn."""
    prompt_caching: bool = True
    """Ask the model's API to cache each request's stable prefix (docs/cost.md):
    Anthropic's ``cache_control`` breakpoints on the system prompt, the tools and the
    last turns; OpenAI's ``prompt_cache_key``, the chat's id (else the generation's).
    False: send neither (an OpenAI-compatible server that refuses the field it does not
    know)."""
    takeover: Literal["continue", "restart"] = "continue"
    """How a step cut off with its worker goes on: ``continue`` from what it showed, or
    ``restart`` its model call in a new step (the cut output shown and billed twice; for
    comparison)."""
    concurrency: int = Field(8, ge=1, le=1000)
    """Generations run at once by one process."""
    merge_ms: float = Field(20.0, ge=0)
    """Deltas arriving within this window are merged into one event (0: one event per
    delta). Keeps a stream from being thousands of one-character events."""
    lease_seconds: float = Field(15.0, ge=1)
    """A job (and a generation's hold) not refreshed for this long is taken over by
    another worker: the bound on how long a killed worker's generation waits. Within it,
    a running generation is its worker's alone: a duplicate job of it is dropped."""
    liveness: Literal["connection", "lease"] = "connection"
    """How a dead worker is found. ``connection``: each worker keeps a subscription open
    for as long as its process lives, and a worker whose subscription is gone (its
    process died: ``kill -9``, a crash, out of memory) is taken over within about a
    second, lease or not; a frozen worker keeps its subscription and is taken over after
    its lease. ``lease``: after the lease alone (the behaviour before; for comparison).
    Bounds for each kind of fault: docs/reliability.md."""
    liveness_seconds: float = Field(1.0, ge=0.1, le=60)
    """How often a worker looks for dead workers' jobs (one short script; twice as long
    apart while no other worker holds a job)."""
    max_attempts: int = Field(3, ge=1)
    """Workers one generation may lose (takeovers after a lapsed lease); the next
    takeover ends it with error. Hand-backs (a stopping worker, a deploy) and a writer's
    repair after Redis lost writes are no lost workers and do not count, so rolling
    deploys never end a long agent run."""
    provider_retries: int = Field(4, ge=0)
    """Retries of a provider error that happens before any output, with backoff."""
    retry_base_seconds: float = Field(0.5, ge=0)
    """The first wait before retrying a provider error; each next one is longer (with
    jitter), honouring the provider's ``retry-after``."""
    retry_max_seconds: float = Field(20.0, ge=0)
    """The longest wait between two retries of a provider error."""
    redis_patience_seconds: float = Field(60.0, gt=0)
    """How long an append, or a claim, is retried while Redis does not answer (an append
    is conditional and a claim carries its own token, so a retry never writes or counts
    twice); then the attempt fails and, after the lease, a worker takes the generation
    over."""
    read_timeout_seconds: float = Field(60.0, gt=0)
    """The model stream is given up after this long without a byte."""
    cancel_poll_seconds: float = Field(0.25, gt=0)
    """How often running generations are checked for a cancel."""
    grace_seconds: float = Field(20.0, ge=0)
    """On SIGTERM: how long running generations may go on to their current step's end
    (handed back there) or their own end; the rest are then handed back at once."""
    tools: str | None = None
    """Python tools the worker runs: ``package.module:attr`` (comma-separated for several),
    each attr a list of ``worker.tools.Tool``. Checked at start-up."""
    tool_timeout_seconds: float = Field(30.0, gt=0)
    """A tool call still running after this long ends with ``tool-output-error``."""
    tool_max_output_bytes: int = Field(65536, ge=2)
    """A tool's output larger than this (as JSON) ends with ``tool-output-error``."""
    tool_approval_timeout_seconds: float = Field(300.0, gt=0)
    """How long a call of a tool that needs approval waits for a person's decision before
    it is denied (a tool may set its own, ``Tool.approval_timeout_s``)."""
    max_steps: int = Field(20, ge=1, le=MAX_STEPS)
    """The most steps (model calls) a generation takes here, whatever its ``max_steps``."""
    fake_delay_ms: float = Field(25.0, ge=0)
    """The fake provider's pause between tokens."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The lowest level of the log lines written to stderr."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one object per line with ``stream_id`` on lines about a stream."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """Serve Prometheus metrics on this port (0: off)."""
    metrics_host: str = "127.0.0.1"
    """The address the worker's ``/metrics`` listens on (``0.0.0.0`` in a pod)."""

    @model_validator(mode="after")
    def _known_providers(self) -> WorkerSettings:
        self.served()
        return self

    def served(self) -> tuple[str, ...]:
        """The providers this worker serves, as named (``("fake",)`` for the fake), its
        agents' names among them."""
        agents = agent_names(self.agents)
        given = self.providers
        if given is None and "provider" not in self.model_fields_set and agents:
            given = ",".join(agents)
        names = tuple(n.strip() for n in (given or self.provider).split(",") if n.strip())
        unknown = [n for n in names if n not in PROVIDER_NAMES and n not in agents]
        if not names or unknown:
            raise ValueError(
                f"WORKER_PROVIDERS: unknown provider(s) {unknown or names}; "
                f"choose from {', '.join((*PROVIDER_NAMES, *agents))}"
            )
        builtins = [n for n in names if n not in agents]
        if "fake" in builtins and len(builtins) > 1:
            raise ValueError(
                "WORKER_PROVIDERS: fake stands in for every built-in provider; list it alone"
            )
        return tuple(dict.fromkeys(names))
