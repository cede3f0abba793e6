"""Cluster mode end to end: a real redis-server and real `signstream serve` processes on loopback
(server/cluster/, docs/cluster.md). A caption sent to one process is signed for a viewer on another;
the owner's death moves the channel; Redis down and back; private sessions never touch Redis."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from bench.cluster import free_port, start_redis, start_server, stop_servers
from server.client_cli import LiveClient
from server.protocol import SERVER_SCHEMAS, PoseFrame, schema_errors

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed (Debian package redis-server; scripts/setup.sh)")
TTL = 1.5  # lease TTL of the test servers: failover within ~2 s


@dataclass
class Set:
    """A redis-server and two servers in cluster mode sharing it."""

    redis: subprocess.Popen
    redis_port: int
    procs: list[subprocess.Popen] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


@contextmanager
def cluster_of(tmp_path: Path, n: int) -> Iterator[Set]:
    """A redis-server and n servers p0, p1, … in cluster mode, stopped at the end."""
    port = free_port()
    s = Set(start_redis(port), port)
    try:
        for i in range(n):
            proc, url = start_server(tmp_path, port, name=f"p{i}", lease_ttl_s=TTL)
            s.procs.append(proc)
            s.urls.append(url)
        yield s
    finally:
        stop_servers(s.procs)
        s.redis.kill()
        s.redis.wait()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Set]:
    with cluster_of(tmp_path, 2) as s:
        yield s


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def until(client: LiveClient, test, timeout: float = 20.0) -> list[Any]:
    """Messages received until one passes `test` (that one last); fails after `timeout`."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"not received within {timeout} s; last: {[m for m in seen if isinstance(m, dict)][-5:]}"
        msg = await client.recv(timeout=left)
        seen.append(msg)
        if test(msg):
            return seen


def is_type(kind: str, **fields: Any):
    return lambda m: isinstance(m, dict) and m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


async def pair(http: aiohttp.ClientSession, s: Set, channel: str, **viewer: Any) -> tuple[LiveClient, LiveClient]:
    """A caption sender on the first server (it opens the channel, so owns it) and a viewer on the second."""
    sender = await LiveClient.connect(http, s.urls[0], channel=channel, idle_frames=False)
    return sender, await LiveClient.connect(http, s.urls[1], channel=channel, idle_frames=False, **viewer)


