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
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from broadcaster import mint_token
from broadcaster.auth import credentials
from broadcaster.auth.credentials import parse_api_keys
from broadcaster.core.embedded import free_port
from tests.support.deploy_checks import (
    HASH_BY,
    REDIS_CONF,
    compose_problems,
    exposure_problems,
    frontend_problems,
    ingress_problems,
    memory_problems,
    nginx_problems,
    observability_problems,
    passed_through_problems,
    pod_container,
    readme_ingresses,
    secret_env,
    trusted_proxy_problems,
    worker_problems,
)
from tests.support.deploy_files import (
    COMPOSE_FILE,
    K8S_DIR,
    K8S_VERSIONS,
    KUSTOMIZATION,
    NGINX_CONF,
    ROOT,
    SECRET_EXAMPLE,
    Doc,
    check_jsonschema_cli,
    compose_schema_errors,
    find,
    k8s_documents,
    k8s_files,
    k8s_schema_errors,
    load_compose,
    load_documents,
)
from tests.support.nginx import Nginx, find_nginx, nginx_conf_for_test
from tests.support.procs import start_frontend

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
    assert "**/node_modules" in allowed, "the examples' npm packages stay out of the image"


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


def test_redis_conf_bounds_memory_and_never_evicts() -> None:
    text = REDIS_CONF.read_text()
    assert memory_problems(text) == []
    # the check can fail: without the limit, or with a policy that evicts
    assert memory_problems(text.replace("\nmaxmemory 1gb", "\n# maxmemory 1gb"))
    assert memory_problems(
        text.replace("maxmemory-policy noeviction", "maxmemory-policy allkeys-lru")
    )


# --- the observability profile (deploy/observability/) ---------------------------------


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
