"""The TypeScript client package (clients/js): what its tests need, and its build, made
once however many test processes ask (a file lock; rebuilt when a source is newer than
the build)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from tests.support.procs import ROOT

PACKAGE = ROOT / "clients" / "js"
DIST = PACKAGE / "dist" / "index.js"
INSTALL = "run npm ci --prefix clients/js (make test does this)"


def missing_prerequisites() -> list[str]:
    """What is missing to build and test the package, each a sentence."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node is missing: install Node.js >= 20 with npm")
    if not (PACKAGE / "node_modules" / "esbuild").is_dir():
        missing.append(f"clients/js/node_modules is missing: {INSTALL}")
    return missing


def _newest_source() -> float:
    files = [*PACKAGE.glob("src/**/*.ts"), PACKAGE / "build.mjs", PACKAGE / "package.json"]
    return max(f.stat().st_mtime for f in files)


def build(force: bool = False) -> str:
    """The package's build (``node build.mjs`` in clients/js), unless it is newer than its
    sources (``force``: whatever it is); what the build printed (its size line), or ""
    when it was up to date."""
    lock_path = PACKAGE / "node_modules" / ".build.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and DIST.is_file() and DIST.stat().st_mtime > _newest_source():
            return ""
        run = subprocess.run(
            ["node", "build.mjs"],
            cwd=PACKAGE,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert run.returncode == 0, f"the package's build failed:\n{run.stdout}\n{run.stderr}"
        return run.stdout


def npm_script(name: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``npm run <name>`` in clients/js, to its end."""
    return subprocess.run(
        ["npm", "run", "--silent", name],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def built() -> Path:
    """The built module (built first if it is not up to date)."""
    build()
    return DIST
