"""The deployment files, loaded and validated against their schemas: where each lives,
the figures they must agree with (drain, hand-back and keep-alive seconds), the Compose
Specification and the Kubernetes schemas."""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
K8S_DIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
SECRET_EXAMPLE = K8S_DIR / "secret.example.yaml"
K8S_README = K8S_DIR / "README.md"

# The front-end exits within 10 s of SIGTERM (docs/api/index.md, "Operations").
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
