"""A Node script a browser test drives: run from the project's root, its JSON lines read
as they come (in a thread, so a silent script fails the test with its stderr rather than
hanging it), its stdin open for the test's side of a handshake, stopped by pid."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

from tests.support.browser import script_env, stop_browser_leftovers
from tests.support.procs import ROOT


class Script:
    """A Node script (failover.mjs and its kin): its stdout read line by line, its stdin
    for the handshake. A browser script runs on the test process's shared Chromium."""

    def __init__(
        self,
        args: list[str],
        stderr_path: Path,
        *,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        profile: Path | None = None,
    ):
        self.stderr_path = stderr_path
        self.profile = profile  # a browser script's Chromium profile: cleaned up by stop
        env = script_env(Path(args[1]), env) if len(args) > 1 else env
        with open(stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                args,
                cwd=str(cwd),
                env=None if env is None else {**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def next_json(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            message = f"the script said nothing for {timeout} s"
            raise AssertionError(message + self.report()) from None
        if line is None:
            self.popen.wait(10)
            raise AssertionError(f"the script exited with {self.popen.returncode}{self.report()}")
        self.output.append(line)
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def report(self) -> str:
        err = self.stderr_path.read_text(errors="replace")
        return f"\nstderr:\n{err}\nstdout:\n{''.join(self.output)}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)  # playwright closes its browser on SIGTERM
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.reader.join(5)
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self.profile is not None:  # stopped, its browser was not quit: what it left
            stop_browser_leftovers(self.profile)
