"""The viewer processes of a run (``viewers.run_group`` each, over ``multiprocessing``):
how many the open-file limit needs, each one's share of the viewers, and ``Groups``, which
starts a phase's processes together, follows their progress and awaits their reports."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from broadcaster.bench.viewers import BenchError, GroupSpec, run_group, sources_for
from broadcaster.core.process import raise_nofile_limit

FD_MARGIN = 1_000
"""Open files a viewer process keeps spare under its limit (Python, pipes, uvloop)."""


def _main_module() -> list[str]:
    """The module run as ``python -m NAME`` when it is not a package's ``__main__``: each
    child runs it again (as ``__mp_main__``) before its target, so the fork server imports
    it first and a child finds what it imports already there. A bench driven from another
    program (the comparison's ``tests.perf.compare``) otherwise spent most of a short
    run's CPU importing that program once per viewer process."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    name = getattr(spec, "name", None)
    return [name] if isinstance(name, str) and not name.endswith("__main__") else []


class Groups:
    """The viewer processes of one phase: started together, awaited together. Each sends
    its progress twice a second (``progress``: the latest of each process) and takes
    marks (``mark``)."""

    def __init__(self, specs: list[GroupSpec]) -> None:
        # Started by a fork server that has imported the bench: a thread-safe start (not a
        # fork of this threaded process) without each child importing it again, which cost
        # more CPU than a short run's viewers.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([run_group.__module__, *_main_module()])
        self._loop = asyncio.get_running_loop()
        self._conns: list[Connection] = []
        self._ctrls: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._inbox: list[asyncio.Queue[Any]] = []
        self.progress: list[tuple[int, int, int, int]] = []
        """Per process: (ns, viewers connected, frames received, viewers away)."""
        ends = []
        for spec in specs:
            parent, child = ctx.Pipe(duplex=False)
            ctrl_in, ctrl_out = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=run_group, args=(spec, child, ctrl_in), daemon=True)
            ends.append((child, ctrl_in))
            self._conns.append(parent)
            self._ctrls.append(ctrl_out)
            self._procs.append(proc)
            self._inbox.append(asyncio.Queue())
            self.progress.append((0, 0, 0, 0))
        # Started together: each start waits until its child has read its share of the
        # viewers, which it does only after importing the bench, so one after the other
        # the starts add up (docs/performance.md).
        with ThreadPoolExecutor(len(self._procs) or 1) as pool:
            list(pool.map(lambda proc: proc.start(), self._procs))
        for i, (child, ctrl_in) in enumerate(ends):
            child.close()
            ctrl_in.close()
            threading.Thread(target=self._read, args=(i, self._conns[i]), daemon=True).start()

    def _read(self, i: int, conn: Connection) -> None:
        """A thread per process: its progress kept, anything else queued for the loop."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("eof",)
            if msg[0] == "progress":
                self.progress[i] = msg[1:]
                continue
            self._loop.call_soon_threadsafe(self._inbox[i].put_nowait, msg)
            if msg[0] in ("eof", "done", "error"):
                return

    async def _recv(self, kind: str) -> list[Any]:
        out = []
        for inbox in self._inbox:
            msg = await inbox.get()
            if msg[0] == "eof":
                raise BenchError("a viewer process died")
            if msg[0] == "error":
                raise BenchError(f"viewer process: {msg[1]}")
            if msg[0] != kind:
                raise BenchError(f"viewer process: expected {kind}, got {msg[0]}")
            out.append(msg[1:])
        return out

    async def ready(self) -> list[Any]:
        """Per process: (seconds to open, CPU seconds so far, when it began, ns)."""
        return await self._recv("ready")

    async def done(self) -> list[dict[str, Any]]:
        return [m[0] for m in await self._recv("done")]

    def window(self) -> None:
        """The window began: the processes' deadline (``GroupSpec.timeout``) runs from now."""
        for ctrl in self._ctrls:
            with contextlib.suppress(OSError):
                ctrl.send(("window",))

    def mark(self, ns: int) -> None:
        """Every viewer records when it first gets an event published after ``ns``
        (``time.time_ns()``)."""
        for ctrl in self._ctrls:
            with contextlib.suppress(OSError):
                ctrl.send(("mark", ns))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def totals(self) -> tuple[int, int, int]:
        """Viewers connected, frames received and viewers away, over the processes."""
        return (
            sum(p[1] for p in self.progress),
            sum(p[2] for p in self.progress),
            sum(p[3] for p in self.progress),
        )

    def close(self) -> None:
        for ctrl in self._ctrls:  # viewers close once their counters are read
            with contextlib.suppress(OSError):
                ctrl.send(("close",))
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in [*self._conns, *self._ctrls]:
            conn.close()


def viewer_procs(viewers: int, procs: int) -> int:
    """``procs``, or more: each viewer process keeps under its open-file limit (the hard
    one, which ``raise_nofile_limit`` raises the soft one to), with ``FD_MARGIN`` to
    spare."""
    budget = max(1, raise_nofile_limit() - FD_MARGIN)
    return max(1, procs, math.ceil(viewers / budget))


def split(
    targets: list[tuple[str, int, str]], procs: int, read: str = "sse", **kw: Any
) -> list[GroupSpec]:
    """Contiguous shares, so each process's source addresses continue the global index;
    as many processes as the open-file limit needs (``viewer_procs``), and loopback
    source addresses for all (``sources_for``)."""
    procs = max(1, min(viewer_procs(len(targets), procs), len(targets)))
    size = math.ceil(len(targets) / procs)
    kw.setdefault("sources", sources_for(len(targets)))
    return [
        GroupSpec(targets=targets[i : i + size], first_index=i, read=read, **kw)
        for i in range(0, len(targets), size)
    ]
