"""A front-end dies under the demo page: headless Chromium, a real nginx, two front-ends.

The page is loaded through nginx, configured by deploy/nginx.conf itself: only the
upstream servers, the listen address and the paths an unprivileged nginx in a temporary
folder needs are substituted (and a second access log is added, which records each SSE
request's Last-Event-ID). While a generation streams, the front-end that holds the
page's streams is killed with SIGKILL. The page's EventSources must reconnect by
themselves with Last-Event-ID, through nginx, to the other front-end, and every pane must
end with exactly the generation's text. tests/clients/browser/failover.mjs drives the browser.

Needs nginx (/usr/sbin/nginx), Debian's chromium, node and the npm packages of
tests/clients/browser; without them the test fails and says what to install. It never skips.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from broadcaster.core.embedded import EmbeddedRedis, ServerNotFound, free_port
from tests.support.browser import (
    missing_prerequisites,
    pids_using,
    png_size,
    stop_browser_leftovers,
)
from tests.support.procs import ROOT, Proc, start_frontend, start_worker

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
SCRIPT = ROOT / "tests" / "clients" / "browser" / "failover.mjs"
ARTIFACTS = ROOT / "tests" / "artifacts"
PANES = ("a", "b", "late", "flaky")
SSE_PATH = re.compile(r"^/v1/streams/[^/?]+/events(\?|$)")
# One line per request, fields separated by tabs; "-" marks an empty value.
SSE_LOG_FORMAT = (
    "log_format failover_test '$request_method\\t$request_uri\\t$status\\t"
    "$http_last_event_id\\t$upstream_addr\\t$upstream_status';"
)


def _find_nginx() -> str:
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
            f" update the substitutions in {Path(__file__).name}"
        )
    return text.replace(old, new)


def nginx_conf_for_test(directory: Path, listen_port: int, frontend_ports: list[int]) -> str:
    """deploy/nginx.conf with loopback upstreams, a loopback port and private paths."""
    text = NGINX_CONF.read_text()
    upstream_servers = re.findall(r"^\s*server\s+([^\s{;]+)[^{\n]*;", text, flags=re.MULTILINE)
    if upstream_servers != ["frontend-1:8000", "frontend-2:8000"]:
        raise AssertionError(
            f"deploy/nginx.conf: expected the upstream servers frontend-1:8000 and"
            f" frontend-2:8000, found {upstream_servers}; update {Path(__file__).name}"
        )
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


class Nginx:
    """A real nginx master process (and its workers), stopped by pid."""

    def __init__(self, binary: str, directory: Path, port: int, frontend_ports: list[int]):
        self.binary = binary
        self.directory = directory
        self.port = port
        self.conf = directory / "nginx.conf"
        (directory / "temp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(nginx_conf_for_test(directory, port, frontend_ports))
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
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
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

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.worker_pids = sorted(set(self.worker_pids) | set(self._children()))
            self.popen.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
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


class Script:
    """failover.mjs, with its stdout read line by line and its stdin for the handshake."""

    def __init__(self, args: list[str], stderr_path: Path):
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                args,
                cwd=str(ROOT),
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
            message = f"failover.mjs said nothing for {timeout} s"
            raise AssertionError(message + self.report()) from None
        if line is None:
            self.popen.wait(10)
            raise AssertionError(f"failover.mjs exited with {self.popen.returncode}{self.report()}")
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


def _viewers(frontend: Proc) -> int:
    body = httpx.get(f"{frontend.url}/readyz", timeout=2).json()
    viewers: int = body["viewers"]
    return viewers


def _seq(event_id: str) -> int:
    return int(event_id.split(".", maxsplit=1)[0])


def test_a_front_end_killed_under_the_demo_page_in_chromium(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    nginx_binary = _find_nginx()

    redis = EmbeddedRedis(tmp_path / "redis", persistent=False)
    try:
        redis.start(reuse=False)
    except ServerNotFound as exc:
        pytest.fail(f"this test needs a Redis server: {exc}", pytrace=False)
    procs: list[Proc] = []
    nginx: Nginx | None = None
    script: Script | None = None
    profile = tmp_path / "chromium-profile"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "failover-browser.png"
    screenshot.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        frontends = [start_frontend(redis.url, tmp_path, f"frontend-{i}") for i in (1, 2)]
        procs.extend(frontends)
        # 67 chunks, one every 80 ms: the generation streams for about 5.5 s.
        worker = start_worker(redis.url, tmp_path, "worker", {"WORKER_FAKE_DELAY_MS": "80"})
        procs.append(worker)
        ports = [f.port for f in frontends]
        assert None not in ports
        nginx = Nginx(nginx_binary, tmp_path / "nginx", free_port(), [p for p in ports if p])
        nginx.start()

        script = Script(
            ["node", str(SCRIPT), nginx.url, str(screenshot), str(profile)],
            tmp_path / "failover.stderr",
        )
        streaming = script.next_json(timeout=40)
        assert streaming["phase"] == "streaming", streaming
        gid = streaming["generation_id"]

        # The victim is the front-end that served the page. nginx spreads requests round
        # robin, so the page's three streams (opened one after another) are on both
        # front-ends: the victim holds at least one. Each one is asked directly.
        viewers = {f.name: _viewers(f) for f in frontends}
        page_upstream = next((r["upstream"] for r in nginx.requests() if r["uri"] == "/"), "")
        victim = next((f for f in frontends if page_upstream == f"127.0.0.1:{f.port}"), None)
        assert victim is not None, f"GET / was not served by one front-end: {page_upstream!r}"
        survivor = next(f for f in frontends if f is not victim)
        killed_streams = viewers[victim.name]
        assert killed_streams > 0, f"{victim.name} served the page but holds no stream: {viewers}"
        victim.popen.kill()
        victim.popen.wait(5)
        script.send("killed")
        killed_at = time.monotonic()
        status_at_kill = httpx.get(f"{survivor.url}/v1/generations/{gid}", timeout=5).json()

        result = script.next_json(timeout=60)
        assert result["phase"] == "result", result
        script.popen.wait(15)
        assert script.popen.returncode == 0, f"failover.mjs exited with {script.popen.returncode}"
        elapsed = time.monotonic() - started
        api = httpx.get(f"{nginx.url}/v1/generations/{gid}", timeout=10).json()
        # Let nginx log the last responses before reading its log.
        time.sleep(0.3)
        requests = nginx.requests()
        (ARTIFACTS / "failover-browser.json").write_text(
            json.dumps(
                {
                    "result": result,
                    "viewers_before_kill": viewers,
                    "page_served_by": page_upstream,
                    "killed": {"name": victim.name, "port": victim.port},
                    "survivor": {"name": survivor.name, "port": survivor.port},
                    "status_at_kill": status_at_kill,
                    "api": api,
                    "nginx_requests": requests,
                },
                indent=2,
            )
            + "\n"
        )
        print(
            f"\nbrowser failover run: {elapsed:.1f} s; killed {victim.name} (port {victim.port},"
            f" {killed_streams} of the page's streams) {killed_at - started:.1f} s in;"
            f" screenshot: {screenshot}"
        )
    except BaseException:
        if script is not None:
            print(script.report())
        if nginx is not None:
            print(f"nginx log:\n{nginx.log()[-3000:]}")
        for p in procs:
            print(f"{p.name} log:\n{p.log()[-2000:]}")
        raise
    finally:
        if script is not None:
            script.stop()
        stop_browser_leftovers(profile)
        if nginx is not None:
            nginx.stop()
        for p in procs:
            p.stop()
        redis.stop()

    # Nothing of ours is left running.
    assert nginx.popen is not None and nginx.popen.poll() is not None
    assert not [pid for pid in nginx.worker_pids if Path(f"/proc/{pid}").exists()]
    assert pids_using(str(profile)) == []
    assert all(not p.alive() for p in procs)

    # The kill landed inside the generation: nothing had ended, every live pane had text.
    assert status_at_kill["status"] in ("queued", "running"), status_at_kill
    assert api["status"] == "completed", api
    text = api["text"]
    assert text.startswith("You said: " + result["prompt"] + "\n"), text
    for name, pane in result["at_kill"].items():
        assert pane["state"] != "done", (name, pane)
        assert len(pane["text"]) < len(text), (name, pane)

    # Every pane ends with exactly the generation's text: nothing doubled, nothing missing.
    panes = result["panes"]
    assert set(panes) == set(PANES)
    for name in PANES:
        pane = panes[name]
        assert pane["state"] == "done", (name, pane)
        assert pane["text"] == text, f"pane {name} differs from the API's text: {pane['text']!r}"
        assert pane["status"].startswith("finished"), (name, pane["status"])
        assert _seq(pane["last_id"]) == api["last_event_id"], (name, pane)

    # The panes whose stream died went "reconnecting" and came back by themselves.
    states = {n: [t["state"] for t in result["transitions"][n]] for n in PANES}
    reconnected = [n for n in PANES if "reconnecting" in states[n]]
    assert len(reconnected) == killed_streams, (killed_streams, result["transitions"])
    for name in reconnected:
        assert states[name][-3:] == ["reconnecting", "open", "done"], (name, states[name])

    # nginx's own log: each lost stream was resumed with Last-Event-ID, on the survivor.
    sse = [r for r in requests if r["method"] == "GET" and SSE_PATH.match(r["uri"])]
    resumed = [r for r in sse if r["last_event_id"]]
    assert len(resumed) == killed_streams, sse
    for r in resumed:
        final_upstream = r["upstream"].split(",")[-1].strip()
        assert final_upstream == f"127.0.0.1:{survivor.port}", r
        assert r["status"] == "200", r
        assert 0 < _seq(r["last_event_id"]) < api["last_event_id"], r
    cut = [r for r in sse if r["upstream"] == f"127.0.0.1:{victim.port}"]
    assert len(cut) == killed_streams, sse
    # ... and with the very id each pane had shown last when its stream broke.
    lost_at = sorted(
        t["last_id"]
        for n in reconnected
        for t in result["transitions"][n]
        if t["state"] == "reconnecting"
    )
    assert sorted(r["last_event_id"] for r in resumed) == lost_at, (lost_at, resumed)
    # nginx never had to answer with its own 503 ("no front-end is available").
    assert all(r["status"] != "503" for r in requests), requests

    assert result["page_errors"] == []
    # Chromium logs each stream cut by the kill (net::ERR_INCOMPLETE_CHUNKED_ENCODING), and
    # nothing else: the reconnects themselves met no error.
    console = [e for e in result["console_errors"] if not e["url"].endswith("/favicon.ico")]
    assert len(console) == killed_streams, console
    assert all(SSE_PATH.match(httpx.URL(e["url"]).raw_path.decode()) for e in console), console
    # The page has no favicon and the server none either: the browser's own request 404s.
    http_errors = [e for e in result["http_errors"] if not e["url"].endswith("/favicon.ico")]
    assert http_errors == [], http_errors

    width, height = png_size(screenshot)
    assert screenshot.stat().st_size > 10_000 and width >= 1000 and height >= 600, (
        screenshot.stat().st_size,
        width,
        height,
    )
