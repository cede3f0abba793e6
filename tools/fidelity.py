"""How faithfully a retargeted avatar reproduces its input: forward kinematics against the pose.

- Bone direction error: the angle between each avatar bone (joint head to the next joint head,
  or the fingertip) and the corresponding input bone, for the upper and lower arms and all 15
  finger segments of each hand, wherever the input sees both ends.
- Fingertip error: the input hand rebuilt with the avatar's own bone lengths (input directions
  from the avatar's wrist: wrist → knuckle, then each segment) against the avatar's fingertips.
  This is the error a viewer sees; it includes the palm, which the avatar keeps rigid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engines.sequence import PoseSequence
from server.avatar.humanoid import FINGERS, SIDES, arm_bones, finger_bones
from server.avatar.retarget import ARM_POINTS, FINGER_POINTS
from server.avatar.rig import Rig
from server.avatar.rotations import angle_between


@dataclass
class Fidelity:
    arm_deg: list[float] = field(default_factory=list)
    finger_deg: list[float] = field(default_factory=list)
    tip_error: list[float] = field(default_factory=list)  # avatar units
    hand_length: float = 1.0  # avatar wrist → middle fingertip at rest, avatar units

    def add(self, other: Fidelity) -> None:
        self.arm_deg += other.arm_deg
        self.finger_deg += other.finger_deg
        self.tip_error += other.tip_error
        self.hand_length = other.hand_length

    def summary(self) -> dict:
        arm, fin, tip = (np.asarray(x) for x in (self.arm_deg, self.finger_deg, self.tip_error))
        both = np.concatenate([arm, fin])
        return {
            "bone_angle_mean_deg": float(both.mean()) if both.size else None,
            "arm_angle_mean_deg": float(arm.mean()) if arm.size else None,
            "finger_angle_mean_deg": float(fin.mean()) if fin.size else None,
            "finger_angle_p95_deg": float(np.percentile(fin, 95)) if fin.size else None,
            "fingertip_error_mean": float(tip.mean()) if tip.size else None,
            "fingertip_error_mean_pct_hand": float(100 * tip.mean() / self.hand_length) if tip.size else None,
            "bone_samples": int(both.size),
            "fingertip_samples": int(tip.size),
        }


def measure(rig: Rig, seq: PoseSequence, local_rotations: np.ndarray, min_confidence: float = 0.3) -> Fidelity:
    """Compare FK of `local_rotations` (T, J, 3, 3) with `seq` frame by frame."""
    world = rig.fk(local_rotations)
    heads = world[..., :3, 3]
    tips = rig.tip_positions(world)
    bind_heads = rig.bind[:, :3, 3]
    hb = rig.humanoid
    pts, seen = seq.frames.astype(np.float64), seq.confidence >= min_confidence
    out = Fidelity()

    def end(joint: int, nxt: int | None, positions: np.ndarray) -> np.ndarray:
        return positions[:, nxt] if nxt is not None else tips[joint]

    mid_tip = rig.tips.get(hb["leftMiddleDistal"])
    out.hand_length = float(np.linalg.norm(mid_tip - bind_heads[hb["leftHand"]])) if mid_tip is not None else 1.0
    for side in SIDES:
        sh, el, wr, base = ARM_POINTS[side]
        ua, la, hand = (hb[b] for b in arm_bones(side))
        hand_seen = seen[:, [base, base + 5, base + 17]].all(axis=1)
        wrist = np.where(hand_seen[:, None], pts[:, base], pts[:, wr])
        wrist_seen = hand_seen | seen[:, wr]
        for a, b, ok, j0, j1 in ((pts[:, sh], pts[:, el], seen[:, sh] & seen[:, el], ua, la),
                                 (pts[:, el], wrist, seen[:, el] & wrist_seen, la, hand)):
            ang = angle_between(b - a, heads[:, j1] - heads[:, j0])
            out.arm_deg += np.degrees(ang[ok]).tolist()
        for finger in FINGERS:
            bones = [hb[b] for b in finger_bones(side, finger)]
            p = FINGER_POINTS[finger]
            for k in range(3):
                nxt = bones[k + 1] if k < 2 else None
                a, b = pts[:, base + p[k]], pts[:, base + p[k + 1]]
                ok = seen[:, base + p[k]] & seen[:, base + p[k + 1]] & hand_seen
                ang = angle_between(b - a, end(bones[k], nxt, heads) - heads[:, bones[k]])
                out.finger_deg += np.degrees(ang[ok]).tolist()
            # Rebuild the input finger with the avatar's lengths, from the avatar's wrist.
            ok = hand_seen & seen[:, [base + i for i in p]].all(axis=1)
            if not ok.any():
                continue
            chain = [hand] + bones
            ends = [bind_heads[c] for c in chain[1:]] + [rig.end_of(bones[2], None)]
            lengths = [np.linalg.norm(ends[0] - bind_heads[hand])] + [
                np.linalg.norm(ends[i + 1] - ends[i]) for i in range(3)]
            src = [pts[:, base]] + [pts[:, base + i] for i in p]
            pos = heads[:, hand].copy()
            for i in range(4):
                d = src[i + 1] - src[i]
                pos = pos + lengths[i] * d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
            err = np.linalg.norm(pos - tips[bones[2]], axis=-1)
            out.tip_error += err[ok].tolist()
    return out
