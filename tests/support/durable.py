"""The Durable Streams server conformance suite, run by node against a base URL, and read
back in Python: the suite's own counts and every failed test with its error.

The suite is ``@durable-streams/server-conformance-tests`` (pinned, with vitest, in
tests/clients/durable). Its CLI does not find its runner when installed under
node_modules, so ``conformance.test.mjs`` there calls ``runConformanceTests`` itself, and
``run_conformance`` runs that file with vitest, reading vitest's JSON report rather than
its console output: the counts are the suite's, not a parse of text.

The harness proves itself against the protocol's reference server
(``@durable-streams/server`` 0.3.7, in memory, long-poll timeout 500 ms), run by hand:

    python -m tests.support.durable --reference

which printed, on a two-core machine:

    durable streams conformance (reference server): 326 passed, 6 failed, 6 skipped of 338

The 6 skipped are the suite's opt-in subscription tests (``Reserved subscription APIs``,
run only with ``subscriptions: true``). The reference server itself fails 6: three
sliding-TTL tests (a ``GET ?offset=now``, a close-only ``POST`` and a producer's
close-only ``POST`` must each renew the TTL), ``If-None-Match`` missing from its CORS
preflight's allowed headers, and two SSE catch-up tests (every ``data`` event must be
followed by its own ``control`` event, in JSON and in base64). The suite is newer than the
server; our front-ends must pass those six too.

``--nginx`` puts the tests' round-robin nginx (tests/support/nginx.py) in front, naming
the one server twice: the same 326/6/6, so nginx as configured there costs no test.
``python -m tests.support.durable URL`` runs the suite against any base URL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from broadcaster.core.embedded import free_port
from tests.support.nginx import Nginx, find_nginx
from tests.support.procs import ROOT

DURABLE_DIR = ROOT / "tests" / "clients" / "durable"
SUITE_PACKAGE = DURABLE_DIR / "node_modules" / "@durable-streams" / "server-conformance-tests"
VITEST = DURABLE_DIR / "node_modules" / "vitest" / "vitest.mjs"
REFERENCE_SERVER = DURABLE_DIR / "reference-server.mjs"
FOLLOW = DURABLE_DIR / "follow.mjs"

SUBSCRIPTION_GROUP = "Reserved subscription APIs"
"""The suite's ``describe`` of opt-in tests (``subscriptions: true``); never run here."""
SUBSCRIPTION_TESTS = 6
"""How many tests that group holds in 0.3.6: the only tests a run may skip, but for the
group it was told to leave out."""
PROPERTY_GROUP = "Property-Based Tests (fast-check)"
"""The suite's ``describe`` of its property tests (fast-check, a fixed number of runs
each): the third of a run's time with the most requests. ``make test`` runs them in one
of its deployments, at a share of their runs (``run_conformance(property_share=)``), and
leaves them out of the others (``run_conformance(leave_out=)``)."""
CHUNKING_GROUP = "Chunking and Large Payloads"
"""The suite's ``describe`` of a 100 KiB stream read back page by page and a 10 MiB
append: the most client CPU of a run but for the property tests (it checks the 100 KiB
a byte at a time)."""

RUN_TIMEOUT = 480.0
"""Seconds the whole suite may take: it takes ~25 s on the reference server. Only there
so that a run that hangs ends, and says where (a server that refuses connections makes
each test wait out its 15 s limit, as the client retries); below the tests' 600 s so
that this message, not pytest-timeout's, is the one given."""

ANSI = re.compile(r"\x1b\[[0-9;]*m")
INSTALL_HINT = "npm ci --prefix tests/clients/durable (make test does this)"


@dataclass(frozen=True)
class Failure:
    """One failed test: its full name (its groups and title, joined by " > ") and its
    error as vitest reported it (the assertion, then a stack)."""

    name: str
    message: str

    def first_lines(self, n: int) -> list[str]:
        """The error's first ``n`` lines, stack frames left out (they point into the
        suite's bundled dist; the JSON report keeps them)."""
        lines = [ln.rstrip() for ln in self.message.splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.lstrip().startswith("at ")]
        return lines[:n] + ([f"... ({len(lines) - n} more lines)"] if len(lines) > n else [])


