"""Cluster mode on one machine: a real redis-server and N real `signstream serve` processes sharing
channels through it (server/cluster/, docs/cluster.md); prints JSON.

  delivery:  light viewers (rotations over /ws, binary) spread over the processes, watching one
             channel whose owner signs captions: frames each viewer got of those the owner sent
  bus hop:   per frame, arrival at a viewer on another process minus arrival at a viewer on the
             owner (the added latency of the hop through Redis), p50 / p95
  held:      the largest total of viewers held at real time (≥ 98 % of frames) over the steps
  failover:  SIGKILL of the owner → the first frame of the next caption at a viewer elsewhere
  --video:   one WebRTC video viewer a process of a signing channel, without Janus (each process
             renders and encodes the channel for its own viewers) and with Janus (the owner's one
             encode, fanned out; a janus process on loopback): encoders running in the cluster, and
             each server's CPU while the channel signs

python bench/cluster.py [--processes 3] [--viewers 60,150,300] [--seconds 15] [--video]
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


def default_interface() -> str:
    """The interface of the default route (Janus gathers on no loopback interface: deploy/janus)."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return fields[0]
    return "eth0"


def start_janus(workdir: Path, port: int) -> subprocess.Popen:
    """Janus with deploy/janus's config, its HTTP API on 127.0.0.1:port, ICE on this machine's
    default interface (log in workdir/janus.log); returns once the API answers."""
    folder = workdir / "janus"
    folder.mkdir(exist_ok=True)
    for src in (ROOT / "deploy" / "janus").glob("*.jcfg"):
        text = re.sub(r"(?m)^(\s*port = )\d+", rf"\g<1>{port}", src.read_text())
        text = re.sub(r'(?m)^(\s*ice_enforce_list = )".*"', rf'\g<1>"{default_interface()}"', text)
        (folder / src.name).write_text(text)
    log = (workdir / "janus.log").open("w")
    proc = subprocess.Popen(["janus", "-F", str(folder), "-C", str(folder / "janus.jcfg")], stdout=log, stderr=log,
                            cwd=folder)  # where a core file of a crash would go
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /janus/info HTTP/1.0\r\n\r\n")
                if b"server_info" in s.recv(4096):
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"janus did not start: {(workdir / 'janus.log').read_text()[-2000:]}")


def start_server(workdir: Path, redis_port: int, name: str, lease_ttl_s: float = 3.0,
                 max_sessions: int = 256, janus: str = "") -> tuple[subprocess.Popen, str]:
    """`signstream serve` with the shipped config in cluster mode (its log in workdir/NAME.log), its
    channels' video through Janus when `janus` names its HTTP API; returns the process and its URL
    once it listens."""
    text = (ROOT / "config.toml").read_text()
    for key, value in {"host": '"127.0.0.1"', "max_sessions": max_sessions,
                       "redis": f'"redis://127.0.0.1:{redis_port}/0"', "lease_ttl_s": lease_ttl_s,
                       "process": f'"{name}"', "janus": f'"{janus}"'}.items():
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


def stop_servers(procs: list[subprocess.Popen]) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL after 20 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


class Viewer:
    """A light viewer: rotation frames (binary) over /ws, each frame's index and arrival time kept."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, process: int) -> None:
        self.ws = ws
        self.process = process
        self.arrivals: dict[int, float] = {}  # frame index → first arrival (perf_counter)
        self.latest_at: float | None = None  # the last frame's arrival
        self.resumed_at: float | None = None  # the last frame that came after a gap of over 0.5 s
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, http: aiohttp.ClientSession, url: str, process: int, channel: str) -> Viewer:
        ws = await http.ws_connect(url.replace("http", "ws", 1) + "/ws", max_msg_size=0)
        await ws.send_str(json.dumps({"type": "hello", "channel": channel, "frames": "rotations", "format": "binary"}))
        ready = json.loads((await ws.receive(timeout=60)).data)
        if ready.get("type") != "ready":
            raise RuntimeError(f"viewer refused: {ready}")
        return cls(ws, process)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:4] == b"SSRF":
                (frame,) = struct.unpack_from("<I", msg.data, 12)  # after magic, version, kind, segment, unit
                now = time.perf_counter()
                self.arrivals.setdefault(frame, now)
                if self.latest_at is not None and now - self.latest_at > 0.5:
                    self.resumed_at = now
                self.latest_at = now

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


async def captions(client: LiveClient, stop: asyncio.Event, every_s: float = 2.5) -> None:
    """Keep the channel signing: a caption every `every_s`, answers drained."""
    i = 0
    async def drain() -> None:
        async for _ in client.messages():
            pass
    drainer = asyncio.create_task(drain())
    while not stop.is_set():
        await client.caption(f"b{i}", CAPTIONS[i % len(CAPTIONS)])
        i += 1
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass
    drainer.cancel()


def client_session() -> aiohttp.ClientSession:
    """Without aiohttp's default cap of 100 connections (a viewer holds one for as long as it watches)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def delivery(viewers: list[Viewer], t0: float, t1: float) -> list[float]:
    """Per viewer: the fraction of the frames sent in [t0, t1] it received. The frames sent are those
    any viewer received in the window, widened to every index between the first and the last."""
    seen = [f for v in viewers for f, at in v.arrivals.items() if t0 <= at <= t1]
    if not seen:
        return [0.0] * len(viewers)
    lo, hi = min(seen), max(seen)
    want = hi - lo + 1
    return [sum(lo <= f <= hi for f in v.arrivals) / want for v in viewers]


