"""What the Vercel AI SDK tests need: the folder of their Node scripts and npm packages,
and what is missing to run them (each a sentence saying how to install it)."""

from __future__ import annotations

import shutil
import subprocess

from tests.support.procs import ROOT

AISDK_DIR = ROOT / "tests" / "clients" / "aisdk"


def missing_prerequisites() -> list[str]:
    missing = []
    node = shutil.which("node")
    if node is None:
        missing.append("node is missing: install Node.js >= 20 with npm")
    else:
        run = subprocess.run([node, "--version"], check=False, capture_output=True, text=True)
        major = run.stdout.strip().lstrip("v").split(".")[0]
        if not major.isdigit() or int(major) < 20:
            missing.append(f"node is {run.stdout.strip() or 'unusable'}: install Node.js >= 20")
    if not (AISDK_DIR / "node_modules" / "ai" / "package.json").is_file():
        missing.append(
            "tests/clients/aisdk/node_modules is missing: run npm ci --prefix tests/clients/aisdk"
            " (make test does this)"
        )
    return missing