@dataclass
class ConformanceResult:
    """What one run of the suite reported: its own counts, and each failure."""

    base_url: str
    passed: int
    failed: int
    skipped: int
    total: int
    failures: list[Failure] = field(default_factory=list)
    skipped_names: list[str] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    """Errors outside any test: the test file did not load (e.g. a bad base URL)."""
    seconds: float = 0.0
    log_path: Path | None = None
    report_path: Path | None = None
    left_out: tuple[str, ...] = ()
    """The groups the run was told to leave out (vitest's ``-t``): their tests count as
    skipped."""
    property_share: float = 1.0
    """The share of each property test's runs that the run ran."""

    def _skipped_in(self, *groups: str) -> list[str]:
        return [n for n in self.skipped_names if any(n.startswith(g + " > ") for g in groups)]

    def counts(self) -> str:
        counts = (
            f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped of {self.total}"
        )
        left = self._skipped_in(*self.left_out)
        named = "; ".join(self.left_out)
        counts += f" ({len(left)} of them left out: {named})" if left else ""
        share = f"; the property tests at {self.property_share:.0%} of their runs"
        return counts + (share if self.property_share < 1 else "")

    def problems(self) -> list[str]:
        """Why this run is not a pass of every test but the opt-in subscription ones;
        empty when it is."""
        out = [f"the test file did not run: {e}" for e in self.file_errors]
        if self.total == 0:
            out.append("the suite ran no test")
        if self.failed:
            out.append(f"{self.failed} tests failed")
        subscriptions = self._skipped_in(SUBSCRIPTION_GROUP)
        left = self._skipped_in(*self.left_out)
        others = [n for n in self.skipped_names if n not in subscriptions and n not in left]
        if others:
            out.append(f"tests skipped that are not subscription tests: {others}")
        for group in self.left_out:
            if not self._skipped_in(group):
                out.append(f"no test of {group!r} was left out: its name has changed?")
        if len(subscriptions) != SUBSCRIPTION_TESTS or self.skipped != len(subscriptions) + len(
            left
        ):
            out.append(
                f"{self.skipped} skipped, not the {SUBSCRIPTION_TESTS} subscription tests"
                + (" and the tests left out" if left else "")
                + " (a different suite version?)"
            )
        if self.passed != self.total - self.skipped:
            out.append(f"passed {self.passed} != total {self.total} - skipped {self.skipped}")
        return out

    def format(self, error_lines: int = 4, max_failures: int | None = 60) -> str:
        """The counts, then each failed test's name and the first lines of its error (the
        first ``max_failures`` of them; None: all): for a test's failure message, and for
        printing."""
        out = [
            f"durable streams conformance against {self.base_url}: {self.counts()}"
            f" ({self.seconds:.0f} s)"
        ]
        out += [f"  file error: {e}" for e in self.file_errors]
        shown = self.failures if max_failures is None else self.failures[:max_failures]
        for f in shown:
            out.append(f"FAIL {f.name}")
            out += [f"    {ln}" for ln in f.first_lines(error_lines)]
        if len(shown) < len(self.failures):
            out.append(f"... and {len(self.failures) - len(shown)} more failed tests")
        if self.log_path is not None:
            out.append(f"vitest's output: {self.log_path}")
        if self.report_path is not None:
            out.append(f"vitest's JSON report: {self.report_path}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def _node_major(node: str) -> int | None:
    run = subprocess.run([node, "--version"], check=False, capture_output=True, text=True)
    major = run.stdout.strip().lstrip("v").split(".")[0]
    return int(major) if major.isdigit() else None


def missing_prerequisites() -> list[str]:
    """What is missing to run the suite or the node clients, each with how to get it."""
    missing = []
    node = shutil.which("node")
    if node is None:
        missing.append("node is missing: install Node.js >= 20 with npm")
    elif (major := _node_major(node)) is None or major < 20:
        missing.append(f"node is too old or unusable ({major}): install Node.js >= 20")
    for path in (SUITE_PACKAGE / "package.json", VITEST):
        if not path.is_file():
            missing.append(
                f"{path.relative_to(ROOT)} is missing: run {INSTALL_HINT}",
            )
            break
    return missing


def require_node_packages() -> None:
    """Fail (never skip) the calling test when node or tests/clients/durable's packages
    are missing, saying how to get them."""
    missing = missing_prerequisites()
    if missing:
        pytest.fail("\n".join(missing), pytrace=False)


def _strip(text: str) -> str:
    return ANSI.sub("", text)


def parse_report(report: dict[str, object], base_url: str) -> ConformanceResult:
    """A ConformanceResult from vitest's JSON report (its Jest-compatible shape): the
    counts are vitest's own totals; pending and todo tests count as skipped."""

    def count(key: str) -> int:
        value = report.get(key, 0)
        return value if isinstance(value, int) else 0

    result = ConformanceResult(
        base_url=base_url,
        passed=count("numPassedTests"),
        failed=count("numFailedTests"),
        skipped=count("numPendingTests") + count("numTodoTests"),
        total=count("numTotalTests"),
    )
    files = report.get("testResults")
    for file in files if isinstance(files, list) else []:
        if file.get("message"):
            result.file_errors.append(_strip(str(file["message"])).strip())
        for test in file.get("assertionResults", []):
            name = " > ".join([*test.get("ancestorTitles", []), test.get("title", "?")])
            status = test.get("status")
            if status == "failed":
                message = "\n".join(_strip(m) for m in test.get("failureMessages") or [])
                result.failures.append(Failure(name, message or "(no message)"))
            elif status in ("skipped", "pending", "todo"):
                result.skipped_names.append(name)
    return result


def _stop_group(popen: subprocess.Popen[bytes]) -> None:
    """End a run that outlived its timeout: vitest and the workers it forked, which share
    the process group this module made for it (and nothing else does)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


def run_conformance(
    base_url: str,
    long_poll_timeout_ms: int,
    log_dir: Path,
    name: str = "conformance",
    timeout: float = RUN_TIMEOUT,
    *,
    leave_out: tuple[str, ...] = (),
    property_share: float = 1.0,
) -> ConformanceResult:
    """Run the whole suite against ``base_url`` (``http://host:port``; the suite adds
    ``/v1/stream/{name}``), but the tests of the ``describe`` groups ``leave_out``, each
    property test at ``property_share`` of its runs (at least one), and return what it
    reported.

    ``long_poll_timeout_ms`` must be the server's long-poll timeout: the suite uses it
    only to give its five long-poll tests a limit of that + 1 s each. vitest's output goes
    to ``log_dir/{name}.log`` and its JSON report to ``log_dir/{name}.json``."""
    if not 0 < property_share <= 1:
        raise ValueError(f"property_share must be in (0, 1], not {property_share}")
    require_node_packages()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    report_path = log_dir / f"{name}.json"
    report_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "DURABLE_STREAMS_URL": base_url.rstrip("/"),
        "DURABLE_STREAMS_LONG_POLL_MS": str(long_poll_timeout_ms),
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        "CI": "1",
    }
    env.pop("DURABLE_STREAMS_PROPERTY_SHARE", None)
    if property_share < 1:  # vitest.config.mjs then runs the suite on fast-check-share.mjs
        env["DURABLE_STREAMS_PROPERTY_SHARE"] = str(property_share)
    args = ["node", str(VITEST), "run", "--config", "vitest.config.mjs"]
    # verbose: a line per test as it ends, so that the log of a run that hangs says where.
    args += ["--reporter=verbose", "--reporter=json", f"--outputFile.json={report_path}"]
    if leave_out:  # every test whose full name holds none of the groups'
        groups = "|".join(re.escape(g) for g in leave_out)
        args += ["--testNamePattern", f"^(?!.*(?:{groups}))"]
    started = time.monotonic()
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(
            args,
            cwd=str(DURABLE_DIR),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a hung run ends whole
        )
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _stop_group(popen)
            raise AssertionError(
                f"the conformance suite did not finish within {timeout:.0f} s against"
                f" {base_url}; its output so far ({log_path}):\n{_tail(log_path)}"
            ) from None
        except BaseException:  # pytest-timeout, ^C: the run must not outlive the test
            _stop_group(popen)
            raise
    seconds = time.monotonic() - started
    if not report_path.is_file():
        raise AssertionError(
            f"vitest exited with {popen.returncode} and wrote no report ({report_path});"
            f" its output ({log_path}):\n{_tail(log_path)}"
        )
    result = parse_report(json.loads(report_path.read_text()), base_url)
    result.seconds = seconds
    result.log_path = log_path
    result.report_path = report_path
    result.left_out = leave_out
    result.property_share = property_share
    return result


def _tail(path: Path, chars: int = 4000) -> str:
    return _strip(path.read_text(errors="replace"))[-chars:] if path.exists() else ""


# --- the reference server, for the harness's self-check ---


@contextlib.contextmanager
def reference_server(log_dir: Path, long_poll_timeout_ms: int = 500) -> Iterator[str]:
    """The protocol's reference server (tests/clients/durable/reference-server.mjs) on
    127.0.0.1, on a port the OS picks, in memory; yields its base URL and stops it by
    pid."""
    require_node_packages()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "reference-server.log"
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(
            ["node", str(REFERENCE_SERVER), "0", str(long_poll_timeout_ms)],
            cwd=str(DURABLE_DIR),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 20
        while (found := re.search(r"listening on (http://\S+)", _tail(log_path))) is None:
            if popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the reference server did not start:\n{_tail(log_path)}")
            time.sleep(0.05)
        yield found.group(1)
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


@contextlib.contextmanager
def behind_round_robin_nginx(log_dir: Path, server_url: str) -> Iterator[str]:
    """nginx as the round-robin test routes it (tests/support/nginx.py), in front of one
    server named twice: proves that what nginx adds or holds back fails no test of the
    suite. Yields nginx's base URL."""
    port = int(server_url.rsplit(":", 1)[1])
    probe = "/v1/stream/nginx-ready-probe"
    created = httpx.put(server_url + probe, headers={"content-type": "text/plain"}, timeout=5)
    assert created.status_code in (200, 201), f"PUT {probe}: {created.status_code}"
    nginx = Nginx(
        find_nginx(),
        log_dir / "nginx",
        free_port(),
        [port, port],
        round_robin=True,
        ready_path=probe,
    )
    try:
        nginx.start()
        yield nginx.url
    finally:
        nginx.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.durable",
        description="Run the Durable Streams server conformance suite and print its counts.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--reference", action="store_true", help="against the reference server")
    target.add_argument("url", nargs="?", help="against this base URL (http://host:port)")
    parser.add_argument(
        "--nginx",
        action="store_true",
        help="through the tests' round-robin nginx (with --reference: the server named twice)",
    )
    parser.add_argument("--long-poll-ms", type=int, default=500, help="the server's (500)")
    parser.add_argument("--logs", type=Path, help="where vitest's output goes (a temp dir)")
    args = parser.parse_args(argv)
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="durable-conformance-"))
    try:
        with contextlib.ExitStack() as stack:
            if args.reference:
                url = stack.enter_context(reference_server(log_dir, args.long_poll_ms))
                where = "reference server"
            else:
                url = where = args.url
            if args.nginx:
                url = stack.enter_context(behind_round_robin_nginx(log_dir, url))
                where += " behind nginx"
            result = run_conformance(url, args.long_poll_ms, log_dir)
    except pytest.fail.Exception as exc:  # what require_node_packages and find_nginx raise
        print(exc, file=sys.stderr)
        return 2
    print(result.format(max_failures=None))
    print(f"durable streams conformance ({where}): {result.counts()}")
    return 0 if not result.problems() else 1


if __name__ == "__main__":
    sys.exit(main())
