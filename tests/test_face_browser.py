"""The page (client/avatar-view.js, three.js on SwiftShader) applies the non-manual track as the
server's renderer does: brows, eyelids, mouth and head of a frame's `face` land where pyrender puts them."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from test_browser import serve, stop
from test_browser_webgl import GREEN, page_pictures, server  # noqa: F401  (server: the module's fixture)
from test_face_expressions import _morph_avatar

from engines.nonmanual import CHANNELS, INDEX

pytestmark = pytest.mark.skipif(not __import__("test_browser").CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")


def _face(**values: float) -> np.ndarray:
    v = np.zeros(len(CHANNELS), np.float32)
    for k, x in values.items():
        v[INDEX[k]] = x
    return v


def _dark(image: np.ndarray) -> np.ndarray:
    """Brows, eyes, hair, mouth: the dark features of the face."""
    return image[..., :3].astype(np.int16).sum(axis=-1) < 250


def test_page_shows_the_face_the_server_renders(server: str):  # noqa: F811
    _same_face(server, None, [_face(), _face(brow_raise=1.0, mouth_open=0.8),
                              _face(brow_furrow=1.0, head_shake=1.0, mouth_round=1.0), _face(blink=1.0)])


def test_page_shows_blend_shapes_as_the_server_renders_them(tmp_path):
    """An avatar whose brows, eyelids and jaw are morph targets (ARKit names): the page sets
    three.js morphTargetInfluences from ready.avatar.face.morphs as the server adds the deltas."""
    from pathlib import Path

    glb = _morph_avatar(tmp_path / "arkit.glb", {k: k for k in ("browInnerUp", "eyeBlinkLeft", "eyeBlinkRight", "jawOpen")})
    config = tmp_path / "config.toml"
    shipped = (Path(__file__).resolve().parent.parent / "config.toml").read_text()
    config.write_text(shipped.replace('path = "server/avatar/assets/signer.glb"', f'path = "{glb}"', 1))
    proc, url = serve(config=config)
    try:
        _same_face(url, config, [_face(), _face(brow_raise=1.0, mouth_open=1.0), _face(blink=1.0)])
    finally:
        stop(proc)


def _same_face(server: str, config, faces: list[np.ndarray]) -> None:
    from server.avatar.face import FaceRig
    from server.avatar.render import AvatarRenderer
    from server.avatar.retarget import Retargeter
    from server.avatar.rotations import matrix_to_quat
    from server.config import load_config
    from server.protocol import RotationFrame, encode
    from server.rotation_stream import rotation_rig

    cfg = load_config(str(config) if config else None)
    rig = rotation_rig(cfg)
    avatar = rig.avatar
    face_rig = FaceRig.of_avatar(avatar)
    local = Retargeter(avatar.rig).rest
    size = (cfg.video.width, cfg.video.height)
    with AvatarRenderer(avatar, *size, (*GREEN, 1.0)) as renderer:
        server_images = [renderer.render(*face_rig.pose(local, f)) for f in faces]
        centre = avatar.rig.bind[face_rig.bones["head"], :3, 3] + np.array([0.0, 0.1, 0.0])
        x, y = np.round(renderer.camera.project(centre)).astype(int)
    half = max(20, size[0] // 12)
    head = (slice(y - half, y + half), slice(x - half, x + half))
    quats = matrix_to_quat(local[rig.joints]).astype(np.float32)
    frames = [base64.b64encode(encode(RotationFrame(0, -1, 0, 0.0, "rest", quats, np.zeros(3, np.float32), f),
                                      "binary")).decode() for f in faces]

    page_images = page_pictures(server, frames, size)

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / max(1, (a | b).sum()))
    same = [iou(_dark(s[head]), _dark(p[head])) for s, p in zip(server_images, page_images)]
    crossed = [iou(_dark(server_images[i][head]), _dark(page_images[(i + 1) % len(faces)][head])) for i in range(len(faces))]
    assert min(same) >= 0.8, same
    assert np.mean(crossed) < np.mean(same) - 0.1, (same, crossed)  # the faces differ: the check can tell
