"""The tests' fork server (tests/support/forkserver.py) starts a front-end or a worker as
a new interpreter would: same output, same exit status, the environment and directory
asked for, a process of its own that the test waits for and signals by pid."""

from __future__ import annotations

import atexit
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import forkserver
from tests.support.polling import wait_for
from tests.support.procs import (
    Proc,
    run_in_group,
    run_python,
    spawn,
    start_frontend,
    start_worker,
    stop_all,
)


def _both(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[Proc, Proc]:
    forked = spawn("forked", args, env, tmp_path, fork=True)
    started = spawn("started", args, env, tmp_path)
    assert isinstance(forked.popen, forkserver.Forked), "not forked: is the fork server on?"
    assert isinstance(started.popen, subprocess.Popen)
    return forked, started


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["-m", "broadcaster", "--version"], {}),
        (["-m", "broadcaster", "serve", "--port", "{taken}"], {}),
        (["-m", "broadcaster", "serve"], {"BROADCASTER_PORT": "many"}),
        (["-m", "worker", "run"], {"REDIS_URL": "nonsense://x", "WORKER_PROVIDER": "fake"}),
        (["-m", "broadcaster", "no-such-command"], {}),
    ],
)
def test_a_forked_start_says_and_exits_as_a_new_interpreter(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    with socket.socket() as held:  # a port that is taken, whatever the user may bind
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = str(held.getsockname()[1])
        forked, started = _both(tmp_path, [a.replace("{taken}", taken) for a in args], env)
        try:
            assert forked.popen.wait(30) == started.popen.wait(30)
        finally:
            stop_all([forked, started], signal.SIGKILL)
    assert _said(forked) == _said(started) and _said(forked), forked.log()


def _said(proc: Proc) -> list[str]:
    """Its log's lines without their times, and without a traceback's frames (a forked
    process's begin in the fork server's code): what it said, the error last."""
    return [
        re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "", line)
        for line in proc.log().splitlines()
        if not line.startswith(" ")
    ]


def test_a_forked_process_has_the_environment_and_directory_asked_for(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    proc = spawn(
        "hash",
        ["-m", "broadcaster", "hash-key", "k" * 32],
        {"BROADCASTER_SOMETHING": "x"},
        tmp_path,
        cwd=tmp_path / "here",
        fork=True,
    )
    assert isinstance(proc.popen, forkserver.Forked)
    assert proc.popen.wait(30) == 0, proc.log()
    expected = subprocess.run(
        [sys.executable, "-m", "broadcaster", "hash-key", "k" * 32],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert proc.log() == expected
    server = forkserver.server()
    assert server is not None
    env, here = dict(os.environ), tmp_path / "here"
    assert server.can_start(sys.executable, ["-m", "broadcaster"], env, here)
    assert not server.can_start(sys.executable, ["-m", "broadcaster"], {"PYTHONPATH": "/x"}, here)
    assert not server.can_start("/usr/bin/python3", ["-m", "broadcaster"], env, here)
    assert not server.can_start(sys.executable, ["-c", "pass"], env, here)
    for inert in forkserver.INERT:  # output buffering, the bytecode cache: no difference
        assert server.can_start(sys.executable, ["-m", "worker"], {**env, inert: "/y"}, here)
    (here / "broadcaster").mkdir()  # a copy of the code where it runs: a new one imports it
    assert not server.can_start(sys.executable, ["-m", "broadcaster"], env, here)
    assert server.can_start(sys.executable, ["-m", "broadcaster"], env, forkserver.ROOT)


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "broadcaster", "--version"],
        ["-m", "broadcaster", "providers"],  # an error on stderr, exit 1
        ["-m", "broadcaster", "hash-key", "k" * 32],  # stdout only
        ["-m", "broadcaster", "no-such-command"],  # argparse: usage, exit 2
        ["-m", "worker", "run"],  # a bad setting: one line, exit 2
    ],
)
def test_a_forked_run_answers_as_a_new_interpreter(tmp_path: Path, args: list[str]) -> None:
    env = {
        # the variables that act as an interpreter starts, as this process has them (a
        # PYTHON_VERSION that python's container images set, say): with others it is not
        # forked, as it must not be
        **forkserver.at_start(dict(os.environ)),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(forkserver.ROOT),
        "WORKER_CONCURRENCY": "eight",
    }
    assert forkserver.for_start(sys.executable, args, env, tmp_path), "would not be forked"
    forked = run_python(args, 30, env=env, cwd=tmp_path)
    started = run_in_group([sys.executable, *args], 30, env=env, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        started.returncode,
        started.stdout,
        started.stderr,
    )
    assert forked.stdout or forked.stderr


