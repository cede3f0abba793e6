"""Our bundled avatar, made by code: `python -m tools.avatar_build` writes assets/signer.glb.

A friendly, stylised signer dressed as interpreters dress: a dark, plain long-sleeved top so the
skin-coloured hands stand out, slightly enlarged hands (×1.15) so handshapes read at 512×512, nails
on every fingertip and a lighter palm so the viewer can tell the palm from the back of the hand.

The figure is modelled in a T-pose (every joint's rest rotation is the identity, as VRM
normalises) in metres, facing +z, its left towards +x. Surfaces are lathed shapes (a profile
turned about a bone) bound rigidly to one bone each, overlapping at the joints like a jointed
doll, except the torso, which blends across the spine. Eyebrows, the mouth and the upper eyelids
sit on bones of their own (browLeft, browRight, jaw, eyelidLeft, eyelidRight) so the non-manual
track moves them (server/avatar/face.py). An eyelid is a shell about the eye's centre (its bone's
joint), tucked inside the head while the eye is open, so the open face is the face without lids;
turned down about that joint it covers the eye.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.avatar.gltf import AvatarMesh, write_glb
from server.avatar.humanoid import FINGERS, SIDES, finger_bones
from server.avatar.rig import Rig
from server.avatar.rotations import normalize

ASSET = Path(__file__).resolve().parents[1] / "server" / "avatar" / "assets" / "signer.glb"

HAND_SCALE = 1.15
# Colours in sRGB.
SKIN = (0.80, 0.55, 0.42)
PALM = (0.90, 0.66, 0.55)
NOSE = (0.84, 0.58, 0.46)
NAIL = (0.96, 0.80, 0.76)
SHIRT = (0.10, 0.13, 0.22)
HAIR = (0.16, 0.10, 0.07)
BROW = (0.14, 0.09, 0.06)
LIPS = (0.55, 0.22, 0.22)
EYE_WHITE = (0.95, 0.95, 0.93)
IRIS = (0.10, 0.07, 0.05)
LID = (0.74, 0.49, 0.37)  # a shade darker than the skin, so a closed eye still reads as an eye

# Left hand, relative to the wrist, in the T-pose (fingers along +x, thumb towards +z, palm down),
# before HAND_SCALE. Each finger: knuckle position, then the three segment ends.
_FINGER_JOINTS: dict[str, list[tuple[float, float, float]]] = {
    "index": [(0.086, 0.0, 0.024), (0.126, -0.001, 0.027), (0.150, -0.002, 0.028), (0.170, -0.003, 0.029)],
    "middle": [(0.090, 0.0, 0.006), (0.134, -0.001, 0.007), (0.162, -0.002, 0.007), (0.183, -0.003, 0.007)],
    "ring": [(0.085, 0.0, -0.011), (0.126, -0.001, -0.013), (0.152, -0.002, -0.014), (0.172, -0.003, -0.015)],
    "little": [(0.077, -0.001, -0.027), (0.109, -0.002, -0.032), (0.128, -0.003, -0.035), (0.146, -0.004, -0.037)],
    "thumb": [(0.020, -0.010, 0.020), (0.050, -0.018, 0.046), (0.076, -0.021, 0.063), (0.100, -0.023, 0.076)],
}
# Radii at the start and end of each segment, before HAND_SCALE.
_FINGER_RADII = {
    "thumb": [(0.0125, 0.0105), (0.0100, 0.0092), (0.0090, 0.0078)],
    "index": [(0.0090, 0.0083), (0.0080, 0.0074), (0.0072, 0.0064)],
    "middle": [(0.0093, 0.0086), (0.0083, 0.0077), (0.0074, 0.0065)],
    "ring": [(0.0088, 0.0081), (0.0078, 0.0072), (0.0070, 0.0062)],
    "little": [(0.0078, 0.0071), (0.0069, 0.0064), (0.0062, 0.0055)],
}


@dataclass
class _Part:
    vertices: np.ndarray
    faces: np.ndarray
    color: np.ndarray  # (V, 3)
    bone: str


def lathe(p0: np.ndarray, p1: np.ndarray, rings: np.ndarray, side: np.ndarray, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn a profile about the axis p0 → p1.

    rings: (K, 3) rows of (distance along the axis from p0, radius towards `side`, radius across);
    a radius of 0 closes that end with a pole.
    """
    axis = normalize(np.asarray(p1, float) - np.asarray(p0, float))
    side = normalize(side - np.dot(side, axis) * axis)
    across = np.cross(axis, side)
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    verts, faces, ring_ids = [], [], []
    for s, ra, rb in rings:
        centre = p0 + s * axis
        if ra <= 0 and rb <= 0:
            ring_ids.append([len(verts)])
            verts.append(centre)
        else:
            ids = list(range(len(verts), len(verts) + segments))
            verts.extend(centre + ra * np.cos(a) * side + rb * np.sin(a) * across for a in angles)
            ring_ids.append(ids)
    for a, b in zip(ring_ids, ring_ids[1:]):
        if len(a) == 1 and len(b) == 1:
            continue
        for k in range(segments):
            k1 = (k + 1) % segments
            if len(a) == 1:
                faces.append((a[0], b[k1], b[k]))
            elif len(b) == 1:
                faces.append((a[k], a[k1], b[0]))
            else:
                faces.append((a[k], a[k1], b[k1]))
                faces.append((a[k], b[k1], b[k]))
    return np.array(verts), np.array(faces)


