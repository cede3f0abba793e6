"""Rig and retargeting: FK of the rest pose is the bind pose; poses made by FK are recovered;
missing hands hold then ease to rest; smoothing delays by one frame and no more; real data."""

from __future__ import annotations

import numpy as np
import pytest

from engines.formats.posefile import read_pose
from engines.skeleton import NECK, NOSE, NUM_JOINTS
from tools.avatar_build import ASSET
from tools.fidelity import measure
from server.avatar.gltf import load_avatar
from server.avatar.humanoid import FINGERS, SIDES, arm_bones, finger_bones
from server.avatar.retarget import ARM_POINTS, FINGER_POINTS, RetargetSettings, Retargeter, retarget_sequence
from server.avatar.rig import Rig
from server.avatar.rotations import axis_angle, normalize, rotation_angle, swing

EXACT = RetargetSettings(smoothing=False)


@pytest.fixture(scope="module")
def avatar():
    return load_avatar(ASSET)


def canonical_frame(rig: Rig, world: np.ndarray) -> np.ndarray:
    """The 50 input points an ideal tracker would report for the avatar posed at `world`."""
    heads = world[:, :3, 3]
    tips = rig.tip_positions(world)
    hb = rig.humanoid
    pts = np.zeros((NUM_JOINTS, 3))
    for side in SIDES:
        sh, el, wr, base = ARM_POINTS[side]
        ua, la, hand = (hb[b] for b in arm_bones(side))
        pts[sh], pts[el], pts[wr], pts[base] = heads[ua], heads[la], heads[hand], heads[hand]
        for finger in FINGERS:
            bones = [hb[b] for b in finger_bones(side, finger)]
            for point, joint in zip(FINGER_POINTS[finger], bones):
                pts[base + point] = heads[joint]
            pts[base + FINGER_POINTS[finger][3]] = tips[bones[2]]
    pts[NECK] = (pts[ARM_POINTS["left"][0]] + pts[ARM_POINTS["right"][0]]) / 2
    pts[NOSE] = heads[hb["head"]] + [0, 0.1, 0.1]
    return pts


def known_pose(rt: Retargeter, rng: np.random.Generator) -> np.ndarray:
    """Local rotations the retargeter's model can express: free upper arms, elbows as hinges with
    forearm twist, wrists bending without twist, fingers swinging within their limits."""
    rig, b = rt.rig, rt._b
    local = rig.rest_rotation.copy()  # shoulders as bound: the rest pose's shrug carries a twist no point shows
    for side in SIDES:
        ku, kl, kh = (rt._k[n] for n in arm_bones(side))
        ju, jl, jh = b.joint[[ku, kl, kh]]
        local[ju] = rig.rest_rotation[ju] @ axis_angle(normalize(rng.normal(size=3)), rng.uniform(0.3, 1.0))
        hinge = np.cross(b.dloc[ku], b.nloc[ku])  # the elbow bends towards nloc
        local[jl] = rig.rest_rotation[jl] @ axis_angle(hinge, rng.uniform(0.6, 1.8)) @ axis_angle(b.dloc[kl], rng.uniform(-1, 1))
        wrist_axis = normalize(np.cross(b.dloc[kl], rng.normal(size=3)))  # ⊥ the forearm: no twist
        local[jh] = rig.rest_rotation[jh] @ axis_angle(wrist_axis, rng.uniform(-0.6, 0.6))
        for finger in FINGERS:
            for level, name in enumerate(finger_bones(side, finger)):
                k = rt._k[name]
                j = b.joint[k]
                if finger == "thumb":
                    v = normalize(b.dloc[k] + 0.5 * normalize(np.cross(b.dloc[k], rng.normal(size=3))))
                else:
                    flex, spread = rng.uniform(0.0, 1.4), rng.uniform(-0.15, 0.15)
                    v = np.cos(spread) * (np.cos(flex) * b.dloc[k] + np.sin(flex) * b.nloc[k]) + np.sin(spread) * b.aloc[k]
                local[j] = rig.rest_rotation[j] @ swing(b.dloc[k], v)
    return local


def test_rest_pose_fk_is_bind_pose(avatar):
    rig = avatar.rig
    np.testing.assert_allclose(rig.fk(rig.rest_rotation), rig.bind, atol=1e-9)


def test_rest_pose_fk_is_bind_pose_with_rotated_scaled_bones():
    """A rig whose bind pose has non-identity rotations and a scale (as exported armatures do)."""
    rng = np.random.default_rng(3)
    n = 6
    bind = np.tile(np.eye(4), (n, 1, 1))
    world = np.eye(4)
    for i in range(n):
        step = np.eye(4)
        step[:3, :3] = axis_angle(normalize(rng.normal(size=3)), rng.uniform(0, 2)) * (0.01 if i == 0 else 1.0)
        step[:3, 3] = rng.normal(size=3)
        world = world @ step
        bind[i] = world
    rig = Rig(tuple(f"j{i}" for i in range(n)), np.arange(n) - 1, bind, {})
    np.testing.assert_allclose(rig.fk(rig.rest_rotation), bind, atol=1e-9)


