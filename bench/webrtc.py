"""Benchmark of WebRTC viewers against a real server process on 127.0.0.1; prints JSON.

  browser:  a caption typed into the page's text box in headless Chromium, Enter → (a) the unit
            shown on the page, (b) the first video frame there that differs from the rest picture
            (mean |ΔRGB| > 1 on a 64×64 copy), (c) the first that visibly moves (> 8); p50/p95 ms
  sessions: how many 512×512 25 fps viewers, each its own session, are held without dropped
            frames (every viewer decodes ≥ 98 % of the frames over --seconds), trying 1, 2, 3 …;
            twice: at rest, and signing (a long caption each, so every stream draws a new pose
            every frame; held also needs the renders to draw ≥ 98 % of the poses, from /metrics)
  channel:  the same for N viewers of one channel (one render, one encode), for each N of --channel
  cpu:      server process CPU time / wall time / streams, for each of the runs above

Viewers are aiortc peers in this process (127.0.0.1 only). The browser part needs /usr/bin/chromium.

python bench/webrtc.py [--captions 10] [--seconds 8] [--max-sessions 6] [--channel 10 20 30] [--rest-transition-s 0.4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live import WORDS, start_server  # noqa: E402
from server.transports.webrtc import Viewer  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

FPS = 25
_HELD = 0.98  # a viewer decoding this share of the frames counts as holding the rate

# In the page: on every presented video frame (requestVideoFrameCallback) compare it with the
# picture before Enter; record the time from the form's submit to the first changed / moved frame.
_PROBE = """() => {
  const v = document.getElementById('avatar'), c = document.createElement('canvas');
  c.width = c.height = 64;
  const g = c.getContext('2d', {willReadFrequently: true});
  const L = window.__lat = {mark: null, rest: null, unit: [], changed: [], moved: [], phase: 0};
  const snap = () => { g.drawImage(v, 0, 0, 64, 64); return g.getImageData(0, 0, 64, 64).data; };
  const diff = (a, b) => { let s = 0; for (let i = 0; i < a.length; i += 4)
    s += Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]); return s / (a.length * 0.75); };
  const onFrame = (now) => {
    const img = snap();
    if (L.mark === null) L.rest = img;
    else { const d = diff(img, L.rest);
      if (L.phase === 0 && d > 1) { L.changed.push(now - L.mark); L.phase = 1; }
      if (L.phase === 1 && d > 8) { L.moved.push(now - L.mark); L.mark = null; L.phase = 0; } }
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
  document.getElementById('form').addEventListener('submit', () => { L.mark = performance.now(); }, true);
  new MutationObserver(() => { if (L.mark !== null) L.unit.push(performance.now() - L.mark); })
    .observe(document.getElementById('committed'), {childList: true});
}"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pcts(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1)} if values else {"n": 0}


async def browser_latency(url: str, captions: int) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url + "/")
            await page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30000)
            await page.evaluate(_PROBE)
            for i in range(captions):
                await asyncio.sleep(0.5)  # rest frames before the caption
                await page.type("#text", " ".join(WORDS[i % 10:i % 10 + 2]) + ".")
                await page.keyboard.press("Enter")
                await page.wait_for_function(f"document.querySelectorAll('#statuses li').length > {i}", timeout=30000)
                await asyncio.sleep(1.2)  # back to rest (hold + ease)
            return await page.evaluate("window.__lat")
        finally:
            await browser.close()


async def watch(track, seconds: float) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        await asyncio.wait_for(track.recv(), 5)
        n += 1
    return n


async def video_stats(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's render counters (summed over the open video streams) from /metrics."""
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    return {k: float(re.search(rf"^signstream_video_{k} (\S+)$", text, re.M).group(1))
            for k in ("drawn", "dropped", "skipped")}


async def hold(url: str, pid: int, n: int, seconds: float, channel: str | None, signing: bool) -> dict:
    """n viewers (own sessions, or one channel), at rest or signing all the while: whether every
    viewer decoded ≥ 98 % of the frames and, signing, whether the renders drew ≥ 98 % of the poses."""
    async with aiohttp.ClientSession() as http:
        viewers = []
        try:
            for _ in range(n):
                viewer, status, body = await Viewer.offer(http, url, **({"channel": channel} if channel else {}))
                assert status == 200, body
                viewers.append(viewer)
            tracks = [await asyncio.wait_for(v.video, 20) for v in viewers]
            if signing:  # a long caption for every stream: each draws a new pose every frame
                text = " ".join(WORDS[i % len(WORDS)] for i in range(40)) + "."
                for v in viewers[:1] if channel else viewers:
                    await v.send({"type": "caption", "id": "bench", "text": text, "final": True})
            await asyncio.gather(*(watch(t, 1.5) for t in tracks))  # warm up (and past the ease from rest)
            c0, t0, s0 = cpu_s(pid), time.perf_counter(), await video_stats(http, url)
            counts = await asyncio.gather(*(watch(t, seconds) for t in tracks))
            wall = time.perf_counter() - t0
            cpu = cpu_s(pid) - c0
            s1 = await video_stats(http, url)
        finally:
            for v in viewers:
                await v.close()
    rates = [c / wall for c in counts]
    streams = 1 if channel else n
    drawn, dropped = s1["drawn"] - s0["drawn"], s1["dropped"] - s0["dropped"]
    drawn_share = drawn / (drawn + dropped) if drawn + dropped else 1.0
    held = min(rates) >= _HELD * FPS and (not signing or drawn_share >= _HELD)
    return {"viewers": n, "signing": signing, "held": held, "fps_min": round(min(rates), 2),
            "fps_mean": round(float(np.mean(rates)), 2), "poses_drawn_share": round(drawn_share, 3),
            "server_cpu_per_s": round(cpu / wall, 3),
            "server_cpu_per_stream": round(cpu / wall / streams, 3), "server_cpu_per_viewer": round(cpu / wall / n, 3)}


async def main(args: argparse.Namespace) -> dict:
    proc, url = start_server(512, **({} if args.rest_transition_s is None else {"rest_transition_s": args.rest_transition_s}))
    out: dict = {"rest_transition_s": args.rest_transition_s}
    try:
        if args.captions and CHROMIUM.exists():
            lat = await browser_latency(url, args.captions)
            out["browser_enter_to_unit_shown_ms"] = pcts(lat["unit"])
            out["browser_enter_to_first_changed_frame_ms"] = pcts(lat["changed"])
            out["browser_enter_to_visible_motion_ms"] = pcts(lat["moved"])
        for signing in (False, True):
            key = "signing" if signing else "rest"
            sessions = []
            for n in range(1, args.max_sessions + 1):
                sessions.append(await hold(url, proc.pid, n, args.seconds, None, signing))
                if not sessions[-1]["held"]:
                    break
            out[f"sessions_{key}"] = sessions
            out[f"sessions_held_{key}"] = max([s["viewers"] for s in sessions if s["held"]], default=0)
            out[f"channel_{key}"] = [await hold(url, proc.pid, n, args.seconds, "bench", signing) for n in args.channel]
            out[f"channel_viewers_held_{key}"] = max([c["viewers"] for c in out[f"channel_{key}"] if c["held"]], default=0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=10, help="captions typed in Chromium (0: skip)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--max-sessions", type=int, default=6)
    ap.add_argument("--channel", type=int, nargs="*", default=[10, 20, 30])
    ap.add_argument("--rest-transition-s", type=float, default=None, help="override live.rest_transition_s")
    print(json.dumps(asyncio.run(main(ap.parse_args())), indent=2))
