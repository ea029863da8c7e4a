"""The Node host the client tests run their scripts in (tests/clients/host.mjs,
tests/support/node_host.py): each run sees its own arguments, standard input and output
and ends with its own exit status, as a process of its own would, also when runs overlap;
a run that ends (exit, kill, an uncaught error) closes its connections and says nothing
more; and a script answers the same in the host as in a process of its own."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import node_host

SCRIPT = """
const [mode, ...rest] = process.argv.slice(2);
let input = "";
for await (const bytes of process.stdin) input += bytes;
if (mode === "echo") {
  await new Promise((done) => setTimeout(done, Number(rest[1]) || 20));
  console.log(JSON.stringify({ rest, input, argv1: process.argv[1].endsWith("probe.mjs") }));
  process.exit(0);
}
if (mode === "exit-in-timer") {
  setTimeout(() => { process.stderr.write("bye\\n"); process.exit(3); }, 20);
}
if (mode === "exit-then-write") {
  process.stdout.write("before\\n");
  setTimeout(() => process.stdout.write("after\\n"), 10);
  process.exit(0);
}
if (mode === "throw-in-timer") setTimeout(() => { throw new Error("thrown late"); }, 10);
if (mode === "reject") await Promise.reject(new Error("rejected"));
if (mode === "hold") {
  const response = await fetch(rest[0]);
  process.stdout.write(`status ${response.status}\\n`);
  setInterval(() => {}, 1000);  // never exits by itself
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if node_host.missing_node():
        pytest.fail(node_host.missing_node(), pytrace=False)
    path = tmp_path_factory.mktemp("host") / "probe.mjs"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def host() -> Iterator[node_host.Host]:
    own = node_host.Host()
    yield own
    own.stop()


def finish(run: node_host.Started, timeout: float = 30) -> tuple[int, str, str]:
    return node_host.finish(run, timeout)


def test_each_run_has_its_own_arguments_input_and_output_when_runs_overlap(
    probe: Path, host: node_host.Host
) -> None:
    started = [host.start(probe, ["echo", str(i), "é"], stdin=f"in {i} 🙂") for i in range(8)]
    for i, run in enumerate(started):
        code, out, err = finish(run)
        assert (code, err) == (0, "")
        assert json.loads(out) == {"rest": [str(i), "é"], "input": f"in {i} 🙂", "argv1": True}


@pytest.mark.parametrize(
    ("mode", "answer"),
    [
        ("exit-in-timer", (3, "", "bye\n")),
        ("exit-then-write", (0, "before\n", "")),  # nothing written after the exit
    ],
)
def test_a_run_ends_at_its_exit_with_its_status(
    probe: Path, host: node_host.Host, mode: str, answer: tuple[int, str, str]
) -> None:
    assert finish(host.start(probe, [mode])) == answer


@pytest.mark.parametrize(
    ("mode", "says"), [("throw-in-timer", "thrown late"), ("reject", "rejected")]
)
def test_an_uncaught_error_ends_the_run_with_status_1_and_its_stack(
    probe: Path, host: node_host.Host, mode: str, says: str
) -> None:
    beside = host.start(probe, ["echo", "beside", "300"])  # running all along
    code, out, err = finish(host.start(probe, [mode]))
    assert (code, out) == (1, "") and f"Error: {says}" in err, err
    assert finish(beside)[0] == 0, "an error of one run ended another"
    assert finish(host.start(probe, ["echo"]))[0] == 0  # the host goes on


@dataclass
class Held:
    """An HTTP server that answers one request's head and holds the response open."""

    url: str
    accepted: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)  # by the client


@pytest.fixture
def held() -> Iterator[Held]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    server = Held(f"http://127.0.0.1:{listener.getsockname()[1]}/")

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n")
            conn.sendall(b"transfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
            server.accepted.set()
            conn.settimeout(30)
            if conn.recv(1) == b"":
                server.closed.set()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server
    finally:
        thread.join(35)
        listener.close()


def test_a_killed_run_answers_minus_9_and_its_connections_close(
    probe: Path, host: node_host.Host, held: Held
) -> None:
    run = host.start(probe, ["hold", held.url])
    assert held.accepted.wait(10)
    with pytest.raises(subprocess.TimeoutExpired):
        run.communicate(timeout=1)
    assert not held.closed.is_set()
    run.kill()
    out, err = run.communicate(timeout=10)
    assert run.returncode == -9 and err == ""
    assert out in ("status 200\n", "")  # what it wrote before its end, if it got that far
    assert held.closed.wait(10), "the run's fetch was still open after its end"


def test_a_host_that_dies_ends_its_runs_and_the_next_run_starts_a_new_one(
    probe: Path, host: node_host.Host, held: Held
) -> None:
    run = host.start(probe, ["hold", held.url])
    assert held.accepted.wait(10)
    host.kill()
    code, _, err = finish(run)
    assert code == 1 and "the Node host ended" in err, err
    assert finish(host.start(probe, ["echo", "again"]))[0] == 0


@pytest.mark.parametrize("mode", ["echo", "exit-in-timer", "exit-then-write", "reject"])
def test_a_script_answers_the_same_in_the_host_and_in_a_process_of_its_own(
    probe: Path, host: node_host.Host, mode: str
) -> None:
    alone = subprocess.run(
        ["node", str(probe), mode, "x"],
        input="in",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    code, out, err = finish(host.start(probe, [mode, "x"], stdin="in"))
    assert (code, out) == (alone.returncode, alone.stdout)
    assert bool(err) == bool(alone.stderr)
