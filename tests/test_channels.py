"""Channels with real aiortc peers on 127.0.0.1: two viewers of one channel share one session and one
render, a caption from one reaches both pictures and both data channels; a peer connection closes
when its session ends and when ICE fails."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import aioice.stun
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from server.app import HUB
from server.transports.webrtc import CHANNEL_LABEL, Viewer, gather_loopback
from tests.test_server_live import live_server, run
from tests.test_webrtc import _picture


async def _gauge(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as r:
        found = re.search(rf"^{name} (\S+)$", await r.text(), re.M)
    assert found, name
    return float(found.group(1))


async def _eventually(check, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


def test_two_viewers_of_a_channel_share_one_render():
    async def main():
        async with live_server() as (url, server), aiohttp.ClientSession() as http:
            a, status_a, _ = await Viewer.offer(http, url, language="ase", channel="lobby")
            b, status_b, _ = await Viewer.offer(http, url, channel="lobby")
            lone, status_c, _ = await Viewer.offer(http, url)  # a private session beside the channel
            try:
                assert (status_a, status_b, status_c) == (200, 200, 200)
                ready_a, ready_b = await a.until("ready"), await b.until("ready")
                assert ready_a["session"] == ready_b["session"] and ready_b["language"] == "ase"
                assert (await lone.until("ready"))["session"] != ready_a["session"]
                assert await _gauge(http, url, "signstream_renders") == 2  # the channel's and the lone one
                assert await _gauge(http, url, "signstream_viewers") == 3
                assert await _gauge(http, url, "signstream_channels") == 1
                tracks = [await asyncio.wait_for(v.video, 20) for v in (a, b)]
                rests = [[await _picture(t) for _ in range(3)][-1] for t in tracks]
                await b.send({"type": "caption", "id": "c1", "text": "Hi, Bob!", "final": True})  # sent once, by b
                units = [await v.until("unit") for v in (a, b)]
                assert units[0] == units[1] and units[0]["text"] == "Hi, Bob!"
                for track, rest in zip(tracks, rests):
                    change = 0.0
                    while change < 8.0:  # each viewer sees the avatar move
                        change = max(change, float(np.abs(await _picture(track) - rest).mean()))
                statuses = [await v.until("unit_status") for v in (a, b)]
                assert statuses[0] == statuses[1] and statuses[0]["status"] == "fingerspelled"
                await b.send({"type": "ping"})  # a reply goes to the asker only
                await b.until("pong")
                await b.close()
                hub = server.app[HUB]
                await _eventually(lambda: len(hub.channels.named["lobby"].members) == 1)
                assert await _gauge(http, url, "signstream_renders") == 2  # a still watches
                await a.close()
                await _eventually(lambda: "lobby" not in hub.channels.named)  # the last one left: it ends
                assert await _gauge(http, url, "signstream_channels") == 0
            finally:
                for v in (a, b, lone):
                    await v.close()
    run(main())


def test_peer_closes_when_its_session_ends():
    async def main():
        async with live_server(limits__idle_timeout_s=0.5) as (url, server), aiohttp.ClientSession() as http:
            viewer, status, _ = await Viewer.offer(http, url, language="ase")
            try:
                assert status == 200
                await viewer.until("ready")
                error = await viewer.until("error")  # nothing to do: the session ends...
                assert error["code"] == "idle_timeout"
                await _eventually(lambda: viewer.pc.connectionState == "closed")  # ...and hangs up
                hub = server.app[HUB]
                assert not hub.sessions and not hub.channels.all()
            finally:
                await viewer.close()
    run(main())


def test_peer_closes_when_ice_fails(monkeypatch: pytest.MonkeyPatch):
    # aioice gives up on a silent candidate after 6 retransmissions (31.5 s); 1 (1.5 s) keeps this short.
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 1)

    async def main():
        async with live_server() as (url, server), aiohttp.ClientSession() as http:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            pc.createDataChannel(CHANNEL_LABEL)
            await gather_loopback(pc)
            await pc.setLocalDescription(await pc.createOffer())
            await pc.close()  # the viewer is gone before ICE: its candidate answers no check
            async with http.post(url + "/offer", json={"type": "offer", "sdp": pc.localDescription.sdp,
                                                       "channel": "x"}) as r:
                assert r.status == 200, await r.text()
            hub = server.app[HUB]
            assert len(hub.sessions) == 1 and "x" in hub.channels.named
            await _eventually(lambda: not hub.sessions and not hub.channels.all())
    run(main())


def test_a_websocket_client_captions_a_channel_that_webrtc_viewers_watch():
    """A captioner on /ws (the broadcaster's feed) and a viewer on WebRTC share one channel."""
    async def main():
        async with live_server() as (url, server), aiohttp.ClientSession() as http:
            ws_url = url.replace("http", "ws") + "/ws"
            async with http.ws_connect(ws_url) as feed:
                await feed.send_json({"type": "hello", "channel": "news", "language": "gsg", "format": "binary"})
                ready = await feed.receive_json(timeout=10)
                assert ready["type"] == "ready" and ready["language"] == "gsg" and ready["format"] == "binary"
                viewer, status, _ = await Viewer.offer(http, url, channel="news")
                try:
                    assert status == 200 and (await viewer.until("ready"))["session"] == ready["session"]
                    assert len(server.app[HUB].sessions) == 1  # one session for the feed and the viewer
                    await feed.send_json({"type": "caption", "id": "c1", "text": "Guten Tag.", "final": True})
                    unit = await viewer.until("unit")
                    assert unit["text"] == "Guten Tag." and unit["language"] == "gsg"
                    frames = 0
                    while True:  # the feed gets the pose stream (binary, as it asked) and the statuses
                        msg = await feed.receive(timeout=20)
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            frames += 1
                        elif msg.json()["type"] == "unit_status":
                            break
                    assert frames > 0 and (await viewer.until("unit_status"))["status"] == "fingerspelled"
                    # A later hello naming a channel cannot move a connection: a clear error, session kept.
                    await feed.send_json({"type": "hello", "channel": "other"})
                    while (got := await feed.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY:
                        pass
                    assert got.json()["code"] == "bad_field" and "channel" in got.json()["message"]
                finally:
                    await viewer.close()
            hub = server.app[HUB]
            await _eventually(lambda: not hub.sessions and not hub.channels.all())
    run(main())


def test_a_client_that_wants_no_frames_gets_every_message_but_frames():
    """`frames: "none"` (a caption feed; the Janus page, whose picture is the video): units and
    statuses, no pose frames, while the channel's other clients get theirs; alone it opens a
    private channel."""
    async def main():
        async with live_server() as (url, server), aiohttp.ClientSession() as http:
            ws_url = url.replace("http", "ws") + "/ws"
            async with http.ws_connect(ws_url) as feed, http.ws_connect(ws_url) as watcher, \
                    http.ws_connect(ws_url) as alone:
                await feed.send_json({"type": "hello", "channel": "news", "frames": "none", "idle_frames": False})
                assert (await feed.receive_json(timeout=10))["frames"] == "none"
                await watcher.send_json({"type": "hello", "channel": "news", "idle_frames": False})
                assert "frames" not in (await watcher.receive_json(timeout=10))
                await alone.send_json({"type": "hello", "frames": "none"})
                assert (await alone.receive_json(timeout=10))["frames"] == "none"
                await feed.send_json({"type": "caption", "id": "c1", "text": "hello.", "final": True})
                await alone.send_json({"type": "caption", "id": "c1", "text": "hi.", "final": True})

                async def until_status(ws) -> tuple[list[str], int]:
                    kinds, frames = [], 0
                    while not kinds or kinds[-1] != "unit_status":
                        msg = await ws.receive(timeout=20)
                        if msg.type == aiohttp.WSMsgType.BINARY or msg.json()["type"] == "pose":
                            frames += 1
                        else:
                            kinds.append(msg.json()["type"])
                    return kinds, frames

                for ws, wants in ((feed, False), (watcher, True), (alone, False)):
                    kinds, frames = await until_status(ws)
                    assert "unit" in kinds and (frames > 0) == wants, (kinds, frames)
    run(main())
