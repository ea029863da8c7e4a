"""The Durable Streams conformance suite in ``replicas`` mode: one front-end with
``BROADCASTER_DURABILITY=replicas`` on a primary with one replica (127.0.0.1), every write
acknowledged once the replica has it. A run costs about as long as the suite's other
runs (tests/clients/test_durable_conformance.py), so it runs in ``make failover``, not
in ``make test``.

    .venv/bin/python -m tests.perf.durability_conformance

Prints the suite's counts; exits 1 unless everything but the opt-in subscription tests
passed.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path

from broadcaster.core.embedded import find_server_binary
from tests.support.durable import run_conformance
from tests.support.polling import wait_for
from tests.support.procs import start_frontend
from tests.support.topologies import _start, _synced, pick_ports

LONG_POLL_MS = 500


def main() -> int:
    binary = find_server_binary()
    with tempfile.TemporaryDirectory(prefix="ds-replicas-") as tmp:
        folder = Path(tmp)
        p, r = pick_ports(2, bus=False)
        primary = _start(binary, folder / "p", p)
        replica = _start(binary, folder / "r", r, "--replicaof", "127.0.0.1", str(p))
        try:
            wait_for("the replica did not sync", lambda: _synced(replica), within=20)
            env = {
                "BROADCASTER_DS_LONG_POLL_SECONDS": str(LONG_POLL_MS / 1000),
                "BROADCASTER_CORS_ORIGINS": "*",
                "BROADCASTER_DURABILITY": "replicas",
                "BROADCASTER_DURABILITY_REPLICAS": "1",
            }
            front = start_frontend(f"redis://127.0.0.1:{p}", folder, "ds-replicas", env)
            try:
                result = run_conformance(front.url, LONG_POLL_MS, folder)
            finally:
                front.stop(signal.SIGTERM)
        finally:
            replica.stop(signal.SIGKILL)
            primary.stop(signal.SIGKILL)
        print(f"durable streams conformance (replicas mode): {result.counts()}", flush=True)
        problems = result.problems()
        if problems:
            print("; ".join(problems) + "\n" + result.format(), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
