"""Soak and abuse benchmark of the live server (issue 14): what one client can cost everyone. Starts a
real `signstream serve` on loopback (bench/live.py's start_server) and prints JSON.

  flood:     a client floods tiny messages and never reads (raw socket, 4 kB receive buffer) for S s:
             server RSS baseline / peak / after; target: peak - baseline <= 50 MB
  bystander: one session's largest gap between pose frames while K others send the worst captions
             allowed (2,000 characters, words of 48 letters and one of 1,999) at the rate limit;
             target: <= 100 ms (the period is 40 ms)
  offers:    N WebRTC offers answered and never connected: seconds until every viewer is released,
             RSS and CPU meanwhile; target: released within 10 s
  shutdown:  SIGTERM with a unit in flight: seconds to `closing`, to close 1001 (shutdown_grace_s 5)
  churn:     N sessions connect, say hello, send a caption, leave once its unit is committed (C at a
             time; the unit is cut off in the engine): RSS and fds after a warm-up
             (the first 10 %) and at the end; target: growth <= 20 MB for 5,000

python bench/soak.py [--flood-seconds 20] [--bystander-seconds 20 --worst 4] [--offers 50] [--churn 5000]
Set SIGNSTREAM_MALLOC_TUNING=0 to run the server without its allocator settings (server/allocator.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import multiprocessing
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live import WORDS, rss_mb, start_server  # noqa: E402
from server.client_cli import LiveClient  # noqa: E402
from server.protocol import PoseFrame  # noqa: E402


def drain_stderr(proc: subprocess.Popen) -> collections.deque[str]:
    """Read the server's log as it comes (a full pipe would block the server), keeping the tail."""
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), True)
    tail: collections.deque[str] = collections.deque(maxlen=200)
    threading.Thread(target=lambda: tail.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    return tail


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """RSS of the server every `every` seconds, in the background."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every, self.samples = pid, every, []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append(rss_mb(self.pid))
            await asyncio.sleep(self.every)

    def stop(self) -> float:
        self._task.cancel()
        return max(self.samples)


# --- flood: a raw WebSocket client that writes and never reads --------------------------------

def _frame(payload: bytes) -> bytes:
    """A client text frame with a zero mask key (valid: the key is random only against proxies)."""
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + b"\0\0\0\0" + payload


async def raw_ws(url: str, rcvbuf: int = 4096) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    u = urlparse(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (u.hostname, u.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head.split(b"\r\n")[0], head
    return reader, writer


async def flood(url: str, pid: int, seconds: float) -> dict:
    await asyncio.sleep(1.0)
    base = rss_mb(pid)
    sampler = Sampler(pid)
    reader, writer = await raw_ws(url)
    writer.write(_frame(b'{"type":"hello","idle_frames":false}'))
    chunk = _frame(b'{"type":"ping"}') * 2000
    sent, end = 0, time.monotonic() + seconds
    closed_by_server = False
    while time.monotonic() < end:
        writer.write(chunk)
        try:
            await asyncio.wait_for(writer.drain(), 1.0)
        except asyncio.TimeoutError:
            continue  # the server is not reading right now: keep trying until the end
        except ConnectionError:
            closed_by_server = True
            break
        sent += 2000
    peak = sampler.stop()
    writer.transport.abort()
    await asyncio.sleep(3.0)
    after = rss_mb(pid)
    return {"seconds": seconds, "messages_sent": sent, "closed_by_server": closed_by_server,
            "rss_mb_baseline": round(base, 1), "rss_mb_peak": round(peak, 1), "rss_mb_after_close": round(after, 1),
            "cost_mb": round(peak - base, 1), "target_cost_mb": 50}


# --- bystander: frame gaps while others send the worst captions --------------------------------

def worst_caption(rng: random.Random, i: int) -> str:
    if i % 4 == 0:
        return "Hi " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1999 - 3))
    words = []
    while sum(len(w) + 1 for w in words) + 49 <= 2000:
        words.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(48)))
    return " ".join(words)


async def _worst_sender(url: str, seconds: float, seed: int, stop: asyncio.Event) -> int:
    rng = random.Random(seed)
    sent = 0
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url + "/ws", max_msg_size=0)
        await ws.send_str(json.dumps({"type": "hello", "idle_frames": False}))

        async def drain() -> None:
            async for _ in ws:
                pass
        reader = asyncio.create_task(drain())
        while not stop.is_set():
            await ws.send_str(json.dumps({"type": "caption", "id": f"w{sent}", "text": worst_caption(rng, sent),
                                          "final": True}))
            sent += 1
            await asyncio.sleep(1 / 20)  # limits.message_rate
        reader.cancel()
        await ws.close()
    return sent


def _run_senders(url: str, seconds: float, worst: int) -> int:
    async def run() -> int:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_worst_sender(url, seconds, i, stop)) for i in range(worst)]
        await asyncio.sleep(seconds)
        stop.set()
        return sum(await asyncio.gather(*tasks))
    return asyncio.run(run())


async def bystander(url: str, pid: int, seconds: float, worst: int) -> dict:
    async with aiohttp.ClientSession() as http:
        client = await LiveClient.connect(http, url, fmt="binary", idle_frames=True)
        stamps: list[float] = []
        stop = asyncio.Event()

        async def watch() -> None:
            async for msg in client.messages():
                if isinstance(msg, PoseFrame):
                    stamps.append(time.monotonic())
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(2.0)  # settle
        t0, cpu0 = time.monotonic(), cpu_s(pid)
        # The senders run in a process of their own: their JSON work must not delay the bystander's clock.
        senders = multiprocessing.get_context("spawn").Pool(1) if worst else None
        sent = senders.apply_async(_run_senders, (url, seconds, worst)) if senders else None
        health: list[float] = []
        while time.monotonic() - t0 < seconds:
            h0 = time.monotonic()
            async with http.get(url + "/healthz") as r:
                await r.read()
            health.append((time.monotonic() - h0) * 1000)
            await asyncio.sleep(0.2)
        stop.set()
        server_cpu = cpu_s(pid) - cpu0
        captions = await asyncio.get_running_loop().run_in_executor(None, sent.get, 60) if sent else 0
        if senders:
            senders.close()
        watcher.cancel()
        await client.close()
    s = np.array([t for t in stamps if t >= t0])
    gaps = np.diff(s) * 1000 if len(s) > 1 else np.array([float("nan")])
    at = float(s[int(np.argmax(gaps))] - t0) if len(s) > 1 else float("nan")
    return {"seconds": seconds, "worst_senders": worst, "captions_sent": captions, "frames": int(len(s)),
            "gap_ms_max": round(float(gaps.max()), 1), "gap_max_at_s": round(at, 2),
            "gaps_over_100ms": int((gaps > 100).sum()), "gap_ms_p99": round(float(np.percentile(gaps, 99)), 1),
            "healthz_ms_max": round(max(health), 1), "server_cpu_share": round(server_cpu / seconds, 2),
            "target_gap_ms": 100}


# --- abandoned WebRTC offers -----------------------------------------------------------------

async def _gauge(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as r:
        m = re.search(rf"^{name} (\S+)$", await r.text(), re.M)
    return float(m.group(1)) if m else float("nan")


async def offers(url: str, pid: int, n: int) -> dict:
    from aiortc import RTCConfiguration, RTCPeerConnection

    from server.transports.webrtc import CHANNEL_LABEL, gather_loopback

    pcs = []
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/offer", json={"type": "offer", "sdp": "v=0"}) as r:  # loads the video renderer
            await r.read()
        await asyncio.sleep(1.0)
        base, cpu0 = rss_mb(pid), cpu_s(pid)
        sampler = Sampler(pid, 0.2)
        for _ in range(n):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            pc.createDataChannel(CHANNEL_LABEL)
            await gather_loopback(pc)
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(url + "/offer", json={"type": "offer", "sdp": pc.localDescription.sdp}) as r:
                assert r.status == 200, await r.text()
            pcs.append(pc)  # the answer is never applied: this peer never connects
        t_answered = time.monotonic()
        viewers_peak = await _gauge(http, url, "signstream_viewers")
        while await _gauge(http, url, "signstream_viewers") > 0 and time.monotonic() - t_answered < 120:
            await asyncio.sleep(0.1)
        released_s = time.monotonic() - t_answered
        drawn = await _gauge(http, url, "signstream_video_drawn")
        peak, cpu = sampler.stop(), cpu_s(pid) - cpu0
    for pc in pcs:
        await pc.close()
    await asyncio.sleep(2.0)
    return {"offers": n, "viewers_after_answers": viewers_peak, "released_s_after_last_answer": round(released_s, 2),
            "rss_mb_baseline": round(base, 1), "rss_mb_peak": round(peak, 1), "rss_mb_after": round(rss_mb(pid), 1),
            "server_cpu_s": round(cpu, 2), "poses_drawn_meanwhile": drawn, "target_released_s": 10}


# --- churn -------------------------------------------------------------------------------------

async def churn(url: str, pid: int, n: int, concurrency: int) -> dict:
    done = 0
    marks: dict[str, tuple[float, int]] = {}
    curve: list[tuple[int, float]] = []  # (sessions so far, RSS MB): does it level off?
    warm_at = max(1, n // 10)
    lock = asyncio.Lock()

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while True:
            async with lock:
                if done >= n:
                    return
                done += 1
                i = done
            ws = await http.ws_connect(url + "/ws")
            await ws.send_str('{"type":"hello","idle_frames":false}')
            await ws.receive(timeout=10)
            # A caption whose unit starts in the engine and is cut off by the close: plan, model
            # join and cancel, not only the socket and the session.
            await ws.send_str(json.dumps({"type": "caption", "id": "c", "text": f"hi {WORDS[i % len(WORDS)]}.",
                                          "final": True}))
            while json.loads((await ws.receive(timeout=10)).data)["type"] != "unit":
                pass
            await ws.close()
            if i == warm_at:
                await asyncio.sleep(0.5)
                marks["warm"] = (rss_mb(pid), fds(pid))
            if i % warm_at == 0:
                curve.append((i, round(rss_mb(pid), 1)))

    start_rss, start_fds = rss_mb(pid), fds(pid)
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    seconds = time.monotonic() - t0
    await asyncio.sleep(3.0)  # the last sessions close, a trim may run
    end_rss, end_fds = rss_mb(pid), fds(pid)
    warm_rss, warm_fds = marks.get("warm", (start_rss, start_fds))
    return {"sessions": n, "concurrency": concurrency, "seconds": round(seconds, 1),
            "rss_mb_start": round(start_rss, 1), "rss_mb_after_warmup": round(warm_rss, 1),
            "rss_mb_end": round(end_rss, 1),
            "growth_mb_after_warmup": round(end_rss - warm_rss, 1),
            "kb_per_session_after_warmup": round((end_rss - warm_rss) * 1024 / max(1, n - warm_at), 2),
            "fds_start": start_fds, "fds_after_warmup": warm_fds, "fds_end": end_fds, "rss_mb_curve": curve,
            "target_growth_mb": 20}


# --- shutdown ----------------------------------------------------------------------------------

async def shutdown(url: str, proc: subprocess.Popen, grace_s: float) -> dict:
    """SIGTERM with a session signing: seconds to `closing`, to close 1001, and to the process's exit."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url + "/ws")
        await ws.send_str('{"type":"hello","idle_frames":false}')
        await ws.receive(timeout=10)
        await ws.send_str(json.dumps({"type": "caption", "id": "c", "text": " ".join(WORDS), "final": True}))
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        proc.terminate()
        closing = answered = None
        while True:
            msg = await ws.receive(timeout=60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            kind = json.loads(msg.data)
            if kind["type"] == "closing" and closing is None:
                closing = time.monotonic() - t0
                await ws.send_str(json.dumps({"type": "caption", "id": "d", "text": "more", "final": True}))
            elif kind.get("code") == "shutting_down":
                answered = True
        closed = time.monotonic() - t0
    proc.wait(timeout=60)
    return {"grace_s": grace_s, "closing_after_s": round(closing or float("nan"), 2),
            "caption_after_closing_answered_shutting_down": bool(answered), "close_code": ws.close_code,
            "closed_after_s": round(closed, 2), "exited_after_s": round(time.monotonic() - t0, 2)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flood-seconds", type=float, default=20.0, help="0: skip")
    ap.add_argument("--bystander-seconds", type=float, default=20.0, help="0: skip")
    ap.add_argument("--worst", type=int, default=4, help="sessions sending the worst captions")
    ap.add_argument("--offers", type=int, default=50, help="abandoned offers (0: skip)")
    ap.add_argument("--offer-rounds", type=int, default=2, help="rounds of offers (does RSS level off?)")
    ap.add_argument("--churn", type=int, default=5000, help="sessions opened and closed (0: skip)")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    proc, url = start_server(max(args.offers, args.concurrency, args.worst + 1) + 16)
    log_tail = drain_stderr(proc)
    result: dict = {"server": url, "cpus": os.cpu_count(),
                    "malloc_tuning": os.environ.get("SIGNSTREAM_MALLOC_TUNING", "1") != "0"}
    try:
        if args.churn:
            result["churn"] = await churn(url, proc.pid, args.churn, args.concurrency)
        if args.flood_seconds:
            result["flood"] = await flood(url, proc.pid, args.flood_seconds)
        if args.bystander_seconds:
            result["bystander"] = await bystander(url, proc.pid, args.bystander_seconds, args.worst)
        if args.offers:
            result["offers"] = [await offers(url, proc.pid, args.offers) for _ in range(args.offer_rounds)]
        result["rss_mb_final"] = round(rss_mb(proc.pid), 1)
        result["fds_final"] = fds(proc.pid)
        result["shutdown"] = await shutdown(url, proc, 5.0)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    result["server_log_errors"] = [line for line in log_tail if "Traceback" in line or "ERROR" in line][-5:]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
