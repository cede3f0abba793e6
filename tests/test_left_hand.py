"""The model's missing hand: when the default SignLLM engine signs, the hand it does not generate (the
left) leaves the engine as missing (confidence 0), and on real rendered frames no hand or finger is
inside the torso (the bug was a left forearm bent into the chest, fingertips poking out of it).

Pixels, not joint maths: each frame is drawn twice by pyrender (EGL) — the hands alone, and the
hands with the torso — with each hand and the torso in its own flat colour. A hand pixel that the
torso covers in the second picture is a piece of hand behind or inside the torso; signing never
puts a hand behind the back, so any such pixel beyond a rim of contact means a hand in the body.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engines.loader import open_scheduler
from engines.skeleton import LEFT_HAND_SLICE, L_WRIST, NECK
from tools.avatar_build import ASSET
from server.avatar.gltf import load_avatar
from server.avatar.humanoid import FINGERS, SIDES, finger_bones
from server.avatar.render import AvatarRenderer
from server.avatar.retarget import retarget_stream
from server.config import load_config
from server.motion import Timeline, rest_pose

FPS = 25.0
BACKGROUND = (0.0, 0.0, 0.0, 1.0)
# Flat colours (RGBA, linear) that survive the lighting as "mostly this channel".
COLOURS = {"left": (1.0, 0.0, 0.0, 1.0), "right": (0.0, 1.0, 0.0, 1.0), "torso": (0.0, 0.0, 1.0, 1.0)}
TORSO_BONES = ("hips", "spine", "chest", "upperChest")
# Hand pixels the torso may cover in a frame: where the wrist meets the sleeve or a hand brushes the
# body. A hand inside the chest hides hundreds at this size.
CONTACT_PIXELS = 12
SIZE = 192


@pytest.fixture(scope="module")
def scheduler():
    return open_scheduler(load_config().engine, FPS)


@pytest.fixture(scope="module")
def avatar():
    return load_avatar(ASSET)


def _model_frames(scheduler, word: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The engine's frames for one word, as the motion timeline plays them: from rest, a transition
    into the unit, the unit, a hold and the way back to rest."""
    segments = scheduler.submit(word, word, "ase")
    assert [s.path for s in segments] == ["signllm"], segments  # a name: no lexicon signs it, the model spells it
    timeline = Timeline(FPS, transition_s=0.2, rest_transition_s=0.4, hold_s=0.3)
    while scheduler.live:
        frames, _ = scheduler.tick()
        for f in frames:
            f.unit, f.kind = 1, "fingerspelling"
            timeline.push(f)
    out = []
    for _ in range(timeline.queued + 30):
        frame, _ = timeline.next()
        out.append((frame.points, frame.confidence))
    return out


@pytest.mark.parametrize("fps", [25.0, 30.0])  # 30: the model's 25 fps frames re-timed (engines/retime.py)
def test_the_model_reports_the_hand_it_does_not_generate_as_missing(fps):
    scheduler = open_scheduler(load_config().engine, fps)
    frames = []
    scheduler.submit("w", "Kenneth", "ase")
    while scheduler.live:
        frames += scheduler.tick()[0]
    points = np.stack([f.points for f in frames])
    conf = np.stack([f.confidence for f in frames])
    near_neck = np.linalg.norm(points, axis=-1) < 0.1
    near_neck[:, NECK] = False
    # Nothing the engine calls seen sits at the neck, where training data keeps missing points...
    assert not (near_neck & (conf > 0)).any()
    # ...and the bundled model never generates a left hand (its recordings sign one-handed).
    assert (conf[:, L_WRIST] == 0).all() and (conf[:, LEFT_HAND_SLICE] == 0).all()
    assert (conf[:, 29:] == 1).all()  # the right hand is there


def _part_mesh(avatar, parts: tuple[str, ...]):
    """The avatar's mesh with only the triangles of `parts` (hands by side, "torso"), flat-coloured."""
    rig, mesh = avatar.rig, avatar.mesh
    joints_of = {side: {rig.humanoid[f"{side}Hand"]} | {rig.humanoid[b] for f in FINGERS for b in finger_bones(side, f)}
                 for side in SIDES}
    joints_of["torso"] = {rig.humanoid[b] for b in TORSO_BONES if b in rig.humanoid}
    owner = mesh.joints[np.arange(len(mesh.joints)), np.argmax(mesh.weights, axis=1)]  # each vertex's main bone
    colours = mesh.colors.copy()
    keep = np.zeros(len(mesh.indices), dtype=bool)
    for part in parts:
        mine = np.isin(owner, list(joints_of[part]))
        colours[mine] = COLOURS[part]
        keep |= mine[mesh.indices].all(axis=1)
    assert keep.any()
    return replace(avatar, mesh=replace(mesh, colors=colours, indices=mesh.indices[keep]))


def _channel(image: np.ndarray, c: int) -> np.ndarray:
    """Pixels where channel c dominates (a lit flat colour)."""
    img = image[..., :3].astype(int)
    return (img[..., c] > 30) & (img[..., c] > 2 * np.delete(img, c, axis=-1).max(axis=-1))


def hidden_hand_pixels(avatar, frames: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, int]]:
    """Per frame, per hand: how many of its pixels the torso covers."""
    hands = _part_mesh(avatar, ("left", "right"))
    with_torso = _part_mesh(avatar, ("left", "right", "torso"))
    out = []
    with AvatarRenderer(hands, SIZE, SIZE, BACKGROUND) as r_hands, \
            AvatarRenderer(with_torso, SIZE, SIZE, BACKGROUND) as r_all:
        for local in retarget_stream(avatar.rig, FPS, frames):
            world = avatar.rig.fk(local)
            alone, together = r_hands.render(world), r_all.render(world)
            torso = _channel(together, 2)
            out.append({side: int((_channel(alone, c) & torso).sum()) for c, side in enumerate(SIDES)})
    return out


def test_no_hand_inside_the_torso_when_the_model_signs(scheduler, avatar):
    hidden = hidden_hand_pixels(avatar, _model_frames(scheduler, "Joshua"))
    worst = {side: max(h[side] for h in hidden) for side in SIDES}
    assert worst["left"] <= CONTACT_PIXELS and worst["right"] <= CONTACT_PIXELS, worst


def test_the_check_sees_a_hand_inside_the_torso(scheduler, avatar):
    """The same check on frames as the engine sent them before: the left wrist and a shrunken left
    hand (the model's output spans about 0.01) at the neck, confidence 1. It must find the hand in the
    chest, or it could not fail."""
    rest, _ = rest_pose()
    tiny_hand = (rest[LEFT_HAND_SLICE] - rest[LEFT_HAND_SLICE][0]) * 0.02
    broken = []
    for points, conf in _model_frames(scheduler, "Joshua"):
        if (conf[LEFT_HAND_SLICE] == 0).all():  # the unit's own frames
            points, conf = points.copy(), conf.copy()
            points[L_WRIST], points[LEFT_HAND_SLICE] = 0.0, tiny_hand
            conf[L_WRIST] = conf[LEFT_HAND_SLICE] = 1.0
        broken.append((points, conf))
    hidden = hidden_hand_pixels(avatar, broken)
    assert max(h["left"] for h in hidden) > 10 * CONTACT_PIXELS
