"""/offer end to end with a real aiortc peer on 127.0.0.1: answer, 512×512 avatar video, a caption on
the data channel changes the decoded picture and brings unit/unit_status; malformed offers → 400."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from server.transports.webrtc import Viewer, gather_loopback, loopback_sdp
from tests.test_server_live import live_server, run


async def _picture(track) -> np.ndarray:
    frame = await asyncio.wait_for(track.recv(), 20)
    return frame.to_ndarray(format="rgb24").astype(np.int16)


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_offer_video_and_data_channel(codec: str):
    async def main():
        async with live_server(webrtc__codec=codec) as (url, _), aiohttp.ClientSession() as http:
            viewer, status, body = await Viewer.offer(http, url, language="ase")
            try:
                assert status == 200 and body["type"] == "answer", body
                assert f"{codec.upper()}/90000" in body["sdp"]
                candidates = [ln for ln in body["sdp"].splitlines() if ln.startswith("a=candidate:")]
                assert candidates and all(ln.split()[4] == "127.0.0.1" for ln in candidates)
                ready = await viewer.until("ready")
                assert ready["language"] == "ase"
                track = await asyncio.wait_for(viewer.video, 20)
                rest = [await _picture(track) for _ in range(5)][-1]
                assert rest.shape == (512, 512, 3)
                await viewer.send({"type": "caption", "id": "c1", "text": "Hi, Bob!", "final": True})
                unit = await viewer.until("unit")
                assert unit["text"] == "Hi, Bob!"
                change = 0.0
                while change < 8.0:  # the avatar moves: some frame differs clearly from the rest pose
                    change = max(change, float(np.abs(await _picture(track) - rest).mean()))
                done = await viewer.until("unit_status")
                assert done["unit"] == unit["unit"] and done["status"] == "fingerspelled"
            finally:
                await viewer.close()
    run(main())


@pytest.mark.parametrize("body, code", [
    (b"not json", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b'{"type": "answer", "sdp": "v=0"}', "bad_field"),
    (b'{"type": "offer"}', "bad_field"),
    (b'{"type": "offer", "sdp": "v=0\\r\\nthis is no sdp"}', "bad_field"),
    (b'{"type": "offer", "sdp": "v=0", "format": "xml"}', "bad_field"),
    (b'{"type": "offer", "sdp": "v=0", "language": "zzz"}', "unknown_language"),
])
def test_malformed_offer_is_400(body: bytes, code: str):
    async def main():
        async with live_server() as (url, _), aiohttp.ClientSession() as http:
            async with http.post(url + "/offer", data=body, headers={"Content-Type": "application/json"}) as r:
                got: dict[str, Any] = await r.json()
                assert r.status == 400 and got["code"] == code, got
    run(main())


def test_offer_without_video_and_token():
    async def main():
        async with live_server(limits__token="s3cret") as (url, _), aiohttp.ClientSession() as http:
            viewer, status, body = await Viewer.offer(http, url)
            await viewer.close()
            assert status == 401 and body["code"] == "unauthorized"
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.createDataChannel("signstream")
            await gather_loopback(pc)
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(url + "/offer", json={"type": "offer", "sdp": pc.localDescription.sdp,
                                                       "token": "s3cret"}) as r:
                got = await r.json()
            await pc.close()
            assert r.status == 400 and got["code"] == "bad_field" and "video" in got["message"]
    run(main())


def test_loopback_sdp_keeps_only_127_0_0_1():
    sdp = ("v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.5 5000 typ host\r\n"
           "a=candidate:2 1 udp 2130706431 127.0.0.1 5001 typ host\r\n"
           "a=candidate:3 1 udp 2130706431 abc.local 5002 typ host\r\n")
    assert loopback_sdp(sdp) == "v=0\r\na=candidate:2 1 udp 2130706431 127.0.0.1 5001 typ host\r\n"


def test_the_picture_over_the_renderer_background_is_the_render_itself_and_other_backgrounds_blend():
    from server.config import load_config
    from server.transports.video import VideoRenderer

    shared = VideoRenderer(load_config())
    try:
        rgba = shared.rest
        alpha = rgba[..., 3:4].astype(np.float64) / 255
        for background in (shared.background, (0, 255, 0)):
            expected = rgba[..., :3] * alpha + np.array(background) * (1 - alpha)
            got = shared.compose(rgba, background)
            assert got.dtype == np.uint8 and got.shape == (*rgba.shape[:2], 3)
            assert np.abs(got.astype(np.float64) - expected).max() <= 1.0
        assert tuple(shared.compose(rgba, (0, 255, 0))[0, 0]) == (0, 255, 0)  # the corner is background
    finally:
        shared.close()
