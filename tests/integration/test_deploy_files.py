"""The deployment files are valid and say what the processes need.

Offline and fast: ``docker-compose.yml`` is validated against the Compose Specification
schema that check-jsonschema vendors, every manifest under ``deploy/kubernetes`` (and
the Ingress example of its README) against the Kubernetes schemas that
kubernetes-validate ships (strict: unknown fields are errors), ``deploy/nginx.conf`` with
``nginx -t``. Then the settings that matter for this project are checked: probes on
``/healthz`` and ``/readyz``, grace periods that outlast the drains, the access-control
secrets reaching the front-ends, the compose front-ends gating nginx on ``/readyz``, and
routing by stream (nginx's hash of the stream id from the path; the hashed Ingress on a
Service of its own). Broken copies show that each check can fail.
"""

from __future__ import annotations

import copy
import importlib.resources
import ipaddress
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from broadcaster import mint_token
from broadcaster.auth import credentials
from broadcaster.auth.credentials import parse_api_keys
from broadcaster.core.embedded import free_port
from broadcaster.core.settings import variable_of
from broadcaster.http.settings import Settings
from tests.support.nginx import Nginx, find_nginx, nginx_conf_for_test
from tests.support.procs import start_frontend

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
K8S_DIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
SECRET_EXAMPLE = K8S_DIR / "secret.example.yaml"
K8S_README = K8S_DIR / "README.md"

# The front-end exits within 10 s of SIGTERM (docs/api.md, "Lifecycle").
FRONTEND_DRAIN_SECONDS = 10
# A worker needs time after its grace to hand work back and exit (README: "about
# WORKER_GRACE_SECONDS + 10 s").
WORKER_HANDBACK_SECONDS = 10
# The `: ping` keep-alive interval: a proxy's read timeout must be above it.
KEEPALIVE_SECONDS = 15
ACCESS_CONTROL_ENV = {"BROADCASTER_API_KEYS", "BROADCASTER_TOKEN_SECRET", "BROADCASTER_METRICS_KEY"}

Doc = dict[str, Any]


# --- loading ----------------------------------------------------------------------


def load_documents(path: Path) -> list[Doc]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p != KUSTOMIZATION)


def k8s_documents() -> list[tuple[str, Doc]]:
    return [(p.name, doc) for p in k8s_files() for doc in load_documents(p)]


def find(kind: str, name: str) -> Doc:
    matches = [
        doc for _, doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def load_compose() -> Doc:
    (doc,) = load_documents(COMPOSE_FILE)  # safe_load resolves the `<<:` merge keys
    return doc


# --- schema validation --------------------------------------------------------------


def compose_schema() -> Doc:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: Doc = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def compose_schema_errors(doc: Doc) -> list[str]:
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def check_jsonschema_cli(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema's own command line, as a developer would run it."""
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [*command, str(path)], capture_output=True, text=True, timeout=60, check=False
    )


# The oldest Kubernetes minor still in common support, and the newest the package knows.
K8S_VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]


def k8s_schema_errors(doc: Doc, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


# --- semantic checks ------------------------------------------------------------------


def parse_duration(value: str | int | float) -> float:
    """A compose duration (``15s``, ``1m30s``, ``500ms``) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def compose_default(value: Any) -> str:
    """The value of ``${VAR:-default}`` when VAR is unset, else the value itself."""
    m = re.fullmatch(r"\$\{\w+:?-([^}]*)\}", str(value))
    return m.group(1) if m else str(value)


def pod_container(deployment: Doc) -> tuple[Doc, Doc]:
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def secret_env(container: Doc) -> dict[str, tuple[str, str]]:
    """env name -> (Secret name, key) for every variable taken from a Secret."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def plain_env(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def prestop_seconds(container: Doc) -> float:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is None:
        return 0.0
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] in ("sleep", "/bin/sleep") and len(command) == 2, command
    return float(command[1])


