"""Retargeting: canonical 50-joint frames → local joint rotations of any humanoid rig.

Only directions are taken from the input, never lengths, so the result does not depend on the
avatar's bone lengths:
- arms: each bone swings onto the input's bone direction; the upper arm twists so the elbow bends
  where the input puts it (the forearm's side of the upper arm); the forearm carries the wrist's
  twist (pronation), leaving the wrist only its bend;
- the hand's orientation comes from the palm: wrist, index and little-finger knuckles;
- each finger segment swings from where its parent carries it onto the input direction, so its
  twist is the hand's; its flexion and spread are clamped to anatomical ranges;
- a chain whose points are missing or below the confidence threshold holds its last pose, then
  eases to the rest pose (engines/rest.py: arms down, flat hands);
- a centred 3-tap filter over rotations ([1 2 1]/4 on still bones, fading out on fast ones)
  smooths jitter and delays the output by exactly one frame.

All bone rotations are computed in world space (the rig's canonical-oriented world) as
G = world rotation; a bone's local rotation is its parent's G⁻¹ · G.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from engines.rest import rest_pose
from engines.sequence import PoseSequence
from engines.skeleton import (
    HAND_POINT_NAMES,
    L_ELBOW,
    L_SHOULDER,
    L_WRIST,
    LEFT_HAND,
    NECK,
    R_ELBOW,
    R_SHOULDER,
    R_WRIST,
    RIGHT_HAND,
)
from server.avatar.humanoid import FINGERS, SIDES, arm_bones, finger_bones
from server.avatar.rig import Rig
from server.avatar.rotations import (
    axis_angle,
    cross,
    normalize,
    orthonormalize,
    project_to_rotation,
    rotation_angle,
    signed_angle,
    slerp,
    swing,
    twist_angle,
)

_P = {n: i for i, n in enumerate(HAND_POINT_NAMES)}
# Input points (hand-relative) at the ends of each finger's three segments.
FINGER_POINTS: dict[str, tuple[int, int, int, int]] = {
    "thumb": (_P["thumb_cmc"], _P["thumb_mcp"], _P["thumb_ip"], _P["thumb_tip"]),
    **{f: tuple(_P[f"{f}_{k}"] for k in ("mcp", "pip", "dip", "tip")) for f in FINGERS[1:]},  # type: ignore[misc]
}
ARM_POINTS = {"left": (L_SHOULDER, L_ELBOW, L_WRIST, LEFT_HAND), "right": (R_SHOULDER, R_ELBOW, R_WRIST, RIGHT_HAND)}
_SIGN = {"left": 1.0, "right": -1.0}  # the signer's left is canonical +x

# Anatomical ranges in degrees, per segment: (least, most flexion), |spread| at most. Flexion curls
# towards the palm; negative is hyperextension.
FINGER_LIMITS = ((-30.0, 100.0, 30.0), (-10.0, 130.0, 20.0), (-20.0, 100.0, 20.0))
# The thumb moves in a cone about where the hand carries it: most degrees from the rest direction.
THUMB_CONE = (80.0, 90.0, 100.0)
_SHOULDER_CONE = 20.0  # the clavicle only shrugs
_STRAIGHT = (np.sin(np.radians(8.0)), np.sin(np.radians(25.0)))  # elbow bend too small / enough to twist by
# Smoothing strength by how fast a bone turns (degrees a frame): full [1 2 1]/4 below, none above.
_SMOOTH_FULL_BELOW, _SMOOTH_NONE_ABOVE = 2.0, 12.0


@dataclass(frozen=True)
class RetargetSettings:
    min_confidence: float = 0.3  # points below this count as missing
    hold_seconds: float = 0.25  # a missing chain keeps its last pose this long
    ease_seconds: float = 0.5  # then eases to rest over this long
    smoothing: bool = True  # the [1 2 1]/4 filter (one frame of delay)
    limits: bool = True  # anatomical finger limits


def palm_frame(wrist: np.ndarray, index: np.ndarray, little: np.ndarray, sign: np.ndarray | float) -> np.ndarray:
    """Hand frame (columns): x from the wrist towards the knuckles, z out of the palm.

    `sign` is +1 for a left hand, −1 for a right hand, so that z leaves the palm for both.
    """
    x = normalize((index + little) / 2 - wrist)
    n = normalize(cross(index - wrist, little - wrist)) * -np.asarray(sign)[..., None]
    z = normalize(n - np.sum(n * x, axis=-1, keepdims=True) * x)
    return np.stack([x, cross(z, x), z], axis=-1)


@dataclass
class _Bones:
    """Per driven bone: joint, nearest driven ancestor (index into this list) and rest geometry."""

    joint: np.ndarray  # (K,)
    driver: np.ndarray  # (K,) index of the nearest driven ancestor, -1 for none
    relp: np.ndarray  # (K, 3, 3) world rotation of the parent joint relative to the driver's, at rest
    rest_rot: np.ndarray  # (K, 3, 3) rest local rotation
    dloc: np.ndarray  # (K, 3) bone direction in the joint's own frame
    nloc: np.ndarray  # (K, 3) flexion direction (palm side) in the joint's own frame
    aloc: np.ndarray  # (K, 3) spread axis in the joint's own frame


@dataclass(frozen=True)
class _Level:
    """One finger segment level (proximal, middle, distal) of all ten fingers, as index arrays, so
    that a frame solves it in one batch of numpy calls."""

    ks: np.ndarray  # (10,) bone slots
    drv: np.ndarray  # (10,) slot in g of each bone's driver (driver + 1)
    relp: np.ndarray  # (10, 3, 3)
    rest_rot: np.ndarray  # (10, 3, 3)
    basis: np.ndarray  # (10, 3, 3) columns: bone direction, flexion direction, spread axis (joint frame)
    pa: np.ndarray  # (10,) input points where each segment starts
    pb: np.ndarray  # (10,) and ends
    need: np.ndarray  # (10, 5) points that must be seen to drive the segment
    lo: np.ndarray  # (10,) least flexion (radians)
    hi: np.ndarray  # (10,) most flexion
    spread: np.ndarray  # (10,) most |spread|
    thumb: np.ndarray  # (2,) rows that are thumbs (they move in a cone instead)
    cone: np.ndarray  # (2,) their cone


class Retargeter:
    """Stateful per-stream retargeting for one rig (hold/ease and smoothing keep state).

    A frame is solved in a handful of batches: both palms, both shoulders, both arms (upper arm,
    forearm, hand as three steps over the two sides), then each finger segment level for all ten
    fingers; every per-bone choice (seen or missing, thumb or finger) is a mask or a precomputed
    index array, not a Python branch, so one frame costs ~250 small numpy calls instead of ~800.
    """

    def __init__(self, rig: Rig, fps: float = 25.0, settings: RetargetSettings = RetargetSettings()) -> None:
        self.rig, self.fps, self.settings = rig, fps, settings
        b_world = project_to_rotation(rig.bind[:, :3, :3])
        heads = rig.bind[:, :3, 3]
        hb = rig.humanoid
        order: list[tuple[str, int, np.ndarray]] = []  # (bone name, joint, rest direction end)
        self._has_shoulder = all(f"{s}Shoulder" in hb for s in SIDES)
        chain_next: dict[str, str] = {}
        for side in SIDES:
            ua, la, hand = arm_bones(side)
            chain_next |= {f"{side}Shoulder": ua, ua: la, la: hand}
            for finger in FINGERS:
                bones = finger_bones(side, finger)
                chain_next |= {bones[0]: bones[1], bones[1]: bones[2]}
        names = ([f"{s}Shoulder" for s in SIDES] if self._has_shoulder else [])
        names += [arm_bones(s)[k] for k in range(3) for s in SIDES]
        names += [finger_bones(s, f)[k] for k in range(3) for s in SIDES for f in FINGERS]
        for name in names:
            j = hb[name]
            nxt = chain_next.get(name)
            end = rig.end_of(j, hb[nxt] if nxt else None)
            order.append((name, j, end))
        self.names = [n for n, _, _ in order]
        slot = {j: k for k, (_, j, _) in enumerate(order)}
        k_n = len(order)
        joint = np.array([j for _, j, _ in order])
        driver = np.full(k_n, -1)
        relp = np.zeros((k_n, 3, 3))
        for k, j in enumerate(joint):
            p = rig.parents[j]
            a = p
            while a >= 0 and a not in slot:
                a = rig.parents[a]
            driver[k] = slot.get(a, -1) if a >= 0 else -1
            bp = b_world[p] if p >= 0 else np.eye(3)
            relp[k] = (b_world[a].T @ bp) if a >= 0 else bp
        d_world = normalize(np.array([end - heads[j] for _, j, end in order]))
        # Palm normals at rest (out of the palm), per side, from the rig's own knuckles.
        palm_n = {}
        self._palm_rest = {}
        for side in SIDES:
            w = heads[hb[f"{side}Hand"]]
            f0 = palm_frame(w, heads[hb[f"{side}IndexProximal"]], heads[hb[f"{side}LittleProximal"]], _SIGN[side])
            self._palm_rest[side] = f0
            palm_n[side] = f0[:, 2]
        n_world = np.zeros_like(d_world)
        for k, name in enumerate(self.names):
            side = "left" if name.startswith("left") else "right"
            n = palm_n[side] if "Arm" not in name and "Shoulder" not in name else np.array([0.0, 0.0, 1.0])
            n_world[k] = normalize(n - np.dot(n, d_world[k]) * d_world[k])
        a_world = cross(d_world, n_world)
        bt = np.swapaxes(b_world[joint], -1, -2)
        self._b = _Bones(joint, driver, relp, rig.rest_rotation[joint],
                         np.einsum("kij,kj->ki", bt, d_world), np.einsum("kij,kj->ki", bt, n_world),
                         np.einsum("kij,kj->ki", bt, a_world))
        self._k = {name: k for k, name in enumerate(self.names)}
        self._limits = self._finger_limits()
        self._basis = np.stack([self._b.dloc, self._b.nloc, self._b.aloc], axis=-1)  # (K, 3, 3), joint frame
        # Per side (left, right) as arrays, so both sides solve in one batch.
        self._sign = np.array([_SIGN[s] for s in SIDES])
        # The rotation taking a palm frame to the hand bone's world rotation.
        self._palm_to_hand = np.stack([self._palm_rest[s].T @ b_world[hb[f"{s}Hand"]] for s in SIDES])
        base = np.array([ARM_POINTS[s][3] for s in SIDES])
        self._palm_pts = np.stack([base, base + _P["index_mcp"], base + _P["little_mcp"]])  # (3, 2)
        self._arm_pts = np.array([ARM_POINTS[s] for s in SIDES]).T  # (4, 2): shoulder, elbow, wrist, hand
        self._shoulder_k = np.array([self._k[f"{s}Shoulder"] for s in SIDES]) if self._has_shoulder else None
        self._arm_k = np.array([[self._k[b] for b in arm_bones(s)] for s in SIDES]).T  # (3, 2): upper, fore, hand
        self._hand_on_fore = self._b.driver[self._arm_k[2]] == self._arm_k[1]
        self._levels = [self._finger_level(level) for level in range(3)]
        self._eye = np.eye(3)
        self._elbow_twist = np.zeros(2)
        self._forearm_twist = np.zeros(2)
        self.rest = self._rest_pose()
        self._rest_k = self.rest[joint]
        self._held = self._rest_k.copy()
        self._missing = np.full(k_n, 10**6)
        self._twist_seen = np.zeros(2)  # forearm twist per side when its hand was last seen
        self._elbow_twist[:] = 0.0
        self._history: list[np.ndarray] = []

    def _finger_level(self, level: int) -> _Level:
        ks, pa, pb, need = [], [], [], []
        for side in SIDES:
            base = ARM_POINTS[side][3]
            for finger in FINGERS:
                ks.append(self._k[finger_bones(side, finger)[level]])
                a, b = FINGER_POINTS[finger][level], FINGER_POINTS[finger][level + 1]
                pa.append(base + a)
                pb.append(base + b)
                need.append([base, base + _P["index_mcp"], base + _P["little_mcp"], base + a, base + b])
        k = np.array(ks)
        lim = self._limits[k]
        thumb = np.flatnonzero(lim[:, 3] > 0)
        return _Level(k, self._b.driver[k] + 1, self._b.relp[k], self._b.rest_rot[k], self._basis[k],
                      np.array(pa), np.array(pb), np.array(need), lim[:, 0], lim[:, 1], lim[:, 2], thumb, lim[thumb, 3])

    # --- rest pose ----------------------------------------------------------------------------

    def _rest_pose(self) -> np.ndarray:
        """The rest pose (engines/rest.py: arms down, flat hands), as a stream holding it settles
        (a nearly straight arm takes its elbow twist over a few frames: here, all of it)."""
        points, confidence = rest_pose()
        held = self._b.rest_rot[None]  # every point is seen and never missing: held is not read
        never_missing = np.full((1, len(self.names)), -10**6)
        tw = _Twists(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)))
        local, _ = self._solve(points[None].astype(np.float64), confidence[None], held, never_missing, tw, settled=True)
        return local[0]

    # --- per frame ----------------------------------------------------------------------------

    def solve(self, points: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Local rotations (J, 3, 3) for one canonical frame, before smoothing."""
        return Retargeter.solve_many([self], points[None], confidence[None])[0]

    def push(self, points: np.ndarray, confidence: np.ndarray) -> np.ndarray | None:
        """Solve a frame; return the smoothed previous frame (None after the very first frame)."""
        return Retargeter.push_many([self], points[None], confidence[None])[0]

    def flush(self) -> np.ndarray | None:
        """The last frame, smoothed, once the stream ends (its next frame is taken to be itself)."""
        if not self.settings.smoothing or not self._history:
            return None
        h, self._history = self._history, []
        return self._smooth(h[-2] if len(h) > 1 else h[-1], h[-1], h[-1])

    @staticmethod
    def push_many(streams: Sequence[Retargeter], points: np.ndarray, confidence: np.ndarray) -> list[np.ndarray | None]:
        """`push` for S distinct streams of one rig (same rig, fps and settings) at once: points
        (S, 50, 3), confidence (S, 50). One batch of numpy calls serves them all, so a clock tick of
        many sessions costs little more than one (server/rotation_stream.py batches them)."""
        raw = Retargeter.solve_many(streams, points, confidence)
        first = streams[0]
        if not first.settings.smoothing:
            return list(raw)
        out: list[np.ndarray | None] = [None] * len(streams)
        ready = []
        for i, rt in enumerate(streams):
            rt._history = (rt._history + [raw[i]])[-3:]
            if len(rt._history) > 1:
                ready.append(i)
        if ready:
            h = [streams[i]._history for i in ready]
            smoothed = first._smooth(np.stack([x[0] for x in h]), np.stack([x[-2] for x in h]), raw[ready])
            for i, r in zip(ready, smoothed):
                out[i] = r
        return out

    @staticmethod
    def solve_many(streams: Sequence[Retargeter], points: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """`solve` for S distinct streams of one rig at once: local rotations (S, J, 3, 3)."""
        first = streams[0]
        if any(rt.rig is not first.rig or rt.fps != first.fps or rt.settings != first.settings for rt in streams):
            raise ValueError("solve_many needs streams of one rig, fps and settings")
        if len(streams) == 1:  # views: no copies
            held, missing = first._held[None], first._missing[None]
            tw = _Twists(first._elbow_twist[None], first._forearm_twist[None], first._twist_seen[None])
        else:
            held, missing = np.stack([rt._held for rt in streams]), np.stack([rt._missing for rt in streams])
            tw = _Twists(*(np.stack([getattr(rt, n) for rt in streams]) for n in ("_elbow_twist", "_forearm_twist", "_twist_seen")))
        local, seen = first._solve(np.asarray(points, np.float64), np.asarray(confidence), held, missing, tw)
        j = first._b.joint
        for i, rt in enumerate(streams):
            s = seen[i]
            rt._held = held[i].copy() if len(streams) > 1 else held[0]
            rt._held[s] = local[i, j[s]]
            rt._missing = np.where(s, 0, missing[i] + 1)
            rt._elbow_twist, rt._forearm_twist, rt._twist_seen = tw.elbow[i], tw.forearm[i], tw.seen[i]
        return local

    def _solve(self, points: np.ndarray, confidence: np.ndarray, held: np.ndarray, missing: np.ndarray,
               tw: _Twists, settled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The batched solve, S streams: local rotations (S, J, 3, 3) and which bones were seen
        (S, K). Reads the streams' held poses and missing counts; updates `tw` in place. `settled`:
        the elbow twist a stream holding this pose settles to, not this frame's step towards it."""
        seen_pt = confidence >= self.settings.min_confidence
        # Unseen points are never used, but batches compute every bone and then pick: zero them so
        # the picked-away lanes hold no NaN or inf.
        points = np.where(seen_pt[..., None], points, 0.0)
        b = self._b
        n = len(points)
        g = np.empty((n, len(self.names) + 1, 3, 3))  # slot 0: identity, for bones with no driven ancestor
        g[:, 0] = self._eye
        seen = np.zeros((n, len(self.names)), dtype=bool)
        eased, ease_w = self._eased_all(held, missing)
        # Both palms: the hands' target world rotations.
        pp = self._palm_pts
        hand_ok = _all(seen_pt[:, pp], axis=1)
        hand = palm_frame(points[:, pp[0]], points[:, pp[1]], points[:, pp[2]], self._sign) @ self._palm_to_hand
        if self._shoulder_k is not None:
            k, sh = self._shoulder_k, self._arm_pts[0]
            ok = seen_pt[:, [NECK]] & seen_pt[:, sh]
            seen[:, k] = ok
            carried = g[:, b.driver[k] + 1] @ b.relp[k]
            c = carried @ b.rest_rot[k]
            d = _apply(c, b.dloc[k])
            t = _cone(d, normalize(points[:, sh] - points[:, [NECK]]), np.radians(_SHOULDER_CONE))
            g[:, k + 1] = _pick(ok, swing(d, t) @ c, carried, eased[:, k])
        sh, el, wr, hb = self._arm_pts
        end = np.where(hand_ok[..., None], points[:, hb], points[:, wr])
        arm_ok = seen_pt[:, el] & (hand_ok | seen_pt[:, wr]) & seen_pt[:, sh]
        ku, kl, kh = self._arm_k
        seen[:, ku], seen[:, kl], seen[:, kh] = arm_ok, arm_ok, hand_ok
        upper, fore = points[:, el] - points[:, sh], end - points[:, el]
        self._solve_arms(g, upper, fore, hand, hand_ok, arm_ok, eased, ease_w, tw, settled)
        tw.seen[:] = np.where(hand_ok, tw.forearm, tw.seen)
        # Fingers, segment by segment, all ten of every stream at once.
        for level, lv in enumerate(self._levels):
            ok = _all(seen_pt[:, lv.need], axis=-1)
            seen[:, lv.ks] = ok
            carried = g[:, lv.drv] @ lv.relp
            if _any(ok, axis=None):
                c = carried @ lv.rest_rot
                basis = c @ lv.basis  # world columns: bone direction, flexion direction, spread axis
                aim = normalize(points[:, lv.pb] - points[:, lv.pa])
                following = following_ok = None
                if level == 0:  # the middle segments' aims, to fold an over-bent finger into its knuckle
                    nxt = self._levels[1]
                    following = normalize(points[:, nxt.pb] - points[:, nxt.pa])
                    following_ok = _all(seen_pt[:, nxt.need], axis=-1)
                aim = self._clamp(basis, lv, aim, following, following_ok)
                g[:, lv.ks + 1] = _pick(ok, swing(basis[..., 0], aim) @ c, carried, eased[:, lv.ks])
            else:
                g[:, lv.ks + 1] = carried @ eased[:, lv.ks]
        return self._to_locals(g), seen

    # --- pieces ---------------------------------------------------------------------------------

    def _smooth(self, prev: np.ndarray, mid: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Centred 3-tap filter, one frame late: [1 2 1]/4 on still bones (jitter), fading to no
        smoothing on bones that turn fast (real movement keeps its timing and extent).
        Rotations (..., J, 3, 3)."""
        j = self._b.joint  # only driven bones move
        p, m, n = prev[..., j, :, :], mid[..., j, :, :], nxt[..., j, :, :]
        speed = np.maximum(rotation_angle(p, m), rotation_angle(m, n))
        lo, hi = np.radians(_SMOOTH_FULL_BELOW), np.radians(_SMOOTH_NONE_ABOVE)
        w = (0.25 * _clip((hi - speed) / (hi - lo), 0.0, 1.0))[..., None, None]
        out = mid.copy()
        out[..., j, :, :] = orthonormalize(w * p + (1 - 2 * w) * m + w * n)
        return out

    def _eased_all(self, held: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local rotations (S, K, 3, 3) for bones now missing (held, then eased to rest), and the
        ease weights (S, K): 0 while held, 1 at rest."""
        s = self.settings
        hold, ease = s.hold_seconds * self.fps, max(s.ease_seconds * self.fps, 1e-9)
        t = _clip((missing + 1 - hold) / ease, 0.0, 1.0)
        w = t * t * (3 - 2 * t)
        if not _any(w, axis=None):  # every bone seen lately (the common case): the held pose as it is
            return held, w
        out = np.where((w >= 1)[..., None, None], self._rest_k, held)
        mid = (w > 0) & (w < 1)
        if mid.any():
            out[mid] = slerp(held[mid], np.broadcast_to(self._rest_k, held.shape)[mid], w[mid])
        return out, w

    def _solve_arms(self, g: np.ndarray, upper: np.ndarray, fore: np.ndarray, hand: np.ndarray,
                    hand_ok: np.ndarray, arm_ok: np.ndarray, eased: np.ndarray, ease_w: np.ndarray,
                    tw: _Twists, settled: bool) -> None:
        """Both arms of S streams, in g: upper arm, forearm, hand, each step for every side at once.
        Per side (S, 2), `arm_ok` says whether the arm is seen (else each bone takes its eased pose)
        and `hand_ok` whether `hand` (S, 2, 3, 3) holds the hand's target world rotation."""
        b = self._b
        ku, kl, kh = self._arm_k
        t, f = normalize(upper), normalize(fore)
        carried = g[:, b.driver[ku] + 1] @ b.relp[ku]
        c = carried @ b.rest_rot[ku]
        s1 = swing(_apply(c, b.dloc[ku]), t) @ c
        # Twist the upper arm about itself so the elbow bends towards the forearm: at rest the
        # elbow bends forwards (+z), which nloc holds for arm bones.
        f_perp = f - _dot(f, t)[..., None] * t
        bend = np.sqrt(_dot(f_perp, f_perp))
        ref = _apply(s1, b.nloc[ku])
        target_twist = np.where(bend > 1e-6, signed_angle(normalize(ref - _dot(ref, t)[..., None] * t),
                                                          f_perp / np.maximum(bend, 1e-9)[..., None], t), 0.0)
        if settled:
            phi = target_twist
        else:
            # A nearly straight arm has no bend plane: keep the last twist, trusting the bend as it grows.
            w = _clip((bend - _STRAIGHT[0]) / (_STRAIGHT[1] - _STRAIGHT[0]), 0.0, 1.0)
            prev = tw.elbow
            phi = prev + w * _wrap(target_twist - prev)
        tw.elbow[:] = np.where(arm_ok, phi, tw.elbow)
        g[:, ku + 1] = _pick(arm_ok, axis_angle(t, phi) @ s1, carried, eased[:, ku])
        carried = g[:, b.driver[kl] + 1] @ b.relp[kl]
        c = carried @ b.rest_rot[kl]
        lower = swing(_apply(c, b.dloc[kl]), f) @ c
        # The forearm takes the wrist's twist (pronation); the wrist keeps only its bend.
        hand_carried = lower @ b.relp[kh] @ b.rest_rot[kh]
        psi = np.where(hand_ok & self._hand_on_fore, twist_angle(hand @ np.swapaxes(hand_carried, -1, -2), f),
                       tw.seen * (1 - ease_w[:, kh]))  # hand missing: the last seen twist, easing to none
        tw.forearm[:] = np.where(arm_ok, psi, tw.forearm)
        g[:, kl + 1] = _pick(arm_ok, axis_angle(f, psi) @ lower, carried, eased[:, kl])
        carried = g[:, b.driver[kh] + 1] @ b.relp[kh]
        g[:, kh + 1] = _pick(hand_ok, hand, carried, eased[:, kh])

    def _finger_limits(self) -> np.ndarray:
        """(K, 4): least/most flexion, most spread, thumb cone (radians; cone 0 for fingers)."""
        lim = np.zeros((len(self.names), 4))
        for k, name in enumerate(self.names):
            for level, seg in enumerate(("Proximal", "Intermediate", "Distal")):
                if "Thumb" not in name and name.endswith(seg) and any(f.capitalize() in name for f in FINGERS[1:]):
                    lim[k, :3] = np.radians(FINGER_LIMITS[level])
            for level, seg in enumerate(("Metacarpal", "Proximal", "Distal")):
                if "Thumb" in name and name.endswith(seg):
                    lim[k, 3] = np.radians(THUMB_CONE[level])
        return lim

    def _clamp(self, basis: np.ndarray, lv: _Level, t: np.ndarray, following: np.ndarray | None = None,
               following_ok: np.ndarray | None = None) -> np.ndarray:
        """Clamp target directions t (S, 10, 3) of a segment level to each segment's anatomical
        range; `basis` (S, 10, 3, 3) holds the segments' world bone direction, flexion direction and
        spread axis as columns.

        Flexion outside its range goes to the nearer limit around the circle: a finger that the
        input folds past a fist (flexion beyond ±180°) stays curled instead of flipping straight.
        With `following` (the next segments' aims, trusted where `following_ok`), a middle joint
        bent past its range passes the excess to the knuckle: tracking flattens the depth of a
        curled finger, so a fist arrives as a half-bent knuckle and an impossible middle joint.
        """
        if not self.settings.limits:
            return t
        d, n, a = basis[..., 0], basis[..., 1], basis[..., 2]
        proj = (t[..., None, :] @ basis)[..., 0, :]  # t in the basis: along, towards the palm, spread
        flex = np.arctan2(proj[..., 1], proj[..., 0])
        lo, hi = lv.lo, lv.hi
        if following is not None:
            fp = (following[..., None, :] @ basis)[..., 0, :]
            middle = np.mod(np.arctan2(fp[..., 1], fp[..., 0]) - flex + np.pi / 2, 2 * np.pi) - np.pi / 2  # (-90°, 270°]
            excess = np.where(following_ok, middle - np.radians(FINGER_LIMITS[1][1]), 0.0)
            flex = flex + _clip(excess, 0.0, np.maximum(hi - flex, 0.0))
        outside = (flex < lo) | (flex > hi)
        nearer = np.where(np.abs(_wrap(flex - lo)) < np.abs(_wrap(flex - hi)), lo, hi)
        flex = np.where(outside, nearer, flex)
        spread = _clip(np.arcsin(_clip(proj[..., 2], -1.0, 1.0)), -lv.spread, lv.spread)
        out = (np.cos(spread)[..., None] * (np.cos(flex)[..., None] * d + np.sin(flex)[..., None] * n)
               + np.sin(spread)[..., None] * a)
        out[:, lv.thumb] = _cone(d[:, lv.thumb], t[:, lv.thumb], lv.cone)  # the thumbs: a cone, not flexion
        return out

    def _to_locals(self, g: np.ndarray) -> np.ndarray:
        """Local rotations (S, J, 3, 3): rest for undriven joints, parent⁻¹ · world for driven ones."""
        b = self._b
        local = np.broadcast_to(self.rig.rest_rotation, (len(g),) + self.rig.rest_rotation.shape).copy()
        parent_world = g[:, b.driver + 1] @ b.relp
        local[:, b.joint] = np.swapaxes(parent_world, -1, -2) @ g[:, 1:]
        return local


@dataclass
class _Twists:
    """Per stream and side (S, 2): the upper arm's twist, the forearm's, the forearm's when its hand
    was last seen."""

    elbow: np.ndarray
    forearm: np.ndarray
    seen: np.ndarray


def _apply(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Matrices (..., 3, 3) times vectors (..., 3)."""
    return (m @ v[..., None])[..., 0]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)


# ufunc methods and ufuncs straight, not np.all / np.any / np.clip: those add a Python layer
# that costs more than the operation on these tiny arrays.
_all, _any = np.logical_and.reduce, np.logical_or.reduce


def _clip(x: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, lo), hi)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped into [-π, π)."""
    return np.mod(angle + np.pi, 2 * np.pi) - np.pi


def _pick(ok: np.ndarray, solved: np.ndarray, carried: np.ndarray, eased: np.ndarray) -> np.ndarray:
    """Per bone: the solved world rotation where seen, else the eased local one under its parent.
    Skips the product when every bone of the batch was seen."""
    if _all(ok, axis=None):
        return solved
    return np.where(ok[..., None, None], solved, carried @ eased)


def _cone(d: np.ndarray, t: np.ndarray, max_angle: float | np.ndarray) -> np.ndarray:
    """Pull unit directions t to within max_angle of unit directions d."""
    dt = cross(d, t)
    ang = np.arctan2(np.sqrt(_dot(dt, dt)), _dot(d, t))
    over = ang > max_angle
    if not np.any(over):
        return t
    limited = (axis_angle(dt, max_angle) @ d[..., None])[..., 0]
    return np.where(np.asarray(over)[..., None], limited, t)


def retarget_stream(rig: Rig, fps: float, frames: Iterable[tuple[np.ndarray, np.ndarray]],
                    settings: RetargetSettings = RetargetSettings()) -> Iterator[np.ndarray]:
    """Local rotations (J, 3, 3) for each (points, confidence) of a finite stream, one per frame:
    the one-frame delay of the smoothing is taken back at the stream's end."""
    rt = Retargeter(rig, fps, settings)
    for pts, conf in frames:
        r = rt.push(np.asarray(pts, np.float64), conf)
        if r is not None:
            yield r
    last = rt.flush()
    if last is not None:
        yield last


def retarget_sequence(rig: Rig, seq: PoseSequence, settings: RetargetSettings = RetargetSettings()) -> np.ndarray:
    """Local rotations (T, J, 3, 3) for a whole clip, aligned with its frames."""
    out = list(retarget_stream(rig, seq.fps, zip(seq.frames, seq.confidence), settings))
    return np.stack(out) if out else np.zeros((0, len(rig), 3, 3))
