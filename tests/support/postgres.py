"""A real PostgreSQL server for a test: Debian's ``postgresql`` package (its binaries under
``/usr/lib/postgresql/<version>/bin``, else on ``PATH``), a cluster made with ``initdb`` in
a temporary folder, started on a free port of 127.0.0.1 (its socket in the same folder),
stopped by pid. As root, the server runs as the package's ``postgres`` user (it refuses
to run as root), in a folder of its own."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broadcaster.core.embedded import free_port

STARTUP_S = 60.0


def find_bin(name: str) -> str:
    """A PostgreSQL program: the newest Debian version's, else ``PATH``'s; the test fails
    saying what to install when there is none."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for folder in versions:
        if os.access(folder / name, os.X_OK):
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"this test needs PostgreSQL's {name}: install it with apt-get install postgresql",
            pytrace=False,
        )
    return found


def _version(folder: Path) -> int:
    name = folder.parent.name
    return int(name) if name.isdigit() else 0


@dataclass
class Postgres:
    """A running server: its DSN (user ``app``, database ``app``) and process."""

    dsn: str
    proc: subprocess.Popen[bytes]
    folder: Path

    def stop(self) -> None:
        """The server stopped by its own pid (``postmaster.pid``: under ``runuser`` the
        process started is not the server), then its folder removed."""
        pid = self._server_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _server_pid(self) -> int | None:
        try:
            first = (self.folder / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None if self.proc.poll() is not None else self.proc.pid
        return int(first) if first.strip().isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _as_owner(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when this process is root."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """A fresh server while inside, stopped (by pid) and removed on leaving."""
    folder = Path(tempfile.mkdtemp(prefix="bc-postgres-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("no postgres user: install PostgreSQL with apt-get install postgresql")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()
    subprocess.run(
        _as_owner([find_bin("initdb"), "-D", str(data), "-U", "app", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (the server's own, closed below)
    argv = [find_bin("postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1"]
    argv += ["-k", str(folder), "-c", "fsync=off"]
    proc = subprocess.Popen(_as_owner(argv), stdout=log, stderr=subprocess.STDOUT)
    server = Postgres(f"postgresql://app@127.0.0.1:{port}/postgres", proc, folder)
    try:
        _ready(server, port, log)
        subprocess.run(
            [find_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "app", "-d", "postgres",
             "-c", "CREATE DATABASE app"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        server.dsn = f"postgresql://app@127.0.0.1:{port}/app"
        yield server
    finally:
        server.stop()
        log.close()


def _ready(server: Postgres, port: int, log: object) -> None:
    """Wait until the server takes connections (``pg_isready``), or fail with its log."""
    deadline = time.monotonic() + STARTUP_S
    isready = find_bin("pg_isready")
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        probe = [isready, "-h", "127.0.0.1", "-p", str(port), "-U", "app", "-q"]
        if subprocess.run(probe, check=False).returncode == 0:
            return
        time.sleep(0.1)
    said = (server.folder / "server.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"PostgreSQL did not start on port {port}:\n{said}")
