"""The chaos run: many agent generations with tools, workers killed (``kill -9``) and
stopped (SIGTERM, as a rolling deploy does) at random under them, and the figures a user
cares about: how many answers completed, the output tokens billed against an uncut run's,
the longest silence a viewer saw, and whether every answer reads once and whole.

* ``AgentModel``: the local Anthropic server (``tests/support/fake_anthropic.py``) playing
  an agent of ``steps`` tool steps and a last text step. What it answers depends only on
  the request, so any worker, first or successor, gets the right next step. Asked to go on
  after a partial assistant turn (a takeover that continues a cut step: the partial turn,
  then a user turn asking to continue), it goes on from where the partial stopped,
  repeating its last two words, as models do.
* ``Chaos``: one Redis, two front-ends, ``workers`` workers (a replacement is started at
  once for each one stopped), ``generations`` generations in flight, one EventSource-like
  viewer each (``tests/support/faults.py``), and the monkey.
* ``read_by_ai_sdk``: every generation's stored events read by the AI SDK 6's own
  ``readUIMessageStream`` (``tests/clients/aisdk/assemble_many.mjs``), as a late joiner.

``tests/faults/chaos.py`` runs it for minutes (``make chaos``); ``tests/faults/test_chaos.py``
runs a short form in ``make test``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.support.browser import run_node_script
from tests.support.fake_anthropic import FakeAnthropicServer, Frame, Script, message, text, tool_use
from tests.support.faults import Cluster, Viewer, ViewerGaveUp, stored_events, verdict
from tests.support.procs import ROOT, Proc, stop_all, tool_worker_env

ASSEMBLE = ROOT / "tests" / "clients" / "aisdk" / "assemble_many.mjs"
WORDS = 24
"""Words in each step's text: one ``text_delta`` each."""
CHUNK_DELAY = 0.04
"""Seconds before each delta: a step's text takes about a second to stream, so a kill
lands mid-text often."""
REPEATED = 2
"""Words a continuation repeats from the end of the partial text it was shown."""
PROMPT = re.compile(r"chaos (\d+): (\d+) steps")


def step_text(step: int, steps: int) -> str:
    """The text of ``step`` (0-based; ``steps`` is the last, text only)."""
    if step == steps:
        return f" All {steps} steps are done."
    words = " ".join(f"w{step}.{i}" for i in range(WORDS))
    return f"Step {step + 1} of {steps}: {words}."


def expected_answer(steps: int) -> str:
    """The text parts of an uncut answer, joined."""
    return "".join(step_text(n, steps) for n in range(steps + 1))


def _chunks(words_text: str) -> list[str]:
    """Word-sized deltas: each word with the space before it."""
    return re.findall(r"\s*\S+", words_text) or [words_text]


def step_script(step: int, steps: int, from_char: int = 0) -> Script:
    """The model's reply for ``step``, its text from ``from_char`` on."""
    blocks = [text(_chunks(step_text(step, steps)[from_char:]))]
    if step < steps:
        blocks.append(tool_use(f"toolu_s{step}", "add", ['{"a": ', f'{step}, "b": 1}}']))
    stop = "tool_use" if step < steps else "end_turn"
    return message(blocks, stop_reason=stop, input_tokens=20, chunk_delay=CHUNK_DELAY)


def _blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    content = msg.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _seam(partial: str, expected: str) -> int:
    """Where a continuation of ``partial`` starts in ``expected``: ``REPEATED`` words
    before the partial's end (0: the partial is not a prefix, the whole step again)."""
    if not expected.startswith(partial):
        return 0
    starts = [m.start() for m in re.finditer(r"\s*\S+", partial)]
    return starts[-REPEATED] if len(starts) >= REPEATED else 0


def agent_script(body: Any) -> Script:
    """The next reply of the agent for a request: the step after the tool results in it,
    or the rest of a cut step when asked to go on after a partial assistant turn."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not messages:
        return step_script(0, 1)
    found = PROMPT.search(" ".join(str(b.get("text", "")) for b in _blocks(messages[0])))
    steps = int(found.group(2)) if found else 1
    done = sum(
        1
        for m in messages
        if m.get("role") == "user"
        for b in _blocks(m)
        if b.get("type") == "tool_result"
    )
    last = messages[-1]
    continuing = (
        len(messages) >= 2
        and last.get("role") == "user"
        and not any(b.get("type") == "tool_result" for b in _blocks(last))
        and messages[-2].get("role") == "assistant"
    )
    if continuing:
        partial = "".join(
            str(b.get("text", "")) for b in _blocks(messages[-2]) if b.get("type") == "text"
        )
        return step_script(done, steps, _seam(partial, step_text(done, steps)))
    return step_script(done, steps)


def output_tokens(script: Script, frames_sent: int) -> int:
    """The deltas among the first ``frames_sent`` frames of ``script``: what a reply
    that was cut after them was billed for."""
    frames = [s for s in script if isinstance(s, Frame)][:frames_sent]
    return sum(1 for f in frames if f.event == "content_block_delta")


def uncut_tokens(steps: int) -> int:
    """The output tokens of an answer no worker was lost in."""
    return sum(output_tokens(s, len(s)) for s in (step_script(n, steps) for n in range(steps + 1)))


class AgentModel(FakeAnthropicServer):
    """The local Anthropic server, answering every request as the agent's next step."""

    def _next_script(self, body: Any) -> Script:
        return agent_script(body)

    def billed(self) -> int:
        """Output tokens of every reply streamed so far, cut ones by what was sent."""
        return sum(output_tokens(agent_script(x.body), x.frames_sent) for x in self.exchanges)


