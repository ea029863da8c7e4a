"""A real nginx in front of the test's front-ends, configured by deploy/nginx.conf itself:
only the upstream servers, the listen address and the paths an unprivileged nginx in a
temporary folder needs are substituted (and a second access log is added, which records
each request's Last-Event-ID and upstream). A third front-end gets a copy of the second
one's server line.

``round_robin=True`` makes the same file route by plain round robin instead of by stream
(the ``hash ... consistent`` line removed, everything else kept), so that consecutive
requests for one stream land on different front-ends: the Durable Streams conformance
suite then checks read-your-writes across front-ends in each of its tests."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.procs import ROOT

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# One line per request, fields separated by tabs; "-" marks an empty value.
SSE_LOG_FORMAT = (
    "log_format failover_test '$request_method\\t$request_uri\\t$status\\t"
    "$http_last_event_id\\t$upstream_addr\\t$upstream_status';"
)


def find_nginx() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "this test needs nginx (it runs deploy/nginx.conf): install it with apt-get install nginx",
        pytrace=False,
    )


def _replace_once(text: str, old: str, new: str) -> str:
    """Replace ``old``, which must occur exactly once, so that a change in the structure of
    deploy/nginx.conf makes this test fail loudly instead of testing something else."""
    count = text.count(old)
    if count != 1:
        raise AssertionError(
            f"deploy/nginx.conf: expected {old!r} exactly once, found it {count} times;"
            f" update the substitutions in tests/support/nginx.py"
        )
    return text.replace(old, new)


def nginx_conf_for_test(
    directory: Path, listen_port: int, frontend_ports: list[int], source: str | None = None
) -> str:
    """deploy/nginx.conf (or ``source``, a copy of it) with loopback upstreams, a loopback
    port and private paths.

    Two or three front-ends: the file's two server lines name the first two, and a third
    gets a copy of the second line (same parameters)."""
    if len(frontend_ports) not in (2, 3):
        raise ValueError(f"two or three front-ends, not {len(frontend_ports)}")
    text = NGINX_CONF.read_text() if source is None else source
    upstream_servers = re.findall(r"^\s*server\s+([^\s{;]+)[^{\n]*;", text, flags=re.MULTILINE)
    if upstream_servers != ["frontend-1:8000", "frontend-2:8000"]:
        raise AssertionError(
            f"deploy/nginx.conf: expected the upstream servers frontend-1:8000 and"
            f" frontend-2:8000, found {upstream_servers}; update tests/support/nginx.py"
        )
    if len(frontend_ports) == 3:
        second = re.search(r"^ *server frontend-2:8000 [^\n]*;$", text, flags=re.MULTILINE)
        assert second is not None  # found by the check above
        line = second.group(0)
        text = _replace_once(text, line, f"{line}\n{line.replace('frontend-2', 'frontend-3')}")
    for i, port in enumerate(frontend_ports, start=1):
        text = _replace_once(text, f"server frontend-{i}:8000 ", f"server 127.0.0.1:{port} ")
    text = _replace_once(text, "listen 80;", f"listen 127.0.0.1:{listen_port};")

    # Run unprivileged (or as root without Debian lacking an `nginx` user).
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
    else:
        user = "# user: not root, so nginx runs as the current user"
    text = _replace_once(text, "user nginx;", user)
    text = _replace_once(text, "pid /var/run/nginx.pid;", f"pid {directory / 'nginx.pid'};")
    temp_paths = "".join(
        f"    {kind}_temp_path {directory / 'temp' / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = _replace_once(text, "\nhttp {\n", f"\nhttp {{\n{temp_paths}")
    text = _replace_once(
        text,
        "access_log /dev/stdout upstream;",
        f"access_log {directory / 'access.log'} upstream;\n"
        f"    {SSE_LOG_FORMAT}\n"
        f"    access_log {directory / 'requests.log'} failover_test;",
    )
    return text


ROUTE_BY_STREAM = "        hash $broadcaster_route consistent;\n"
DURABLE_STREAMS_LOCATION = re.compile(r"^\s*location\b[^{\n]*/v1/stream/", flags=re.MULTILINE)
# For the Durable Streams routes, while deploy/nginx.conf has no location of its own for
# them: everything the SSE location has (the suite reads SSE and long-polls there), and
# gzip off: nginx's gzip would turn the front-end's strong ETags weak (W/"...") and drop
# Content-Length, which is the front-end's to decide, not the test's.
DURABLE_STREAMS_TEST_LOCATION = """\
        # --- Durable Streams: /v1/stream/{path} (PUT, POST, GET, HEAD, DELETE, OPTIONS).
        # Added by tests/support/nginx.py: deploy/nginx.conf has no location for it yet.
        # Bodies up to 17m (the suite posts 10 MB) are streamed to the front-end as they
        # come; responses (SSE, long-polls) are passed on unbuffered,
        # and a long-poll or SSE response may stay open for an hour.
        location ^~ /v1/stream/ {
            proxy_pass http://broadcaster;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            client_max_body_size 17m;
            chunked_transfer_encoding on;
            gzip off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_pass_header X-Accel-Buffering;
        }

