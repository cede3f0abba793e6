"""Benchmarks of the rotations stream (the page draws the avatar) against a real server; prints JSON.

  viewers:  one channel signing without pause; N light WebSocket viewers (hello.frames =
            "rotations", binary) held for S seconds: frames delivered (goal ≥ 98 % of 25/s each),
            bytes/s per viewer (goal ≤ 15 kB/s), server CPU per viewer. N ramps (--viewers 100,500,1000).
  sessions: N separate sessions signing at once, each with its own retarget (a private rotations
            channel each), held for S seconds: how many get ≥ 98 % of their frames (goal ≥ 50).
  page:     one real Chromium page drawing the avatar (WebGL on SwiftShader): draws per second while
            signing, and caption typed (Enter) → first moved frame drawn, p50 (goal ≤ 150 ms).

The viewers are raw-socket WebSocket clients in worker processes (handshake, hello, then only frame
headers are parsed), so that the clients, not the server, are not what runs out of CPU first.

python bench/rotations.py [--viewers 100,500,1000] [--sessions 10,25,50] [--seconds 20] [--page 20]
                          [--screenshot docs/images/page-webgl.png]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from live import WORDS, start_server  # noqa: E402

FPS = 25.0
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


# --- light viewers (worker processes) -----------------------------------------------------------


class _LightViewer(asyncio.Protocol):
    """A WebSocket client that sends one hello and then only counts the binary frames it gets."""

    def __init__(self, hello: bytes) -> None:
        self.hello = hello
        self.buf = bytearray()
        self.upgraded = False
        self.frames = 0
        self.bytes = 0
        self.index = -1  # the stream index of the newest frame (header offset 12)
        self.ready = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"  # type: ignore[attr-defined]
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(head + mask + body)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.bytes += len(data)
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del self.buf[: end + 4]
            self.upgraded = True
            self._send(1, self.hello)
        buf, i = self.buf, 0
        while len(buf) - i >= 2:
            opcode, n, h = buf[i] & 0x0F, buf[i + 1] & 0x7F, 2
            if n == 126:
                if len(buf) - i < 4:
                    break
                n, h = int.from_bytes(buf[i + 2:i + 4], "big"), 4
            elif n == 127:
                if len(buf) - i < 10:
                    break
                n, h = int.from_bytes(buf[i + 2:i + 10], "big"), 10
            if len(buf) - i < h + n:
                break
            if opcode == 2:
                self.frames += 1
                self.index = int.from_bytes(buf[i + h + 12:i + h + 16], "little")
            elif opcode == 1 and b'"type":"ready"' in buf[i + h:i + h + n]:
                self.ready = True  # greeted (a refusal is an error instead)
            elif opcode == 9:  # ping: answer, or the server's heartbeat closes us
                self._send(10, bytes(buf[i + h:i + h + n]))
            i += h + n
        del buf[:i]


def _viewer_worker(port: int, n: int, channel: str, conn) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        hello = json.dumps({"type": "hello", "channel": channel, "frames": "rotations", "format": "binary"}).encode()
        viewers = []
        for k in range(n):
            try:
                _, v = await loop.create_connection(lambda: _LightViewer(hello), "127.0.0.1", port)
            except OSError:
                continue  # counted as not connected
            viewers.append(v)
            if k % 25 == 24:
                await asyncio.sleep(0.05)  # don't flood the accept queue
        deadline = time.monotonic() + 60
        while not all(v.ready for v in viewers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        viewers = [v for v in viewers if v.ready]  # those the server greeted
        conn.send(len(viewers))
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "count":
                conn.send([(v.frames, v.bytes, v.index) for v in viewers])
            else:
                for v in viewers:
                    assert v.transport is not None
                    v.transport.close()
                conn.send("closed")
                return

    asyncio.run(main())


async def _talker(url: str, channel: str | None, stop: asyncio.Event, rng: random.Random,
                  frames: list[float] | None = None) -> None:
    """A caption client that keeps its session (or channel) signing: a sentence, its status, the next."""
    hello = {"type": "hello", "frames": "rotations", "format": "binary", **({"channel": channel} if channel else {})}
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "/ws", max_msg_size=0) as ws:
        await ws.send_str(json.dumps(hello))
        line = 0

        async def say() -> None:
            nonlocal line
            line += 1
            text = " ".join(rng.sample(WORDS, 6)) + "."
            await ws.send_str(json.dumps({"type": "caption", "id": f"l{line}", "text": text, "final": True}))

        await say()
        await say()  # one waiting behind the one signing: never a pause between them
        while not stop.is_set():
            try:
                msg = await ws.receive(timeout=1.0)
            except asyncio.TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                if frames is not None:
                    frames.append(time.monotonic())
            elif msg.type == aiohttp.WSMsgType.TEXT:
                if json.loads(msg.data)["type"] == "unit_status":
                    await say()
            else:
                break


async def viewers(url: str, pid: int, counts: list[int], seconds: float, workers: int = 2) -> list[dict]:
    port = int(url.rsplit(":", 1)[1])
    stop = asyncio.Event()
    talker = asyncio.create_task(_talker(url, "bench", stop, random.Random(0)))
    await asyncio.sleep(2.0)
    # The channel signing with its one caption client and no viewers: what the viewers add to.
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds / 2)
    base = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    out: list[dict] = [{"viewers": 0, "server_cpu_cores": round(base, 3)}]
    print(json.dumps(out[-1]), file=sys.stderr)
    for n in counts:
        pipes, procs = [], []
        for w in range(workers):
            a, b = mp.Pipe()
            share = n // workers + (1 if w < n % workers else 0)
            p = mp.Process(target=_viewer_worker, args=(port, share, "bench", b), daemon=True)
            p.start()
            pipes.append(a)
            procs.append(p)
        loop = asyncio.get_running_loop()
        connected = 0
        for a in pipes:
            connected += await loop.run_in_executor(None, a.recv)
        await asyncio.sleep(2.0)  # settle

        async def count() -> list[tuple[int, int, int]]:
            rows = []
            for a in pipes:
                a.send("count")
                rows += await loop.run_in_executor(None, a.recv)
            return rows

        c0, cpu0, t0 = await count(), cpu_seconds(pid), time.monotonic()
        w0 = sum(cpu_seconds(p.pid) for p in procs)
        await asyncio.sleep(seconds)
        c1, cpu1, t1 = await count(), cpu_seconds(pid), time.monotonic()
        w1 = sum(cpu_seconds(p.pid) for p in procs)
        dt = t1 - t0
        got = [(b[0] - a[0]) / (dt * FPS) for a, b in zip(c0, c1)]
        rate = [(b[1] - a[1]) / dt for a, b in zip(c0, c1)]
        # The channel's own clock (frames it made, from the stream index) and, of those, what arrived:
        # tells a server that fell behind its clock from viewers that lost frames.
        made = statistics.median(b[2] - a[2] for a, b in zip(c0, c1))
        of_made = [(b[0] - a[0]) / max(1, made) for a, b in zip(c0, c1)]
        for a in pipes:
            a.send("close")
            await loop.run_in_executor(None, a.recv)
        for p in procs:
            p.join(timeout=10)
        held = sum(g >= 0.98 for g in got)
        out.append({"viewers": n, "connected": connected, "seconds": round(dt, 1), "held_98pct": held, "all_held": held == n,
                    "delivered_min": round(min(got), 4), "delivered_median": round(statistics.median(got), 4),
                    "bytes_per_s_per_viewer": round(statistics.median(rate)),
                    "channel_fps": round(made / dt, 2), "delivered_of_made_min": round(min(of_made), 4),
                    "viewer_processes_cpu_cores": round((w1 - w0) / dt, 3),
                    "server_cpu_cores": round((cpu1 - cpu0) / dt, 3),
                    # CPU the viewers add, per viewer: ms of server CPU per second of watching
                    "server_cpu_ms_per_viewer_s": round(((cpu1 - cpu0) / dt - base) / n * 1000, 3)})
        print(json.dumps(out[-1]), file=sys.stderr)
        for _ in range(300):  # the closed viewers leave (their slots come back) before the next step
            async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
                clients = [ln for ln in (await r.text()).splitlines() if ln.startswith("signstream_clients ")]
            if not clients or float(clients[0].split()[1]) <= 1:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
    stop.set()
    await talker
    return out


async def sessions(url: str, pid: int, counts: list[int], seconds: float) -> list[dict]:
    out = []
    for n in counts:
        stop = asyncio.Event()
        stamps: list[list[float]] = [[] for _ in range(n)]
        tasks = [asyncio.create_task(_talker(url, None, stop, random.Random(i), stamps[i])) for i in range(n)]
        await asyncio.sleep(3.0)  # connected, signing
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        got = [sum(1 for s in st if t0 <= s < t1) / ((t1 - t0) * FPS) for st in stamps]
        held = sum(g >= 0.98 for g in got)
        out.append({"sessions": n, "seconds": round(t1 - t0, 1), "held_98pct": held, "all_held": held == n,
                    "delivered_min": round(min(got), 4), "delivered_median": round(statistics.median(got), 4),
                    "server_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3)})
        print(json.dumps(out[-1]), file=sys.stderr)
        await asyncio.sleep(3.0)
    return out


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--use-gl=angle", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]

# Captures the time of the Enter that sends a caption, before the page's own handler runs.
_MARK = """addEventListener('keydown', (e) => { if (e.key === 'Enter') window.__typedAt = performance.now(); }, true);"""
_VIEW = "document.getElementById('scene').avatarView"


async def page(url: str, captions: int, screenshot: str | None) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            pg = await browser.new_page(viewport={"width": 1100, "height": 800})
            await pg.add_init_script(_MARK)
            await pg.goto(url + "/")
            await pg.wait_for_function(f"{_VIEW} && {_VIEW}.draws > 0", timeout=30000)
            await asyncio.sleep(1.0)
            latencies, rates = [], []
            rng = random.Random(1)
            for i in range(captions):
                await pg.fill("#text", " ".join(rng.sample(WORDS, 2)) + ".")
                await pg.keyboard.press("Enter")
                # The first picture after Enter that differs from the one before (the rest pose is
                # still, so the first move is the caption's: the transition towards its first sign).
                await pg.wait_for_function(f"{_VIEW}.movedAt > window.__typedAt", timeout=20000)
                latencies.append(await pg.evaluate(f"{_VIEW}.movedAt - window.__typedAt"))
                d0, t0 = await pg.evaluate(f"[{_VIEW}.draws, performance.now()]")
                await asyncio.sleep(1.0)  # while it signs
                d1, t1 = await pg.evaluate(f"[{_VIEW}.draws, performance.now()]")
                rates.append((d1 - d0) / (t1 - t0) * 1000)
                if screenshot and i == 0:
                    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                    await pg.screenshot(path=screenshot)
                await pg.wait_for_function(f"{_VIEW}.drawnUnit === 0", timeout=30000)  # back at rest
                await asyncio.sleep(rng.uniform(0.3, 0.8))
            refresh = await pg.evaluate("""() => new Promise((ok) => { let n = 0; const t0 = performance.now();
                const f = () => (++n < 60 ? requestAnimationFrame(f) : ok(n / (performance.now() - t0) * 1000));
                requestAnimationFrame(f); })""")
        finally:
            await browser.close()
    lat = sorted(latencies)
    return {"captions": captions, "typed_to_first_moved_frame_ms_p50": round(statistics.median(lat), 1),
            "p90_ms": round(lat[int(0.9 * (len(lat) - 1))], 1), "max_ms": round(lat[-1], 1), "target_p50_ms": 150,
            "draws_per_s_while_signing_median": round(statistics.median(rates), 1),
            "display_refresh_hz": round(refresh, 1), "renderer": "SwiftShader (CPU) via ANGLE, 512x512"}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip() and int(x) > 0]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", default="100,500,1000", help="viewer counts to try, comma-separated ('' skips)")
    ap.add_argument("--sessions", default="10,25,50", help="session counts to try ('' skips)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds of each step")
    ap.add_argument("--page", type=int, default=20, help="captions typed in the Chromium page (0 skips)")
    ap.add_argument("--screenshot", default=None, help="save the page while it signs (PNG)")
    args = ap.parse_args()
    vs, ss = _ints(args.viewers), _ints(args.sessions)
    proc, url = start_server(max(vs + ss + [0]) + 20, message_rate=100.0)
    result: dict = {"server": url, "cpus": os.cpu_count()}
    try:
        if vs:
            result["viewers"] = await viewers(url, proc.pid, vs, args.seconds)
        if ss:
            result["sessions"] = await sessions(url, proc.pid, ss, args.seconds)
        if args.page:
            result["page"] = await page(url, args.page, args.screenshot)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:  # a thousand connections to close: don't wait for the graceful end
            proc.kill()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