def _cap_rings(r0: float, r1: float, length: float, n_cap: int, n_body: int, start_cap: bool = True,
               end_cap: bool = True, flat: float = 1.0) -> np.ndarray:
    """Profile of a tapered capsule from 0 to `length`, hemispherical caps beyond each end."""
    rows = []
    if start_cap:
        for t in np.linspace(0, np.pi / 2, n_cap, endpoint=False):
            rows.append((-r0 * np.cos(t), r0 * np.sin(t), r0 * np.sin(t) * flat))
    for s in np.linspace(0, 1, n_body):
        r = r0 + (r1 - r0) * s
        rows.append((s * length, r, r * flat))
    if end_cap:
        for t in np.linspace(0, np.pi / 2, n_cap + 1)[1:]:
            rows.append((length + r1 * np.sin(t), r1 * np.cos(t), r1 * np.cos(t) * flat))
    return np.array(rows)


def capsule(p0, p1, r0: float, r1: float, side=(0.0, 1.0, 0.0), segments: int = 12, n_cap: int = 3,
            flat: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.linalg.norm(p1 - p0))
    return lathe(p0, p1, _cap_rings(r0, r1, length, n_cap, 3, flat=flat), np.asarray(side, float), segments)


def ellipsoid(centre, radii, axis=(0.0, 1.0, 0.0), side=(1.0, 0.0, 0.0), segments: int = 16, rings: int = 10,
              theta_max: float = np.pi) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid (or, with theta_max < π, an open cap of one) with `radii[2]` along `axis`."""
    centre, axis = np.asarray(centre, float), normalize(np.asarray(axis, float))
    ra, rb, rc = radii
    th = np.linspace(0, theta_max, rings + 1)
    prof = np.stack([rc - rc * np.cos(th), ra * np.sin(th), rb * np.sin(th)], axis=1)
    prof[0, 1:] = 0
    if theta_max >= np.pi - 1e-9:
        prof[-1, 1:] = 0
    return lathe(centre - rc * axis, centre + rc * axis, prof, np.asarray(side, float), segments)


class _Builder:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.parents: list[int] = []
        self.heads: list[np.ndarray] = []
        self.parts: list[_Part] = []

    def joint(self, name: str, parent: str | None, head) -> None:
        self.names.append(name)
        self.parents.append(self.names.index(parent) if parent else -1)
        self.heads.append(np.asarray(head, float))

    def head_of(self, name: str) -> np.ndarray:
        return self.heads[self.names.index(name)]

    def part(self, geometry: tuple[np.ndarray, np.ndarray], color, bone: str) -> None:
        v, f = geometry
        self.parts.append(_Part(v, f, np.broadcast_to(np.asarray(color, float), v.shape).copy(), bone))


# The open eyelid's band, radians from straight up: forward (the most that stays under the skin)
# and back; face.py's EYELID_ANGLE turns it down over the whole eye.
EYELID_FRONT, EYELID_BACK = np.radians(14), np.radians(150)

# The head, bottom (chin) to top: height above the head centre, half-width, half-depth.
_HEAD = np.array([(-0.118, 0, 0), (-0.112, 0.030, 0.036), (-0.098, 0.052, 0.062), (-0.075, 0.068, 0.080),
                  (-0.045, 0.080, 0.091), (-0.010, 0.087, 0.097), (0.025, 0.089, 0.098), (0.060, 0.085, 0.093),
                  (0.085, 0.074, 0.082), (0.103, 0.054, 0.060), (0.113, 0.030, 0.033), (0.117, 0, 0)])


def eyelid(centre, rx: float, r: float, phi0: float, phi1: float, nu: int = 12, nv: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A band of the ellipsoid (rx across, r up and forward) about `centre`, between the angles
    phi0 and phi1 about the x axis (0 = straight up, π/2 = forward): an upper eyelid, which turns
    about that axis to close. Its ends taper to points."""
    centre = np.asarray(centre, float)
    u = np.cos(np.linspace(np.pi, 0, nu))  # denser towards the corners
    phi = np.linspace(phi0, phi1, nv)
    rr = r * np.sqrt(np.clip(1 - u ** 2, 0, None))
    verts = np.stack([np.broadcast_to(rx * u[:, None], (nu, nv)), rr[:, None] * np.cos(phi), rr[:, None] * np.sin(phi)],
                     axis=-1).reshape(-1, 3) + centre
    faces = []
    for i in range(nu - 1):
        for k in range(nv - 1):
            a, b = i * nv + k, (i + 1) * nv + k
            faces += [(a, b + 1, b), (a, a + 1, b + 1)]  # outward: away from the centre
    return verts, np.array(faces)


