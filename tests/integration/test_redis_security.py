"""Redis with a password, an ACL user and TLS, on real servers and real processes.

Each test starts its own ``redis-server`` (requirepass, ACL, TLS with a CA and
certificates that the test makes with ``openssl``), then a front-end and a worker that
connect with nothing but ``REDIS_URL``, and runs a generation end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest
import redis as redis_sync
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from broadcaster.core import connection
from broadcaster.core.embedded import EmbeddedRedis, free_port
from tests.support.polling import poll
from tests.support.procs import Proc, processes, read_sse, spawn, start_frontend, start_worker

pytestmark = pytest.mark.anyio

ADMIN_PASSWORD = "adm1n-Pw-7f3c"

NARROW_ACL = [
    # connection handling: PING, HELLO/AUTH, SELECT, CLIENT ID|SETNAME|SETINFO …, but
    # none of the dangerous ones (CLIENT KILL|LIST|PAUSE …) except the one the hub needs
    "-@all",
    "+@connection",
    "-@dangerous",
    # pipelines (MULTI/EXEC) and the Lua scripts, with every command the scripts call;
    # the same list as docs/security.md's "An ACL user for the project"
    *("+multi", "+exec", "+discard", "+evalsha", "+script|load"),
    # the logs, the job queue and the webhook outbox (streams)
    *("+xadd", "+xrange", "+xrevrange", "+xreadgroup", "+xack", "+xclaim", "+xautoclaim"),
    *("+xpending", "+xgroup|create", "+xgroup|delconsumer", "+xinfo|groups", "+xlen", "+xdel"),
    # streams' metadata, locks, rate limits, resume points' bases
    *("+hset", "+hget", "+hmget", "+hgetall", "+hkeys", "+hdel", "+hexists", "+hincrby"),
    *("+get", "+set", "+del", "+append", "+incr", "+exists"),
    *("+expire", "+pexpire", "+pexpireat", "+time"),
    # viewer counts (sets), stream indexes, waits and heartbeats (sorted sets), chats'
    # queued and steering messages (lists)
    *("+sadd", "+srem", "+smembers", "+scard"),
    *("+zadd", "+zrange", "+zrangebyscore", "+zrangebylex", "+zrem", "+zcard"),
    "+zremrangebyrank",
    *("+rpush", "+lpush", "+lpop", "+lrange", "+ltrim", "+llen", "+lset"),
    # a chat kept until deleted (BROADCASTER_CHAT_RETENTION_SECONDS=0)
    "+persist",
    # pub/sub: every batch goes to its stream's channel (SPUBLISH and SSUBSCRIBE on a
    # Cluster), and each worker's liveness subscription is counted (PUBSUB SHARDNUMSUB on
    # a Cluster); WAIT for Durable Streams with BROADCASTER_DS_WAIT_REPLICAS
    *("+publish", "+subscribe", "+unsubscribe", "+pubsub|numsub", "+wait"),
]
"""The commands the project uses; with ``~bc:*`` (its keys only) and ``&bc:*`` (its
channels only)."""


# --- servers ---


def _probe(port: int, context: ssl.SSLContext | None = None) -> bool:
    """A bare PING, over TLS if ``context`` is given; ``-NOAUTH`` counts as up."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
            with sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(
    data_dir: Path,
    extra_args: list[str],
    port: int | None = None,
    probe: Callable[[], bool] | None = None,
) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir, port=port, persistent=False, extra_args=extra_args)
    server.start(reuse=False, probe=probe)
    try:
        yield server
    finally:
        server.stop()