def hardening_problems(pod: Doc, container: Doc) -> list[str]:
    problems = []
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    if not (pod_sc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not set")
    if not sc.get("readOnlyRootFilesystem"):
        problems.append("readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if "/tmp" not in {m["mountPath"] for m in container.get("volumeMounts", [])}:
        problems.append("no writable /tmp")
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})):
            problems.append(f"resources.{kind} lacks cpu or memory")
    if pod.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false (BROADCASTER_PORT=tcp://… clash)")
    return problems


def frontend_problems(deployment: Doc) -> list[str]:
    pod, container = pod_container(deployment)
    problems = hardening_problems(pod, container)
    command = container.get("command", [])
    if command[:4] != ["python", "-m", "broadcaster", "serve"]:
        problems.append(f"command is not `python -m broadcaster serve`: {command}")
    port_names = {p.get("name") for p in container.get("ports", [])}
    port_numbers = {p["containerPort"] for p in container.get("ports", [])}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            problems.append(f"{probe} is not an httpGet on {path}")
        elif get.get("port") not in port_names | port_numbers:
            problems.append(f"{probe} port {get.get('port')!r} is not a container port")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    needed = FRONTEND_DRAIN_SECONDS + prestop_seconds(container)
    if grace < needed:
        problems.append(f"terminationGracePeriodSeconds {grace} < drain + preStop ({needed})")
    if prestop_seconds(container) == 0:
        problems.append("no preStop pause for the endpoint removal to propagate")
    from_secrets = secret_env(container)
    for name in sorted(ACCESS_CONTROL_ENV | {"REDIS_URL"}):
        if name not in from_secrets:
            problems.append(f"{name} is not taken from a Secret")
    if plain_env(container).get("BROADCASTER_INSECURE", "false").lower() not in ("false", "0"):
        problems.append("BROADCASTER_INSECURE is on")
    if "--insecure" in command:
        problems.append("--insecure on the command line")
    if deployment["spec"].get("replicas", 1) < 2:
        problems.append("fewer than 2 replicas")
    return problems


def worker_problems(deployment: Doc) -> list[str]:
    pod, container = pod_container(deployment)
    problems = hardening_problems(pod, container)
    if container.get("command") != ["python", "-m", "worker", "run"]:
        problems.append(f"command is not `python -m worker run`: {container.get('command')}")
    env = plain_env(container)
    worker_grace = float(env.get("WORKER_GRACE_SECONDS", 20))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < worker_grace + WORKER_HANDBACK_SECONDS:
        problems.append(
            f"terminationGracePeriodSeconds {grace} < WORKER_GRACE_SECONDS {worker_grace}"
            f" + {WORKER_HANDBACK_SECONDS}"
        )
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if "httpGet" in container.get(probe, {}):
            problems.append(f"{probe} is an httpGet, but the worker serves no HTTP")
    from_secrets = secret_env(container)
    for name in ("REDIS_URL", "ANTHROPIC_API_KEY"):
        if name not in from_secrets:
            problems.append(f"{name} is not taken from a Secret")
    if ACCESS_CONTROL_ENV & set(from_secrets):
        problems.append("the worker is given the front-end's access-control secrets")
    if env.get("WORKER_PROVIDER") not in ("anthropic", "fake"):
        problems.append(f"WORKER_PROVIDER is {env.get('WORKER_PROVIDER')!r}")
    return problems


def compose_problems(compose: Doc) -> list[str]:
    problems = []
    services = compose["services"]
    frontends = sorted(
        name
        for name, s in services.items()
        if s.get("command", [])[2:4] == ["broadcaster", "serve"]
    )
    workers = sorted(
        name for name, s in services.items() if s.get("command", [])[2:4] == ["worker", "run"]
    )
    if len(frontends) < 2 or len(workers) < 1:
        problems.append(f"front-ends {frontends}, workers {workers}")
    for name in frontends:
        s = services[name]
        test = s.get("healthcheck", {}).get("test", [])
        if "/readyz" not in " ".join(test if isinstance(test, list) else [test]):
            problems.append(f"{name}: healthcheck does not ask /readyz")
        if parse_duration(s.get("stop_grace_period", "10s")) < FRONTEND_DRAIN_SECONDS:
            problems.append(f"{name}: stop_grace_period below the {FRONTEND_DRAIN_SECONDS} s drain")
    for name in workers:
        s = services[name]
        worker_grace = float(compose_default(s["environment"].get("WORKER_GRACE_SECONDS", 20)))
        stop = parse_duration(s.get("stop_grace_period", "10s"))
        if stop < worker_grace + WORKER_HANDBACK_SECONDS:
            problems.append(f"{name}: stop_grace_period {stop} s too short for {worker_grace} s")
        if "healthcheck" in s and "/readyz" in json.dumps(s["healthcheck"]):
            problems.append(f"{name}: HTTP healthcheck on a worker")
    depends = services.get("nginx", {}).get("depends_on", {})
    for name in frontends:
        if not isinstance(depends, dict) or depends.get(name, {}).get("condition") != (
            "service_healthy"
        ):
            problems.append(f"nginx does not wait for {name} to be healthy")
    return problems + compose_exposure_problems(services, frontends, workers)


LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}


def published_addresses(port: str | int | Doc) -> list[str]:
    """The host address a ``ports`` entry publishes on when no variable is set (``""``:
    every interface). Short syntax ``[ip:]host:container``, or the long one."""
    if isinstance(port, dict):
        return [compose_default(port.get("host_ip", ""))]
    text = str(port)
    variable = re.match(r"^(\$\{[^}]*\}):(.*)$", text)
    if variable:
        return [compose_default(variable.group(1))]
    parts = text.rsplit(":", 2)
    return [parts[0] if len(parts) == 3 else ""]


def compose_exposure_problems(services: Doc, frontends: list[str], workers: list[str]) -> list[str]:
    """Secure unless told otherwise: only nginx (and the observability profile's UIs)
    publishes a port, on loopback when no variable says another address; the front-ends
    get the access-control secrets from the host and are not insecure unless
    BROADCASTER_INSECURE says so."""
    problems = []
    for name, s in services.items():
        ports = s.get("ports", [])
        if ports and name != "nginx" and s.get("profiles") != ["observability"]:
            problems.append(f"{name} publishes {ports}: only nginx should")
        for port in ports:
            for address in published_addresses(port):
                if address not in LOOPBACK:
                    where = address or "every interface"
                    problems.append(f"{name} publishes {port!r} on {where} by default")
    for name in frontends:
        env, command = services[name].get("environment", {}), services[name]["command"]
        insecure = compose_default(env.get("BROADCASTER_INSECURE", "false")).lower()
        if insecure not in ("false", "0", ""):
            problems.append(f"{name}: BROADCASTER_INSECURE is {insecure!r} unless told otherwise")
        if "--insecure" in command:
            problems.append(f"{name}: --insecure on the command line")
        if str(env.get("BROADCASTER_BUSY_EVENTSOURCE_RETRY", "true")).lower() != "false":
            problems.append(
                f"{name}: a refused viewer gets a 200 retry: that nginx cannot move to the next"
                " front-end (BROADCASTER_BUSY_EVENTSOURCE_RETRY should be false behind it)"
            )
        for var in sorted(ACCESS_CONTROL_ENV):
            if var not in env:
                problems.append(f"{name}: {var} is not passed to the front-end")
    for name in workers:
        if ACCESS_CONTROL_ENV & set(services[name].get("environment", {})):
            problems.append(f"{name}: the worker is given the front-end's access-control secrets")
    return problems


def nginx_problems(conf: str, frontends: list[str]) -> list[str]:
    problems = []
    upstream = re.search(r"upstream broadcaster \{(.*?)\n    \}", conf, re.S)
    servers = re.findall(
        r"^\s*server\s+([\w.-]+):8000\b", upstream.group(1) if upstream else "", re.M
    )
    if sorted(servers) != sorted(frontends):
        problems.append(f"nginx upstream {servers} != compose front-ends {frontends}")
    for name, pattern in (
        ("SSE", r"location ~ \^/v1/streams/.*?/events\$ \{(.*?)\n        \}"),
        ("chat SSE", r"location ~ \^/v1/chat\(.*?/stream\)\?\$ \{(.*?)\n        \}"),
        ("Durable Streams", r"location \^~ /v1/stream/ \{(.*?)\n        \}"),
        ("many streams", r"location = /v1/events \{(.*?)\n        \}"),
    ):
        sse = re.search(pattern, conf, re.S)
        block = sse.group(1) if sse else ""
        if not re.search(r"^\s*proxy_buffering off;", block, re.M):
            problems.append(f"{name} location does not switch proxy_buffering off")
        if not re.search(r"^\s*gzip off;", block, re.M):
            problems.append(f"{name} location does not switch gzip off")
        timeout = re.search(r"^\s*proxy_read_timeout (\w+);", block, re.M)
        if not timeout or parse_duration(timeout.group(1)) <= KEEPALIVE_SECONDS:
            problems.append(f"{name} proxy_read_timeout not above {KEEPALIVE_SECONDS} s")
    problems += exposure_problems(conf)
    return problems + routing_problems(conf, upstream.group(1) if upstream else "")