def hop_ms(viewers: list[Viewer], owner: int) -> list[float]:
    """Per frame and viewer on another process: its arrival minus the frame's first arrival on the owner."""
    first: dict[int, float] = {}
    for v in viewers:
        if v.process == owner:
            for f, at in v.arrivals.items():
                first[f] = min(at, first.get(f, at))
    return [(at - first[f]) * 1000 for v in viewers if v.process != owner for f, at in v.arrivals.items() if f in first]


async def step(urls: list[str], n: int, seconds: float, channel: str) -> dict:
    """n viewers spread over the processes for `seconds` while the channel signs."""
    async with client_session() as http:
        viewers: list[Viewer] = []
        for at in range(0, n, 20):  # 20 at a time: joining costs the servers more than watching
            viewers += await asyncio.gather(*(Viewer.join(http, urls[i % len(urls)], i % len(urls), channel)
                                              for i in range(at, min(n, at + 20))))
        await asyncio.sleep(2.0)  # settle: the relays' demand heard, the outboxes flowing
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        t1 = time.perf_counter()
        got = delivery(viewers, t0, t1)
        hops = hop_ms(viewers, owner=0)
        await asyncio.gather(*(v.close() for v in viewers))
    return {"viewers": n, "per_process": [sum(1 for i in range(n) if i % len(urls) == p) for p in range(len(urls))],
            "delivered_min": round(min(got), 4), "delivered_mean": round(float(np.mean(got)), 4),
            "viewers_at_98pct": sum(g >= 0.98 for g in got),
            "hop_ms_p50": round(float(np.percentile(hops, 50)), 2) if hops else None,
            "hop_ms_p95": round(float(np.percentile(hops, 95)), 2) if hops else None}


async def failover(procs: list[subprocess.Popen], urls: list[str], channel: str) -> dict:
    """SIGKILL the owner (process 0); from then: the new owner's first frame at a viewer elsewhere, and the first
    unit of a caption sent from elsewhere (retried every 0.25 s: captions sent while nobody owns the
    channel are lost)."""
    async with client_session() as http:
        viewer = await Viewer.join(http, urls[1], 1, channel)
        client = await LiveClient.connect(http, urls[2], channel=channel, idle_frames=False)
        await asyncio.sleep(2.0)
        procs[0].send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        unit_at = None
        i = 0
        deadline = killed + 30
        while unit_at is None and time.perf_counter() < deadline:
            await client.caption(f"f{i}", "good morning.")
            i += 1
            end = time.perf_counter() + 0.25
            while time.perf_counter() < end:
                try:
                    msg = await client.recv(timeout=max(0.01, end - time.perf_counter()))
                except asyncio.TimeoutError:
                    break
                if isinstance(msg, dict) and msg.get("type") == "unit" and msg["caption"].startswith("f"):
                    unit_at = time.perf_counter()
                    break
        for _ in range(100):  # the new owner's frames come a tick or two after its first unit
            if viewer.resumed_at is not None and viewer.resumed_at > killed:
                break
            await asyncio.sleep(0.05)
        await viewer.close()
        await client.close()
    frames_at = viewer.resumed_at if viewer.resumed_at and viewer.resumed_at > killed else None
    return {"frames_resume_s": round(frames_at - killed, 3) if frames_at else None,
            "caption_signed_s": round(unit_at - killed, 3) if unit_at else None}