# --- certificates, made with openssl for this test run ---


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_cert: Path  # valid, but for another name than 127.0.0.1
    other_key: Path

    def context(self, client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if client_cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _leaf(d: Path, name: str, subject: str, ext: str) -> None:
    """A key and a certificate signed by the test CA in ``d``."""
    (d / f"{name}.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n" + ext
    )
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command (apt-get install openssl)")
    d = tmp_path_factory.mktemp("certs")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=broadcaster test CA",
        "-addext", "basicConstraints = critical, CA:TRUE",
        "-addext", "keyUsage = critical, keyCertSign, cRLSign",
        cwd=d,
    )  # fmt: skip
    _leaf(
        d,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n",
    )
    _leaf(d, "client", "/CN=broadcaster", "extendedKeyUsage = clientAuth\n")
    _leaf(
        d,
        "other",
        "/CN=redis.internal",
        "subjectAltName = DNS:redis.internal\nextendedKeyUsage = serverAuth\n",
    )
    names = ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"]
    return Certs(*(d / name for name in [*names, "other.pem", "other.key"]))


def tls_args(certs: Certs, port: int, auth_clients: str, other_name: bool = False) -> list[str]:
    cert, key = (
        (certs.other_cert, certs.other_key) if other_name else (certs.server_cert, certs.server_key)
    )
    return [
        "--port", "0",  # TLS only: no plaintext listener at all
        "--tls-port", str(port),
        "--tls-cert-file", str(cert),
        "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", auth_clients,
    ]  # fmt: skip


def query(**params: Path | str) -> str:
    """``?name=value&…`` with the values percent-encoded (paths may hold ``&`` or ``#``)."""
    return "?" + urlencode({k: str(v) for k, v in params.items()}, quote_via=quote)


# --- the end-to-end check ---


async def generate(frontend: Proc) -> None:
    """A generation through the front-end and the worker: SSE to [DONE], then status."""
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        r = await client.post("/v1/generations", json={"prompt": "secure redis", "max_tokens": 20})
        assert r.status_code == 202, r.text
        gid = r.json()["id"]
        result = await read_sse(client, r.json()["events_url"])
        assert result.status == 200
        assert result.done
        assert result.ids == list(range(1, len(result.ids) + 1))
        assert result.typed()[-1].event == "finish"
        status = (await client.get(f"/v1/generations/{gid}")).json()
        assert status["status"] == "completed"
        assert status["text"]


async def ping(url: str) -> None:
    """One PING through the project's own command client."""
    client = connection.command_client(url, pool_size=2, timeout=2)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


# --- password (requirepass) and ACL users ---


async def test_requirepass_password_in_the_url(tmp_path: Path) -> None:
    """``redis://:<password>@host``; a password with ``@ : / # ? % &`` is percent-encoded."""
    password = "s3cret/p@ss:w#rd?%&x"
    with redis_server(tmp_path / "redis", ["--requirepass", password]) as server:
        anonymous = redis_sync.Redis(port=server.port, retry=Retry(NoBackoff(), 0))
        with pytest.raises(AuthenticationError):  # the server really wants the password
            anonymous.ping()
        anonymous.close()
        url = f"redis://:{quote(password, safe='')}@127.0.0.1:{server.port}/0"
        fe = start_frontend(url, tmp_path, "frontend")
        with processes(fe):
            worker = start_worker(url, tmp_path, "worker")
            with processes(worker):
                await generate(fe)
        for proc in (fe, worker):
            assert password not in proc.log()
            assert quote(password, safe="") not in proc.log()