def _head_surface(x: float, y: float, centre: np.ndarray) -> float:
    """z of the front of the head above (x, y), for placing the face on it."""
    rx = np.interp(y - centre[1], _HEAD[:, 0], _HEAD[:, 1])
    rz = np.interp(y - centre[1], _HEAD[:, 0], _HEAD[:, 2])
    return float(centre[2] + rz * np.sqrt(max(1 - ((x - centre[0]) / max(rx, 1e-6)) ** 2, 0.0)))


def _body(b: _Builder) -> None:
    b.joint("hips", None, (0, 0.98, 0))
    b.joint("spine", "hips", (0, 1.08, 0))
    b.joint("chest", "spine", (0, 1.20, 0))
    b.joint("upperChest", "chest", (0, 1.32, 0))
    b.joint("neck", "upperChest", (0, 1.45, -0.005))
    b.joint("head", "neck", (0, 1.52, 0.0))
    hc = np.array([0.0, 1.628, 0.006])  # head centre; the face is placed on the _HEAD profile
    b.joint("jaw", "head", hc + (0, -0.073, 0.024))
    b.joint("browLeft", "head", hc + (0.035, 0.042, 0.079))
    b.joint("browRight", "head", hc + (-0.035, 0.042, 0.079))
    # Torso: elliptical rings (height, half-width, half-depth), blended across the spine bones.
    rings = np.array([(0.90, 0, 0), (0.905, 0.10, 0.07), (0.93, 0.135, 0.092), (1.02, 0.142, 0.098),
                      (1.12, 0.138, 0.096), (1.22, 0.150, 0.102), (1.31, 0.168, 0.104), (1.37, 0.180, 0.100),
                      (1.41, 0.176, 0.092), (1.44, 0.145, 0.078), (1.462, 0.080, 0.058), (1.474, 0.05, 0.048)])
    prof = np.stack([rings[:, 0] - 0.90, rings[:, 1], rings[:, 2]], axis=1)
    v, f = lathe(np.array([0, 0.90, 0]), np.array([0, 1.0, 0]), prof, np.array([1.0, 0, 0]), 24)
    b.parts.append(_Part(v, f, np.broadcast_to(SHIRT, v.shape).copy(), "torso"))
    # Neck, head, hair (a bowl over the top and a cap over the back), ears, face.
    b.part(capsule((0, 1.43, -0.008), (0, 1.54, 0.0), 0.046, 0.043, segments=14), SKIN, "neck")
    prof = np.stack([_HEAD[:, 0] - _HEAD[0, 0], _HEAD[:, 1], _HEAD[:, 2]], axis=1)
    b.part(lathe(hc + (0, _HEAD[0, 0], 0), hc + (0, 1.0, 0), prof, np.array([1.0, 0, 0]), 24), SKIN, "head")
    top = (0.104, 0.118, 0.122)  # hair over the crown: half-width, half-depth, half-height
    b.part(ellipsoid(hc + (0, 0.008, -0.002), top, axis=(0, -1, 0), side=(1, 0, 0), segments=24, rings=9,
                     theta_max=np.radians(66)), HAIR, "head")
    b.part(ellipsoid(hc + (0, 0.0, -0.006), (top[0] - 0.002, top[2] - 0.002, top[1] + 0.004), axis=(0, -0.25, 1.0),
                     side=(1, 0, 0), segments=24, rings=8, theta_max=np.radians(88)), HAIR, "head")
    for sx in (1, -1):
        b.part(ellipsoid(hc + (sx * 0.089, -0.010, -0.004), (0.014, 0.020, 0.030)), SKIN, "head")
        ex, ey = sx * 0.034, hc[1] + 0.007
        ez = _head_surface(ex, ey, hc)
        b.part(ellipsoid((ex, ey, ez - 0.004), (0.016, 0.006, 0.012), axis=(0, 1, 0), segments=14, rings=8), EYE_WHITE, "head")
        b.part(ellipsoid((ex, ey - 0.001, ez + 0.001), (0.0085, 0.004, 0.0085), axis=(0, 1, 0), segments=12, rings=6), IRIS, "head")
        lid = "eyelidLeft" if sx > 0 else "eyelidRight"
        b.joint(lid, "head", (ex, ey, ez - 0.004))  # the eye's centre: the lid turns about it
        # Open: from straight up (and a little forward) back into the head; where the head curves
        # away at the outer corner, pressed back under the skin (closed, that corner stands out a little).
        v, f = eyelid((ex, ey, ez - 0.004), 0.0175, 0.0125, -EYELID_BACK, EYELID_FRONT)
        v[:, 2] = np.minimum(v[:, 2], [_head_surface(x, y, hc) - 0.001 for x, y, _ in v])
        b.part((v, f), LID, lid)
        brow = "browLeft" if sx > 0 else "browRight"
        y0, y1 = hc[1] + 0.036, hc[1] + 0.033
        z0, z1 = _head_surface(sx * 0.016, y0, hc), _head_surface(sx * 0.054, y1, hc)
        b.part(capsule((sx * 0.016, y0, z0 + 0.001), (sx * 0.054, y1, z1 + 0.001), 0.0045, 0.0035,
                       side=(0, 0, 1), segments=8, flat=0.6), BROW, brow)
    nz = _head_surface(0, hc[1] - 0.023, hc)
    b.part(ellipsoid((0, hc[1] - 0.026, nz - 0.004), (0.011, 0.012, 0.02), axis=(0, 1, 0), segments=12, rings=8), NOSE, "head")
    # A smile: a short arc of capsules on the jaw bone.
    xs = np.linspace(-0.027, 0.027, 5)
    pts = [(x, hc[1] - 0.056 + 0.009 * (x / 0.027) ** 2) for x in xs]
    pts = [(x, y, _head_surface(x, y, hc) + 0.002) for x, y in pts]
    for p, q in zip(pts, pts[1:]):
        b.part(capsule(p, q, 0.0042, 0.0042, side=(0, 1, 0), segments=8, n_cap=2, flat=0.8), LIPS, "jaw")


