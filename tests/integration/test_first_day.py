"""An operator's first day, tried on real processes: a malformed setting is one line and
exit 2 in every process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.procs import ROOT, run_in_group


def _env(**extra: str) -> dict[str, str]:
    """This environment without the project's settings, and ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROADCASTER_", "WORKER_", "REDIS_", "ANTHROPIC_", "OPENAI_"))
    }
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _run(args: list[str], cwd: Path, **env: str) -> tuple[int, list[str]]:
    done = run_in_group([sys.executable, *args], 60, env=_env(**env), cwd=cwd)
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
