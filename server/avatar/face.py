"""The avatar's face, head and life: the non-manual track (engines/nonmanual.py) on the rig.

Two steps around forward kinematics, so the retargeter (arms, hands) stays untouched:

- `FaceRig.turn(local, face)` — before FK, local rotations: the head (60 %) and neck (40 %) turn
  by head_nod (pitch, ±0.30 rad), head_shake (yaw, ±0.45 rad), head_tilt (roll, ±0.20 rad);
  breath pitches the upper chest (±0.02 rad) and sway rolls the spine (±0.03 rad). The track
  fades breath and sway out while signing, so the hands are never moved by them.
- `FaceRig.shape(world, face)` — after FK, on leaf bones (their transforms feed only skinning):
  each of the brows, jaw (mouth) and eyelids gets a deformation E in bind space, world_b ←
  world_b · bind_b⁻¹ · E · bind_b: brows move up (raise) or down and slant inner-down (furrow);
  the mouth (the jaw's geometry, scaled about its own centre) opens (taller, a little lower),
  spreads (wider) or rounds (narrower, taller); upper eyelids (bones named like `*eyelid*`/`*lid*`)
  turn down about their joint (the eye's centre), across the eye (x), by `EYELID_ANGLE` for a
  blink and half of it for a squint (the bundled avatar's lids are built for that angle:
  tools/avatar_build.py).

Amounts are in head-relative units (the distance between the brows, else the head bone's length),
so an avatar of any size moves alike. A channel with no bone for it is shown by the avatar's morph
targets where it has them (VRM expressions, ARKit blend shapes: server/avatar/expressions.py):
`weights(face)` are their weights, which the renderer adds before skinning, and `pose` gives both.
`shown_by()` says which channels an avatar shows, and how; the rotations stream sends
`ready_fields` so the browser (client/avatar-view.js) does the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engines.nonmanual import CHANNELS, INDEX
from server.avatar.expressions import Binds, channel_binds
from server.avatar.rig import Rig
from server.avatar.rotations import axis_angle, project_to_rotation

if TYPE_CHECKING:
    from server.avatar.gltf import Avatar

# Channel → the bones (any of) that show it.
_NEEDS: dict[str, tuple[str, ...]] = {
    "brow_raise": ("browLeft", "browRight"), "brow_furrow": ("browLeft", "browRight"),
    "blink": ("eyelidLeft", "eyelidRight"), "squint": ("eyelidLeft", "eyelidRight"),
    "head_nod": ("head", "neck"), "head_shake": ("head", "neck"), "head_tilt": ("head", "neck"),
    "mouth_open": ("jaw",), "mouth_spread": ("jaw",), "mouth_round": ("jaw",),
    "breath": ("upperChest", "chest"), "sway": ("spine",),
}
HEAD_ANGLES = {"head_nod": 0.30, "head_shake": 0.45, "head_tilt": 0.20}  # radians at ±1
EYELID_ANGLE = float(np.radians(160))  # a closed upper lid's turn about the eye's centre
_ALIASES = {"browLeft": ("browleft", "leftbrow", "brow_l", "brow.l"),
            "browRight": ("browright", "rightbrow", "brow_r", "brow.r"),
            "eyelidLeft": ("eyelidleft", "lefteyelid", "lid_l", "lid.l", "eyelid_l"),
            "eyelidRight": ("eyelidright", "righteyelid", "lid_r", "lid.r", "eyelid_r")}


def _find(rig: Rig, name: str) -> int | None:
    """A bone by VRM humanoid name, else by (folded) node name or a known alias."""
    if name in rig.humanoid:
        return rig.humanoid[name]
    wanted = {name.lower(), *_ALIASES.get(name, ())}
    for i, n in enumerate(rig.names):
        if n.lower().replace(" ", "") in wanted:
            return i
    return None


@dataclass
class FaceRig:
    """The face bones of one rig and where their geometry sits."""

    rig: Rig
    bones: dict[str, int]
    pivots: dict[str, np.ndarray] = field(default_factory=dict)  # bind space: a brow's or the jaw's geometry centre, an eyelid's joint
    unit: float = 0.07  # head-relative unit (avatar units): the distance between the brows
    morphs: dict[str, Binds] = field(default_factory=dict)  # channel → morph targets, where no bone shows it
    morph_names: list[str] = field(default_factory=list)  # the mesh's morph targets: the order of `weights`
    _morph_matrix: np.ndarray = field(init=False, repr=False)  # (channels, targets)
    _bind_rot: np.ndarray = field(init=False, repr=False)  # (J, 3, 3) cached: the per-frame work is small products only
    _bind_inv: np.ndarray = field(init=False, repr=False)  # (J, 4, 4)

    def __post_init__(self) -> None:
        self._bind_rot = project_to_rotation(self.rig.bind[:, :3, :3])
        self._bind_inv = np.linalg.inv(self.rig.bind)
        self._morph_matrix = np.zeros((len(CHANNELS), len(self.morph_names)), np.float32)
        for channel, binds in self.morphs.items():
            for target, w in binds:
                self._morph_matrix[INDEX[channel], self.morph_names.index(target)] += w

    @classmethod
    def of(cls, rig: Rig, positions: np.ndarray | None = None, joints: np.ndarray | None = None,
           weights: np.ndarray | None = None, morph_names: list[str] | None = None,
           expressions: dict[str, Binds] | None = None) -> FaceRig:
        """The face bones of `rig`; pass the mesh (positions, joints, weights) to find where the
        geometry of each brow and the jaw is (else its joint is the pivot); an eyelid turns about its joint."""
        names = ("head", "neck", "jaw", "browLeft", "browRight", "eyelidLeft", "eyelidRight", "upperChest",
                 "chest", "spine")
        bones = {n: j for n in names if (j := _find(rig, n)) is not None}
        pivots = {}
        for n in ("jaw", "browLeft", "browRight", "eyelidLeft", "eyelidRight"):
            if n not in bones:
                continue
            j = bones[n]
            p = rig.bind[j, :3, 3]
            if positions is not None and joints is not None and weights is not None and not n.startswith("eyelid"):
                mine = joints[np.arange(len(joints)), np.argmax(weights, axis=1)] == j
                if mine.any():
                    p = positions[mine].mean(axis=0)
            pivots[n] = np.asarray(p, np.float64)
        unit = 0.07
        if "browLeft" in bones and "browRight" in bones:
            unit = float(np.linalg.norm(rig.bind[bones["browLeft"], :3, 3] - rig.bind[bones["browRight"], :3, 3])) or unit
        elif "head" in bones and "neck" in bones:
            unit = float(np.linalg.norm(rig.bind[bones["head"], :3, 3] - rig.bind[bones["neck"], :3, 3])) or unit
        by_bones = {c for c in CHANNELS if any(b in bones for b in _NEEDS[c])}
        names = list(morph_names or [])
        return cls(rig, bones, pivots, unit, channel_binds(names, expressions or {}, by_bones), names)

    @classmethod
    def of_avatar(cls, avatar: Avatar) -> FaceRig:
        m = avatar.mesh
        return cls.of(avatar.rig, m.positions, m.joints, m.weights, list(m.morphs), avatar.expressions)

    def shown_by(self) -> dict[str, str]:
        """Per channel, how this avatar shows it: "bones", "expressions" (morph targets) or "" (not)."""
        return {c: "bones" if any(b in self.bones for b in _NEEDS[c]) else "expressions" if c in self.morphs else ""
                for c in CHANNELS}

    def channels(self) -> dict[str, bool]:
        """Which non-manual channels this avatar can show."""
        return {c: bool(how) for c, how in self.shown_by().items()}

    def ready_fields(self) -> dict:
        """What a page needs to apply the track alike (rotations stream `ready.avatar.face`)."""
        return {"joints": {n: int(j) for n, j in self.bones.items()},
                "pivots": {n: [round(float(x), 5) for x in p] for n, p in self.pivots.items()},
                "unit": round(self.unit, 5), "head_angles": HEAD_ANGLES, "eyelid_angle": round(EYELID_ANGLE, 5),
                "channels": [c for c, ok in self.channels().items() if ok],
                "morphs": {c: [[t, round(w, 5)] for t, w in binds] for c, binds in self.morphs.items()}}

    # --- before FK ---------------------------------------------------------------------------

    def _turn_bone(self, local: np.ndarray, j: int, rot_world: np.ndarray) -> None:
        b = self._bind_rot[j]
        local[j] = local[j] @ (b.T @ rot_world @ b)  # a canonical-axes turn, in the bone's own frame

    def turn(self, local: np.ndarray, face: np.ndarray | None) -> np.ndarray:
        """Local rotations (J, 3, 3) with the head, neck and torso turns of `face` (a copy)."""
        if face is None:
            return local
        out = np.array(local, dtype=np.float64)
        nod, shake, tilt = (float(face[INDEX[c]]) * HEAD_ANGLES[c] for c in ("head_nod", "head_shake", "head_tilt"))
        if nod or shake or tilt:
            share = [("head", 1.0)] if "neck" not in self.bones else [("neck", 0.4), ("head", 0.6)]
            for name, part in share:
                if name in self.bones:
                    self._turn_bone(out, self.bones[name], head_rotation(part * nod, part * shake, part * tilt))
        chest = self.bones.get("upperChest", self.bones.get("chest"))
        if chest is not None and face[INDEX["breath"]]:
            self._turn_bone(out, chest, axis_angle(np.array([1.0, 0.0, 0.0]), -0.02 * float(face[INDEX["breath"]])))
        if "spine" in self.bones and face[INDEX["sway"]]:
            self._turn_bone(out, self.bones["spine"], axis_angle(np.array([0.0, 0.0, 1.0]), 0.03 * float(face[INDEX["sway"]])))
        return out

    # --- after FK ----------------------------------------------------------------------------

    def deformations(self, face: np.ndarray) -> dict[str, np.ndarray]:
        """Per leaf bone, the bind-space deformation E (4, 4) for `face`."""
        u = self.unit
        raise_, furrow = float(face[INDEX["brow_raise"]]), float(face[INDEX["brow_furrow"]])
        out: dict[str, np.ndarray] = {}
        for name, side in (("browLeft", 1.0), ("browRight", -1.0)):
            if name not in self.pivots or not (raise_ or furrow):  # at rest: nothing to deform
                continue
            p = self.pivots[name]
            # Furrow: down, towards the middle, inner end lower (a slant about the brow's centre).
            slant = np.eye(4)
            slant[:3, :3] = axis_angle(np.array([0.0, 0.0, 1.0]), side * 0.25 * furrow)
            # (forward too: the brows sit on a curved forehead and would sink into it)
            e = _translate(np.array([-side * 0.06 * u * furrow, (0.20 * raise_ - 0.08 * furrow) * u, (0.04 * raise_ + 0.06 * furrow) * u])) \
                @ _translate(p) @ slant @ _translate(-p)
            out[name] = e
        o, s, r = (float(face[INDEX[c]]) for c in ("mouth_open", "mouth_spread", "mouth_round"))
        if "jaw" in self.pivots and (o or s or r):
            p = self.pivots["jaw"]
            scale = np.diag([max(0.3, 1 + 0.35 * s - 0.40 * r), 1 + 2.2 * o + 0.8 * r, 1.0, 1.0])
            out["jaw"] = _translate(np.array([0.0, -0.05 * u * o, 0.0])) @ _translate(p) @ scale @ _translate(-p)
        close = max(float(face[INDEX["blink"]]), 0.5 * float(face[INDEX["squint"]]))
        for name in ("eyelidLeft", "eyelidRight"):
            if name in self.pivots and close:
                p = self.pivots[name]
                turn = np.eye(4)
                turn[:3, :3] = axis_angle(np.array([1.0, 0.0, 0.0]), EYELID_ANGLE * close)
                out[name] = _translate(p) @ turn @ _translate(-p)
        return out

    def shape(self, world: np.ndarray, face: np.ndarray | None) -> np.ndarray:
        """World transforms (J, 4, 4) with the brows, mouth and eyelids deformed by `face` (a copy)."""
        if face is None:
            return world
        out = np.array(world, dtype=np.float64)
        for name, e in self.deformations(face).items():
            j = self.bones[name]
            out[j] = out[j] @ self._bind_inv[j] @ e @ self.rig.bind[j]
        return out

    def world(self, local: np.ndarray, face: np.ndarray | None) -> np.ndarray:
        """FK with the track's bones (head, torso, brows, mouth, eyelids) for local rotations and a face."""
        return self.shape(self.rig.fk(self.turn(local, face)), face)

    def weights(self, face: np.ndarray | None) -> np.ndarray | None:
        """The morph target weights (in `morph_names` order) for `face`; None when none move."""
        if face is None or not self.morphs:
            return None
        w = np.clip(np.asarray(face, np.float32) @ self._morph_matrix, 0.0, 1.0)
        return w if w.any() else None

    def pose(self, local: np.ndarray, face: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """What the renderer draws for local rotations and a face: world transforms and morph
        weights (`AvatarRenderer.submit(*face_rig.pose(local, face))`)."""
        return self.world(local, face), self.weights(face)


def _translate(v: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = v
    return m


def head_rotation(nod: float, shake: float, tilt: float) -> np.ndarray:
    """Canonical axes, radians: yaw (+ faces the signer's left, +x) · pitch (+ chin down) · roll
    (+ towards the signer's left shoulder). client/avatar-view.js composes the same."""
    return (axis_angle(np.array([0.0, 1.0, 0.0]), shake) @ axis_angle(np.array([1.0, 0.0, 0.0]), nod)
            @ axis_angle(np.array([0.0, 0.0, -1.0]), tilt))
