"""Rotation frames from a real server: chosen in hello, on /ws (binary and JSON) and on the WebRTC
data channel; one retarget per channel fanned out to every client that draws the avatar; bounded
per-client queues that drop the stale frames."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest

from server.app import HUB
from server.avatar.rotations import matrix_to_quat, quat_to_matrix, rotation_angle
from server.metrics import Metrics
from server.motion import rest_pose
from server.protocol import (SERVER_SCHEMAS, PoseFrame, RotationFrame, decode_binary_pose, decode_binary_rotations,
                             encode, schema_errors)
from server.transports.webrtc import Viewer
from server.transports.websocket import _Outbox
from tests.test_server_live import live_server, run


async def _hello(ws: aiohttp.ClientWebSocketResponse, **fields) -> dict:
    await ws.send_str(json.dumps({"type": "hello", **fields}))
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "ready":
            return json.loads(msg.data)


async def _frames(ws: aiohttp.ClientWebSocketResponse, until_unit_frames: int) -> tuple[list, list[dict]]:
    """Frames (decoded) and other messages, until `until_unit_frames` frames of a unit came."""
    frames, others = [], []
    while sum(f.unit > 0 for f in frames) < until_unit_frames:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.BINARY:
            frames.append(decode_binary_rotations(msg.data) if msg.data[:4] == b"SSRF" else decode_binary_pose(msg.data))
        else:
            m = json.loads(msg.data)
            if m["type"] == "rotations":
                assert schema_errors(SERVER_SCHEMAS["rotations"], m) == [], m
                frames.append(RotationFrame(m["unit"], m["segment"], m["frame"], m["t"], m["kind"],
                                            np.array(m["rotations"]), np.array(m["root"])))
            else:
                others.append(m)
    return frames, others


@pytest.mark.parametrize("fmt", ["binary", "json"])
def test_ws_rotation_frames(fmt):
    async def main():
        async with live_server() as (url, server), aiohttp.ClientSession() as http:
            async with http.ws_connect(url + "/ws") as ws:
                ready = await _hello(ws, frames="rotations", format=fmt)
                assert schema_errors(SERVER_SCHEMAS["ready"], ready) == [], ready
                assert ready["frames"] == "rotations" and ready["format"] == fmt
                bones = ready["bones"]
                assert len(bones) == 38 and {"rightIndexDistal", "leftUpperArm"} <= set(bones)
                assert len(ready["avatar"]["joints"]) == len(bones)
                async with http.get(url + ready["avatar"]["url"]) as r:  # the server's own avatar
                    assert r.status == 200 and (await r.read())[:4] == b"glTF"
                await ws.send_str(json.dumps({"type": "caption", "id": "c", "text": "Hi, Bob!", "final": True}))
                frames, others = await _frames(ws, 10)
                assert any(m["type"] == "unit" for m in others)
                assert all(f.rotations.shape == (len(bones), 4) for f in frames)
                assert np.allclose(np.linalg.norm(np.asarray(frames[-1].rotations, float), axis=1), 1, atol=2e-3)
                indices = [f.frame for f in frames]
                assert indices == sorted(indices) and len(set(indices)) == len(indices)
                rest = next(f for f in frames if f.unit == 0)
                signing = [f for f in frames if f.unit > 0]
                turned = max(float(np.abs(np.asarray(f.rotations) - np.asarray(rest.rotations)).max()) for f in signing)
                assert turned > 0.1  # the hand moves away from the rest pose
            app = server.app
            assert not app[HUB].channels.private  # the private channel closed with the socket
    run(main())


def test_one_retarget_per_channel_for_every_client(monkeypatch):
    """Three /ws clients draw channel "hall", a fourth reads its poses: one RotationStream, whose
    frames all three get (the same bytes), and the pose client gets poses. Every retargeter of the
    process is counted: the channel's frames are retargeted once each, not once per client."""
    from server.avatar.retarget import Retargeter

    pushes = [0]
    push_many = Retargeter.push_many  # every push goes through it (a batch of streams, or one)

    def counted(streams, points, confidence):
        pushes[0] += len(streams)
        return push_many(streams, points, confidence)

    monkeypatch.setattr(Retargeter, "push_many", staticmethod(counted))

    async def main():
        async with live_server() as (url, server), aiohttp.ClientSession() as http:
            drawers = [await http.ws_connect(url + "/ws") for _ in range(3)]
            poses = await http.ws_connect(url + "/ws")
            try:
                for ws in drawers:
                    await _hello(ws, channel="hall", frames="rotations", format="binary")
                ready = await _hello(poses, channel="hall", format="binary")
                assert "bones" not in ready
                channel = server.app[HUB].channels.named["hall"]
                stream = channel.rotations
                assert stream is not None
                registry = server.app[HUB].metrics.registry
                made0, solved0, pushed0 = registry.get_sample_value("signstream_frames_sent_total"), stream.solved, pushes[0]
                await drawers[0].send_str(json.dumps({"type": "caption", "id": "c", "text": "Hi, Bob!", "final": True}))
                got = [await _frames(ws, 8) for ws in drawers]
                made = registry.get_sample_value("signstream_frames_sent_total") - made0  # the channel's frames
                solved, pushed = stream.solved - solved0, pushes[0] - pushed0
                pose_frames, _ = await _frames(poses, 8)
                assert all(isinstance(f, PoseFrame) for f in pose_frames)
                by_index = [{f.frame: f.rotations.tobytes() for f in frames} for frames, _ in got]
                common = set(by_index[0]) & set(by_index[1]) & set(by_index[2])
                assert len(common) > 5 and all(by_index[0][i] == by_index[1][i] == by_index[2][i] for i in common)
                assert channel.rotations is stream  # still the one retargeter
                # It solved each frame of the channel once, not once per client (3 here).
                assert 0 < solved <= made + 1 and pushed == solved, (solved, pushed, made)
            finally:
                for ws in [*drawers, poses]:
                    await ws.close()
    run(main())