@dataclass
class Outcome:
    gid: str
    steps: int
    status: str = ""
    error: str | None = None
    viewer: Viewer | None = None
    problem: str = ""


@dataclass
class Figures:
    seconds: float
    generations: int
    completed: int
    failed: dict[str, int]
    killed: int
    stopped: int
    billed_tokens: int
    uncut_tokens: int
    longest_gap_s: float
    viewer_problems: list[str]
    answer_problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        ratio = self.billed_tokens / self.uncut_tokens if self.uncut_tokens else 0.0
        return [
            f"seconds of chaos:        {self.seconds:.0f}",
            f"generations:             {self.generations}",
            f"completed:               {self.completed}",
            f"ended with a reason:     {sum(self.failed.values())} {dict(self.failed)}",
            f"workers killed (-9):     {self.killed}",
            f"workers stopped (TERM):  {self.stopped}",
            f"output tokens billed:    {self.billed_tokens} "
            f"({ratio:.3f}x the uncut {self.uncut_tokens})",
            f"longest viewer gap:      {self.longest_gap_s:.2f} s",
            f"viewer problems:         {len(self.viewer_problems)}",
            f"answers not read once and whole: {len(self.answer_problems)}",
        ]


def _longest_gap(viewer: Viewer) -> float:
    times = [r.at for r in viewer.received]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def ai_sdk_missing() -> str:
    """What the AI SDK's reader needs and this machine lacks ("" if nothing)."""
    if shutil.which("node") is None:
        return "node is missing: install Node.js >= 20 with npm"
    if not (ASSEMBLE.parent / "node_modules" / "ai" / "package.json").is_file():
        return "run npm ci --prefix tests/clients/aisdk (make test does this)"
    return ""