def test_retargeting_recovers_known_rotations(avatar):
    rt = Retargeter(avatar.rig, 25.0, EXACT)
    rng = np.random.default_rng(0)
    for _ in range(5):
        truth = known_pose(rt, rng)
        pts = canonical_frame(avatar.rig, avatar.rig.fk(truth))
        got = rt.solve(pts, np.ones(NUM_JOINTS))
        driven = rt._b.joint
        err = np.degrees(rotation_angle(got[driven], truth[driven]))
        assert err.max() < 1e-4, dict(zip(np.array(rt.names)[err > 1e-4], err[err > 1e-4]))


def test_retargeting_ignores_bone_lengths(avatar):
    """Stretching every input bone (and moving the body) changes nothing: only directions count."""
    rt = Retargeter(avatar.rig, 25.0, EXACT)
    truth = known_pose(rt, np.random.default_rng(1))
    pts = canonical_frame(avatar.rig, avatar.rig.fk(truth))
    a = rt.solve(pts, np.ones(NUM_JOINTS))
    scaled = (pts - pts[NECK]) * 3.7 + [5.0, -2.0, 1.0]
    b = Retargeter(avatar.rig, 25.0, EXACT).solve(scaled, np.ones(NUM_JOINTS))
    assert np.degrees(rotation_angle(a, b)).max() < 1e-4


def test_finger_limits_clamp_impossible_bends(avatar):
    rt = Retargeter(avatar.rig, 25.0, RetargetSettings(smoothing=False))
    truth = known_pose(rt, np.random.default_rng(2))
    pts = canonical_frame(avatar.rig, avatar.rig.fk(truth))
    base = ARM_POINTS["right"][3]
    mcp, pip, dip, tip = (base + p for p in FINGER_POINTS["index"])
    # Bend the index's middle segment backwards, far past hyperextension.
    seg = pts[dip] - pts[pip]
    back = pts[pip] + np.linalg.norm(seg) * normalize(2 * normalize(pts[pip] - pts[mcp]) - normalize(np.cross(seg, pts[mcp] - pts[base])))
    pts[dip], pts[tip] = back, back + (pts[tip] - pts[dip])
    local = rt.solve(pts, np.ones(NUM_JOINTS))
    k = rt._k["rightIndexIntermediate"]
    j = rt._b.joint[k]
    direction = avatar.rig.rest_rotation[j].T @ local[j] @ rt._b.dloc[k]
    flex = np.degrees(np.arctan2(direction @ rt._b.nloc[k], direction @ rt._b.dloc[k]))
    spread = np.degrees(np.arcsin(direction @ rt._b.aloc[k]))
    assert -10.0 - 1e-6 <= flex <= 130.0 + 1e-6 and abs(spread) <= 20.0 + 1e-6


def test_missing_hand_holds_then_eases_to_rest(avatar):
    fps = 25.0
    settings = RetargetSettings(smoothing=False, hold_seconds=0.2, ease_seconds=0.4)
    rt = Retargeter(avatar.rig, fps, settings)
    truth = known_pose(rt, np.random.default_rng(4))
    pts = canonical_frame(avatar.rig, avatar.rig.fk(truth))
    conf = np.ones(NUM_JOINTS)
    seen = rt.solve(pts, conf)
    gone = conf.copy()
    gone[ARM_POINTS["right"][3]:ARM_POINTS["right"][3] + 21] = 0.0
    finger = avatar.rig.humanoid["rightIndexProximal"]
    held = rt.solve(pts, gone)
    assert rotation_angle(held[finger], seen[finger]) < 1e-6  # held
    for _ in range(int((0.2 + 0.4) * fps) + 1):
        out = rt.solve(pts, gone)
    assert rotation_angle(out[finger], rt.rest[finger]) < 1e-6  # eased all the way to rest
    assert rotation_angle(out[avatar.rig.humanoid["rightUpperArm"]], seen[avatar.rig.humanoid["rightUpperArm"]]) < 1e-6


def test_smoothing_adds_one_frame_of_delay_and_no_lag(avatar):
    """Streaming output is the previous frame; on a steady turn the centred filter does not lag."""
    rig = avatar.rig
    rt = Retargeter(rig, 25.0)
    ref = Retargeter(rig, 25.0, EXACT)
    base = known_pose(ref, np.random.default_rng(5))
    j = rig.humanoid["rightUpperArm"]
    axis = normalize(np.array([0.3, 0.2, 1.0]))
    raws, outs = [], []
    for t in range(8):
        pose = base.copy()
        pose[j] = base[j] @ axis_angle(axis, 0.01 * t)  # 0.6°/frame: smoothed at full strength
        pts = canonical_frame(rig, rig.fk(pose))
        raws.append(ref.solve(pts, np.ones(NUM_JOINTS)))
        outs.append(rt.push(pts, np.ones(NUM_JOINTS)))
    assert outs[0] is None
    for t in range(2, 8):
        assert np.degrees(rotation_angle(outs[t][j], raws[t - 1][j])) < 0.01