async def test_acl_user_with_only_the_commands_it_needs(tmp_path: Path) -> None:
    """A user limited to keys and channels ``bc:*`` and to the commands in NARROW_ACL
    serves a generation and a job feed watched at once, and Redis logs no refused
    command."""
    args = ["--requirepass", ADMIN_PASSWORD]
    with redis_server(tmp_path / "redis", args) as server:
        admin = redis_sync.Redis(port=server.port, password=ADMIN_PASSWORD)
        try:
            user_rules = ["reset", "on", ">bc-Pa55", "resetkeys", "~bc:*", "resetchannels", "&bc:*"]
            admin.execute_command("ACL", "SETUSER", "bc", *user_rules, *NARROW_ACL)
            url = f"redis://bc:bc-Pa55@127.0.0.1:{server.port}/0"
            fe = start_frontend(url, tmp_path, "frontend")
            with processes(fe):
                worker = start_worker(url, tmp_path, "worker")
                with processes(worker):
                    async with httpx.AsyncClient(base_url=fe.url, timeout=30) as client:
                        r = await client.post("/v1/streams/job-1/events", json={"type": "start"})
                        assert r.status_code == 201, r.text
                        viewer = asyncio.ensure_future(read_sse(client, "/v1/streams/job-1/events"))
                        try:
                            await poll(
                                lambda: _one_viewer(client), "the viewer counted", 10, every=0.05
                            )
                            # a second stream: a second channel
                            await asyncio.wait_for(generate(fe), 10)
                            r = await client.post(
                                "/v1/streams/job-1/events", json={"type": "finish"}
                            )
                            assert r.status_code == 201, r.text
                            assert (await asyncio.wait_for(viewer, 10)).done
                        finally:
                            viewer.cancel()
            assert admin.acl_log() == []  # Redis refused nothing
            assert admin.info("commandstats")["cmdstat_subscribe"]["calls"] >= 2
            assert admin.keys("*")
            assert all(k.startswith(b"bc:") for k in admin.keys("*"))
            # the same user is refused anything outside its keys
            user = redis_sync.Redis.from_url(url)
            with pytest.raises(redis_sync.exceptions.NoPermissionError):
                user.set("other-app:key", "x")
            user.close()
        finally:
            admin.close()


async def _one_viewer(client: httpx.AsyncClient) -> bool:
    return bool((await client.get("/readyz")).json().get("viewers") == 1)


async def test_a_wrong_password_is_reported_without_the_password(tmp_path: Path) -> None:
    wrong = "wr0ng-Pa55-do-not-print"
    with redis_server(tmp_path / "redis", ["--requirepass", ADMIN_PASSWORD]) as server:
        admin = redis_sync.Redis(port=server.port, password=ADMIN_PASSWORD)
        admin.execute_command("ACL", "SETUSER", "bc", "on", ">right-Pa55", "~bc:*", "+@all")
        admin.close()
        url = f"redis://bc:{wrong}@127.0.0.1:{server.port}/0"
        port = free_port()
        fe = spawn(
            "frontend",
            ["-m", "broadcaster", "serve", "--port", str(port)],
            {"REDIS_URL": url},
            tmp_path,
            fork=True,
        )
        fe.port = port
        worker_env = {"REDIS_URL": url, "WORKER_PROVIDER": "fake"}
        worker = spawn("worker", ["-m", "worker", "run"], worker_env, tmp_path, fork=True)
        with processes(fe, worker):
            bodies: list[str] = []
            async with httpx.AsyncClient(base_url=fe.url, timeout=10) as client:

                async def healthy() -> bool:
                    assert fe.alive(), fe.log()
                    with contextlib.suppress(httpx.TransportError):
                        return (await client.get("/healthz")).status_code == 200
                    return False

                await poll(healthy, "the front-end's /healthz", 20, every=0.05, context=fe.log)
                r = await client.get("/readyz")
                assert r.status_code == 503
                bodies.append(r.text)
                r = await client.post("/v1/generations", json={"prompt": "x"})
                assert r.status_code == 503
                bodies.append(r.text)
                r = await client.get("/v1/streams/job-1/events")
                assert r.status_code == 503
                bodies.append(r.text)

            async def told() -> bool:
                return "authentication failed" in worker.log().lower()

            await poll(told, "the worker saying so", 20, every=0.05, context=worker.log)
            assert worker.alive()  # it keeps retrying: fixing Redis's side is enough
        fe_log = fe.log()
        assert "Redis authentication failed for user 'bc'" in fe_log
        assert fe_log.lower().count("authentication failed") == 1  # not once per request
        for text in (fe_log, worker.log(), *bodies):
            assert wrong not in text
            assert quote(wrong) not in text


