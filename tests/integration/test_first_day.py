"""An operator's first day, tried on real processes: a malformed setting is one line and
exit 2 in every process; the admin commands read the deployment's Redis, say which, and
never start an embedded one; while Redis is down, each background loop backs off and
says so once, and once when it is back; both command lines say their version, and one
makes a webhook signing secret."""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from standardwebhooks import Webhook

from broadcaster.core import DISTRIBUTION, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.webhooks.settings import DelivererSettings
from broadcaster.webhooks.signing import Signer
from tests.support import polling
from tests.support.procs import (
    ROOT,
    Proc,
    own_redis,
    read_sse,
    run_python,
    start_frontend,
    start_worker,
    stop_all,
)

pytestmark = pytest.mark.anyio


def _env(**extra: str) -> dict[str, str]:
    """This environment without the project's settings, and ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROADCASTER_", "WORKER_", "REDIS_", "ANTHROPIC_", "OPENAI_"))
    }
    return {**env, "PYTHONPATH": str(ROOT), "BROADCASTER_EMBEDDED_REDIS_PORT": "0", **extra}


def wait_for(proc: Proc, text: str, timeout: float = 30) -> None:
    """Until ``proc``'s log holds ``text``; fails at once if ``proc`` exits first."""

    def logged() -> bool:
        assert proc.alive(), proc.log()
        return text in proc.log()

    polling.wait_for(f"{text!r} in {proc.name}'s log", logged, within=timeout, context=proc.log)


def _run(args: list[str], cwd: Path, **env: str) -> tuple[int, list[str]]:
    done = run_python(args, 60, env=_env(**env), cwd=cwd)
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


@pytest.mark.parametrize(
    ("args", "variable", "value", "expects"),
    [
        (
            ["-m", "broadcaster", "serve"],
            "BROADCASTER_MAX_CONNECTIONS",
            "abc",
            "input should be a valid integer",
        ),
        (["-m", "broadcaster", "demo"], "BROADCASTER_LOG_FORMAT", "xml", "'text' or 'json'"),
        (
            ["-m", "broadcaster", "webhooks", "dead"],
            "BROADCASTER_WEBHOOK_TIMEOUT_SECONDS",
            "soon",
            "input should be a valid number",
        ),
        (["-m", "broadcaster", "providers"], "BROADCASTER_REDIS_POOL_SIZE", "1", "greater than"),
        (["-m", "worker", "run"], "WORKER_CONCURRENCY", "eight", "input should be a valid integer"),
    ],
)
def test_a_malformed_setting_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], variable: str, value: str, expects: str
) -> None:
    code, lines = _run(args, tmp_path, **{variable: value})
    assert code == 2, lines
    assert len(lines) == 1, lines
    [line] = lines
    assert f"bad settings: {variable}={value!r}: " in line
    assert expects in line
    assert not (tmp_path / ".broadcaster").exists(), "stopped before starting a Redis"


# --- the admin commands read the deployment's Redis and never start one ----------------------


@pytest.mark.parametrize(
    "args", [["webhooks", "dead"], ["webhooks", "replay", "123-0"], ["providers"]]
)
def test_an_admin_command_without_redis_url_starts_no_redis(
    tmp_path: Path, args: list[str]
) -> None:
    code, lines = _run(["-m", "broadcaster", *args], tmp_path)
    assert code == 1, lines
    assert lines == [
        f"broadcaster {' '.join(args[:2] if args[0] == 'webhooks' else args)}: REDIS_URL is "
        f"unset and no embedded Redis runs for {tmp_path / '.broadcaster'}: set REDIS_URL to "
        "the deployment's Redis (this command never starts one)"
    ]
    assert not (tmp_path / ".broadcaster").exists()


def test_the_admin_commands_say_which_redis_they_read(tmp_path: Path) -> None:
    redis = own_redis(tmp_path / "redis")
    demo = own_redis(tmp_path / ".broadcaster")  # as a running demo's embedded Redis
    try:
        client = redis_sync.Redis.from_url(redis.url)
        dead = {"id": "msg_1", "type": "stream.ended", "stream": "s", "to": "", "body": "{}"}
        entry = client.xadd(keys.WEBHOOK_DEAD_KEY, dead).decode()  # type: ignore[union-attr]
        client.close()

        code, lines = _run(["-m", "broadcaster", "webhooks", "dead"], tmp_path, REDIS_URL=redis.url)
        assert code == 0, lines
        assert f"broadcaster webhooks dead: reading {redis.url} (REDIS_URL)" in lines
        assert "1 dead deliveries" in lines

        args = ["-m", "broadcaster", "webhooks", "replay", entry, "1-0"]
        code, lines = _run(args, tmp_path, REDIS_URL=redis.url)
        assert code == 1, lines
        assert "1 deliveries queued again" in lines
        assert "broadcaster webhooks replay: no dead delivery 1-0" in lines

        code, lines = _run(["-m", "broadcaster", "webhooks", "replay", "abc"], tmp_path)
        assert code == 1, lines
        assert "not a dead-letter entry id: abc" in lines[-1]

        # Without REDIS_URL, the embedded Redis already running for the folder is read.
        code, lines = _run(["-m", "broadcaster", "providers"], tmp_path)
        assert code == 0, lines
        where = f"the embedded Redis of {tmp_path / '.broadcaster'}"
        assert f"broadcaster providers: reading {demo.url} ({where})" in lines
        assert "no worker has advertised a provider yet" in lines
    finally:
        demo.stop()
        redis.stop()