def test_real_recordings_track_closely(avatar, lexicon_dir):
    """A few real fingerspelling clips: mean bone direction error well inside the 8° target."""
    paths = sorted(lexicon_dir.glob("*/*.pose"))[::97][:4]
    assert len(paths) == 4
    for path in paths:
        seq = read_pose(path)
        rotations = retarget_sequence(avatar.rig, seq)
        assert rotations.shape == (len(seq), len(avatar.rig), 3, 3)
        summary = measure(avatar.rig, seq, rotations).summary()
        assert summary["bone_angle_mean_deg"] < 8.0, (path, summary)


def test_bone_orientation_in_bind_pose_does_not_matter(avatar):
    """Exported rigs give bones arbitrary local axes (Mixamo, Blender): same joints, same result."""
    rig = avatar.rig
    rng = np.random.default_rng(6)
    bind = rig.bind.copy()
    for j in range(len(rig)):
        bind[j, :3, :3] = bind[j, :3, :3] @ axis_angle(normalize(rng.normal(size=3)), rng.uniform(0, np.pi))
    twisted = Rig(rig.names, rig.parents, bind, rig.humanoid, rig.tips)
    rt = Retargeter(rig, 25.0, EXACT)
    pts = canonical_frame(rig, rig.fk(known_pose(rt, np.random.default_rng(7))))
    conf = np.ones(NUM_JOINTS)
    a = rig.fk(rt.solve(pts, conf))[:, :3, 3]
    b = twisted.fk(Retargeter(twisted, 25.0, EXACT).solve(pts, conf))[:, :3, 3]
    np.testing.assert_allclose(a, b, atol=1e-9)
    ra, rb = (r.fk(Retargeter(r).rest)[:, :3, 3] for r in (rig, twisted))
    np.testing.assert_allclose(ra, rb, atol=1e-9)


def _real_streams(lexicon_dir, n: int, drop_hand: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """n real recordings as (points, confidence) at 25 fps; with `drop_hand`, every other one loses
    its right hand for a stretch (then regains it), so holding, easing and the seen/missing masks of
    a batch differ between its streams."""
    paths = sorted(lexicon_dir.glob("*/*.pose"))[5::61][:n]
    assert len(paths) == n
    out = []
    for i, path in enumerate(paths):
        seq = read_pose(path).resample(25.0)
        pts, conf = seq.frames.astype(np.float64), seq.confidence.copy()
        if drop_hand and i % 2 and len(conf) > 8:
            base = ARM_POINTS["right"][3]
            conf[3:3 + min(20, len(conf) - 6), base:base + 21] = 0.0
        out.append((pts, conf))
    return out


@pytest.mark.parametrize("settings", [RetargetSettings(), RetargetSettings(smoothing=False, limits=False)])
def test_matches_the_straightforward_reference_on_real_recordings(avatar, lexicon_dir, settings):
    """The vectorized retargeter gives the per-bone reference's rotations (tests/reference_retarget.py)
    frame by frame on real clips, including a hand lost and found again."""
    from tests.reference_retarget import Retargeter as Reference

    for pts, conf in _real_streams(lexicon_dir, 6):
        fast, ref = Retargeter(avatar.rig, 25.0, settings), Reference(avatar.rig, 25.0, settings)
        np.testing.assert_allclose(fast.rest, ref.rest, atol=1e-9)
        for p, c in zip(pts, conf):
            a, b = fast.push(p, c), ref.push(p, c)
            assert (a is None) == (b is None)
            if a is not None:
                assert np.degrees(rotation_angle(a, b)).max() < 1e-4
        a, b = fast.flush(), ref.flush()
        if b is not None:
            assert np.degrees(rotation_angle(a, b)).max() < 1e-4


def test_streams_batched_match_each_alone(avatar, lexicon_dir):
    """push_many over streams in different states (one joining late, hands missing in some) gives
    each stream what it gets alone, and leaves each retargeter's state as its own."""
    streams = _real_streams(lexicon_dir, 5)
    alone = [Retargeter(avatar.rig) for _ in streams]
    batched = [Retargeter(avatar.rig) for _ in streams]
    longest = max(len(p) for p, _ in streams)
    for t in range(longest + 10):
        live = [i for i in range(len(streams)) if t >= 3 * (i == 4)]  # the last joins at frame 3
        pts = np.stack([streams[i][0][t % len(streams[i][0])] for i in live])
        conf = np.stack([streams[i][1][t % len(streams[i][1])] for i in live])
        got = Retargeter.push_many([batched[i] for i in live], pts, conf)
        for k, i in enumerate(live):
            want = alone[i].push(pts[k], conf[k])
            assert (got[k] is None) == (want is None)
            if want is not None:
                assert np.abs(got[k] - want).max() < 1e-9, (i, t)
    with pytest.raises(ValueError):
        Retargeter.push_many([Retargeter(avatar.rig), Retargeter(avatar.rig, 30.0)], pts[:2], conf[:2])
