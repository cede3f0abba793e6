"""The straightforward reference retargeter (per bone, per side), kept as it was before the
vectorized server/avatar/retarget.py: tests compare the two on real recordings. Not served.

Retargeting: canonical 50-joint frames → local joint rotations of any humanoid rig.

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

from collections.abc import Iterable, Iterator
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


class Retargeter:
    """Stateful per-stream retargeting for one rig (hold/ease and smoothing keep state)."""

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
        # The rotation taking a palm frame to the hand bone's world rotation, per side.
        self._palm_to_hand = {side: self._palm_rest[side].T @ b_world[hb[f"{side}Hand"]] for side in SIDES}
        self._arm_k = [tuple(self._k[b] for b in arm_bones(side)) for side in SIDES]
        self._finger_k, self._finger_pts, self._finger_need = [], [], []
        for level in range(3):
            ks, pa, pb, need = [], [], [], []
            for side in SIDES:
                base = ARM_POINTS[side][3]
                for finger in FINGERS:
                    ks.append(self._k[finger_bones(side, finger)[level]])
                    a, b = FINGER_POINTS[finger][level], FINGER_POINTS[finger][level + 1]
                    pa.append(base + a)
                    pb.append(base + b)
                    need.append([base, base + _P["index_mcp"], base + _P["little_mcp"], base + a, base + b])
            self._finger_k.append(np.array(ks))
            self._finger_pts.append((np.array(pa), np.array(pb)))
            self._finger_need.append(np.array(need))
        self._elbow_twist = np.zeros(2)
        self._forearm_twist = np.zeros(2)
        self.rest = self._rest_pose()
        self._rest_k = self.rest[joint]
        self._held = self._rest_k.copy()
        self._missing = np.full(k_n, 10**6)
        self._twist_seen = np.zeros(2)  # forearm twist per side when its hand was last seen
        self._elbow_twist[:] = 0.0
        self._forearm_twist[:] = 0.0
        self._history: list[np.ndarray] = []

    # --- rest pose ----------------------------------------------------------------------------

    def _rest_pose(self) -> np.ndarray:
        """The rest pose (engines/rest.py), as a stream holding it settles (the elbow's full twist)."""
        points, confidence = rest_pose()
        self._held = self._rest_k = self._b.rest_rot.copy()  # every point is seen, never missing: neither is read
        self._missing = np.full(len(self.names), -10**6)
        self._twist_seen = np.zeros(2)
        return self.solve(points.astype(np.float64), confidence, settled=True)

    # --- per frame ----------------------------------------------------------------------------

    def solve(self, points: np.ndarray, confidence: np.ndarray, settled: bool = False) -> np.ndarray:
        """Local rotations (J, 3, 3) for one canonical frame, before smoothing (`settled`: with the
        elbow twist a stream holding it settles to)."""
        seen_pt = confidence >= self.settings.min_confidence
        g = np.zeros((len(self.names) + 1, 3, 3))  # slot 0: identity, for bones with no driven ancestor
        g[0] = np.eye(3)
        seen = np.zeros(len(self.names), dtype=bool)
        eased = self._eased_all()
        hand_targets: list[np.ndarray | None] = []
        for side in SIDES:
            hb = ARM_POINTS[side][3]
            ok = bool(seen_pt[[hb, hb + _P["index_mcp"], hb + _P["little_mcp"]]].all())
            hand_targets.append(palm_frame(points[hb], points[hb + _P["index_mcp"]], points[hb + _P["little_mcp"]], _SIGN[side])
                                @ self._palm_to_hand[side] if ok else None)
        if self._has_shoulder:
            for side in SIDES:
                k = self._k[f"{side}Shoulder"]
                sh = ARM_POINTS[side][0]
                seen[k] = ok = bool(seen_pt[NECK] and seen_pt[sh])
                c = self._carried(g, k)
                g[k + 1] = (self._swing_to(c @ self._b.rest_rot[k], k, points[sh] - points[NECK], cone=_SHOULDER_CONE)
                            if ok else c @ eased[k])
        for si, side in enumerate(SIDES):
            sh, el, wr, hb = ARM_POINTS[side]
            hand_ok = hand_targets[si] is not None
            end = points[hb] if hand_ok else points[wr]
            fore_ok = bool(seen_pt[el]) and (hand_ok or bool(seen_pt[wr]))
            arm_ok = fore_ok and bool(seen_pt[sh])
            ku, kl, kh = self._arm_k[si]
            seen[[ku, kl, kh]] = (arm_ok, arm_ok, hand_ok)
            if arm_ok:
                self._solve_arm(g, si, points[el] - points[sh], end - points[el], hand_targets[si], eased, rest=settled)
            else:
                for k in (ku, kl, kh):
                    g[k + 1] = self._carried(g, k) @ eased[k]
                if hand_ok:
                    g[kh + 1] = hand_targets[si]
            if hand_ok:
                self._twist_seen[si] = self._forearm_twist[si]
        # Fingers, segment by segment, all ten at once.
        for level in range(3):
            ks = self._finger_k[level]
            pa, pb = self._finger_pts[level]
            ok = seen_pt[self._finger_need[level]].all(axis=1)
            seen[ks] = ok
            carried = g[self._b.driver[ks] + 1] @ self._b.relp[ks]
            out = carried @ eased[ks]
            if ok.any():
                c = carried[ok] @ self._b.rest_rot[ks[ok]]
                following = None
                if level == 0:  # the middle segments' aims, to fold an over-bent finger into its knuckle
                    na, nb = self._finger_pts[1]
                    following = normalize(points[nb[ok]] - points[na[ok]])
                    following[~seen_pt[self._finger_need[1][ok]].all(axis=1)] = np.nan
                aim = self._clamp(c, ks[ok], normalize(points[pb[ok]] - points[pa[ok]]), following)
                out[ok] = swing(np.einsum("kij,kj->ki", c, self._b.dloc[ks[ok]]), aim) @ c
            g[ks + 1] = out
        local = self._to_locals(g)
        self._held[seen] = local[self._b.joint[seen]]
        self._missing[seen] = 0
        self._missing[~seen] += 1
        return local

    def push(self, points: np.ndarray, confidence: np.ndarray) -> np.ndarray | None:
        """Solve a frame; return the smoothed previous frame (None after the very first frame)."""
        raw = self.solve(points, confidence)
        if not self.settings.smoothing:
            return raw
        self._history = (self._history + [raw])[-3:]
        if len(self._history) == 1:
            return None
        prev2 = self._history[0]
        return self._smooth(prev2, self._history[-2], raw)

    def flush(self) -> np.ndarray | None:
        """The last frame, smoothed, once the stream ends (its next frame is taken to be itself)."""
        if not self.settings.smoothing or not self._history:
            return None
        h, self._history = self._history, []
        return self._smooth(h[-2] if len(h) > 1 else h[-1], h[-1], h[-1])

    # --- pieces ---------------------------------------------------------------------------------

    def _smooth(self, prev: np.ndarray, mid: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Centred 3-tap filter, one frame late: [1 2 1]/4 on still bones (jitter), fading to no
        smoothing on bones that turn fast (real movement keeps its timing and extent)."""
        j = self._b.joint  # only driven bones move
        p, m, n = prev[j], mid[j], nxt[j]
        speed = np.maximum(rotation_angle(p, m), rotation_angle(m, n))
        lo, hi = np.radians(_SMOOTH_FULL_BELOW), np.radians(_SMOOTH_NONE_ABOVE)
        w = (0.25 * np.clip((hi - speed) / (hi - lo), 0.0, 1.0))[:, None, None]
        out = mid.copy()
        out[j] = orthonormalize(w * p + (1 - 2 * w) * m + w * n)
        return out

    def _carried(self, g: np.ndarray, k: int) -> np.ndarray:
        """World rotation of bone k's parent joint, given the driven bones solved so far in g."""
        return g[self._b.driver[k] + 1] @ self._b.relp[k]

    def _eased_all(self) -> np.ndarray:
        """Local rotations (K, 3, 3) for bones now missing: held, then eased to rest."""
        s = self.settings
        hold, ease = s.hold_seconds * self.fps, max(s.ease_seconds * self.fps, 1e-9)
        t = np.clip((self._missing + 1 - hold) / ease, 0.0, 1.0)
        w = t * t * (3 - 2 * t)
        out = np.where((w >= 1)[:, None, None], self._rest_k, self._held)
        mid = (w > 0) & (w < 1)
        if mid.any():
            out[mid] = slerp(self._held[mid], self._rest_k[mid], w[mid])
        return out

    def _swing_to(self, c: np.ndarray, k: int, target: np.ndarray, cone: float | None = None) -> np.ndarray:
        d = c @ self._b.dloc[k]
        t = normalize(target)
        if cone is not None:
            t = _cone(d, t, np.radians(cone))
        return swing(d, t) @ c

    def _solve_arm(self, g: np.ndarray, si: int, upper: np.ndarray, fore: np.ndarray,
                   hand_target: np.ndarray | None, eased: np.ndarray, rest: bool) -> None:
        ku, kl, kh = self._arm_k[si]
        t, f = normalize(upper), normalize(fore)
        c = self._carried(g, ku) @ self._b.rest_rot[ku]
        s1 = swing(c @ self._b.dloc[ku], t) @ c
        # Twist the upper arm about itself so the elbow bends towards the forearm: at rest the
        # elbow bends forwards (+z), which nloc holds for arm bones.
        f_perp = f - np.dot(f, t) * t
        bend = float(np.linalg.norm(f_perp))
        ref = s1 @ self._b.nloc[ku]
        target_twist = float(signed_angle(normalize(ref - np.dot(ref, t) * t), f_perp / max(bend, 1e-9), t)) if bend > 1e-6 else 0.0
        if rest:
            phi = target_twist
        else:
            # A nearly straight arm has no bend plane: keep the last twist, trusting the bend as it grows.
            w = float(np.clip((bend - _STRAIGHT[0]) / (_STRAIGHT[1] - _STRAIGHT[0]), 0, 1))
            prev = self._elbow_twist[si]
            phi = prev + w * float(np.angle(np.exp(1j * (target_twist - prev))))
        self._elbow_twist[si] = phi
        g[ku + 1] = axis_angle(t, phi) @ s1
        c = self._carried(g, kl) @ self._b.rest_rot[kl]
        lower = swing(c @ self._b.dloc[kl], f) @ c
        # The forearm takes the wrist's twist (pronation); the wrist keeps only its bend.
        if hand_target is not None and self._b.driver[kh] == kl:
            hand_carried = lower @ self._b.relp[kh] @ self._b.rest_rot[kh]
            psi = float(twist_angle(hand_target @ hand_carried.T, f))
        elif rest:
            psi = 0.0
        else:  # hand missing: the last seen twist, easing to none with the hand
            psi = float(self._twist_seen[si]) * (1 - self._ease_weight(kh))
        self._forearm_twist[si] = psi
        g[kl + 1] = axis_angle(f, psi) @ lower
        g[kh + 1] = hand_target if hand_target is not None else self._carried(g, kh) @ eased[kh]

    def _ease_weight(self, k: int) -> float:
        s = self.settings
        hold, ease = s.hold_seconds * self.fps, max(s.ease_seconds * self.fps, 1e-9)
        t = float(np.clip((self._missing[k] + 1 - hold) / ease, 0.0, 1.0))
        return t * t * (3 - 2 * t)

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

    def _clamp(self, c: np.ndarray, ks: np.ndarray, t: np.ndarray, following: np.ndarray | None = None) -> np.ndarray:
        """Clamp target directions t (n, 3) to each segment's anatomical range.

        Flexion outside its range goes to the nearer limit around the circle: a finger that the
        input folds past a fist (flexion beyond ±180°) stays curled instead of flipping straight.
        With `following` (the next segments' aims, NaN where unknown), a middle joint bent past
        its range passes the excess to the knuckle: tracking flattens the depth of a curled
        finger, so a fist arrives as a half-bent knuckle and an impossible middle joint.
        """
        if not self.settings.limits:
            return t
        basis = c @ self._basis[ks]  # columns: bone direction, flexion direction, spread axis
        d, n, a = basis[..., 0], basis[..., 1], basis[..., 2]
        lim = self._limits[ks]
        out = t.copy()
        finger = lim[:, 3] == 0
        if finger.any():
            td, tn, ta = np.einsum("kji,kj->ik", basis, t)
            flex = np.arctan2(tn, td)
            if following is not None:
                fd, fn, _ = np.einsum("kji,kj->ik", basis, following)
                f_abs = np.arctan2(fn, fd)
                middle = np.mod(f_abs - flex + np.pi / 2, 2 * np.pi) - np.pi / 2  # in (-90°, 270°]
                excess = np.nan_to_num(middle - np.radians(FINGER_LIMITS[1][1]), nan=0.0)
                flex = flex + np.clip(excess, 0.0, np.maximum(lim[:, 1] - flex, 0.0))
            lo, hi = lim[:, 0], lim[:, 1]
            outside = (flex < lo) | (flex > hi)
            to_lo = np.abs(np.angle(np.exp(1j * (flex - lo))))
            to_hi = np.abs(np.angle(np.exp(1j * (flex - hi))))
            flex = np.where(outside, np.where(to_lo < to_hi, lo, hi), flex)
            spread = np.clip(np.arcsin(np.clip(ta, -1, 1)), -lim[:, 2], lim[:, 2])
            clamped = (np.cos(spread)[:, None] * (np.cos(flex)[:, None] * d + np.sin(flex)[:, None] * n)
                       + np.sin(spread)[:, None] * a)
            out[finger] = clamped[finger]
        thumb = ~finger
        if thumb.any():
            out[thumb] = _cone(d[thumb], t[thumb], lim[thumb, 3])
        return out

    def _to_locals(self, g: np.ndarray) -> np.ndarray:
        """Local rotations (J, 3, 3): rest for undriven joints, parent⁻¹ · world for driven ones."""
        b = self._b
        local = self.rig.rest_rotation.copy()
        parent_world = g[b.driver + 1] @ b.relp
        local[b.joint] = np.swapaxes(parent_world, -1, -2) @ g[1:]
        return local


def _cone(d: np.ndarray, t: np.ndarray, max_angle: float | np.ndarray) -> np.ndarray:
    """Pull unit directions t to within max_angle of unit directions d."""
    ang = np.arctan2(np.linalg.norm(cross(d, t), axis=-1), np.sum(d * t, axis=-1))
    over = ang > max_angle
    if not np.any(over):
        return t
    limited = np.einsum("...ij,...j->...i", axis_angle(cross(d, t), max_angle), d)
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
