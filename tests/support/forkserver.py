"""Front-ends and workers for the tests, forked from a process that imported them once.

A front-end's start costs about a second of CPU, nearly all of it importing (FastAPI,
pydantic, redis-py, OpenTelemetry), and a run of the suite starts some 300 of them and
150 workers on two cores. Each test process therefore keeps one *fork server*: a Python
that has imported the front-end's and the worker's modules, and forks for each start.
The forked process is a real, separate process: it sets the environment and working
directory asked for, opens its log as its stdout and stderr, and runs the module as
``python -m`` would (``runpy``, ``sys.argv``), so it serves from the same code, reads the
same settings and exits with the same status; only the imports are skipped, and at the
end the interpreter's teardown of what the server imported (``_exit``).

It forks its process as the test process's own child (``clone`` with ``CLONE_PARENT``,
Python's fork hooks run around it as ``os.fork`` runs them): ``Forked`` waits for it,
and gets its exit status, as ``subprocess.Popen`` does for a child it started. (On a
machine whose ``clone`` it does not know it forks twice, the middle process exiting at
once, and the test process is the *subreaper* of what it starts,
``PR_SET_CHILD_SUBREAPER``: each start then costs a second fork and exit of the whole
server.)

Only a start that ``python -m`` would run the same way is forked: this Python, ``-m``
with a module the server imported, and no ``PYTHON*`` or ``LD_*`` variable that differs
from the server's own environment (those act when an interpreter starts), but for a
``PYTHONPATH`` of the repository's root (the tree the server imported from, so that
nothing it imported could have come from elsewhere), which the forked process puts on
``sys.path`` where a new interpreter would: right after the directory it runs in. (The
variables of output buffering and of the bytecode cache, ``INERT``, do not count.) The
tests start every worker that runs the test tools or agents so, and run the command
lines they check to their end so (``procs.run_python``: output and errors apart, in a
session of its own). Anything else, or ``BROADCASTER_TEST_FORK=0``, starts a new
interpreter as before.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import importlib
import io
import json
import os
import platform
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, NoReturn

ROOT = Path(__file__).resolve().parents[2]

PRELOAD = (
    "broadcaster.cli",
    # What ``serve`` imports when it runs (the command line imports each command's
    # modules only then).
    "broadcaster.core.embedded",
    "broadcaster.core.settings",
    "broadcaster.http.access",
    "broadcaster.http.app",
    "broadcaster.http.resources",
    "broadcaster.http.settings",
    "worker.cli",
    "uvloop",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "broadcaster.http.server",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.websockets.auto",
    "anyio._backends._asyncio",
    "encodings.idna",
)
"""What the server imports before it forks: what a front-end imports."""
PRELOAD_WORKERS = (
    "worker.providers.fake",
    "worker.providers.anthropic",
    "worker.providers.openai",
    "anthropic",
    "openai",
)
"""What it imports too unless told that only front-ends are started: what a worker imports
(the AI SDKs, the larger part of the server's start). A worker forked from a server
without them imports them as it starts, as a new interpreter does."""
FRONT_ENDS_ONLY = "--front-ends-only"

MODULES = ("broadcaster", "worker")
"""The modules a forked start may run (``-m``)."""

PR_SET_CHILD_SUBREAPER = 36

CLONE_PARENT = 0x8000
SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
"""``clone``'s number, where known (with no argument but the flags, their order, which
differs between architectures, does not matter)."""


class Forked:
    """A process the fork server started, as much of ``subprocess.Popen`` as the tests
    use: ``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``, ``terminate``,
    ``kill``."""

    stdin: IO[bytes] | None = None
    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: gone, status unknown
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The test process's fork server (``server()``), started on first use and stopped
    by pid when the test process exits."""

    def __init__(self, *, front_ends_only: bool = False) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver"]
            + ([FRONT_ENDS_ONLY] if front_ends_only else []),
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.lock = threading.Lock()
        ready = self._reply()
        if ready.get("ready") is not True:
            self.stop()
            raise RuntimeError(f"the fork server did not start: {ready}")
        atexit.register(self.stop)

    def _reply(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited ({self.popen.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def can_start(self, program: str, args: list[str], env: dict[str, str], cwd: Path) -> bool:
        """Would ``program args`` with ``env``, in ``cwd``, start here as a new interpreter
        would? Not where ``cwd`` holds a copy of the code: a new interpreter imports that."""
        if program != sys.executable or len(args) < 2 or args[0] != "-m":
            return False
        if args[1] not in MODULES or self.popen.poll() is not None:
            return False
        if cwd.resolve() != ROOT and any((cwd / name).exists() for name in MODULES):
            return False
        return at_start(env) == at_start(self.env)

    def start(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        *,
        err_path: Path | None = None,
        session: bool = False,
    ) -> Forked:
        """``python args`` (``-m <module> ...``) with ``env``, in ``cwd``, its output in
        ``log_path`` (its standard error in ``err_path`` if given): forked, and the test
        process's own child; with ``session``, the leader of a session of its own (as
        ``Popen(start_new_session=True)``), so that its process group can be killed."""
        request = {
            "args": args,
            "env": env,
            "cwd": str(cwd),
            "log": str(log_path),
            "err": str(err_path or log_path),
            "session": session,
        }
        with self.lock:
            assert self.popen.stdin is not None
            self.popen.stdin.write(json.dumps(request).encode() + b"\n")
            self.popen.stdin.flush()
            reply = self._reply()
        if "pid" not in reply:
            raise RuntimeError(f"the fork server could not start {args}: {reply}")
        return Forked(int(reply["pid"]), [sys.executable, *args])

    def stop(self) -> None:
        if self.popen.poll() is None:
            assert self.popen.stdin is not None
            self.popen.stdin.close()  # its loop ends
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _entries(path: str | None) -> list[str]:
    """The folders a ``PYTHONPATH`` puts on ``sys.path``, in order."""
    return [os.path.abspath(p) for p in (path or "").split(os.pathsep) if p]


INERT = ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
"""Variables that change how a process buffers its output or where it caches bytecode,
never what it does: a start with or without them is forked alike."""


def at_start(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that act when an interpreter starts: not the ``INERT``
    ones, nor a ``PYTHONPATH`` of the repository's root, which the forked process applies
    itself."""
    return {
        key: value
        for key, value in env.items()
        if key.startswith(("PYTHON", "LD_"))
        and key not in INERT
        and not (key == "PYTHONPATH" and all(p == str(ROOT) for p in _entries(value)))
    }


_server: list[ForkServer | None] = []
_front_ends_only: list[bool] = []


def front_ends_only() -> None:
    """This process's fork server, once started, will start front-ends only: it leaves
    out what only a worker imports (``PRELOAD_WORKERS``). For a program that starts no
    worker (the comparison); before its first start."""
    _front_ends_only.append(True)


def server() -> ForkServer | None:
    """This test process's fork server (None with ``BROADCASTER_TEST_FORK=0``, or when it
    could not start: then each start is a new interpreter)."""
    if not _server:
        found = None
        if os.environ.get("BROADCASTER_TEST_FORK", "1") != "0":
            try:
                found = ForkServer(front_ends_only=bool(_front_ends_only))
            except OSError as exc:
                print(f"tests: no fork server ({exc}); each start is a new Python", file=sys.stderr)
        _server.append(found)
    return _server[0]


def for_start(program: str, args: list[str], env: dict[str, str], cwd: Path) -> ForkServer | None:
    """This test process's fork server if it can start ``program args`` with ``env``, in
    ``cwd``, as a new interpreter would (``ForkServer.can_start``); else None."""
    found = server()
    return found if found is not None and found.can_start(program, args, env, cwd) else None


# --- the fork server itself (``python -m tests.support.forkserver``) ---


def _serve() -> None:
    workers = () if FRONT_ENDS_ONLY in sys.argv[1:] else PRELOAD_WORKERS
    for name in (*PRELOAD, *workers):
        importlib.import_module(name)
    if threading.active_count() != 1:  # a fork copies only the thread that forks
        raise RuntimeError(f"a thread started while importing: {threading.enumerate()}")
    gc.freeze()  # what it imported stays out of collections: no page copied to scan it
    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    start = _sibling if SYS_CLONE is not None else _orphan
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            reply: dict[str, Any] = {"pid": start(request)}
        except OSError as exc:
            reply = {"error": f"the fork failed: {exc}"}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()


def _sibling(request: dict[str, Any]) -> int:
    """The pid of a process forked to run ``request``, a child of the server's parent
    (the test process): ``os.fork`` but for ``CLONE_PARENT``. The C library is not told
    of the fork, so its record of the main thread's id stays the server's: another thread
    could not ``pthread_kill`` the main thread (nothing a front-end or worker runs does)."""
    libc = ctypes.PyDLL(None, use_errno=True)  # the interpreter's lock held throughout
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    assert SYS_CLONE is not None
    args = (SYS_CLONE, CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
    pid = libc.syscall(*(ctypes.c_long(a) for a in args))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        _exit(_run(request))  # never returns
    errno = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(errno, os.strerror(errno))
    return int(pid)


def _orphan(request: dict[str, Any]) -> int:
    """The pid of a process forked to run ``request`` by a middle process that exits at
    once: an orphan the test process, its subreaper, then adopts."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(read)
        pid = os.fork()
        if pid == 0:
            os.close(write)
            _exit(_run(request))  # never returns
        os.write(write, b"%d" % pid)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as r:
        pid_bytes = r.read()
    os.waitpid(middle, 0)  # gone: the server's process is now the test process's child
    if not pid_bytes:
        raise OSError("the middle process could not fork")
    return int(pid_bytes)


def _run(request: dict[str, Any]) -> int:
    """(In the forked process.) What ``python -m`` does, in the environment asked for;
    the status it exits with."""
    own = _entries(os.environ.get("PYTHONPATH"))
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if request["session"]:
        os.setsid()
    for fd, path in ((1, request["log"]), (2, request["err"])):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), errors="backslashreplace", write_through=True
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = request["args"]
    sys.path[0] = request["cwd"]
    wanted = _entries(request["env"].get("PYTHONPATH"))
    if wanted != own:  # as a new interpreter: PYTHONPATH's folders after the one it runs in
        sys.path[1:] = [*wanted, *(p for p in sys.path[1:] if p not in own)]
    for name in [m for m in sys.modules if m == "tests" or m.startswith("tests.")]:
        del sys.modules[name]  # the server's own package: found on the path, or not, anew
    sys.argv = [args[1], *args[2:]]
    try:
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return _status(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        return -signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _status(code: object) -> int:
    """The exit status ``sys.exit(code)`` gives (its message, if any, on stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(status: int) -> NoReturn:
    """(In the forked process.) Exit as the interpreter does: the threads that are not
    daemons joined, the ``atexit`` functions run, the output flushed, and the status given
    (an interrupt ends it by ``SIGINT``, as Python does). But not the interpreter's
    teardown of every module and object: in a process forked from the server, that wrote
    to every page of what the server imported, copying some 80 MB of memory for 0.13 s of
    CPU at each exit, more than a front-end's start."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if status == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


if __name__ == "__main__":
    _serve()