def test_rotation_frames_on_the_data_channel():
    async def main():
        async with live_server() as (url, server), aiohttp.ClientSession() as http:
            viewer, status, _ = await Viewer.offer(http, url, frames="rotations")
            try:
                assert status == 200
                ready = await viewer.until("ready")
                assert schema_errors(SERVER_SCHEMAS["ready"], ready) == [] and len(ready["bones"]) == 38
                await viewer.send({"type": "caption", "id": "c", "text": "Hi, Bob!", "final": True})
                frame = await viewer.until("rotations")
                assert schema_errors(SERVER_SCHEMAS["rotations"], frame) == []
                while frame["unit"] == 0:
                    frame = await viewer.until("rotations")
                assert len(frame["rotations"]) == 38
            finally:
                await viewer.close()
    run(main())


def test_a_client_that_falls_behind_loses_its_oldest_frames():
    """The outbox holds at most max_frames stream frames: a client that does not read loses the
    oldest (stale) ones, never the newest, and never a unit message; the channel is not held up."""
    async def main():
        metrics = Metrics()
        outbox = _Outbox(None, lambda: "binary", 4, 1 << 20, metrics)  # type: ignore[arg-type]
        quats = np.tile(np.array([0, 0, 0, 1], np.float32), (38, 1))
        for i in range(20):
            outbox.put(RotationFrame(0, -1, i, i / 25, "rest", quats, np.zeros(3, np.float32)))
        frames = [m for m in outbox.items if isinstance(m, RotationFrame)]
        assert [f.frame for f in frames] == [16, 17, 18, 19] and outbox.frames == 4
    asyncio.run(main())


def test_rotations_reproduce_the_retargeted_pose():
    """The float16 wire keeps every bone within 0.2° of the retargeter's rotation."""
    from server.avatar.retarget import Retargeter
    from server.config import load_config
    from server.rotation_stream import rotation_rig

    rig = rotation_rig(load_config())
    points, confidence = rest_pose()
    local = Retargeter(rig.avatar.rig).solve(np.asarray(points, float), confidence)
    frame = RotationFrame(0, -1, 0, 0.0, "rest", matrix_to_quat(local[rig.joints]).astype(np.float32), np.zeros(3, np.float32))
    back = decode_binary_rotations(encode(frame, "binary"))
    error = rotation_angle(quat_to_matrix(back.rotations.astype(np.float64)), local[rig.joints])
    assert np.degrees(error.max()) < 0.2


def test_streams_ticking_together_are_retargeted_in_one_batch():
    """Frames that channels submit in one event-loop iteration are retargeted as one batch on the
    next, in order per stream (one stream ticks twice, catching up), and each stream gets exactly
    the frames it gets alone."""
    from server.config import load_config
    from server.rotation_stream import RotationStream, rotation_rig

    rig = rotation_rig(load_config())
    rng = np.random.default_rng(0)
    points, confidence = rest_pose()
    poses = [[PoseFrame(1, 0, t, t / 25, "sign", np.asarray(points, np.float32) + rng.normal(0, 0.05, (50, 3)).astype(np.float32),
                        np.asarray(confidence, np.float32)) for t in range(6)] for _ in range(3)]

    async def main():
        batched = [RotationStream(rig) for _ in range(3)]
        got: list[list[RotationFrame]] = [[] for _ in range(3)]
        b0, f0 = rig.tick.batches, rig.tick.frames
        for t in range(0, 6, 2):
            for s in range(3):  # stream 2 submits two frames in the same iteration (catching up)
                for u in ((t, t + 1) if s == 2 else (t,)):
                    batched[s].submit(poses[s][u], got[s].append)
            assert sum(map(len, got)) == max(0, 3 * t - 3)  # nothing before the next iteration
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            for s in range(2):
                batched[s].submit(poses[s][t + 1], got[s].append)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return got, rig.tick.batches - b0, rig.tick.frames - f0

    got, batches, frames = asyncio.run(main())
    assert frames == 18 and batches == 9  # per step: streams 0, 1, 2 together, then 2's second frame, then 0 and 1
    for s in range(3):
        alone = RotationStream(rig)
        want = [f for f in (alone.push(p) for p in poses[s]) if f is not None]
        assert [f.frame for f in got[s]] == [f.frame for f in want] == list(range(5))
        for a, b in zip(got[s], want):
            assert np.abs(a.rotations - b.rotations).max() < 1e-5