# --- Redis down: each loop backs off and says so once ----------------------------------------


async def test_while_redis_is_down_each_loop_says_so_once(tmp_path: Path) -> None:
    redis = own_redis(tmp_path / "redis")
    port = redis.port
    frontend = start_frontend(redis.url, tmp_path, "outage-frontend")
    worker = start_worker(redis.url, tmp_path, "outage-worker")
    try:
        redis.kill()
        wait_for(frontend, "starting chats' waiting messages: Redis is unreachable")
        wait_for(worker, "taking jobs: Redis is unreachable")
        # The chat pump runs every 0.25 s: without backoff and state, a line each round.
        await asyncio.sleep(2)
        for proc in (frontend, worker):
            down = [line for line in proc.log().splitlines() if "Redis is unreachable" in line]
            loops = [line.split(": Redis is unreachable")[0] for line in down]
            assert len(loops) == len(set(loops)), f"a loop said it twice:\n{proc.log()}"
            assert "Redis still unreachable" not in proc.log()
        # pub/sub, the chat pump, approvals, usage settling, chat settling: one line each.
        assert frontend.log().count("Redis is unreachable") <= 5, frontend.log()
        assert "a round failed" not in frontend.log(), frontend.log()

        redis = EmbeddedRedis(tmp_path / "redis", port=port, persistent=False)
        redis.start(reuse=False)
        wait_for(frontend, "starting chats' waiting messages: Redis answers again")
        wait_for(worker, "taking jobs: Redis answers again")
        for proc in (frontend, worker):
            back = [line for line in proc.log().splitlines() if "Redis answers again" in line]
            loops = [line.split(": Redis answers again")[0] for line in back]
            assert len(loops) == len(set(loops)), proc.log()
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(f"{frontend.url}/v1/generations", json={"prompt": "back"})
            assert r.status_code == 202, r.text
            result = await read_sse(client, f"{frontend.url}/v1/streams/{r.json()['id']}/events")
            assert result.typed()[-1].event == "finish"
    finally:
        stop_all([frontend, worker])
        redis.stop()


# --- --version, and a webhook secret ---------------------------------------------------------


@pytest.mark.parametrize("package", ["broadcaster", "worker"])
def test_both_command_lines_say_their_version(tmp_path: Path, package: str) -> None:
    code, lines = _run(["-m", package, "--version"], tmp_path)
    assert code == 0
    assert lines == [f"python -m {package} {importlib.metadata.version(DISTRIBUTION)}"]


SERVER_MODULES = ("fastapi", "uvicorn", "broadcaster.http.app", "redis")
"""What a front-end imports and a command that serves nothing should not."""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--version"], 0),
        (["hash-key", "k" * 32], 0),
        (["no-such-command"], 2),
        (["tail", "--help"], 0),
    ],
)
def test_a_command_that_serves_nothing_imports_no_server(
    tmp_path: Path, argv: list[str], code: int
) -> None:
    """``--version``, ``hash-key``, a mistyped command or a command's help answer at once:
    the command line imports each command's modules when that command runs. (In a new
    interpreter, so that nothing the tests imported counts.)"""
    probe = (
        "import sys\n"
        "from broadcaster.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "else:\n"
        "    code = 0\n"
        f"loaded = [m for m in {SERVER_MODULES!r} if m in sys.modules]\n"
        "print('loaded:', loaded, 'code:', code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=_env(),
        check=False,
        timeout=60,
    )
    assert done.stdout.splitlines()[-1] == f"loaded: [] code: {code}", (done.stdout, done.stderr)


def test_webhooks_secret_makes_a_secret_that_signs_and_verifies(tmp_path: Path) -> None:
    made = [_run(["-m", "broadcaster", "webhooks", "secret"], tmp_path) for _ in range(2)]
    assert [code for code, _ in made] == [0, 0]
    [[first], [second]] = [lines for _, lines in made]
    assert first != second and first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    # What the deliverer accepts and signs with is what a receiver verifies.
    settings = DelivererSettings(webhook_url="http://127.0.0.1:9/hook", webhook_secret=first)
    assert settings.webhooks_configured()
    body = b'{"type":"stream.ended"}'
    headers = Signer(first).headers("msg_1", body)
    assert Webhook(first).verify(body, headers) == {"type": "stream.ended"}


def test_the_interpreter_make_picks_can_build_the_virtualenv() -> None:
    """``make`` builds ``.venv`` with what tools/pick_python.py prints: an interpreter
    that is there, is Python >= 3.11 and has ``venv`` and ``ensurepip``."""
    picked = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "pick_python.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    path = picked.stdout.strip()
    assert picked.stderr == f"building the virtualenv with {path}\n"
    checked = subprocess.run(
        [path, "-c", "import sys, venv, ensurepip; assert sys.version_info >= (3, 11)"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