async def health(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/healthz") as r:
        return await r.json()


def test_a_caption_sent_to_one_process_is_signed_for_a_viewer_on_another(two):
    async def main():
        a, b = two.urls
        async with aiohttp.ClientSession() as http:
            sender, viewer = await pair(http, two, "news", fmt="binary")
            assert viewer.ready["language"] == sender.ready["language"]
            await sender.caption("c1", "hello good morning.")
            seen = await until(viewer, is_type("unit_status"))
            unit = next(m for m in seen if is_type("unit")(m))
            status = seen[-1]
            assert status["unit"] == unit["unit"] and status["status"] in ("signed", "fingerspelled")
            frames = [m for m in seen if isinstance(m, PoseFrame) and m.unit == unit["unit"]]
            assert len(frames) >= 10  # the unit played on B, frame by frame
            for m in seen:
                if isinstance(m, dict):
                    assert not schema_errors(SERVER_SCHEMAS[m["type"]], m), m
            # A reply answers the one who asked, across processes: B's ping → B's pong, not A's.
            await viewer.send({"type": "ping"})
            await until(viewer, is_type("pong"), timeout=5)
            ha, hb = await health(http, a), await health(http, b)
            assert ha["cluster"]["owned"] == ["news"] and hb["cluster"]["relayed"] == ["news"]
            assert ha["cluster"]["redis"] == hb["cluster"]["redis"] == "reachable"
            async with http.get(f"{b}/metrics") as r:
                text = await r.text()
            assert 'signstream_cluster_channel_owner{channel="news"} 0.0' in text
            assert "signstream_cluster_redis_up 1.0" in text
            await sender.close()
            await viewer.close()

    run(main())


def test_the_owners_death_moves_the_channel_and_the_viewer_stays(two):
    async def main():
        a, b = two.urls
        async with aiohttp.ClientSession() as http:
            sender, viewer = await pair(http, two, "hall")
            assert (await health(http, a))["cluster"]["owned"] == ["hall"]
            await sender.caption("c1", "the weather today is warm and the news from home is good.")
            seen = await until(viewer, lambda m: isinstance(m, PoseFrame) and m.unit > 0)
            unit = next(m for m in seen if is_type("unit")(m))["unit"]
            two.procs[0].send_signal(signal.SIGKILL)  # mid-unit
            killed = time.monotonic()
            # A caption sent while no process owns the channel is kept by B, not lost.
            await viewer.caption("c2", "thank you.")
            # B takes the lease; the unit A left unfinished ends with a status saying why.
            seen = await until(viewer, is_type("unit_status", unit=unit), timeout=10 * TTL)
            assert seen[-1]["status"] == "failed" and seen[-1]["reason"].startswith("owner_lost")
            assert time.monotonic() - killed < 4 * TTL
            assert (await health(http, b))["cluster"]["owned"] == ["hall"]
            # The viewer kept its connection and sees the caption of the gap signed, under a new unit id.
            seen = await until(viewer, is_type("unit", caption="c2"))
            new = seen[-1]["unit"]
            assert new > unit  # ids go on after the old owner's: a client never sees one twice
            assert all(m["status"] == "failed" for m in seen if is_type("unit_status")(m))  # A's other units
            seen = await until(viewer, is_type("unit_status", unit=new))
            assert seen[-1]["status"] in ("signed", "fingerspelled")
            assert any(isinstance(m, PoseFrame) and m.unit == new for m in seen)
            await viewer.close()

    run(main())


def test_a_caption_sent_elsewhere_while_no_one_owns_the_channel_reaches_the_new_owner(tmp_path):
    """Three servers: A owns the channel and dies; C's viewer sends a caption in the gap; B takes
    the channel (the test hands B the lease, so the path is always the same). C hands B what A
    never acknowledged, and the caption is signed for C's viewer."""
    import redis

    with cluster_of(tmp_path, 3) as s:
        async def main():
            async with aiohttp.ClientSession() as http:
                sender, b_viewer = await pair(http, s, "gap")
                c_viewer = await LiveClient.connect(http, s.urls[2], channel="gap", idle_frames=False)
                await sender.caption("c1", "good morning.")
                await until(c_viewer, is_type("unit_status"))  # C has heard A's beats and acknowledgements
                s.procs[0].send_signal(signal.SIGKILL)
                await c_viewer.caption("c2", "thank you.")  # nobody handles it now
                await asyncio.sleep(0.2)
                lease = redis.Redis(port=s.redis_port).set("signstream:channel:gap:owner", "p1", px=int(TTL * 1000))
                assert lease
                seen = await until(c_viewer, is_type("unit", caption="c2"), timeout=10 * TTL)
                new = seen[-1]["unit"]
                seen = await until(c_viewer, is_type("unit_status", unit=new))
                assert seen[-1]["status"] in ("signed", "fingerspelled")
                assert (await health(http, s.urls[1]))["cluster"]["owned"] == ["gap"]
                assert (await health(http, s.urls[2]))["cluster"]["relayed"] == ["gap"]
                # Signed once: B's viewer sees the one unit of c2 too, and no second one.
                seen = await until(b_viewer, is_type("unit_status", unit=new))
                await asyncio.sleep(3 * TTL)  # beats pass: nothing is handed over again
                await c_viewer.send({"type": "ping"})
                later = await until(c_viewer, is_type("pong"), timeout=5)
                assert not any(is_type("unit", caption="c2")(m) for m in later)
                await b_viewer.close()
                await c_viewer.close()

        run(main())


def test_an_owner_shutting_down_hands_its_channel_over_at_once(two):
    async def main():
        a, b = two.urls
        async with aiohttp.ClientSession() as http:
            sender, viewer = await pair(http, two, "aula")
            two.procs[0].terminate()  # SIGTERM: a graceful shutdown gives the lease up
            deadline = time.monotonic() + 20
            while (await health(http, b))["cluster"]["owned"] != ["aula"]:
                assert time.monotonic() < deadline, "B did not take the channel"
                await asyncio.sleep(0.1)
            await viewer.caption("c2", "thank you.")
            seen = await until(viewer, is_type("unit_status"))
            assert seen[-1]["status"] in ("signed", "fingerspelled")
            assert not any(is_type("closing")(m) for m in seen)  # B's clients were not told to leave
            await viewer.close()

    run(main())


def test_redis_down_gives_coded_errors_then_the_channel_resumes_and_private_sessions_go_on(two):
    async def main():
        a, b = two.urls
        async with aiohttp.ClientSession() as http:
            sender, viewer = await pair(http, two, "desk")
            private = await LiveClient.connect(http, b, idle_frames=False)
            two.redis.kill()
            two.redis.wait()
            seen = await until(viewer, is_type("error"), timeout=10)
            assert seen[-1]["code"] == "cluster_unavailable"
            assert (await health(http, b))["cluster"]["redis"] == "unreachable"
            # B cannot pass a caption on: it says so. A newcomer to a cluster channel is refused.
            await viewer.caption("x", "lost words.")
            assert (await until(viewer, is_type("error")))[-1]["code"] == "cluster_unavailable"
            with pytest.raises(ConnectionError, match="cluster_unavailable"):
                await LiveClient.connect(http, b, channel="desk")
            # A private session on B is unaffected.
            await private.caption("p1", "hello.")
            seen = await until(private, is_type("unit_status"))
            assert seen[-1]["status"] in ("signed", "fingerspelled")
            # Redis back (restarted empty): the channel resumes, A's captions reach B's viewer again.
            two.redis = start_redis(two.redis_port)
            deadline = time.monotonic() + 15
            while (await health(http, b))["cluster"]["redis"] != "reachable":
                assert time.monotonic() < deadline, "B did not reconnect to Redis"
                await asyncio.sleep(0.2)
            await asyncio.sleep(TTL)  # a beat: the lease claimed again, the demand heard
            await sender.caption("c2", "good morning.")
            seen = await until(viewer, is_type("unit_status"), timeout=20)
            assert seen[-1]["status"] in ("signed", "fingerspelled")
            for c in (sender, viewer, private):
                await c.close()

    run(main())


def test_rotations_viewers_on_other_processes_get_the_owners_frames(two):
    async def main():
        a, b = two.urls
        async with aiohttp.ClientSession() as http:
            sender = await LiveClient.connect(http, a, channel="art", idle_frames=False)
            ws = await http.ws_connect(f"{b.replace('http', 'ws')}/ws")
            await ws.send_str(json.dumps({"type": "hello", "channel": "art", "frames": "rotations", "format": "binary"}))
            ready = json.loads((await ws.receive(timeout=10)).data)
            assert ready["type"] == "ready" and ready["frames"] == "rotations" and ready["bones"]
            await sender.caption("c1", "hello.")
            got = 0
            deadline = time.monotonic() + 20
            while got < 10:
                msg = await ws.receive(timeout=deadline - time.monotonic())
                if msg.type == aiohttp.WSMsgType.BINARY:
                    assert msg.data[:4] == b"SSRF"
                    got += 1
            await ws.close()
            await sender.close()

    run(main())


def test_a_video_viewer_on_another_process_sees_the_channel_rendered_there(two):
    """/offer on B for a channel A owns: B renders it from A's pose frames (one render per process)."""
    from server.transports.webrtc import Viewer

    async def main():
        a, b = two.urls
        async with aiohttp.ClientSession() as http:
            sender = await LiveClient.connect(http, a, channel="screen", idle_frames=False)
            viewer, status, body = await Viewer.offer(http, b, channel="screen")
            assert status == 200, body
            try:
                assert (await viewer.until("ready"))["language"] == sender.ready["language"]
                track = await asyncio.wait_for(viewer.video, 20)
                await sender.caption("c1", "hello.")
                status_msg = await viewer.until("unit_status", timeout=30)
                assert status_msg["status"] in ("signed", "fingerspelled")
                frames = [await asyncio.wait_for(track.recv(), 10) for _ in range(5)]
                assert all(f.width > 0 for f in frames)
                async with http.get(f"{b}/metrics") as r:
                    assert "signstream_renders 1.0" in await r.text()  # B renders the channel itself
            finally:
                await viewer.close()
                await sender.close()

    run(main())


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (scripts/setup.sh)")


@needs_nginx
def test_the_nginx_config_is_valid(tmp_path):
    (tmp_path / "tmp").mkdir()
    done = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(DEPLOY / "nginx.conf")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@needs_nginx
def test_run_local_starts_the_set_behind_one_address(tmp_path):
    """deploy/run-local.sh: Redis, 2 servers, nginx (and Janus where installed); two clients through
    nginx land on different servers and share a channel, whose video comes through Janus."""
    port, redis_port = free_port(), free_port()
    script = subprocess.Popen([str(DEPLOY / "run-local.sh"), "2"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PORT": str(port), "REDIS_PORT": str(redis_port), "JANUS_PORT": str(free_port()),
                                   "PYTHON": sys.executable, "TMPDIR": str(tmp_path)},
                              start_new_session=True)

    async def main():
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            sender = await LiveClient.connect(http, url, channel="lobby", idle_frames=False)
            viewer = await LiveClient.connect(http, url, channel="lobby", idle_frames=False)
            roles = []
            for i in (1, 2):
                roles.append((await health(http, f"http://127.0.0.1:{port + i}"))["cluster"])
            assert sorted(r["owned"] + r["relayed"] for r in roles) == [["lobby"], ["lobby"]]  # one each
            await sender.caption("c1", "hello.")
            seen = await until(viewer, is_type("unit_status"))
            assert seen[-1]["status"] in ("signed", "fingerspelled")
            async with http.get(f"{url}/metrics") as r:
                assert r.status == 404  # scraped per server, not through the balancer
            if shutil.which("janus"):  # the set includes Janus: the channel's video through nginx
                from server.cluster.sfu import SfuViewer
                video = await SfuViewer.join(http, url, "lobby")
                assert (await asyncio.wait_for(video.track.recv(), 20)).width == 512
                await video.close()
            await sender.close()
            await viewer.close()

    try:
        assert script.stdout is not None
        line = script.stdout.readline()  # printed once every part listens
        assert f"http://127.0.0.1:{port}/" in line, line
        run(main())
    finally:
        os.killpg(script.pid, signal.SIGTERM)  # the script stops what it started
        script.wait(timeout=30)