# Variables that hold the query string as the client sent it, ?token= included.
RAW_QUERY_VARIABLES = ("$request", "$request_uri", "$args", "$query_string", "$arg_token")


def exposure_problems(conf: str) -> list[str]:
    """What nginx must not give away: tokens in its access log (its log formats use the
    redacted request line, never a variable holding the raw query) and /metrics (a
    location of its own that answers 404 and proxies nothing)."""
    problems = []
    formats = re.findall(r"^\s*log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", conf, re.M)
    if not formats:
        problems.append("no log_format: nginx's default one logs $request, tokens included")
    for name, body in formats:
        used = set(re.findall(r"\$\w+", body))
        raw = sorted(v for v in RAW_QUERY_VARIABLES if v in used)
        if raw:
            problems.append(f"log_format {name} logs {raw}, which hold ?token=")
        if "$broadcaster_logged_uri" not in used:
            problems.append(f"log_format {name} does not log $broadcaster_logged_uri")
    for target, fmt in re.findall(r"^\s*access_log\s+(\S+)(?:\s+(\w+))?\s*;", conf, re.M):
        if target != "off" and fmt not in {name for name, _ in formats}:
            problems.append(f"access_log {target} uses {fmt or 'the default format'}")
    metrics = re.search(r"^\s*location = /metrics \{(.*?)\n        \}", conf, re.S | re.M)
    if metrics is None:
        problems.append("no `location = /metrics`: /metrics would be proxied to a front-end")
    elif "proxy_pass" in metrics.group(1) or not re.search(
        r"^\s*return 404 ", metrics.group(1), re.M
    ):
        problems.append("location = /metrics does not answer 404 without proxying")
    return problems


# What the route key must be for each path: a stream's GETs and POSTs share one (and its
# Durable Streams reads too), each chat resume has its own, everything else is random.
ROUTES = {
    "/v1/streams/job-42/events": "stream:job-42",
    # A Durable Stream by its path; a stream of events read there with its SSE viewers.
    "/v1/stream/job-42": "stream:job-42",
    "/v1/stream/tenants/a/feed": "stream:tenants/a/feed",
    "/v1/chat/c_1/stream": "chat:c_1",
    # A run's reconnect (WorkflowChatTransport) lands where its chat's resumes do.
    "/v1/chat/c_1~Gen-1_x~42/stream": "chat:c_1",
    "/v1/streams/job-42/tokens": "$request_id",
    "/v1/streams/a/b/events": "$request_id",
    "/v1/chat": "$request_id",
    "/v1/chat/c_1/messages": "$request_id",
    "/v1/generations": "$request_id",
    "/v1/events": "$request_id",
    "/": "$request_id",
}


def map_value(entries: list[tuple[str, str]], value: str) -> str:
    """What an nginx ``map`` of regular expressions and a default gives for ``value``:
    the first matching ``~regex`` in order, its captures substituted."""
    for pattern, result in entries:
        if not pattern.startswith("~"):
            continue
        regex = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern.removeprefix("~"))
        m = re.search(regex, value)
        if m:
            return m.expand(re.sub(r"\$(\w+)", r"\\g<\1>", result))
    return dict(entries).get("default", "")


def routing_problems(conf: str, upstream: str) -> list[str]:
    """Stream-affine routing: the upstream hashes a key that the map takes from the path."""
    problems = []
    route_map = re.search(
        r"^    map \$(\w+) \$broadcaster_route \{(.*?)\n    \}", conf, re.S | re.M
    )
    if route_map is None:
        return ["no `map ... $broadcaster_route` in http{}"]
    source, body = route_map.groups()
    if source != "uri":
        problems.append(f"the route is taken from ${source}, not $uri (without the query)")
    entries = re.findall(r"^\s*(\S+)\s+(\S+);", body, re.M)
    for path, expected in ROUTES.items():
        if (got := map_value(entries, path)) != expected:
            problems.append(f"the route of {path} is {got!r}, not {expected!r}")
    hashed = re.search(r"^\s*hash \$broadcaster_route consistent;", upstream, re.M)
    keepalive = re.search(r"^\s*keepalive \d+;", upstream, re.M)
    if hashed is None:
        problems.append("the upstream does not `hash $broadcaster_route consistent`")
    elif keepalive is not None and keepalive.start() < hashed.start():
        problems.append("`hash` comes after `keepalive` (nginx wants the method first)")
    retry = re.search(r"^\s*proxy_next_upstream ([^;]*);", conf, re.M)
    if retry is None or not {"error", "timeout", "http_503"} <= set(retry.group(1).split()):
        problems.append("proxy_next_upstream does not move a request off a 503 or a dead server")
    return problems


HASH_BY = "nginx.ingress.kubernetes.io/upstream-hash-by"
STREAM_PREFIXES = ("/v1/streams/", "/v1/chat/", "/v1/stream/")


