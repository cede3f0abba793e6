"""Channel video through Janus (server/cluster/sfu.py, docs/cluster.md): a real janus, redis-server
and two `signstream serve` processes on loopback. The owner publishes its one render; a viewer on
the other server subscribes through that server's /sfu proxy and gets the owner's picture, which
moves while a caption is signed, and that server renders nothing itself. Failover: the new owner publishes, the old subscription is
hung up, a new one sees the new owner's picture. Janus restarted: the owner publishes again."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import aiohttp
import numpy as np
import pytest

from bench.cluster import free_port, start_janus, start_redis, start_server, stop_servers
from server.client_cli import LiveClient
from server.cluster.sfu import SfuViewer
from tests.test_browser import _SNAPSHOT, CHROMIUM, CHROMIUM_ARGS, moved
from tests.test_cluster import TTL, Set, health, is_type, pair, run, until

pytestmark = [
    pytest.mark.skipif(shutil.which("janus") is None, reason="janus is not installed (Debian package janus; scripts/setup.sh)"),
    pytest.mark.skipif(shutil.which("redis-server") is None,
                       reason="redis-server is not installed (Debian package redis-server; scripts/setup.sh)"),
]


@dataclass
class WithJanus(Set):
    janus: subprocess.Popen | None = None
    janus_port: int = 0


@pytest.fixture
def two_with_janus(tmp_path: Path) -> Iterator[WithJanus]:
    janus_port, redis_port = free_port(), free_port()
    s = WithJanus(start_redis(redis_port), redis_port, janus=start_janus(tmp_path, janus_port), janus_port=janus_port)
    try:
        for i in range(2):
            proc, url = start_server(tmp_path, redis_port, name=f"p{i}", lease_ttl_s=TTL,
                                     janus=f"http://127.0.0.1:{janus_port}/janus")
            s.procs.append(proc)
            s.urls.append(url)
        yield s
    finally:
        stop_servers(s.procs)
        for proc in (s.redis, s.janus):
            assert proc is not None
            proc.kill()
            proc.wait()


async def picture(viewer: SfuViewer) -> np.ndarray:
    frame = await asyncio.wait_for(viewer.track.recv(), 20)
    return frame.to_ndarray(format="rgb24").astype(np.int16)


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(f"{url}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in {url}/metrics")


def test_a_viewer_on_another_server_gets_the_owners_video_through_janus(two_with_janus):
    async def main():
        a, b = two_with_janus.urls
        async with aiohttp.ClientSession() as http:
            sender, watcher = await pair(http, two_with_janus, "stage")  # A owns it; B has a /ws client
            t0 = time.monotonic()
            sub = await SfuViewer.join(http, b, "stage", answer_to=a)  # least_conn sends them anywhere
            try:
                rest = await picture(sub)
                first_frame_s = time.monotonic() - t0
                assert rest.shape == (512, 512, 3)
                await sender.caption("c1", "Hi, Bob!")
                change = 0.0
                while change < 8.0:  # the avatar moves in the picture B's viewer gets from Janus
                    change = max(change, float(np.abs(await picture(sub) - rest).mean()))
                await until(watcher, is_type("unit_status"))
                assert await metric(http, a, "signstream_renders") == 1.0  # the owner's one render
                assert await metric(http, b, "signstream_renders") == 0.0  # B renders nothing
                assert await metric(http, b, "signstream_video_drawn") == 0.0
                assert (await health(http, a))["cluster"]["janus"] == "reachable"  # A publishes, B subscribes
                assert (await health(http, b))["cluster"]["janus"] == "reachable"
                print(f"subscriber's first frame after /sfu/offer: {first_frame_s:.2f} s")
            finally:
                await sub.pc.close()
                await sender.close()
                await watcher.close()

    run(main())


def test_sfu_offer_refuses_bad_requests_and_a_channel_without_video(two_with_janus):
    async def main():
        b = two_with_janus.urls[1]
        async with aiohttp.ClientSession() as http:
            for body, status, code in (({}, 400, "bad_field"), ({"channel": ""}, 400, "bad_field")):
                async with http.post(f"{b}/sfu/offer", json=body) as r:
                    got = await r.json()
                    assert r.status == status and got["code"] == code, got
            async with http.post(f"{b}/sfu/answer", json={"id": "nope", "type": "answer", "sdp": "v=0"}) as r:
                assert r.status == 404
            started = time.monotonic()
            async with http.post(f"{b}/sfu/offer", json={"channel": "empty"}) as r:  # nobody opened it
                got = await r.json()
                assert r.status == 503 and got["code"] == "no_video", got
            assert time.monotonic() - started < 20

    run(main())


def test_after_the_owners_death_the_new_owner_publishes_and_a_viewer_subscribes_again(two_with_janus):
    async def main():
        a, b = two_with_janus.urls
        async with aiohttp.ClientSession() as http:
            sender, watcher = await pair(http, two_with_janus, "hall")  # A owns it; B has a /ws client
            old = await SfuViewer.join(http, b, "hall")
            await picture(old)
            two_with_janus.procs[0].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            deadline = killed + 10 * TTL
            while (await health(http, b))["cluster"]["owned"] != ["hall"]:
                assert time.monotonic() < deadline, "B did not take the channel"
                await asyncio.sleep(0.1)
            # The new owner made the room anew: Janus hung up the old subscription.
            while old.pc.connectionState not in ("closed", "failed"):
                assert time.monotonic() < deadline + 20, f"the old subscription is still {old.pc.connectionState}"
                await asyncio.sleep(0.1)
            new = await SfuViewer.join(http, b, "hall")
            try:
                rest = await picture(new)
                resumed_s = time.monotonic() - killed
                await watcher.caption("c2", "Hi, Bob!")
                change = 0.0
                while change < 8.0:
                    change = max(change, float(np.abs(await picture(new) - rest).mean()))
                assert await metric(http, b, "signstream_renders") == 1.0  # B renders now, once
                print(f"SIGKILL of the owner → a new subscriber's first frame: {resumed_s:.2f} s")
            finally:
                await old.pc.close()
                await new.pc.close()
                await watcher.close()

    run(main())


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt package chromium)")
def test_the_page_on_another_server_plays_the_channel_through_janus(two_with_janus):
    """index.html in headless Chromium on B, ?channel&render=video: /ws for the messages, the video
    through B's /sfu proxy from Janus; a caption typed there is signed by A and moves the picture."""
    from playwright.async_api import async_playwright

    async def main():
        a, b = two_with_janus.urls
        async with aiohttp.ClientSession() as http:
            owner = await LiveClient.connect(http, a, channel="foyer", idle_frames=False)  # A owns "foyer"
            async with async_playwright() as p:
                # Real host candidates, not mDNS names: Janus resolves none (ignore_mdns).
                browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=[
                    *CHROMIUM_ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"])
                try:
                    page = await browser.new_page()
                    await page.goto(b + "/?channel=foyer&render=video")
                    await page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30000)
                    assert await page.evaluate("document.getElementById('avatar').videoWidth") == 512
                    assert (await page.inner_text("#state")).startswith("WebRTC (Janus) connected")
                    rest = await page.evaluate(_SNAPSHOT)
                    await page.fill("#text", "Hi, Bob!")
                    await page.keyboard.press("Enter")
                    await page.wait_for_selector("#committed p", timeout=20000)
                    assert await moved(page, _SNAPSHOT, rest) > 8.0
                    await page.wait_for_selector("#statuses li[data-status=fingerspelled]", timeout=20000)
                    assert await metric(http, b, "signstream_renders") == 0.0
                    await page.evaluate("conn.close()")
                finally:
                    await browser.close()
            await owner.close()

    run(main())