def _arm(b: _Builder, side: str) -> None:
    sx = 1.0 if side == "left" else -1.0
    sh, ua, la, hand = (f"{side}Shoulder", f"{side}UpperArm", f"{side}LowerArm", f"{side}Hand")
    b.joint(sh, "upperChest", (sx * 0.03, 1.40, 0))
    b.joint(ua, sh, (sx * 0.18, 1.40, 0))
    b.joint(la, ua, (sx * 0.45, 1.40, 0))
    b.joint(hand, la, (sx * 0.69, 1.40, 0))
    p_ua, p_la, p_h = b.head_of(ua), b.head_of(la), b.head_of(hand)
    b.part(ellipsoid(p_ua + (-sx * 0.012, -0.004, 0), (0.052, 0.054, 0.052), segments=16, rings=10), SHIRT, ua)
    b.part(capsule(p_ua, p_la, 0.050, 0.042, side=(0, 1, 0), segments=16), SHIRT, ua)
    b.part(capsule(p_la, p_h - (sx * 0.012, 0, 0), 0.042, 0.031, side=(0, 1, 0), segments=16, flat=0.9), SHIRT, la)
    s = HAND_SCALE
    # Wrist and palm: flat rings from the wrist to the knuckles, thenar pad towards the thumb.
    palm = np.array([(-0.030, 0.0, 0.0), (-0.024, 0.013, 0.016), (-0.006, 0.015, 0.021), (0.02, 0.018, 0.033),
                     (0.05, 0.019, 0.042), (0.075, 0.018, 0.045), (0.092, 0.015, 0.043), (0.103, 0.010, 0.036),
                     (0.108, 0.0, 0.0)]) * [s, s, s]
    v, f = lathe(p_h, p_h + (sx, 0, 0), palm, np.array([0, 1.0, 0]), 18)
    v[:, 2] += -0.003 * s  # centre the palm between the index and little knuckles
    palm_side = v[:, 1] < p_h[1] - 0.004 * s
    col = np.where(palm_side[:, None], PALM, SKIN)
    b.parts.append(_Part(v, f, col, hand))
    for finger in FINGERS:
        bones = finger_bones(side, finger)
        pts = [p_h + np.array(q) * s * (sx, 1, 1) for q in _FINGER_JOINTS[finger]]
        parent = hand
        for i, bone in enumerate(bones):
            b.joint(bone, parent, pts[i])
            parent = bone
        b.joint(f"{bones[-1]}Tip", bones[-1], pts[3])
        for i, bone in enumerate(bones):
            r0, r1 = (r * s for r in _FINGER_RADII[finger][i])
            end = pts[i + 1] - (normalize(pts[i + 1] - pts[i]) * r1 if i == 2 else 0)
            b.part(capsule(pts[i], end, r0, r1, side=(0, 1, 0), segments=10, flat=0.88), SKIN, bone)
        if finger == "thumb":  # the thenar pad: blends the thumb's metacarpal into the palm
            mid = pts[0] + (pts[1] - pts[0]) * 0.35 + np.array([0, -0.002, -0.004]) * s
            b.part(ellipsoid(mid, (0.016 * s, 0.013 * s, 0.026 * s), axis=pts[1] - pts[0], side=(0, 0, 1),
                             segments=12, rings=8), SKIN, bones[0])
        # Nail on the back of the distal segment; the thumb's back faces up and out.
        d = normalize(pts[3] - pts[2])
        back = normalize(np.array([0, 1.0, 0.0]) + (np.array([0, 0.2, 0.9]) if finger == "thumb" else 0))
        back = normalize(back - np.dot(back, d) * d)
        r = _FINGER_RADII[finger][2][1] * s
        centre = pts[2] + d * np.linalg.norm(pts[3] - pts[2]) * 0.55 + back * r * 0.62
        seg = np.linalg.norm(pts[3] - pts[2])
        b.part(ellipsoid(centre, (r * 0.72, r * 0.38, seg * 0.42), axis=d, side=np.cross(d, back), segments=10, rings=6),
               NAIL, bones[2])


