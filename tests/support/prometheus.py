"""A real Prometheus server for the tests: the Debian package's binary (``prometheus``
and ``promtool`` on PATH, or in /usr/bin), on 127.0.0.1, with its storage in a temporary
folder; and the shipped dashboard's and alert rules' queries.

A test that cannot find the binaries fails, saying to install the Debian package
``prometheus`` (``make test-deps`` does, as root)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.ports import free_port
from tests.support.procs import ROOT, Proc, spawn, wait_port

OBSERVABILITY = ROOT / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "dashboard.json"
ALERTS = OBSERVABILITY / "alerts.yml"
ALERTS_TEST = OBSERVABILITY / "alerts.test.yml"


def binary(name: str) -> str:
    """``prometheus`` or ``promtool``: from PATH, else /usr/bin; else the test fails."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None
    )
    if found is None:
        pytest.fail(
            f"{name} not found: install the Debian package `prometheus` "
            "(apt-get install prometheus, or `make test-deps` as root)",
            pytrace=False,
        )
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, query) of every target of every panel of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def alert_rules() -> list[tuple[str, str]]:
    """(alert name, expression) of every rule of alerts.yml."""
    doc = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


class Prometheus:
    """``prometheus`` scraping ``targets`` (job -> host:port list) every ``interval``."""

    def __init__(self, base: Path, targets: dict[str, list[str]], interval: str = "1s") -> None:
        self.base = base
        self.port = free_port()
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]}
                for job, hosts in targets.items()
            ],
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        program = binary("prometheus")
        self.proc = spawn(
            "prometheus",
            [
                f"--config.file={self.base / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            {},
            self.base,
            program=program,
        )
        self.proc.port = self.port
        wait_port(self.proc, timeout=30)
        deadline = time.monotonic() + 30
        while httpx.get(f"{self.url}/-/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, f"prometheus not ready:\n{self.proc.log()[-2000:]}"
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (``status``, ``data``, or ``error``)."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        answer: dict[str, Any] = r.json()
        return answer

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        r = httpx.get(
            f"{self.url}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
            timeout=10,
        )
        answer: dict[str, Any] = r.json()
        return answer

    def wait_scraping(self, targets: int, timeout: float = 30) -> None:
        """Until ``targets`` targets were scraped, each successfully: Prometheus takes up
        its configured targets up to 5 s after it is ready, and what a process counted
        before its first scrape is no increase."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.targets_up()
            if len(health) == targets and set(health.values()) == {"up"}:
                return
            assert time.monotonic() < deadline, f"targets not all up: {health}"
            assert self.proc is not None and self.proc.alive(), "prometheus exited"
            time.sleep(0.2)

    def targets_up(self) -> dict[str, str]:
        """Each active target's scrape URL -> its health (``up``, ``down``, ``unknown``)."""
        r = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()
        return {t["scrapeUrl"]: t["health"] for t in r["data"]["activeTargets"]}


def promtool(*args: str, cwd: Path = OBSERVABILITY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