def read_by_ai_sdk(streams: dict[str, list[dict[str, Any]]], work: Path) -> dict[str, Any]:
    """Each stream's events assembled by the AI SDK 6's ``readUIMessageStream``."""
    source = work / "streams.json"
    source.write_text(json.dumps(streams))
    code, out, err = run_node_script(ASSEMBLE, [str(source)], timeout=120)
    if code != 0:
        raise AssertionError(f"assemble_many.mjs failed ({code}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


@dataclass
class Chaos:
    """Generations under a monkey that kills and stops workers."""

    root: Path
    seconds: float
    generations: int = 50
    workers: int = 3
    steps: int = 4
    pause: tuple[float, float] = (1.0, 3.0)
    """Seconds between two of the monkey's acts, drawn uniformly."""
    sigterm_share: float = 0.5
    acts: int | None = None
    """With a number, the monkey acts exactly so many times, kill -9 and SIGTERM in turn
    (a short run that must show both), however long that takes; else for ``seconds``."""
    seed: int = 1
    killed: int = 0
    stopped: int = 0
    elapsed: float = 0.0
    """Seconds the monkey was at work."""
    _retired: list[Proc] = field(default_factory=list)

    async def run(self) -> Figures:
        rng = random.Random(self.seed)
        with AgentModel() as model, Cluster(self.root, workers_n=0) as cluster:
            cluster.worker_env = {
                **tool_worker_env(model.base_url, self.root),
                "WORKER_CONCURRENCY": str(self.generations),
                "WORKER_MERGE_MS": "20",
            }
            for _ in range(self.workers):
                cluster.add_worker()
            outcomes: list[Outcome] = []
            try:
                async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5)) as client:
                    await self._play(cluster, client, rng, outcomes)
                    for o in outcomes:
                        o.status, o.error = await _status(client, cluster.urls[0], o.gid)
                r = cluster.client()
                stored = {o.gid: stored_events(r, o.gid) for o in outcomes}
                r.close()
            finally:
                stop_all(self._retired, signal.SIGKILL)
            billed = model.billed()
        figures = self._figures(outcomes, stored, billed)
        completed = {o.gid for o in outcomes if o.status == "completed"}
        figures.answer_problems = self._answer_problems(
            {
                gid: [json.loads(e.data) for e in events]
                for gid, events in stored.items()
                if gid in completed
            }
        )
        return figures

    async def _play(
        self,
        cluster: Cluster,
        client: httpx.AsyncClient,
        rng: random.Random,
        outcomes: list[Outcome],
    ) -> None:
        calm = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._monkey, cluster, rng, calm)
            for i in range(self.generations):
                tg.start_soon(self._keep_one_going, cluster, client, i, calm, outcomes)

    async def _keep_one_going(
        self,
        cluster: Cluster,
        client: httpx.AsyncClient,
        slot: int,
        calm: anyio.Event,
        outcomes: list[Outcome],
    ) -> None:
        """One generation after another in this slot until the chaos ends."""
        n = 0
        while n == 0 or not calm.is_set():
            prompt = f"chaos {slot * 1000 + n}: {self.steps} steps"
            resp = await client.post(f"{cluster.urls[0]}/v1/generations", json={"prompt": prompt})
            assert resp.status_code == 202, resp.text
            outcome = Outcome(resp.json()["id"], self.steps)
            outcomes.append(outcome)
            outcome.viewer = Viewer(cluster.urls, outcome.gid, patience=60)
            try:
                await outcome.viewer.run(client)
            except ViewerGaveUp as exc:
                outcome.problem = str(exc)
            n += 1

    async def _monkey(self, cluster: Cluster, rng: random.Random, calm: anyio.Event) -> None:
        started = time.monotonic()
        deadline = started + self.seconds
        try:
            while True:
                await anyio.sleep(rng.uniform(*self.pause))
                done = self.killed + self.stopped
                if (done >= self.acts) if self.acts is not None else time.monotonic() >= deadline:
                    return
                await self._act(cluster, rng, done)
        finally:
            self.elapsed = time.monotonic() - started
            calm.set()

    async def _act(self, cluster: Cluster, rng: random.Random, done: int) -> None:
        """Kill or stop one worker at random, and start its replacement."""
        live = [w for w in cluster.workers if w.alive()]
        if not live:
            return
        victim = rng.choice(live)
        cluster.workers.remove(victim)
        self._retired.append(victim)
        term = done % 2 == 1 if self.acts is not None else rng.random() < self.sigterm_share
        if term:
            victim.popen.send_signal(signal.SIGTERM)  # it hands back, then exits
            self.stopped += 1
        else:
            victim.popen.send_signal(signal.SIGKILL)
            self.killed += 1
        await anyio.to_thread.run_sync(cluster.add_worker)

    def _figures(self, outcomes: list[Outcome], stored: dict[str, Any], billed: int) -> Figures:
        failed: dict[str, int] = {}
        viewer_problems = []
        for o in outcomes:
            if o.status != "completed":
                reason = o.error or f"no reason given (status {o.status!r})"
                failed[reason] = failed.get(reason, 0) + 1
            if o.problem:
                viewer_problems.append(o.problem)
            elif o.viewer is not None:
                v = verdict(o.viewer, stored[o.gid])
                if not (v.outcome == "done" and v.exact):
                    viewer_problems.append(f"{o.gid}: {v}")
        return Figures(
            seconds=self.elapsed,
            generations=len(outcomes),
            completed=sum(1 for o in outcomes if o.status == "completed"),
            failed=failed,
            killed=self.killed,
            stopped=self.stopped,
            billed_tokens=billed,
            uncut_tokens=sum(uncut_tokens(o.steps) for o in outcomes),
            longest_gap_s=max((_longest_gap(o.viewer) for o in outcomes if o.viewer), default=0),
            viewer_problems=viewer_problems,
        )

    def _answer_problems(self, streams: dict[str, list[dict[str, Any]]]) -> list[str]:
        """The completed answers the AI SDK does not read as the uncut answer: text twice,
        a part left streaming, or a chunk it rejects."""
        want = expected_answer(self.steps)
        problems = []
        for gid, got in read_by_ai_sdk(streams, self.root).items():
            streaming = [p for p in got["parts"] if p["state"] == "streaming"]
            if got["problem"] or streaming or got["text"] != want:
                problems.append(
                    f"{gid}: problem={got['problem']} streaming={len(streaming)} "
                    f"text={got['text'][:80]!r}... ({len(got['text'])} chars, want {len(want)})"
                )
        return problems


async def _status(client: httpx.AsyncClient, base: str, gid: str) -> tuple[str, str | None]:
    with contextlib.suppress(httpx.HTTPError):
        resp = await client.get(f"{base}/v1/generations/{gid}")
        if resp.status_code == 200:
            body = resp.json()
            return str(body["status"]), body.get("error")
    await asyncio.sleep(0)
    return "unknown", None
