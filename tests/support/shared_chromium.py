"""One headless Chromium for a test process, shared by its browser scripts.

Started when a browser script first asks for it, it is stopped (by pid, its profile and
the folder of its singleton socket removed) when a test module that did not use it ends,
and at the end of the session. Each script connects to it over the DevTools protocol
(playwright-core's ``connectOverCDP``) and works in a browser context of its own, which
shares no cookies or storage with another and goes when the script's connection closes.
A browser that died is started again at the next script's request."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ENV = "BROADCASTER_TEST_CHROMIUM"
"""The variable that hands a browser script the shared browser's WebSocket address."""

CHROMIUM = Path("/usr/lib/chromium/chromium-headless-shell")
"""Debian's chromium-headless-shell: Chromium's engine without the browser's window layer
(the headless mode playwright-core launches by default), which runs the tests' pages for
less CPU than ``chromium --headless`` (docs/testing.md has the figures). The binary itself, not
``/usr/bin``'s script, which runs it as a child: a SIGTERM reaches the browser."""
START_SECONDS = 30.0

# playwright-core's own switches for a headless launch (its chromiumSwitches and
# headless arguments), then the scripts' own: the browser runs as each script's launch did.
SWITCHES = (
    "--disable-field-trial-config",
    "--disable-background-networking",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-back-forward-cache",
    "--disable-breakpad",
    "--disable-component-extensions-with-background-pages",
    "--disable-component-update",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-features=AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,"
    "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,"
    "ThirdPartyStoragePartitioning,AvoidCorsURLLoaderRestartOnRedirect,OptimizationHints,"
    "NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch",
    # Screenshots of a tab that is not in front (its compositor makes no frames otherwise).
    "--enable-features=CDPScreenshotNewSurface,SkipListAccountsWithoutGaiaCookies",
    "--allow-pre-commit-input",
    "--disable-hang-monitor",
    "--disable-ipc-flooding-protection",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--disable-renderer-backgrounding",
    "--force-color-profile=srgb",
    "--metrics-recording-only",
    "--no-first-run",
    "--password-store=basic",
    "--use-mock-keychain",
    "--no-service-autorun",
    "--disable-search-engine-choice-screen",
    "--disable-sync",
    "--headless",
    "--hide-scrollbars",
    "--mute-audio",
    "--blink-settings=primaryHoverType=2,availableHoverTypes=2,"
    "primaryPointerType=4,availablePointerTypes=4",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-startup-window",
)


class SharedChromium:
    """The test process's Chromium: ``env()`` starts it if need be and says where it is."""

    def __init__(self) -> None:
        self.popen: subprocess.Popen[bytes] | None = None
        self.home: Path | None = None  # the profile, the log and nothing else
        self.socket_dir: Path | None = None
        self.endpoint = ""
        self.used = False  # asked for since the last module ended
        self.lock = threading.Lock()

    def env(self) -> dict[str, str]:
        """The variables a browser script needs to use the shared browser."""
        with self.lock:
            self.used = True
            if self.popen is None or self.popen.poll() is not None:
                self._stop()  # one that died: what it left
                self._start()
            return {ENV: self.endpoint}

    def module_ended(self) -> None:
        """A test module ended: a browser it did not use is stopped (an idle one still
        costs a little CPU; the next module that needs one starts it again)."""
        with self.lock:
            if not self.used:
                self._stop()
            self.used = False

    def stop(self) -> None:
        with self.lock:
            self._stop()

    def _start(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="broadcaster-chromium-shared-"))
        profile = self.home / "profile"
        args = [str(CHROMIUM), *SWITCHES, "--remote-debugging-port=0", f"--user-data-dir={profile}"]
        with open(self.home / "chromium.log", "wb") as log:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.endpoint = self._wait_for_endpoint(profile)
        self.socket_dir = chromium_socket_dir(profile)

    def _wait_for_endpoint(self, profile: Path) -> str:
        """The browser's WebSocket address, from the file it writes once it listens."""
        assert self.popen is not None and self.home is not None
        deadline = time.monotonic() + START_SECONDS
        port_file = profile / "DevToolsActivePort"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                port, path = port_file.read_text().split()
                return f"ws://127.0.0.1:{int(port)}{path}"
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        code = self.popen.poll()
        log = (self.home / "chromium.log").read_text(errors="replace")[-3000:]
        self._stop()
        said = f"exited with {code}" if code is not None else f"did not listen in {START_SECONDS} s"
        raise RuntimeError(f"the shared Chromium {said}; its log:\n{log}")

    def _stop(self) -> None:
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(5)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
            self.popen = None
        if self.home is not None:
            for pid in pids_using(str(self.home)):  # its children, should any outlive it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None
        self.endpoint = ""


def pids_using(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (a private profile folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def chromium_socket_dir(profile: Path) -> Path | None:
    """The folder Chromium made in the temporary directory for ``profile``'s singleton
    socket (the profile's ``SingletonSocket`` links into it), or None. Chromium does not
    always remove it when it exits, so whoever started the browser does."""
    with contextlib.suppress(OSError):
        folder = Path(os.readlink(profile / "SingletonSocket")).parent
        if folder.name.startswith("org.chromium.Chromium."):
            return folder
    return None


SHARED = SharedChromium()
