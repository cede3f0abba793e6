"""What travels on the cluster bus (server/cluster/wire.py): every message comes out as it went in,
and a remote viewer's frames encode to the owner's bytes."""

from __future__ import annotations

import numpy as np

from server.cluster import wire
from server.protocol import Message, PoseFrame, RotationFrame, encode


def test_pose_frames_cross_losslessly_so_every_process_encodes_the_same_bytes():
    rng = np.random.default_rng(0)
    for face in (rng.random(12, dtype=np.float32), None):
        frame = PoseFrame(3, 1, 40, 1.6, "fingerspelling", rng.random((50, 3), dtype=np.float32),
                          rng.random(50, dtype=np.float32), face)
        back = wire.decode(wire.pose(frame))
        assert isinstance(back, PoseFrame)
        for fmt in ("json", "binary"):
            assert encode(back, fmt) == encode(frame, fmt)


def test_rotation_frames_cross_as_the_owners_encoded_bytes():
    rng = np.random.default_rng(1)
    frame = RotationFrame(2, 0, 7, 0.28, "sign", rng.random((38, 4), dtype=np.float32),
                          np.zeros(3, np.float32), rng.random(12, dtype=np.float32))
    back = wire.decode(wire.rotations(frame))
    assert isinstance(back, RotationFrame)
    for fmt in ("json", "binary"):
        assert back.ws_frame(fmt) == frame.ws_frame(fmt)


def test_messages_client_messages_and_replies_round_trip():
    unit = Message("unit", {"unit": 4, "caption": "c1", "text": "Grüße", "language": "gsg", "segments": []})
    assert wire.decode(wire.message(unit)) == unit
    beat = wire.state({"language": "ase", "fps": 25.0}, "s1#0a1b", {"s2": 41})
    assert wire.decode(beat) == wire.State({"language": "ase", "fps": 25.0}, "s1#0a1b", {"s2": 41})
    assert wire.decode(wire.ended(1008)) == wire.Ended(1008)
    for raw in ('{"type":"caption","id":"a","text":"hi\\n"}', b'\xff{"type":"ping"}'):
        assert wire.decode(wire.client("s1", 77, raw, 12)) == wire.ClientMessage("s1", 77, raw, 12)
    assert wire.decode(wire.demand("s2", True, False)) == wire.Demand("s2", True, False)
    pong = Message("pong")
    assert wire.decode(wire.reply("hall", 9, pong)) == wire.Reply("hall", 9, pong)
