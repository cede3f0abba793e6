"""Real offscreen frames (EGL, or OSMesa): hands land where the camera projection says, the
background can be transparent, and `signstream render` writes .png, .mp4 and .webm files."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from engines.rest import rest_pose
from engines.skeleton import L_ELBOW, L_WRIST, LEFT_HAND_SLICE, R_ELBOW, R_WRIST, RIGHT_HAND_SLICE
from tools.avatar_build import ASSET, SKIN
from server.avatar.errors import RenderError
from server.avatar.gltf import load_avatar
from server.avatar.render import AvatarRenderer
from server.avatar.retarget import RetargetSettings, Retargeter
from server.avatar.rotations import axis_angle
from server.cli import app

BACKGROUND = (0.20, 0.60, 0.30, 1.0)  # green: unlike skin and shirt


@pytest.fixture(scope="module")
def avatar():
    return load_avatar(ASSET)


@pytest.fixture(scope="module")
def renderer(avatar):
    with AvatarRenderer(avatar, 256, 256, BACKGROUND) as r:
        yield r


def _raised_hands(avatar) -> np.ndarray:
    """The rest pose with both forearms raised about the elbow, the hands in front of the body (the
    right higher), solved from its points."""
    points, confidence = rest_pose()
    points = points.astype(np.float64)
    for elbow, chain, bend in ((R_ELBOW, [R_WRIST, *range(RIGHT_HAND_SLICE.start, RIGHT_HAND_SLICE.stop)], 1.7),
                               (L_ELBOW, [L_WRIST, *range(LEFT_HAND_SLICE.start, LEFT_HAND_SLICE.stop)], 1.1)):
        lift = axis_angle(np.array([1.0, 0.0, 0.0]), -bend)  # about the sideways axis: forwards and up
        points[chain] = points[elbow] + (points[chain] - points[elbow]) @ lift.T
    return Retargeter(avatar.rig, 25.0, RetargetSettings(smoothing=False)).solve(points, confidence)


def _palm_centres(avatar, world) -> dict[str, np.ndarray]:
    hb = avatar.rig.humanoid
    return {side: (world[hb[f"{side}Hand"], :3, 3] + world[hb[f"{side}MiddleProximal"], :3, 3]) / 2 for side in ("left", "right")}


def _is_skin(pixel: np.ndarray) -> bool:
    r, g, b = (int(c) for c in pixel[:3])
    far_from_background = np.linalg.norm(pixel[:3] - np.array(BACKGROUND[:3]) * 255) > 60
    return r > g > b and r > 120 and bool(far_from_background)


def test_hands_are_where_the_camera_says(avatar, renderer):
    local = _raised_hands(avatar)
    world = avatar.rig.fk(local)
    image = renderer.render(world)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    rest = renderer.render(avatar.rig.fk(Retargeter(avatar.rig).rest))
    for side, centre in _palm_centres(avatar, world).items():
        x, y = np.round(renderer.camera.project(centre)).astype(int)
        assert 0 <= x < 256 and 0 <= y < 256, (side, x, y)
        patch = image[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3)
        assert all(_is_skin(p) for p in patch), (side, patch)
        # In the rest pose the hands hang elsewhere: the same pixel is not skin there.
        assert not _is_skin(rest[y, x]), (side, rest[y, x])
    corner = image[2, 2]
    np.testing.assert_allclose(corner, np.round(np.array(BACKGROUND[:3]) * 255), atol=2)


def test_skin_colour_is_what_the_avatar_says(avatar, renderer):
    """The lit hand is a shade of the avatar's skin: the hue survives the lighting."""
    world = avatar.rig.fk(_raised_hands(avatar))
    x, y = np.round(renderer.camera.project(_palm_centres(avatar, world)["right"])).astype(int)
    pixel = renderer.render(world)[y, x].astype(float)
    skin = np.array(SKIN) * 255
    assert np.dot(pixel / np.linalg.norm(pixel), skin / np.linalg.norm(skin)) > 0.97


def test_transparent_background(avatar):
    with AvatarRenderer(avatar, 128, 128, (0.0, 0.0, 0.0, 0.0)) as r:
        image = r.render(avatar.rig.bind)
    assert image.shape == (128, 128, 4)
    assert image[0, 0, 3] == 0
    neck = avatar.rig.bind[avatar.rig.humanoid["chest"], :3, 3] + [0, 0, 0.1]
    x, y = np.round(r.camera.project(neck)).astype(int)
    assert image[y, x, 3] == 255


def test_bad_renderer_settings(avatar):
    with pytest.raises(RenderError):
        AvatarRenderer(avatar, 8, 8)
    with pytest.raises(RenderError):
        AvatarRenderer(avatar, 64, 64, samples=3)


def test_cli_render_writes_files(tmp_path, lexicon_dir):
    import av

    clip = sorted(lexicon_dir.glob("ase/*.pose"))[0]
    config = tmp_path / "small.toml"
    config.write_text("[video]\nwidth = 128\nheight = 128\nfps = 12\n")
    runner = CliRunner()
    for suffix in (".png", ".mp4", ".webm"):
        out = tmp_path / f"clip{suffix}"
        result = runner.invoke(app, ["render", str(clip), "-o", str(out), "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 1000
    with av.open(str(tmp_path / "clip.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) > 3 and frames[0].width == 128
    bad = runner.invoke(app, ["render", str(clip), "-o", str(tmp_path / "clip.gif"), "--config", str(config)])
    assert bad.exit_code == 2 and "render_failed" in bad.output
    text = runner.invoke(app, ["render", "hello.txt", "-o", str(tmp_path / "x.png"), "--config", str(config)])
    assert text.exit_code == 2 and "signstream say" in text.output
