"""Benchmarks of the live server against a real server process on loopback; prints JSON.

  latency:  final caption sent → its first pose frame received (p50/p95)
  sessions: N pose-only sessions held at real time for S seconds (each 25 ± 1 frames/s?)
  signing:  N sessions each sent one long caption at once (N units signed at the same time, the
            non-manual track on every frame), frames counted over S seconds (each 25 ± 1 frames/s?)
  soak:     captions into 10 sessions for S seconds → units without a status; server RSS growth

python bench/live.py [--latency 100] [--sessions 200 --session-seconds 60] [--soak-seconds 1800]
                     [--signing 64 --signing-seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.client_cli import Collected, LiveClient, collect  # noqa: E402
from server.protocol import PoseFrame  # noqa: E402

WORDS = "the cat sat on a warm mat while we talked about good news from home and work today".split()
LONG = " ".join(WORDS + WORDS[::-1]) + "."  # 34 words: longer than the counting window when signed


def start_server(max_sessions: int, **settings: object) -> tuple[subprocess.Popen, str]:
    """A real `signstream serve` on 127.0.0.1 with the shipped config, `max_sessions` and any other
    top-level keys (e.g. rest_transition_s=0.2) replaced; returns the process and its URL."""
    base = (ROOT / "config.toml").read_text()
    # Loopback only, bigger limits for the load; everything else as shipped.
    base = re.sub(r"(?m)^host = .*$", 'host = "127.0.0.1"', base)
    for key, value in {"max_sessions": max_sessions, **settings}.items():
        base = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", base)
    cfg = Path(tempfile.mkdtemp()) / "config.toml"
    cfg.write_text(base)
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--config", str(cfg), "--port", "0"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            os.set_blocking(proc.stderr.fileno(), False)
            return proc, m.group(1)
    raise RuntimeError("the server did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def latency(url: str, n: int, words: list[str] | None = None, language: str | None = None,
                  rng: random.Random | None = None) -> dict:
    """Caption sent → first pose frame of its unit, n captions of two random `words` one at a time."""
    out = []
    rng = rng or random.Random()
    async with aiohttp.ClientSession() as http:
        client = await LiveClient.connect(http, url, language=language, fmt="binary", idle_frames=True)
        for i in range(n):
            text = " ".join(rng.sample(words or WORDS, 2)) + "."
            t0 = time.perf_counter()
            await client.caption(f"l{i}", text, final=True)
            unit = None
            while True:
                msg = await client.recv(timeout=30)
                if isinstance(msg, dict) and msg["type"] == "unit" and unit is None:
                    unit = msg["unit"]
                elif isinstance(msg, PoseFrame) and unit is not None and msg.unit == unit:
                    out.append((time.perf_counter() - t0) * 1000)
                    break
            while not (isinstance(msg, dict) and msg["type"] == "unit_status"):  # let it finish: one at a time
                msg = await client.recv(timeout=30)
            pause = time.monotonic() + rng.uniform(0.0, 1.0)  # from rest, hold or easing back
            while time.monotonic() < pause:
                await client.recv(timeout=30)
        await client.close()
    a = np.array(out)
    return {"n": n, "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "max_ms": round(float(a.max()), 2), "target_p50_ms": 30}


async def _client(url: str, frames: list[tuple[float, int]], opened: asyncio.Event, go: asyncio.Event,
                  stop: asyncio.Event, caption: str | None) -> None:
    async with aiohttp.ClientSession() as http:
        client = await LiveClient.connect(http, url, fmt="binary", idle_frames=True)
        opened.set()
        await go.wait()
        if caption:
            await client.caption("long", caption, final=True)
        async for msg in client.messages():
            if isinstance(msg, PoseFrame):
                if stop.is_set():
                    break
                frames.append((time.monotonic(), msg.unit))
        await client.close()


async def _count(url: str, n: int, seconds: float, caption: str | None, start_s: float) -> tuple[list[list[int]], dict]:
    """n sessions, each sent `caption` at the same moment (if any): the units of the frames each
    received over `seconds`, counted from `start_s` after that moment, and their frames/s."""
    frames: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    stop, go = asyncio.Event(), asyncio.Event()
    opened = [asyncio.Event() for _ in range(n)]
    tasks = [asyncio.create_task(_client(url, frames[i], opened[i], go, stop, caption)) for i in range(n)]
    await asyncio.gather(*(o.wait() for o in opened))
    await asyncio.sleep(2.0)  # settle
    go.set()
    await asyncio.sleep(start_s)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    t1 = time.monotonic()
    stop.set()
    await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    window = [[u for s, u in f if t0 <= s < t1] for f in frames]
    rates = np.array([len(w) / (t1 - t0) for w in window])
    ok = int(((rates >= 24) & (rates <= 26)).sum())
    return window, {"sessions": n, "seconds": round(t1 - t0, 1), "held_at_25pm1": ok, "all_held": ok == n,
                    "fps_min": round(float(rates.min()), 2), "fps_median": round(float(np.median(rates)), 2),
                    "fps_max": round(float(rates.max()), 2)}


async def sessions(url: str, n: int, seconds: float) -> dict:
    _, result = await _count(url, n, seconds, None, 0.0)
    return {**result, "target": 200}


async def signing(url: str, n: int, seconds: float) -> dict:
    """n sessions, each sent LONG at the same moment: frames/s per session while all n sign."""
    window, result = await _count(url, n, seconds, LONG, 1.0)  # 1 s: the units committed and started
    signed = np.array([sum(u != 0 for u in w) / max(1, len(w)) for w in window])  # share of frames of a unit
    return {**result, "signing_share_min": round(float(signed.min()), 3),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


async def _soak_session(url: str, seconds: float, rng: random.Random, seen: Collected) -> None:
    async with aiohttp.ClientSession() as http:
        client = await LiveClient.connect(http, url, fmt="binary", idle_frames=True)
        sent_all = asyncio.Event()

        async def talk() -> None:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                i += 1
                words = rng.sample(WORDS, rng.randint(2, 6))
                for k in range(1, len(words)):  # a live captioner: partials, sometimes a correction
                    await client.caption(f"s{i}", " ".join(words[:k]), final=False)
                    await asyncio.sleep(rng.uniform(0.1, 0.4))
                if rng.random() < 0.2:
                    words[rng.randrange(len(words))] = rng.choice(WORDS)
                await client.caption(f"s{i}", " ".join(words) + ".", final=True)
                await asyncio.sleep(rng.uniform(0.2, 1.5))
            sent_all.set()

        sender = asyncio.create_task(talk())
        await collect(client, sent_all, seen)
        await sender
        await client.close()


async def soak(url: str, pid: int, seconds: float) -> dict:
    seens = [Collected() for _ in range(10)]
    rss: list[tuple[float, float]] = []

    async def sample() -> None:
        t0 = time.monotonic()
        while True:
            rss.append((time.monotonic() - t0, rss_mb(pid)))
            await asyncio.sleep(min(10.0, seconds / 30))

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(_soak_session(url, seconds, random.Random(i), s) for i, s in enumerate(seens)))
    sampler.cancel()
    warm = [r for t, r in rss if t >= min(60.0, seconds * 0.2)]
    units = sum(len(s.units) for s in seens)
    missing = sum(len(s.open_units) for s in seens)
    statuses: dict[str, int] = {}
    for s in seens:
        for st in s.statuses.values():
            statuses[st["status"]] = statuses.get(st["status"], 0) + 1
    growth = (warm[-1] - warm[0]) / warm[0] * 100 if len(warm) >= 2 else float("nan")
    return {"seconds": seconds, "sessions": 10, "units": units, "units_without_status": missing,
            "statuses": statuses, "rss_mb_after_warmup": round(warm[0], 1) if warm else None,
            "rss_mb_end": round(rss[-1][1], 1), "rss_growth_pct": round(growth, 2), "target_growth_pct": 10}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=int, default=100, help="captions for the latency run (0: skip)")
    ap.add_argument("--sessions", type=int, default=200, help="pose-only sessions (0: skip)")
    ap.add_argument("--session-seconds", type=float, default=60.0)
    ap.add_argument("--soak-seconds", type=float, default=1800.0, help="soak duration (0: skip)")
    ap.add_argument("--signing", type=int, default=0, help="sessions each signing a long caption at once (0: skip)")
    ap.add_argument("--signing-seconds", type=float, default=8.0)
    args = ap.parse_args()
    proc, url = start_server(max(args.sessions, args.signing, 20) + 10)
    result: dict = {"server": url, "cpus": os.cpu_count()}
    try:
        if args.latency:
            result["latency"] = await latency(url, args.latency)
        if args.sessions:
            result["sessions"] = await sessions(url, args.sessions, args.session_seconds)
        if args.signing:
            result["signing"] = await signing(url, args.signing, args.signing_seconds)
        if args.soak_seconds:
            result["soak"] = await soak(url, proc.pid, args.soak_seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
