"""Every command and snippet on the site's Start and Guides pages (docs/start, docs/guides)
runs, as a reader would run it, against a real front-end and worker: one stack shared by
the module, with the settings the guides tell the reader to start theirs with (the
example tools, a webhook receiver's URL and secret).

A page's blocks run in order, in one bash script (so a variable one block sets, the next
uses): ``sh`` blocks as they are, ``python`` blocks as programs of their own. The
addresses the pages use (``localhost:8000``, ``localhost:6379``, ``localhost:9000`` and
``--port 9000``) point at the test's
ports. A block the test cannot run says why on the line before it
(``<!-- not run: why -->``: it needs Docker, a cluster or a browser, or it starts the
server the test starts itself); any other ``sh`` or ``python`` block runs, and a page's
script fails at its first failing command (``set -euo pipefail``; the guides' own
``test`` lines check what they show)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.procs import ROOT, run_in_group
from tests.support.stacks import Stack, start_stack

PAGES = sorted([*(ROOT / "docs" / "start").glob("*.md"), *(ROOT / "docs" / "guides").glob("*.md")])
RUNNABLE = {"sh", "python"}
BLOCK = re.compile(
    r"(?:^<!-- not run: (?P<why>[^\n]+?) -->\n)?^```(?P<lang>\w+)[^\n]*\n(?P<body>.*?)^```",
    re.S | re.M,
)
EXPECTED = {
    "two-tabs.md": ["generation ", "both tabs saw the same", "resumed after event 3"],
    "demo.md": ['"finishReason":"tool-calls"', '"get_weather"', "invalid_request"],
    "install.md": ["python -m broadcaster ", "python -m worker "],
    "job-progress.md": ["the second writer was refused", "published job-", "data-progress"],
    "usechat.md": ["data: [DONE]", "resume: 20", '"assistant"'],
    "dashboard.md": ['"stream":"team', "event: finish"],
    "durable-streams.md": ['[{"pct":10},{"pct":20}]', "events, the last: finish"],
    "webhooks.md": ["completed (stop)", "ended with finish at event 2"],
    "chat-persistence.md": [
        "chat.turn.finished: {'chat_id'",
        '"version":1',
        "again: 409",
        "deleted: 204",
        "then: 404",
    ],
    "tool-approvals.md": ["['refund']", "waits for a person", '"approved":true', '"words"'],
    "redis-cluster.md": ["cluster [('node1', 6379), ('node2', 6379)]", "sentinel"],
    "observability.md": ["broadcaster_events_delivered_total", "x-trace-id"],
}
"""What each page's run prints, at least: a page that ran nothing, or ran without doing
what it says, fails."""


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    why: str | None


def blocks(page: Path) -> list[Block]:
    return [Block(m["lang"], m["body"], m["why"]) for m in BLOCK.finditer(page.read_text())]


def script(page: Path, ports: dict[int, int]) -> str:
    """The page's runnable blocks as one bash script, its addresses pointed at ``ports``."""
    lines = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for block in blocks(page):
        if block.why is not None or block.lang not in RUNNABLE:
            continue
        if block.lang == "sh":
            lines.append(block.body)
        else:
            lines.append(f"python - <<'PYTHON'\n{block.body}PYTHON")
    text = "\n".join(lines) + "\n"
    for documented, actual in ports.items():
        text = text.replace(f"localhost:{documented}", f"127.0.0.1:{actual}")
        text = text.replace(f"--port {documented}", f"--port {actual}")
    return text


@dataclass
class Deployment:
    stack: Stack
    receiver_port: int
    webhook_secret: str

    @property
    def ports(self) -> dict[int, int]:
        redis_port = int(self.stack.redis.url.rsplit(":", 1)[1].split("/")[0])
        assert self.stack.frontend.port is not None
        return {8000: self.stack.frontend.port, 6379: redis_port, 9000: self.receiver_port}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"the guides' commands need {tool}: apt-get install {tool}", pytrace=False)
    receiver_port = free_port()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    stack = start_stack(
        tmp_path_factory.mktemp("guides"),
        "guides",
        {"WORKER_TOOLS": "examples.tools:TOOLS", "PYTHONPATH": str(ROOT)},
        frontend_env={
            "BROADCASTER_WEBHOOK_URL": f"http://127.0.0.1:{receiver_port}/webhooks",
            "BROADCASTER_WEBHOOK_SECRET": secret,
            "BROADCASTER_WEBHOOK_RETRY_MAX_SECONDS": "1",
        },
    )
    try:
        yield Deployment(stack, receiver_port, secret)
    finally:
        stack.stop()


def _env(deployment: Deployment) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROADCASTER_", "WORKER_", "REDIS_", "ANTHROPIC_", "OPENAI_"))
    }
    bin_dir = str(Path(sys.executable).parent)
    return {
        **env,
        "PATH": f"{bin_dir}:{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "WEBHOOK_SECRET": deployment.webhook_secret,
    }


def test_every_guide_block_runs_or_says_why() -> None:
    """A guide's shell or Python block is run by this module unless the line before it says
    why not; the pages this module checks each have runnable blocks and expectations."""
    names = {page.name for page in PAGES}
    assert set(EXPECTED) <= names, set(EXPECTED) - names
    for page in PAGES:
        for block in blocks(page):
            if block.why is not None:
                assert len(block.why.split()) >= 3, f"{page.name}: say why a block is not run"
        runnable = [b for b in blocks(page) if b.why is None and b.lang in RUNNABLE]
        if page.name in EXPECTED:
            assert runnable, f"{page.name} has no block this test runs"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_guide_runs(name: str, deployment: Deployment, tmp_path: Path) -> None:
    page = next(p for p in PAGES if p.name == name)
    program = script(page, deployment.ports)
    ran = run_in_group(["bash", "-c", program], 100, env=_env(deployment), cwd=tmp_path)
    out = ran.stdout + ran.stderr
    assert ran.returncode == 0, f"{name}:\n{program}\n--- output:\n{out}\n{deployment.stack.logs()}"
    missing = [text for text in EXPECTED[name] if text not in out]
    assert not missing, f"{name} did not print {missing}:\n{out}"