"""


def round_robin_conf_for_test(
    directory: Path, listen_port: int, frontend_ports: list[int], source: str | None = None
) -> str:
    """``nginx_conf_for_test`` routing by plain round robin: the upstream's
    ``hash ... consistent`` line removed and nothing else changed, so that one stream's
    requests alternate between front-ends. The Durable Streams paths (``/v1/stream/``)
    go through deploy/nginx.conf's own location for them if it has one, else through
    ``DURABLE_STREAMS_TEST_LOCATION``, added before the catch-all ``location /`` (whose
    60 s read timeout and buffering suit neither SSE nor long-polls)."""
    text = nginx_conf_for_test(directory, listen_port, frontend_ports, source)
    text = _replace_once(
        text, ROUTE_BY_STREAM, "        # (test: the hash by stream removed; round robin)\n"
    )
    if DURABLE_STREAMS_LOCATION.search(text) is None:
        text = _replace_once(
            text,
            "        # --- Everything else: the JSON API",
            DURABLE_STREAMS_TEST_LOCATION + "        # --- Everything else: the JSON API",
        )
    return text


class Nginx:
    """A real nginx master process (and its workers), stopped by pid. Routes by stream
    as deploy/nginx.conf does, or with ``round_robin`` by plain round robin
    (``round_robin_conf_for_test``). It is started once ``ready_path`` answers 200
    through it."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        port: int,
        frontend_ports: list[int],
        *,
        round_robin: bool = False,
        ready_path: str = "/readyz",
    ):
        self.binary = binary
        self.ready_path = ready_path
        self.directory = directory
        self.port = port
        self.conf = directory / "nginx.conf"
        (directory / "temp").mkdir(parents=True, exist_ok=True)
        make_conf = round_robin_conf_for_test if round_robin else nginx_conf_for_test
        self.conf.write_text(make_conf(directory, port, frontend_ports))
        self.log_path = directory / "nginx.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.worker_pids: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _args(self, *extra: str) -> list[str]:
        where = ["-p", str(self.directory), "-c", str(self.conf), "-e", "stderr"]
        return [self.binary, *where, *extra]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        check = subprocess.run(self._args("-t"), capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise AssertionError(
                f"nginx -t refused the config made from deploy/nginx.conf:\n{check.stderr}"
                f"\n--- {self.conf}:\n{self.conf.read_text()}"
            )
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen(
                self._args("-g", "daemon off;"),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"nginx exited with {self.popen.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    self.worker_pids = self._children()
                    return
            time.sleep(0.05)
        raise AssertionError(f"nginx did not answer on {self.url} within 10 s:\n{self.log()}")

    def _children(self) -> list[int]:
        assert self.popen is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.popen.pid:
                        pids.append(int(entry.name))
        return pids

    def stop(self, graceful: bool = True) -> None:
        """Stops nginx by pid: gracefully (its workers finish their connections, for up to
        5 s), or with ``graceful=False`` at once (a teardown whose clients keep idle
        connections open)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.worker_pids = sorted(set(self.worker_pids) | set(self._children()))
            # SIGQUIT: graceful, workers finish, then exit; SIGTERM: fast shutdown.
            self.popen.send_signal(signal.SIGQUIT if graceful else signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGTERM)  # fast shutdown
                try:
                    self.popen.wait(5)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
        # Workers end with their master; any left over (a killed master) are ours to kill.
        for pid in self.worker_pids:
            with contextlib.suppress(OSError):
                if (Path(f"/proc/{pid}/cmdline").read_bytes()).startswith(b"nginx: worker"):
                    os.kill(pid, signal.SIGKILL)

    def requests(self) -> list[dict[str, str]]:
        """The requests nginx has finished, from the test's own access log."""
        path = self.directory / "requests.log"
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            method, uri, status, last_event_id, upstream, upstream_status = line.split("\t")
            rows.append(
                {
                    "method": method,
                    "uri": uri,
                    "status": status,
                    "last_event_id": "" if last_event_id == "-" else last_event_id,
                    "upstream": upstream,
                    "upstream_status": upstream_status,
                }
            )
        return rows