def test_janus_restarted_the_owner_publishes_again_and_viewers_resubscribe(two_with_janus, tmp_path):
    async def main():
        a, b = two_with_janus.urls
        async with aiohttp.ClientSession() as http:
            sender, watcher = await pair(http, two_with_janus, "news")
            old = await SfuViewer.join(http, b, "news")
            await picture(old)
            janus = two_with_janus.janus
            janus.kill()
            janus.wait()
            deadline = time.monotonic() + 10
            while (await health(http, a))["cluster"]["janus"] != "unreachable":  # the owner's poll fails at once
                assert time.monotonic() < deadline, "/healthz did not say Janus is unreachable"
                await asyncio.sleep(0.2)
            two_with_janus.janus = start_janus(tmp_path, two_with_janus.janus_port)  # empty: no session, no room
            deadline = time.monotonic() + 30
            while True:  # the owner publishes again within a few seconds; until then no_video
                try:
                    new = await SfuViewer.join(http, b, "news")
                    break
                except ConnectionError:
                    assert time.monotonic() < deadline, "the owner did not publish into the new Janus"
                    await asyncio.sleep(0.5)
            try:
                assert (await picture(new)).shape == (512, 512, 3)
            finally:
                await old.close()
                await new.close()
                await sender.close()
                await watcher.close()

    run(main())
