"""`signstream kiosk`: the kiosk page full screen on this machine.

Starts `signstream serve` unless a server already answers /healthz at the URL, then opens Chromium
in kiosk mode on client/kiosk.html with the given parameters, and stops the server it started when
Chromium exits (or on Ctrl-C).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from server.config import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Loopback candidates for a local server (the default loopback_only config needs them); autoplay.
CHROMIUM_FLAGS = ["--kiosk", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
                  "--allow-loopback-in-peer-connection", "--disable-background-networking", "--disable-sync",
                  "--disable-component-update"]


def kiosk_url(server: str, lang: str | None = None, channel: str | None = None, bg: str | None = None,
              captions: bool = True) -> str:
    query = {k: v for k, v in (("lang", lang), ("channel", channel), ("bg", bg and bg.removeprefix("#"))) if v}
    if not captions:
        query["captions"] = "0"
    return f"{server.rstrip('/')}/kiosk" + (f"?{urlencode(query)}" if query else "")


def answering(server: str, timeout: float = 1.0) -> bool:
    """Whether a SignStream server answers /healthz at `server`."""
    try:
        with urllib.request.urlopen(f"{server.rstrip('/')}/healthz", timeout=timeout) as r:
            return r.status == 200 and "status" in json.loads(r.read())
    except (OSError, ValueError):
        return False


def start_server(server: str, config: str | None, wait_s: float = 60.0) -> subprocess.Popen:
    """`signstream serve` on the host and port of `server`; returns once it answers /healthz."""
    parts = urlsplit(server)
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", parts.hostname or "127.0.0.1",
           "--port", str(parts.port or 80)]
    if config:
        cmd += ["--config", config]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT)
    deadline = time.monotonic() + wait_s
    while not answering(server):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"the server did not start at {server} (exit {proc.wait()})")
        time.sleep(0.2)
    return proc


def run_kiosk(server: str, url: str, config: str | None, browser: bool) -> int:
    """Ensure the server, then show `url` full screen until Chromium exits (or, without a browser,
    until Ctrl-C when this started the server). Returns an exit status."""
    proc = None if answering(server) else start_server(server, config)
    # A service manager stops the kiosk with SIGTERM: end as on Ctrl-C, so the server it started stops
    # too instead of living on as an orphan.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(url, flush=True)
        if browser:
            return subprocess.call([str(CHROMIUM), *CHROMIUM_FLAGS, url])
        if proc is not None:
            return proc.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