def readme_ingresses() -> list[Doc]:
    """The Ingresses of deploy/kubernetes/README.md's example (its ```yaml blocks)."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", K8S_README.read_text(), re.S | re.M)
    docs = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    return [doc for doc in docs if doc.get("kind") == "Ingress"]


def ingress_routes(ingress: Doc) -> list[tuple[str, str, str, str]]:
    """(host, path, pathType, Service) of each path of an Ingress."""
    return [
        (rule.get("host", ""), p["path"], p["pathType"], p["backend"]["service"]["name"])
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]


def ingress_problems(ingresses: list[Doc]) -> list[str]:
    """Routing by stream with ingress-nginx: the stream paths hashed by $uri on a Service
    of their own, everything else (POST /v1/chat included) round robin."""
    hashed = [i for i in ingresses if HASH_BY in i["metadata"].get("annotations", {})]
    plain = [i for i in ingresses if HASH_BY not in i["metadata"].get("annotations", {})]
    if len(hashed) != 1 or len(plain) != 1:
        return [f"{len(hashed)} hashed and {len(plain)} round-robin Ingresses, not 1 and 1"]
    problems = []
    key = hashed[0]["metadata"]["annotations"][HASH_BY]
    if key != "$uri":
        problems.append(f"upstream-hash-by is {key!r}, not '$uri' (the path without query)")
    streams, others = ingress_routes(hashed[0]), ingress_routes(plain[0])
    if sorted((path, kind) for _, path, kind, _ in streams) != [
        (prefix, "Prefix") for prefix in sorted(STREAM_PREFIXES)
    ]:
        problems.append(f"the hashed paths are {streams}, not Prefix {STREAM_PREFIXES}")
    shared = {s for *_, s in streams} & {s for *_, s in others}
    if shared:
        problems.append(f"Service {shared} behind both (ingress-nginx hashes per Service)")
    for path, kind in (("/v1/chat", "Exact"), ("/", "Prefix")):
        if (path, kind) not in {(p, k) for _, p, k, _ in others}:
            problems.append(f"no round-robin {kind} path {path}")
    if len({host for host, *_ in streams + others}) != 1:
        problems.append("the two Ingresses are not for one host")
    services = {d["metadata"]["name"]: d for _, d in k8s_documents() if d["kind"] == "Service"}
    for ingress in ingresses:
        name, annotations = ingress["metadata"]["name"], ingress["metadata"]["annotations"]
        if annotations.get("nginx.ingress.kubernetes.io/proxy-buffering") != "off":
            problems.append(f"{name}: proxy-buffering is not off")
        timeout = annotations.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "60")
        if float(timeout) <= KEEPALIVE_SECONDS:
            problems.append(f"{name}: proxy-read-timeout not above {KEEPALIVE_SECONDS} s")
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = services.get(backend["name"], {}).get("spec", {}).get("ports", [])
                if backend["port"].get("name") not in {p.get("name") for p in ports}:
                    problems.append(f"{name}: no Service port {backend} in service.yaml")
    return problems


# --- docker-compose.yml -------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    assert compose_schema_errors(load_compose()) == []


def test_compose_file_passes_check_jsonschema_cli() -> None:
    result = check_jsonschema_cli(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_front_ends_are_gated_on_readyz_and_drain_in_time() -> None:
    assert compose_problems(load_compose()) == []


def test_nginx_upstream_and_sse_settings_match_compose() -> None:
    services = load_compose()["services"]
    frontends = [n for n, s in services.items() if "serve" in s.get("command", [])]
    assert nginx_problems(NGINX_CONF.read_text(), frontends) == []


def passed_through_problems(compose: Doc) -> list[str]:
    """The front-ends get every webhook and CORS setting of the front-end (derived from
    its settings, so a new one is not forgotten), the workers WORKER_TOOLS."""
    wanted = [
        variable_of(Settings, name)
        for name in Settings.model_fields
        if name.startswith("webhook_") or name == "cors_origins"
    ]
    problems = []
    for name, service in compose["services"].items():
        command, env = service.get("command", []), service.get("environment", {})
        if command[2:4] == ["broadcaster", "serve"]:
            problems += [f"{name}: {v} is not passed through" for v in wanted if v not in env]
        if command[2:4] == ["worker", "run"] and "WORKER_TOOLS" not in env:
            problems.append(f"{name}: WORKER_TOOLS is not passed through")
    return problems


def test_compose_passes_through_webhooks_cors_and_tools() -> None:
    compose = load_compose()
    assert passed_through_problems(compose) == []
    broken = copy.deepcopy(compose)
    del broken["services"]["frontend-1"]["environment"]["BROADCASTER_WEBHOOK_SECRET"]
    assert "frontend-1: BROADCASTER_WEBHOOK_SECRET is not passed through" in (
        passed_through_problems(broken)
    )


def test_the_image_has_the_examples_and_documents_a_reachable_demo() -> None:
    """The image's documented demo listens on the container's every interface (its
    loopback is not the host's), insecure out loud, published on the host's loopback;
    and the image holds the example tools the demo's worker runs."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    documented = re.search(r"docker run (.*?)\\\n#\s+(python -m broadcaster demo.*)", dockerfile)
    assert documented, "the Dockerfile documents how to run the demo"
    run = f"{documented[1]} {documented[2]}".split()
    assert run[:2] == ["-p", "127.0.0.1:8000:8000"]
    assert run[run.index("--host") + 1] == "0.0.0.0" and "--insecure" in run
    assert "COPY examples/ /app/examples/" in dockerfile
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in allowed and "!examples/" in allowed


def test_a_broken_compose_file_fails(tmp_path: Path) -> None:
    compose = load_compose()
    broken = copy.deepcopy(compose)
    broken["services"]["frontend-1"]["healthcheck"]["interval"] = 5  # must be a duration
    broken["services"]["worker-1"]["stop_grace_periods"] = "30s"  # no such key
    errors = compose_schema_errors(broken)
    assert any("interval" in e for e in errors), errors
    assert any("stop_grace_periods" in e for e in errors), errors

    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_jsonschema_cli(path)
    assert result.returncode != 0, result.stdout

    unsafe = copy.deepcopy(compose)
    del unsafe["services"]["frontend-2"]["healthcheck"]
    unsafe["services"]["nginx"]["depends_on"] = ["frontend-1"]
    unsafe["services"]["worker-1"]["stop_grace_period"] = "20s"
    problems = compose_problems(unsafe)
    assert any("frontend-2: healthcheck" in p for p in problems), problems
    assert any("nginx does not wait" in p for p in problems), problems
    assert any("worker-1: stop_grace_period" in p for p in problems), problems

    exposed = copy.deepcopy(compose)
    exposed["services"]["frontend-1"]["environment"]["BROADCASTER_INSECURE"] = (
        "${BROADCASTER_INSECURE:-true}"
    )
    del exposed["services"]["frontend-2"]["environment"]["BROADCASTER_TOKEN_SECRET"]
    del exposed["services"]["frontend-2"]["environment"]["BROADCASTER_BUSY_EVENTSOURCE_RETRY"]
    exposed["services"]["redis"]["ports"] = ["127.0.0.1:6379:6379"]
    for ports, where in (
        (["8080:80"], "every interface"),
        (["${BROADCASTER_PUBLISH_ADDRESS:-0.0.0.0}:8080:80"], "0.0.0.0"),
        ([{"target": 80, "published": 8080}], "every interface"),
    ):
        exposed["services"]["nginx"]["ports"] = ports
        problems = compose_problems(exposed)
        assert any("nginx publishes" in p and where in p for p in problems), (ports, problems)
    assert any("frontend-1: BROADCASTER_INSECURE is 'true'" in p for p in problems), problems
    assert any("frontend-2: BROADCASTER_TOKEN_SECRET is not passed" in p for p in problems)
    assert any("frontend-2: a refused viewer gets a 200 retry:" in p for p in problems)
    assert any("redis publishes" in p for p in problems), problems

    conf = NGINX_CONF.read_text().replace("proxy_read_timeout 1h;", "proxy_read_timeout 10s;")
    assert nginx_problems(conf, ["frontend-1"]) != []


def test_a_broken_nginx_route_fails() -> None:
    conf = NGINX_CONF.read_text()
    frontends = ["frontend-1", "frontend-2"]
    assert nginx_problems(conf, frontends) == []
    for old, new, problem in (
        ("map $uri $broadcaster_route", "map $request_uri $broadcaster_route", "not $uri"),
        ("(?<sid>[^/]+)/events$", "(?<sid>.+)/events$", "/v1/streams/a/b/events"),
        ("chat:$1;", "chat;", "/v1/chat/c_1/stream"),
        ("default                              $request_id;", "default x;", "of /v1/chat "),
        ("hash $broadcaster_route consistent;", "", "does not `hash"),
        ("http_502 http_503;", "http_502;", "proxy_next_upstream"),
    ):
        assert conf.count(old) == 1, old
        problems = nginx_problems(conf.replace(old, new), frontends)
        assert any(problem in p for p in problems), (old, problems)
    moved = conf.replace("        hash $broadcaster_route consistent;\n", "").replace(
        "keepalive 64;", "keepalive 64;\n        hash $broadcaster_route consistent;"
    )
    assert any("after `keepalive`" in p for p in nginx_problems(moved, frontends))


def test_a_leaky_nginx_config_fails() -> None:
    conf = NGINX_CONF.read_text()
    assert exposure_problems(conf) == []
    for old, new, problem in (
        ('"$request_method $broadcaster_logged_uri $server_protocol"', '"$request"', "$request"),
        ("$request_method $broadcaster_logged_uri", "$request_method $request_uri", "$request_uri"),
        ("access_log /dev/stdout upstream;", "access_log /dev/stdout;", "default format"),
        ("location = /metrics {", "location = /metricz {", "no `location = /metrics`"),
        (
            'return 404 \'{"error":"not_found","message":"/metrics',
            "proxy_pass http://broadcaster; #",
            "does not answer 404",
        ),
    ):
        assert conf.count(old) >= 1, old
        problems = exposure_problems(conf.replace(old, new, 1))
        assert any(problem in p for p in problems), (old, problems)


def nginx_t(tmp_path: Path, conf: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on deploy/nginx.conf as the tests run it (loopback, private paths)."""
    (tmp_path / "temp").mkdir(exist_ok=True)
    path = tmp_path / "nginx.conf"
    path.write_text(nginx_conf_for_test(tmp_path, 8080, [8001, 8002], source=conf))
    command = [find_nginx(), "-t", "-p", str(tmp_path), "-c", str(path), "-e", "stderr"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    result = nginx_t(tmp_path, NGINX_CONF.read_text())
    assert result.returncode == 0, result.stderr
    broken = NGINX_CONF.read_text().replace("hash $broadcaster_route", "hash $no_such_route")
    result = nginx_t(tmp_path, broken)
    assert result.returncode != 0 and "no_such_route" in result.stderr, result.stderr


# --- deploy/kubernetes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "doc"),
    [pytest.param(f, d, id=f"{f}:{d['kind']}/{d['metadata']['name']}") for f, d in k8s_documents()],
)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifest_matches_the_schema(filename: str, doc: Doc, version: str) -> None:
    assert k8s_schema_errors(doc, version) == []
    assert "namespace" not in doc["metadata"], f"{filename}: manifests name no namespace"


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = load_documents(KUSTOMIZATION)
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert SECRET_EXAMPLE.name not in listed
    assert sorted(listed) == sorted(p.name for p in k8s_files() if p != SECRET_EXAMPLE)
    assert not any(
        doc["kind"] == "Secret" for name in listed for doc in load_documents(K8S_DIR / name)
    )


def test_frontend_deployment() -> None:
    assert frontend_problems(find("Deployment", "frontend")) == []


def test_worker_deployment() -> None:
    assert worker_problems(find("Deployment", "worker")) == []


def test_selectors_service_and_disruption_budgets_line_up() -> None:
    deployments = {
        d["metadata"]["name"]: d for _, d in k8s_documents() if d["kind"] == "Deployment"
    }
    for name, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), name

    def selected(selector: dict[str, str]) -> list[str]:
        return [
            name
            for name, d in deployments.items()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]

    _, container = pod_container(deployments["frontend"])
    (container_port,) = container["ports"]
    assert container_port["containerPort"] == 8000
    # `frontend`, and `frontend-streams` for the Ingress that routes by stream: the same
    # pods and port under two names (README.md, "Routing by stream").
    for name in ("frontend", "frontend-streams"):
        service = find("Service", name)
        assert selected(service["spec"]["selector"]) == ["frontend"], name
        (port,) = service["spec"]["ports"]
        assert port["port"] == 80, name
        assert port["name"] == "http", name
        assert port["targetPort"] in (container_port["name"], container_port["containerPort"])

    budgets = [d for _, d in k8s_documents() if d["kind"] == "PodDisruptionBudget"]
    covered = sorted(n for b in budgets for n in selected(b["spec"]["selector"]["matchLabels"]))
    assert covered == ["frontend", "worker"]
    for b in budgets:
        assert b["spec"]["minAvailable"] == 1
        (target,) = selected(b["spec"]["selector"]["matchLabels"])
        assert deployments[target]["spec"]["replicas"] > b["spec"]["minAvailable"]


def test_example_secrets_cover_every_reference_with_placeholders() -> None:
    secrets = {d["metadata"]["name"]: d for d in load_documents(SECRET_EXAMPLE)}
    assert all(d["kind"] == "Secret" for d in secrets.values())
    for name in ("frontend", "worker"):
        _, container = pod_container(find("Deployment", name))
        for env, (secret, key) in secret_env(container).items():
            assert secret in secrets, f"{name}: {env} refers to missing Secret {secret}"
            assert key in secrets[secret].get("stringData", {}), f"{secret} lacks {key}"
    for secret in secrets.values():
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, f"{key} is not clearly a placeholder"
    # A front-end started with the placeholder refuses to, rather than run unprotected.
    with pytest.raises(ValueError, match="sha256"):
        parse_api_keys(secrets["broadcaster-frontend"]["stringData"]["BROADCASTER_API_KEYS"])


def test_broken_kubernetes_manifests_fail() -> None:
    frontend = find("Deployment", "frontend")
    version = K8S_VERSIONS[-1]

    unknown_field = copy.deepcopy(frontend)
    unknown_field["spec"]["template"]["spec"]["terminationGracePeriod"] = 15
    assert k8s_schema_errors(unknown_field, version) != []

    wrong_type = copy.deepcopy(frontend)
    wrong_type["spec"]["replicas"] = "two"
    assert k8s_schema_errors(wrong_type, version) != []

    unknown_kind = copy.deepcopy(frontend)
    unknown_kind["kind"] = "Deploymint"
    assert k8s_schema_errors(unknown_kind, version) != []

    unsafe = copy.deepcopy(frontend)
    pod, container = pod_container(unsafe)
    pod["terminationGracePeriodSeconds"] = 10
    container["readinessProbe"]["httpGet"]["path"] = "/healthz"
    container["env"] = [
        e
        for e in container["env"]
        if e["name"] not in ("BROADCASTER_TOKEN_SECRET", "BROADCASTER_METRICS_KEY")
    ]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    assert k8s_schema_errors(unsafe, version) == []  # valid Kubernetes, wrong for us
    problems = frontend_problems(unsafe)
    assert any("terminationGracePeriodSeconds" in p for p in problems), problems
    assert any("readinessProbe" in p for p in problems), problems
    assert any("BROADCASTER_TOKEN_SECRET" in p for p in problems), problems
    assert any("BROADCASTER_METRICS_KEY is not taken from a Secret" in p for p in problems)
    assert any("readOnlyRootFilesystem" in p for p in problems), problems

    worker = copy.deepcopy(find("Deployment", "worker"))
    pod, container = pod_container(worker)
    pod["terminationGracePeriodSeconds"] = 20
    container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8000}}
    problems = worker_problems(worker)
    assert any("WORKER_GRACE_SECONDS" in p for p in problems), problems
    assert any("livenessProbe" in p for p in problems), problems


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_readme_ingress_example_matches_the_schema(version: str) -> None:
    ingresses = readme_ingresses()
    assert len(ingresses) == 2
    for ingress in ingresses:
        assert k8s_schema_errors(ingress, version) == [], ingress["metadata"]["name"]


def test_the_readme_ingress_example_routes_by_stream() -> None:
    assert ingress_problems(readme_ingresses()) == []


def test_a_broken_ingress_example_fails() -> None:
    def broken(change: Any) -> list[str]:
        ingresses = copy.deepcopy(readme_ingresses())
        change(*sorted(ingresses, key=lambda i: HASH_BY not in i["metadata"]["annotations"]))
        return ingress_problems(ingresses)

    def request_uri(hashed: Doc, _: Doc) -> None:
        hashed["metadata"]["annotations"][HASH_BY] = "$request_uri"

    def one_service(hashed: Doc, _: Doc) -> None:
        for path in hashed["spec"]["rules"][0]["http"]["paths"]:
            path["backend"]["service"]["name"] = "frontend"

    def chat_hashed(_: Doc, plain: Doc) -> None:
        paths = plain["spec"]["rules"][0]["http"]["paths"]
        paths[:] = [p for p in paths if p["pathType"] != "Exact"]

    def unknown_port(hashed: Doc, _: Doc) -> None:
        hashed["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {
            "name": "web"
        }

    for change, problem in (
        (request_uri, "not '$uri'"),
        (one_service, "behind both"),
        (chat_hashed, "Exact path /v1/chat"),
        (unknown_port, "no Service port"),
    ):
        problems = broken(change)
        assert any(problem in p for p in problems), (change.__name__, problems)


# --- deploy/nginx.conf, run: tokens out of its log, /metrics not passed on ------------


def test_nginx_logs_no_token_and_does_not_pass_metrics_on(redis_url: str, tmp_path: Path) -> None:
    """A real nginx from deploy/nginx.conf in front of two real front-ends (a token
    secret, API keys, a metrics key): tokens in the query reach the front-ends and work,
    but nginx's access log holds none of them, only ``token=REDACTED`` (the name in any
    case or percent-encoded, one or several); /metrics through nginx is 404 in the API's
    error shape, however its path is written, and never reaches a front-end, which still
    answers it directly to its key."""
    admin, metrics_key = "admin-" + secrets.token_hex(8), "metrics-" + secrets.token_hex(8)
    secret = secrets.token_hex(32)
    env = {
        "BROADCASTER_API_KEYS": credentials.hash_key(admin),
        "BROADCASTER_TOKEN_SECRET": secret,
        "BROADCASTER_METRICS_KEY": metrics_key,
    }
    frontends = [start_frontend(redis_url, tmp_path, f"frontend-{i}", env) for i in (1, 2)]
    nginx = Nginx(find_nginx(), tmp_path / "nginx", free_port(), [fe.port or 0 for fe in frontends])
    sid = "logged-" + secrets.token_hex(4)
    viewer = mint_token(secret, read=[sid], ttl_seconds=600)
    other = mint_token(secret, read=[sid], sub="second", ttl_seconds=600)
    try:
        nginx.start()
        with httpx.Client(base_url=nginx.url, timeout=10) as c:
            bearer = {"authorization": f"Bearer {admin}"}
            assert c.post(
                f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer
            ).is_success
            with c.stream("GET", f"/v1/streams/{sid}/events", params={"token": viewer}) as r:
                assert r.status_code == 200, "the token reached the front-end"
            for query, status in (
                (f"offset=-1&token={viewer}", 200),
                (f"offset=-1&token={viewer}&token={other}", 200),
                # The front-end decodes %74oken to token: nginx redacts it as well.
                (f"Token={other}&offset=-1&%74oken={viewer}&TOKEN={other}", 200),
                (f"offset=-1&token={viewer}x", 401),
            ):
                assert c.get(f"/v1/stream/{sid}?{query}").status_code == status, query
            for path in ("/metrics", "//metrics", "/%6Detrics", "/v1/../metrics"):
                for headers in ({}, {"authorization": f"Bearer {metrics_key}"}):
                    r = c.get(nginx.url + path, headers=headers)  # the path as it is
                    assert r.status_code == 404, (path, r.text)
                    assert r.json()["error"] == "not_found" and "broadcaster_" not in r.text
        for fe in frontends:
            r = httpx.get(f"{fe.url}/metrics", headers={"authorization": f"Bearer {metrics_key}"})
            assert r.status_code == 200 and "broadcaster_sse_connections" in r.text
    finally:
        nginx.stop()
        for fe in frontends:
            fe.stop()
    log = (tmp_path / "nginx" / "access.log").read_text()
    lines = [line for line in log.splitlines() if "/v1/stream" in line]
    assert len(lines) >= 6, log
    for token in (viewer, other):
        assert token not in log and token.split(".")[2] not in log, log
    assert log.count("token=REDACTED") >= 4, log
    assert "?REDACTED " in log, "three tokens in one query: the whole query goes"
    assert "offset=-1&token=REDACTED&token=REDACTED" in log, log
    metrics = [row for row in nginx.requests() if "etrics" in row["uri"]]
    assert len(metrics) == 8 and all(row["upstream"] == "-" for row in metrics), metrics


# --- deploy/redis.conf: a memory limit that never evicts a stream ---

REDIS_CONF = ROOT / "deploy" / "redis.conf"
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}


def memory_problems(text: str) -> list[str]:
    """What is wrong with a redis.conf's memory settings for this project: it needs a
    ``maxmemory`` (else Redis grows until the kernel kills it) and ``noeviction`` (any
    other policy drops keys, streams among them, without a word)."""
    directives: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            directives[name.lower()] = value.strip()
    problems = []
    m = re.fullmatch(r"([0-9]+)([a-z]*)", directives.get("maxmemory", "").lower())
    if m is None or m[2] not in _UNITS or int(m[1]) * _UNITS[m[2]] == 0:
        problems.append(f"maxmemory must be set, got {directives.get('maxmemory')!r}")
    if directives.get("maxmemory-policy") != "noeviction":
        problems.append(
            f"maxmemory-policy must be noeviction, got {directives.get('maxmemory-policy')!r}"
        )
    return problems


def test_redis_conf_bounds_memory_and_never_evicts() -> None:
    text = REDIS_CONF.read_text()
    assert memory_problems(text) == []
    # the check can fail: without the limit, or with a policy that evicts
    assert memory_problems(text.replace("\nmaxmemory 1gb", "\n# maxmemory 1gb"))
    assert memory_problems(
        text.replace("maxmemory-policy noeviction", "maxmemory-policy allkeys-lru")
    )


# --- the observability profile (deploy/observability/) ---------------------------------

OBSERVABILITY_DIR = ROOT / "deploy" / "observability"


def observability_problems(compose: Doc) -> list[str]:
    """The profile's files exist and fit together: every file mounted from the project
    exists; Grafana's dashboard provider reads the folder dashboard.json is mounted in,
    its datasource has the uid the panels name; Prometheus's rule file is mounted where
    its config names it; it scrapes every front-end on its port and every worker on its
    WORKER_METRICS_PORT, which the workers bind beyond loopback."""
    problems = []
    services = compose["services"]
    profile = {n: s for n, s in services.items() if "observability" in s.get("profiles", [])}
    if set(profile) != {"prometheus", "grafana", "jaeger"}:
        problems.append(f"observability profile: {sorted(profile)}")
    mounts: dict[str, dict[str, str]] = {}
    for name, s in profile.items():
        for volume in s.get("volumes", []):
            source, _, rest = str(volume).partition(":")
            target = rest.partition(":")[0]
            mounts.setdefault(name, {})[target] = source
            if source.startswith("./") and not (ROOT / source).exists():
                problems.append(f"{name}: {source} does not exist")
    grafana = mounts.get("grafana", {})
    provider = yaml.safe_load(
        (OBSERVABILITY_DIR / "grafana/provisioning/dashboards/broadcaster.yml").read_text()
    )
    folder = provider["providers"][0]["options"]["path"]
    if not any(t.startswith(folder + "/") and s.endswith(".json") for t, s in grafana.items()):
        problems.append(f"grafana: no dashboard mounted in {folder}")
    datasource = yaml.safe_load(
        (OBSERVABILITY_DIR / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    board = json.loads((OBSERVABILITY_DIR / "dashboard.json").read_text())
    for panel in board["panels"]:
        uids = {panel["datasource"]["uid"]} | {t["datasource"]["uid"] for t in panel["targets"]}
        if uids != {datasource["uid"]} or not all(t.get("expr") for t in panel["targets"]):
            problems.append(f"panel {panel['title']!r}: datasource {uids} or an empty query")
    prometheus = mounts.get("prometheus", {})
    config_path = next((t for t in prometheus if t.endswith("prometheus.yml")), "")
    config = yaml.safe_load((ROOT / prometheus.get(config_path, "missing")).read_text())
    for rule_file in config["rule_files"]:
        if str(Path(config_path).parent / rule_file) not in prometheus:
            problems.append(f"prometheus: rule file {rule_file} is not mounted")
    scraped = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    for name, s in services.items():
        command, env = s.get("command", []), s.get("environment", {})
        if command[2:4] == ["broadcaster", "serve"] and f"{name}:8000" not in scraped:
            problems.append(f"prometheus does not scrape {name}:8000")
        if command[2:4] == ["worker", "run"]:
            port = compose_default(env.get("WORKER_METRICS_PORT", "0"))
            if f"{name}:{port}" not in scraped or env.get("WORKER_METRICS_HOST") != "0.0.0.0":
                problems.append(f"prometheus cannot scrape {name} (port {port})")
    return problems


def test_the_observability_profile_fits_together() -> None:
    assert observability_problems(load_compose()) == []


def test_a_broken_observability_profile_fails() -> None:
    broken = copy.deepcopy(load_compose())
    broken["services"]["grafana"]["volumes"][1] = "./deploy/observability/nope.json:/x.json:ro"
    broken["services"]["prometheus"]["volumes"].pop(1)  # the rules
    broken["services"]["worker-2"]["environment"]["WORKER_METRICS_PORT"] = "9200"
    problems = observability_problems(broken)
    assert any("nope.json does not exist" in p for p in problems), problems
    assert any("no dashboard mounted" in p for p in problems), problems
    assert any("rule file alerts.yml is not mounted" in p for p in problems), problems
    assert any("cannot scrape worker-2" in p for p in problems), problems


# --- the client's address behind the proxy -------------------------------------------


def _networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``BROADCASTER_TRUSTED_PROXIES`` as networks; raises on anything else (``*``, a
    name, an empty entry): a shipped value trusts exactly some addresses."""
    return [ipaddress.ip_network(entry.strip()) for entry in value.split(",")]


def trusted_proxy_problems(compose: Doc, nginx_conf: str, frontend: Doc) -> list[str]:
    """Each shipped front-end trusts exactly its proxy's X-Forwarded-For: compose's the
    nginx address it fixes, nothing wider; the Kubernetes one a range, at the index the
    README's overlay patches; nginx appends the client to X-Forwarded-For."""
    problems = []
    services = compose["services"]
    nginx_networks = services["nginx"].get("networks", {})
    nginx_ip = (nginx_networks.get("default") or {}).get("ipv4_address")
    if nginx_ip is None:
        problems.append("compose: nginx has no fixed ipv4_address to trust")
    for name, service in services.items():
        if "serve" not in service.get("command", []):
            continue
        env = service.get("environment", {})
        if "FORWARDED_ALLOW_IPS" in env:
            problems.append(f"{name}: FORWARDED_ALLOW_IPS (uvicorn's) set: it may trust any peer")
        value = env.get("BROADCASTER_TRUSTED_PROXIES")
        try:
            trusted = _networks(str(value)) if value else []
        except ValueError:
            trusted = []
        if not trusted or nginx_ip is None:
            problems.append(f"{name}: BROADCASTER_TRUSTED_PROXIES is {value!r}, not nginx's")
        elif trusted != [ipaddress.ip_network(nginx_ip)]:
            problems.append(f"{name}: trusts {value}, not exactly nginx ({nginx_ip})")
    subnets = [
        c["subnet"]
        for c in compose.get("networks", {}).get("default", {}).get("ipam", {}).get("config", [])
    ]
    if nginx_ip and not any(
        ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(s) for s in subnets
    ):
        problems.append(f"compose: nginx's {nginx_ip} is in no subnet of the network")
    if not re.search(r"proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;", nginx_conf):
        problems.append("nginx.conf: X-Forwarded-For does not carry $remote_addr")
    env = frontend["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    if "BROADCASTER_TRUSTED_PROXIES" not in names:
        problems.append("frontend.yaml: no BROADCASTER_TRUSTED_PROXIES")
    else:
        at = names.index("BROADCASTER_TRUSTED_PROXIES")
        patched = f"/spec/template/spec/containers/0/env/{at}/value"
        if patched not in K8S_README.read_text():
            problems.append(f"README.md's overlay does not patch {patched}")
        try:
            _networks(env[at].get("value", ""))
        except ValueError:
            problems.append(f"frontend.yaml: BROADCASTER_TRUSTED_PROXIES {env[at]!r}")
    return problems


def test_every_shipped_front_end_trusts_exactly_its_proxy() -> None:
    compose, conf = load_compose(), NGINX_CONF.read_text()
    frontend = find("Deployment", "frontend")
    assert trusted_proxy_problems(compose, conf, frontend) == []
    # Each check can fail: a compose front-end trusting any peer, nginx not fixed,
    # nginx passing the client's header on as it came, the manifest without the setting.
    loose = copy.deepcopy(compose)
    loose["services"]["frontend-1"]["environment"]["BROADCASTER_TRUSTED_PROXIES"] = "*"
    wide = copy.deepcopy(compose)
    wide["services"]["frontend-2"]["environment"]["BROADCASTER_TRUSTED_PROXIES"] = "172.29.86.0/24"
    unfixed = copy.deepcopy(compose)
    del unfixed["services"]["nginx"]["networks"]
    bare = copy.deepcopy(frontend)
    env = bare["spec"]["template"]["spec"]["containers"][0]["env"]
    env[:] = [e for e in env if e["name"] != "BROADCASTER_TRUSTED_PROXIES"]
    passed_on = conf.replace("$proxy_add_x_forwarded_for;", "$http_x_forwarded_for;")
    assert (
        "frontend-1: BROADCASTER_TRUSTED_PROXIES is '*'"
        in trusted_proxy_problems(loose, conf, frontend)[0]
    )
    assert any("not exactly nginx" in p for p in trusted_proxy_problems(wide, conf, frontend))
    assert "compose: nginx has no fixed ipv4_address to trust" in trusted_proxy_problems(
        unfixed, conf, frontend
    )
    assert trusted_proxy_problems(compose, passed_on, frontend) == [
        "nginx.conf: X-Forwarded-For does not carry $remote_addr"
    ]
    assert trusted_proxy_problems(compose, conf, bare) == [
        "frontend.yaml: no BROADCASTER_TRUSTED_PROXIES"
    ]