def test_a_forked_run_past_its_timeout_is_killed_with_its_group(tmp_path: Path) -> None:
    """``broadcaster demo`` starts a worker and a Redis of its own: past the timeout the
    whole session goes, not only the command (the Redis, in a session of its own, as its
    parent dies)."""
    env = {**os.environ, "BROADCASTER_PORT": "0"}
    with pytest.raises(subprocess.TimeoutExpired):
        run_python(["-m", "broadcaster", "demo", "--port", "0"], 3, env=env, cwd=tmp_path)

    def leftovers() -> list[int]:
        pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
        return [pid for pid in pids if _runs_under(pid, tmp_path)]

    wait_for(
        "no process of the demo left", lambda: not leftovers(), 10, context=lambda: f"{leftovers()}"
    )


def _runs_under(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` (if still there) works in ``folder`` or below it."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return cwd == folder or folder in cwd.parents


def test_a_forked_start_finds_the_repository_on_pythonpath_as_a_new_interpreter(
    tmp_path: Path,
) -> None:
    """A ``PYTHONPATH`` of the repository's root (what the workers that run the test tools
    and agents have) forks too, and from a folder outside the repository the forked
    worker imports the test tools from it as a new interpreter does; without it, both
    refuse them alike."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["-m", "worker", "run"]
    env = {
        "REDIS_URL": "nonsense://x",
        "WORKER_PROVIDER": "fake",
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
    }
    said: dict[str, list[str]] = {}
    for name, extra in (("with", {"PYTHONPATH": str(forkserver.ROOT)}), ("without", {})):
        forked = spawn(f"f-{name}", args, {**env, **extra}, tmp_path, cwd=elsewhere, fork=True)
        started = spawn(f"s-{name}", args, {**env, **extra}, tmp_path, cwd=elsewhere)
        try:
            assert isinstance(forked.popen, forkserver.Forked), "not forked"
            assert forked.popen.wait(30) == started.popen.wait(30)
        finally:
            stop_all([forked, started], signal.SIGKILL)
        assert _said(forked) == _said(started), (forked.log(), started.log())
        said[name] = _said(forked)
    assert "cannot import 'tests.support.worker_tools'" in "\n".join(said["without"])
    assert said["with"] and "cannot import" not in "\n".join(said["with"]), said["with"]


def test_a_forked_front_end_and_worker_are_the_test_process_children(
    tmp_path: Path, redis_url: str
) -> None:
    front = start_frontend(redis_url, tmp_path)
    worker = start_worker(redis_url, tmp_path)
    try:
        for proc in (front, worker):
            assert isinstance(proc.popen, forkserver.Forked)
            parent = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            assert parent == str(os.getpid()), "not the test process's child"
        front.popen.send_signal(signal.SIGKILL)
        assert front.popen.wait(10) == -signal.SIGKILL
        assert worker.stop() == 0, worker.log()  # SIGTERM: it drains and exits 0
        assert not Path(f"/proc/{front.pid}").exists()
        assert not Path(f"/proc/{worker.pid}").exists()
    finally:
        stop_all([front, worker], signal.SIGKILL)


@pytest.mark.parametrize("status", [0, 3, -signal.SIGINT])
def test_a_forked_process_exits_as_the_interpreter_does(tmp_path: Path, status: int) -> None:
    """Without the interpreter's teardown, but its threads joined first, then its
    ``atexit`` functions, its output flushed, and the status given (an interrupt: killed
    by ``SIGINT``, as Python ends)."""
    said = tmp_path / "said"
    pid = os.fork()
    if pid == 0:  # the child: what a forked start ends with
        try:
            out = said.open("a", buffering=1)

            def late() -> None:
                time.sleep(0.2)
                out.write("thread\n")

            threading.Thread(target=late).start()
            atexit.register(out.write, "atexit\n")
            sys.stdout = io.TextIOWrapper(io.FileIO(os.open(said, os.O_WRONLY | os.O_APPEND), "w"))
            sys.stdout.write("buffered\n")  # not yet written: the exit flushes it
        finally:
            forkserver._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == status
    assert said.read_text().splitlines() == ["thread", "atexit", "buffered"]


def test_an_exit_status_is_the_one_sys_exit_gives(capsys: pytest.CaptureFixture[str]) -> None:
    assert [forkserver._status(code) for code in (None, 0, 2, 256 + 4, -1)] == [0, 0, 2, 4, 255]
    assert forkserver._status("bad settings: X") == 1
    assert capsys.readouterr().err == "bad settings: X\n"
