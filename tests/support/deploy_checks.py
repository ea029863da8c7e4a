"""The checks of what the deployment files say, each a function from a file's content to
the list of its problems (empty when right), so that a test can run one on the shipped
file and on a broken copy: probes and grace periods, secrets reaching the front-ends,
exposure, nginx's routing and logging, the Ingress, redis.conf's memory, the
observability profile and the trusted proxies."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import yaml

from broadcaster.core.settings import variable_of
from broadcaster.http.settings import Settings
from tests.support.deploy_files import (
    ACCESS_CONTROL_ENV,
    FRONTEND_DRAIN_SECONDS,
    K8S_README,
    KEEPALIVE_SECONDS,
    ROOT,
    WORKER_HANDBACK_SECONDS,
    Doc,
    k8s_documents,
)

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
        ("chat SSE", r"location ~ \^/v1/chat\(.*?/\(stream\|events\)\)\?\$ \{(.*?)\n        \}"),
        ("Durable Streams", r"location \^~ /v1/stream/ \{(.*?)\n        \}"),
        ("many streams", r"location ~ \^/v1\(/chats\)\?/events\$ \{(.*?)\n        \}"),
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