async def main_async(args: argparse.Namespace, urls: list[str], procs: list[subprocess.Popen]) -> dict:
    channel = "bench"
    async with client_session() as http:
        sender = await LiveClient.connect(http, urls[0], channel=channel, idle_frames=False)  # process 0 owns it
        stop = asyncio.Event()
        feeder = asyncio.create_task(captions(sender, stop))
        steps = [await step(urls, len(urls), args.seconds, channel)]  # one viewer a process: the bus hop alone
        for n in args.viewers:
            steps.append(await step(urls, n, args.seconds, channel))
            if steps[-1]["viewers_at_98pct"] < n:
                break
        stop.set()
        await feeder
        fail = await failover(procs, urls, channel)
        await sender.close()
    held = max((s["viewers"] for s in steps if s["viewers_at_98pct"] == s["viewers"]), default=0)
    return {"processes": len(urls), "lease_ttl_s": args.lease_ttl_s, "seconds_per_step": args.seconds,
            "bus_hop_ms_p50": steps[0]["hop_ms_p50"], "bus_hop_ms_p95": steps[0]["hop_ms_p95"],
            "largest_total_held": held, "steps": steps, "failover": fail,
            "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def gauge(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(f"{url}/metrics") as r:
        found = re.search(rf"^{name} (\S+)$", await r.text(), re.M)
    return float(found.group(1)) if found else 0.0


async def video_step(urls: list[str], procs: list[subprocess.Popen], seconds: float,
                     janus: subprocess.Popen | None) -> dict:
    """One video viewer a process, the channel signing for `seconds`: the encoders, each server's
    CPU (and Janus's)."""
    from server.cluster.sfu import SfuViewer
    from server.transports.webrtc import Viewer as WebrtcViewer

    channel = "screen"
    async with client_session() as http:
        sender = await LiveClient.connect(http, urls[0], channel=channel, idle_frames=False)  # process 0 owns it
        viewers, tracks = [], []
        for url in urls:
            if janus is not None:
                viewer = await SfuViewer.join(http, url, channel)
                tracks.append(viewer.track)
            else:
                viewer, status, body = await WebrtcViewer.offer(http, url, channel=channel)
                assert status == 200, body
                tracks.append(await asyncio.wait_for(viewer.video, 20))
            viewers.append(viewer)
        frames = [0] * len(tracks)

        async def drain(i: int) -> None:  # decoded frames would pile up in the track's queue
            while True:
                await tracks[i].recv()
                frames[i] += 1

        drains = [asyncio.create_task(drain(i)) for i in range(len(tracks))]
        stop = asyncio.Event()
        feeder = asyncio.create_task(captions(sender, stop))
        await asyncio.sleep(3.0)
        watched = [*procs, *([janus] if janus is not None else [])]
        cpu0, t0, got0 = [cpu_s(p.pid) for p in watched], time.perf_counter(), list(frames)
        await asyncio.sleep(seconds)
        cpu1, t1 = [cpu_s(p.pid) for p in watched], time.perf_counter()
        renders = [await gauge(http, url, "signstream_renders") for url in urls]
        stop.set()
        await feeder
        for task in drains:
            task.cancel()
        for viewer in viewers:
            await viewer.close()
        await sender.close()
    cpu = [round(100 * (b - a) / (t1 - t0), 1) for a, b in zip(cpu0, cpu1)]
    return {"janus": janus is not None, "encoders": int(sum(renders)), "renders_per_server": [int(r) for r in renders],
            "server_cpu_pct": cpu[:len(procs)], "janus_cpu_pct": cpu[len(procs)] if janus is not None else None,
            "viewer_fps": [round((f - g) / (t1 - t0), 1) for f, g in zip(frames, got0)]}


def video_main(args: argparse.Namespace, work: Path) -> list[dict]:
    """The video step without, then with Janus, each on a fresh Redis and fresh servers."""
    results = []
    for janus in (False, True):
        port = free_port()
        redis = start_redis(port)
        janus_port = free_port()
        janus_proc = start_janus(work, janus_port) if janus else None
        api = f"http://127.0.0.1:{janus_port}/janus" if janus else ""
        servers: list[tuple[subprocess.Popen, str]] = []
        try:
            for i in range(args.processes):
                servers.append(start_server(work, port, f"{'j' if janus else 'n'}{i}", args.lease_ttl_s, janus=api))
            results.append(asyncio.run(video_step([u for _, u in servers], [p for p, _ in servers],
                                                  args.seconds, janus_proc)))
        finally:
            stop_servers([proc for proc, _ in servers])
            redis.kill()
            if janus_proc is not None:
                janus_proc.kill()
                janus_proc.wait()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--viewers", type=lambda s: [int(x) for x in s.split(",")], default=[60, 150, 300])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--lease-ttl-s", type=float, default=3.0)
    ap.add_argument("--video", action="store_true", help="encoders and server CPU with and without Janus")
    args = ap.parse_args()
    import tempfile
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers it started (the finally below)
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    if args.video:
        out = video_main(args, work)
        print(json.dumps({"processes": args.processes, "seconds": args.seconds, "steps": out,
                          "load_average": [round(x, 2) for x in os.getloadavg()]}, indent=2))
        return
    port = free_port()
    redis = start_redis(port)
    servers: list[tuple[subprocess.Popen, str]] = []
    try:
        for i in range(args.processes):
            servers.append(start_server(work, port, f"p{i}", args.lease_ttl_s, max_sessions=2000))
        out = asyncio.run(main_async(args, [u for _, u in servers], [p for p, _ in servers]))
        print(json.dumps(out, indent=2))
    finally:
        stop_servers([proc for proc, _ in servers])
        redis.kill()


if __name__ == "__main__":
    main()
