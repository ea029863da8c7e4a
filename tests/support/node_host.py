"""The tests' short Node client scripts (the AI SDK's and AG-UI's readers and chats), run
in one long-lived Node process of the test process's own (tests/clients/host.mjs) rather
than a Node process each: a run then costs no Node start and no import of the ``ai`` or
AG-UI packages, about 0.4 s of CPU each, some hundred times a suite.

Each run still sees its own arguments, standard input, output and exit status, and ends
as its process would (its fetches aborted, its timers cleared). ``start`` gives a handle
that answers as much of ``subprocess.Popen`` as these tests use (``communicate``, ``wait``,
``poll``, ``kill``, ``returncode``, ``args``); ``run`` runs to the end. The host starts on
the first run and is stopped by pid at the session's end (tests/conftest.py) or at exit.

``BROADCASTER_TEST_NODE_HOST=0`` runs each script as a Node process of its own instead:
what a script does must not depend on which (tests/integration/test_node_host.py).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

from tests.support.procs import ROOT

HOST_SCRIPT = ROOT / "tests" / "clients" / "host.mjs"
ENABLED = os.environ.get("BROADCASTER_TEST_NODE_HOST", "1") != "0"
STDERR_TAIL = 50
"""Lines of the host's own standard error kept for a message when it ends."""


def missing_node() -> str:
    """What is missing to run the scripts, as a sentence; empty when nothing is."""
    if shutil.which("node") is None:
        return "node is missing: install Node.js >= 20 with npm"
    return ""


class Run:
    """One script's run in the host: what ``subprocess.Popen`` answers, for these tests."""

    def __init__(self, host: Host, run_id: int, args: list[str]) -> None:
        self.args = args
        self.returncode: int | None = None
        self._host = host
        self._id = run_id
        self._ended = threading.Event()
        self._out = ""
        self._err = ""

    def _end(self, code: int, out: str, err: str) -> None:
        self._out, self._err = out, err
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self._out, self._err

    def kill(self) -> None:
        """Ends the run as SIGKILL would end its process (``returncode`` -9)."""
        if not self._ended.is_set():
            self._host.send({"op": "kill", "id": self._id})

    terminate = kill

    def send_signal(self, _signal: int) -> None:
        self.kill()


class Host:
    """The Node process that runs the scripts, started on the first run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the process and its input
        self._runs_lock = threading.Lock()  # the runs (the reader takes only this one)
        self._popen: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []  # each host's reader and error keeper
        self._runs: dict[int, Run] = {}
        self._ids = itertools.count(1)
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)

    def start(self, script: Path | str, args: list[str], stdin: str = "") -> Run:
        with self._lock:
            popen = self._popen if self._popen and self._popen.poll() is None else self._launch()
            run = Run(self, next(self._ids), ["node", str(script), *args])
            with self._runs_lock:
                self._runs[run._id] = run
            request = {"op": "run", "id": run._id, "script": str(Path(script).resolve())}
            self._write(popen, {**request, "args": args, "stdin": stdin})
        return run

    def send(self, request: dict[str, Any]) -> None:
        with self._lock:
            if self._popen is not None and self._popen.poll() is None:
                self._write(self._popen, request)

    def stop(self) -> None:
        """Stops the host by pid (closing its input ends it; SIGKILL if it does not)."""
        with self._lock:
            popen, self._popen = self._popen, None
            threads, self._threads = self._threads, []
        if popen is not None:
            assert popen.stdin is not None
            try:
                popen.stdin.close()
                popen.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                popen.kill()
                popen.wait()
        for thread in threads:
            thread.join(10)

    def kill(self) -> None:
        """SIGKILL to the host, as a crash would end it (its runs then end with status 1)."""
        with self._lock:
            if self._popen is not None:
                self._popen.kill()

    @staticmethod
    def _write(popen: subprocess.Popen[str], request: dict[str, Any]) -> None:
        assert popen.stdin is not None
        popen.stdin.write(json.dumps(request) + "\n")
        popen.stdin.flush()

    def _launch(self) -> subprocess.Popen[str]:
        """A new host, with runs of its own (those of one that ended have been ended)."""
        self._stderr.clear()
        popen = subprocess.Popen(
            ["node", str(HOST_SCRIPT)],
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._popen = popen
        with self._runs_lock:
            self._runs = runs = {}
        assert popen.stdout is not None and popen.stderr is not None
        errors = threading.Thread(target=self._keep_errors, args=(popen.stderr,), daemon=True)
        reader = threading.Thread(target=self._read, args=(popen, errors, runs), daemon=True)
        self._threads += [errors, reader]
        errors.start()
        reader.start()
        return popen

    def _keep_errors(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._stderr.append(line)

    def _read(
        self, popen: subprocess.Popen[str], errors: threading.Thread, runs: dict[int, Run]
    ) -> None:
        """Hands each answer to its run; when the host ends, ends every run left with
        status 1 and the host's last words."""
        assert popen.stdout is not None
        for line in popen.stdout:
            answer = json.loads(line)
            with self._runs_lock:
                run = runs.pop(answer["id"], None)
            if run is not None:
                run._end(answer["code"], answer["stdout"], answer["stderr"])
        popen.stdout.close()
        with self._lock, contextlib.suppress(OSError):
            assert popen.stdin is not None
            popen.stdin.close()  # a host that died: its input goes with it
        popen.wait()
        errors.join(5)
        with self._runs_lock:
            left = list(runs.values())
            runs.clear()
        said = "".join(self._stderr)
        for run in left:
            run._end(1, "", f"(test: the Node host ended with {popen.returncode})\n{said}")


Started = Run | subprocess.Popen[str]
"""A script running: in the host, or a process of its own."""

HOST = Host()
atexit.register(HOST.stop)


def start(script: Path | str, args: list[str], stdin: str = "") -> Started:
    """``node script args`` with ``stdin`` written and closed, running: in the host, or
    with ``BROADCASTER_TEST_NODE_HOST=0`` a process of its own."""
    if ENABLED:
        return HOST.start(script, args, stdin)
    proc = subprocess.Popen(
        ["node", str(script), *args],
        cwd=str(ROOT),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not touch it
    return proc


def finish(proc: Started, timeout: float) -> tuple[int, str, str]:
    """Waits for a script's end: (exit status, output, errors). One past ``timeout`` gets
    SIGTERM (a browser script's playwright then closes its browser), then SIGKILL, and
    says so in its errors."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        err += f"\n(test: the script did not end within {timeout:g} s and was stopped)"
    assert proc.returncode is not None
    return proc.returncode, out, err


def run(
    script: Path | str, args: list[str], timeout: float, stdin: str = ""
) -> tuple[int, str, str]:
    """``node script args`` to its end: (exit status, output, errors)."""
    return finish(start(script, args, stdin), timeout)