def build() -> tuple[Rig, AvatarMesh]:
    b = _Builder()
    _body(b)
    for side in SIDES:
        _arm(b, side)
    names = tuple(b.names)
    bind = np.tile(np.eye(4), (len(names), 1, 1))
    bind[:, :3, 3] = np.array(b.heads)
    humanoid = {n: i for i, n in enumerate(names) if not n.endswith("Tip") and not n.startswith(("brow", "eyelid"))}
    tips = {names.index(n[:-3]): b.heads[i] for i, n in enumerate(names) if n.endswith("Tip")}
    rig = Rig(names, np.array(b.parents), bind, humanoid, tips)
    return rig, _mesh(b, rig)


def _mesh(b: _Builder, rig: Rig) -> AvatarMesh:
    import trimesh

    pos, nrm, col, tri, jnt, wgt = [], [], [], [], [], []
    base = 0
    spine = [rig.names.index(n) for n in ("hips", "spine", "chest", "upperChest")]
    spine_y = rig.bind[spine, 1, 3]
    for part in b.parts:
        mesh = trimesh.Trimesh(part.vertices, part.faces, process=False)
        pos.append(part.vertices)
        nrm.append(mesh.vertex_normals)
        col.append(part.color)
        tri.append(part.faces + base)
        base += len(part.vertices)
        j = np.zeros((len(part.vertices), 4), dtype=np.int64)
        w = np.zeros((len(part.vertices), 4))
        if part.bone == "torso":
            # Blend between the two spine joints each vertex lies between.
            y = part.vertices[:, 1]
            k = np.clip(np.searchsorted(spine_y, y) - 1, 0, len(spine) - 2)
            t = np.clip((y - spine_y[k]) / (spine_y[k + 1] - spine_y[k]), 0, 1)
            j[:, 0], j[:, 1] = np.array(spine)[k], np.array(spine)[k + 1]
            w[:, 0], w[:, 1] = 1 - t, t
        else:
            j[:, 0] = rig.names.index(part.bone)
            w[:, 0] = 1.0
        jnt.append(j)
        wgt.append(w)
    colors = np.concatenate(col) ** 2.2  # the constants are sRGB; glTF vertex colours are linear
    return AvatarMesh(
        positions=np.concatenate(pos).astype(np.float32),
        normals=np.concatenate(nrm).astype(np.float32),
        colors=np.concatenate([colors, np.ones((len(colors), 1))], axis=1).astype(np.float32),
        indices=np.concatenate(tri).astype(np.uint32),
        joints=np.concatenate(jnt),
        weights=np.concatenate(wgt).astype(np.float32),
    )


def main(path: Path = ASSET) -> None:
    rig, mesh = build()
    write_glb(path, rig, mesh, extras={"signstream": "generated by tools/avatar_build.py; regenerate, do not edit"})
    print(f"{path}: {len(rig)} joints, {len(mesh.positions)} vertices, {len(mesh.indices)} triangles, "
          f"{path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
