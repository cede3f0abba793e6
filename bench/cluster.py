"""Cluster mode on one machine: a real redis-server and N real `signstream serve` processes sharing
channels through it (server/cluster/, docs/cluster.md); prints JSON.

  delivery:  light viewers (rotations over /ws, binary) spread over the processes, watching one
             channel whose owner signs captions: frames each viewer got of those the owner sent
  bus hop:   per frame, arrival at a viewer on another process minus arrival at a viewer on the
             owner (the added latency of the hop through Redis), p50 / p95
  held:      the largest total of viewers held at real time (≥ 98 % of frames) over the steps
  failover:  SIGKILL of the owner → the first frame of the next caption at a viewer elsewhere

python bench/cluster.py [--processes 3] [--viewers 60,150,300] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.client_cli import LiveClient  # noqa: E402

CAPTIONS = ["good morning and welcome to the news.", "the weather today is warm.",
            "thank you for watching.", "we talked about work and home."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int) -> subprocess.Popen:
    """redis-server on 127.0.0.1:port, nothing saved; returns once it answers."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def start_server(workdir: Path, redis_port: int, name: str, lease_ttl_s: float = 3.0,
                 max_sessions: int = 256) -> tuple[subprocess.Popen, str]:
    """`signstream serve` with the shipped config in cluster mode (its log in workdir/NAME.log);
    returns the process and its URL once it listens."""
    text = (ROOT / "config.toml").read_text()
    for key, value in {"host": '"127.0.0.1"', "max_sessions": max_sessions,
                       "redis": f'"redis://127.0.0.1:{redis_port}/0"', "lease_ttl_s": lease_ttl_s,
                       "process": f'"{name}"'}.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
    cfg = workdir / f"{name}.toml"
    cfg.write_text(text)
    log = workdir / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--config", str(cfg), "--port", "0"],
                                cwd=ROOT, stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"signstream serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("signstream serve did not start")
