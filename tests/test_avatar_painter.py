"""The one way from pose frames to pixels (server/avatar/painter.py): an idle stream settles on the
avatar's rest pose, which is the motion timeline's (engines/rest.py), and each frame keeps its own
non-manual values through the retargeter's one-frame smoothing delay."""

from __future__ import annotations

import numpy as np
import pytest

from engines.nonmanual import CHANNELS, INDEX
from engines.rest import rest_pose
from server.avatar.gltf import load_avatar
from server.avatar.painter import AvatarPainter
from server.avatar.retarget import RetargetSettings, Retargeter, retarget_stream
from tools.avatar_build import ASSET

SIZE = 96


@pytest.fixture(scope="module")
def avatar():
    return load_avatar(ASSET)


def test_an_idle_stream_settles_on_the_avatars_rest_pose(avatar):
    """The timeline's rest frames, drawn as a stream, become the retargeter's rest pose (the pose a
    missing hand eases to) and the picture a channel shows before its first frame."""
    points, confidence = rest_pose()
    with AvatarPainter(avatar, SIZE, SIZE, (0.2, 0.6, 0.3, 1.0)) as painter:
        stream = painter.stream()
        for _ in range(20):  # the elbow's twist settles over a few frames
            drawn = stream.push(points, confidence)
        world, morph = drawn
        assert morph is None  # no track, and the bundled avatar shows it with bones anyway
        np.testing.assert_allclose(world, avatar.rig.fk(Retargeter(avatar.rig).rest), atol=1e-9)
        drawn = painter.draw(world).astype(int)
        assert np.abs(drawn - painter.paint_rest()).max() <= 1


@pytest.mark.parametrize("smoothing", [True, False])
def test_each_frame_keeps_its_own_face_through_the_smoothing_delay(avatar, smoothing):
    points, confidence = rest_pose()
    rng = np.random.default_rng(5)
    frames = [(points + rng.normal(0, 0.02, points.shape).astype(np.float32), confidence) for _ in range(6)]
    faces = [np.zeros(len(CHANNELS), np.float32) for _ in frames]
    for k, face in enumerate(faces):
        face[INDEX["head_nod"]] = 0.15 * k  # a different head turn on every frame
    settings = RetargetSettings(smoothing=smoothing)
    with AvatarPainter(avatar, SIZE, SIZE, (0.2, 0.6, 0.3, 1.0), settings) as painter:
        got = list(painter.worlds((p, c, f) for (p, c), f in zip(frames, faces)))
        locals_ = list(retarget_stream(avatar.rig, painter.fps, frames, settings))
        assert len(got) == len(frames) == len(locals_)
        for (world, _), local, face in zip(got, locals_, faces):
            np.testing.assert_allclose(world, painter.face.world(local, face), atol=1e-12)
