"""The TypeScript client package (clients/js): what its tests need, its build, made
once however many test processes ask (a file lock; rebuilt when a source is newer than
the build; what the build printed kept beside it, for the test of the build to read),
and its node tools run in the background, side by side."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support.procs import ROOT

PACKAGE = ROOT / "clients" / "js"
DIST = PACKAGE / "dist" / "index.js"
RECORD = PACKAGE / "node_modules" / ".build-printed.json"
"""What the build that made dist/ printed, and when it made dist/index.js (its mtime)."""
INSTALL = "run npm ci --prefix clients/js (make test does this)"


def missing_prerequisites() -> list[str]:
    """What is missing to build and test the package, each a sentence."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node is missing: install Node.js >= 20 with npm")
    if not (PACKAGE / "node_modules" / "esbuild").is_dir():
        missing.append(f"clients/js/node_modules is missing: {INSTALL}")
    return missing


def _newest_source() -> float:
    files = [*PACKAGE.glob("src/**/*.ts"), *PACKAGE.glob("tsconfig*.json")]
    files += [PACKAGE / "build.mjs", PACKAGE / "package.json"]
    return max(f.stat().st_mtime for f in files)


def _recorded() -> str | None:
    """What the build that made dist/ printed, if ``build`` made it and it is newer than
    every source."""
    if not (DIST.is_file() and RECORD.is_file()) or DIST.stat().st_mtime <= _newest_source():
        return None
    record = json.loads(RECORD.read_text())
    return str(record["printed"]) if record.get("made") == DIST.stat().st_mtime_ns else None


def build() -> str:
    """The package's build (``node build.mjs`` in clients/js), unless dist/ is newer than
    its sources and was made by a build run here; what the build that made dist/ printed
    (its size line), this one's or the one before's."""
    lock_path = PACKAGE / "node_modules" / ".build.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (printed := _recorded()) is not None:
            return printed
        run = subprocess.run(
            ["node", "build.mjs"],
            cwd=PACKAGE,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert run.returncode == 0, f"the package's build failed:\n{run.stdout}\n{run.stderr}"
        RECORD.write_text(json.dumps({"made": DIST.stat().st_mtime_ns, "printed": run.stdout}))
        return run.stdout


def built() -> Path:
    """The built module (built first if it is not up to date)."""
    build()
    return DIST


class Background:
    """A command run in clients/js while the test process does something else (another
    tool, a test), in a process group of its own; its output kept in ``log_dir``."""

    def __init__(self, name: str, args: list[str], log_dir: Path, timeout: float) -> None:
        self.args = args
        self._deadline = time.monotonic() + timeout
        self._out, self._err = log_dir / f"{name}.out", log_dir / f"{name}.err"
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self._popen = subprocess.Popen(
                args,
                cwd=PACKAGE,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def result(self) -> subprocess.CompletedProcess[str]:
        """Its end (the whole group killed past its timeout, counted from its start):
        status, output and errors, as ``subprocess.run`` gives them."""
        try:
            code = self._popen.wait(max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        out, err = (p.read_text(errors="replace") for p in (self._out, self._err))
        return subprocess.CompletedProcess(self.args, code, out, err)

    def stop(self) -> None:
        """Its whole group ended by pid, if it still runs."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait()