# --- TLS ---


async def test_tls_with_the_ca_in_the_url(tmp_path: Path, certs: Certs) -> None:
    port = free_port()
    args = tls_args(certs, port, auth_clients="no")
    probe = lambda: _probe(port, certs.context())  # noqa: E731
    with redis_server(tmp_path / "redis", args, port=port, probe=probe):
        base = f"rediss://127.0.0.1:{port}/0"
        url = base + query(ssl_ca_certs=certs.ca)
        fe = start_frontend(url, tmp_path, "frontend")
        with processes(fe):
            worker = start_worker(url, tmp_path, "worker")
            with processes(worker):
                await generate(fe)

        # Without the CA the server's certificate cannot be verified: refused.
        for unverified in (base, base + query(ssl_cert_reqs="required")):
            with pytest.raises(RedisConnectionError, match="certificate verify failed"):
                await ping(unverified)
        # Encryption without verification is possible, and insecure.
        await ping(base + query(ssl_cert_reqs="none"))
        # The host name is checked against the certificate …
        other = free_port()
        other_args = tls_args(certs, other, auth_clients="no", other_name=True)
        no_name_check = certs.context()
        no_name_check.check_hostname = False
        with redis_server(
            tmp_path / "other", other_args, port=other, probe=lambda: _probe(other, no_name_check)
        ):
            other_url = f"rediss://127.0.0.1:{other}/0"
            with pytest.raises(RedisConnectionError, match="IP address mismatch"):
                await ping(other_url + query(ssl_ca_certs=certs.ca))
            # … unless that is turned off (the chain is still verified).
            await ping(other_url + query(ssl_ca_certs=certs.ca, ssl_check_hostname="false"))
            with pytest.raises(RedisConnectionError, match="certificate verify failed"):
                await ping(other_url + query(ssl_check_hostname="false"))
        # Plaintext is not served at all: a clean ConnectionError (this once ended in a
        # RecursionError inside redis-py: see connection._handshake).
        with pytest.raises(RedisConnectionError):
            await ping(f"redis://127.0.0.1:{port}/0")


async def test_mutual_tls_with_an_acl_user(tmp_path: Path, certs: Certs) -> None:
    """The full form: user, password, CA and a client certificate, on a server that
    requires client certificates."""
    port = free_port()
    args = [*tls_args(certs, port, auth_clients="yes"), "--requirepass", ADMIN_PASSWORD]
    probe = lambda: _probe(port, certs.context(client_cert=True))  # noqa: E731
    with redis_server(tmp_path / "redis", args, port=port, probe=probe):
        tls = query(
            ssl_ca_certs=certs.ca, ssl_certfile=certs.client_cert, ssl_keyfile=certs.client_key
        )
        admin_url = f"rediss://:{ADMIN_PASSWORD}@127.0.0.1:{port}/0" + tls
        admin = redis_sync.Redis.from_url(admin_url)
        admin.execute_command(
            "ACL",
            "SETUSER",
            "bc",
            "on",
            ">tls-Pa55",
            "~bc:*",
            "resetchannels",
            "&bc:*",
            *NARROW_ACL,
        )
        admin.close()
        url = f"rediss://bc:tls-Pa55@127.0.0.1:{port}/0" + tls
        fe = start_frontend(url, tmp_path, "frontend")
        with processes(fe):
            worker = start_worker(url, tmp_path, "worker")
            with processes(worker):
                await generate(fe)

        # Without a client certificate the server ends the connection (TLS 1.3: at the
        # first read, as "Connection reset by peer"), though the password is right.
        with pytest.raises(RedisConnectionError) as refused:
            await ping(f"rediss://bc:tls-Pa55@127.0.0.1:{port}/0" + query(ssl_ca_certs=certs.ca))
        assert not isinstance(refused.value, AuthenticationError)
