"""A deployment's avatar that shows the face with morph targets (ARKit blend shapes, VRM
expressions) instead of bones: the track drives them, in real pyrender pixels, and
`signstream avatar check` says which channels it shows and how. The avatars are made here: the
bundled signer with its face bones renamed away and the same face motions as morph targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from engines.nonmanual import CHANNELS, INDEX

FACE_BONES = ("browLeft", "browRight", "jaw", "eyelidLeft", "eyelidRight")


def _morph_avatar(path: Path, names: dict[str, str]) -> Path:
    """The bundled signer without face bones (renamed `x…`), its brows, blinks and jaw as morph
    targets named by `names` (ARKit name → the name written)."""
    from tools.avatar_build import build
    from server.avatar.face import EYELID_ANGLE
    from server.avatar.gltf import write_glb
    from server.avatar.rig import Rig
    from server.avatar.rotations import axis_angle

    rig, mesh = build()
    own = mesh.joints[:, 0]  # the builder binds each face part to one bone
    part = {n: own == rig.names.index(n) for n in FACE_BONES}
    pos = mesh.positions
    deltas: dict[str, np.ndarray] = {}
    up = np.zeros_like(pos)
    up[part["browLeft"] | part["browRight"], 1] = 0.012
    deltas["browInnerUp"] = up
    for side in ("Left", "Right"):
        hinge = rig.bind[rig.names.index(f"eyelid{side}"), :3, 3]
        turned = (pos - hinge) @ axis_angle(np.array([1.0, 0.0, 0.0]), EYELID_ANGLE).T + hinge
        deltas[f"eyeBlink{side}"] = np.where(part[f"eyelid{side}"][:, None], turned - pos, 0.0)
    jaw = np.zeros_like(pos)
    jaw[part["jaw"], 1] = -0.010
    deltas["jawOpen"] = jaw
    mesh.morphs = {names[k]: d.astype(np.float32) for k, d in deltas.items()}
    renamed = tuple(f"x{n}" if n in FACE_BONES else n for n in rig.names)
    humanoid = {k: j for k, j in rig.humanoid.items() if k not in FACE_BONES}
    write_glb(path, Rig(renamed, rig.parents, rig.bind, humanoid, rig.tips), mesh)
    return path


@pytest.fixture(scope="module")
def arkit(tmp_path_factory) -> Path:
    return _morph_avatar(tmp_path_factory.mktemp("morph") / "arkit.glb",
                         {k: k for k in ("browInnerUp", "eyeBlinkLeft", "eyeBlinkRight", "jawOpen")})


def _face(**values: float) -> np.ndarray:
    v = np.zeros(len(CHANNELS), np.float32)
    for k, x in values.items():
        v[INDEX[k]] = x
    return v


def test_the_track_drives_blend_shapes_in_rendered_pixels(arkit: Path):
    from server.avatar.face import FaceRig
    from server.avatar.gltf import load_avatar
    from server.avatar.render import AvatarRenderer
    from server.avatar.retarget import Retargeter

    avatar = load_avatar(arkit)
    face = FaceRig.of_avatar(avatar)
    by = face.shown_by()
    assert {c: by[c] for c in ("brow_raise", "blink", "squint", "mouth_open", "head_shake")} == {
        "brow_raise": "expressions", "blink": "expressions", "squint": "expressions", "mouth_open": "expressions",
        "head_shake": "bones"}
    assert by["brow_furrow"] == by["mouth_round"] == ""  # no blend shape for them
    local = Retargeter(avatar.rig).rest
    assert face.weights(_face()) is None and face.weights(None) is None
    w = face.weights(_face(blink=1.0, squint=1.0))
    assert w[face.morph_names.index("eyeBlinkLeft")] == 1.0  # blink 1 + squint's 0.5, clipped
    with AvatarRenderer(avatar, 512, 512, (0.20, 0.60, 0.30, 1.0)) as renderer:
        def draw(**values: float) -> np.ndarray:
            return renderer.render(*face.pose(local, _face(**values))).astype(np.int16)

        def region(bone: str, rows: int, cols: int) -> tuple[slice, slice]:
            x, y = np.round(renderer.camera.project(avatar.rig.bind[avatar.rig.names.index(bone), :3, 3])).astype(int)
            return slice(y - rows, y + rows), slice(x - cols, x + cols)
        rest = draw()
        assert np.array_equal(rest, renderer.render(avatar.rig.fk(local)).astype(np.int16))  # weights 0: the mesh as is
        eyes = [region(f"xeyelid{s}", 10, 16) for s in ("Left", "Right")]
        blink = draw(blink=1.0)
        for e in eyes:
            dark = lambda img: int((img[e].sum(axis=-1) < 120).sum())  # noqa: E731  the iris
            assert dark(rest) > 20 and dark(blink) == 0
        raised = draw(brow_raise=1.0)
        changed = np.abs(raised - rest).max(axis=-1) > 40
        rows = np.nonzero(changed)[0]
        brow_y = region("xbrowLeft", 0, 0)[0].start
        assert changed.sum() > 30 and abs(rows.mean() - brow_y) < 12  # the brows moved, nothing else
        opened = draw(mouth_open=1.0)
        changed = np.abs(opened - rest).max(axis=-1) > 40
        assert changed.sum() > 20 and np.nonzero(changed)[0].min() > brow_y + 20  # below the eyes: the mouth


def test_vrm_expressions_map_onto_their_morph_targets(tmp_path: Path):
    """A VRM 1.0 file's expressions (blink, aa, surprised) bind targets of any name; the table maps
    the channels onto the expressions, and `avatar check` says so."""
    from typer.testing import CliRunner

    from server.avatar.face import FaceRig
    from server.avatar.gltf import load_avatar
    from server.cli import app

    path = _morph_avatar(tmp_path / "vrm.glb", {"browInnerUp": "Fcl_BRW_Surprised", "eyeBlinkLeft": "Fcl_EYE_Close_L",
                                                 "eyeBlinkRight": "Fcl_EYE_Close_R", "jawOpen": "Fcl_MTH_A"})
    gltf = pygltflib.GLTF2.load(str(path))
    body = next(i for i, n in enumerate(gltf.nodes) if n.mesh is not None)
    bind = lambda *ks: {"morphTargetBinds": [{"node": body, "index": k, "weight": 1.0} for k in ks]}  # noqa: E731
    gltf.extensions = {"VRMC_vrm": {"expressions": {"preset": {"blink": bind(1, 2), "aa": bind(3), "surprised": bind(0),
                                                               "happy": {}}}}}
    gltf.save(str(path))
    face = FaceRig.of_avatar(load_avatar(path))
    assert face.morphs["blink"] == [("Fcl_EYE_Close_L", 1.0), ("Fcl_EYE_Close_R", 1.0)]
    assert face.morphs["mouth_open"] == [("Fcl_MTH_A", 1.0)] and face.morphs["brow_raise"] == [("Fcl_BRW_Surprised", 0.6)]
    assert face.ready_fields()["morphs"]["blink"] == [["Fcl_EYE_Close_L", 1.0], ["Fcl_EYE_Close_R", 1.0]]

    out = CliRunner().invoke(app, ["avatar", "check", str(path)])
    assert out.exit_code == 0, out.output
    assert "non-manual channels shown by bones: head_nod, head_shake, head_tilt, breath, sway" in out.output
    assert ("non-manual channels shown by expressions (morph targets): brow_raise, blink, squint, mouth_open"
            in out.output)
    assert "cannot show (no bone or expression for them): brow_furrow, mouth_spread, mouth_round" in out.output
    assert "VRM expressions in the file: blink, aa, surprised, happy" in out.output
    report = json.loads(CliRunner().invoke(app, ["avatar", "check", str(path), "--json"]).output)
    assert report["non_manual_by"]["blink"] == "expressions" and not report["non_manual"]["mouth_round"]


def test_vrm0_blend_shape_groups_map_by_their_presets(tmp_path: Path):
    """VRM 0.x: blend shape groups by preset (`a` is VRM 1.0's `aa`), binds by mesh and target
    index, weights 0–100."""
    from server.avatar.face import FaceRig
    from server.avatar.gltf import load_avatar

    path = _morph_avatar(tmp_path / "vrm0.glb", {"browInnerUp": "brows", "eyeBlinkLeft": "lidL", "eyeBlinkRight": "lidR",
                                                  "jawOpen": "mouthA"})
    gltf = pygltflib.GLTF2.load(str(path))
    groups = [{"name": "A", "presetName": "a", "binds": [{"mesh": 0, "index": 3, "weight": 100}]},
              {"name": "Blink", "presetName": "blink", "binds": [{"mesh": 0, "index": 1, "weight": 100},
                                                                 {"mesh": 0, "index": 2, "weight": 50},
                                                                 {"mesh": 7, "index": 0, "weight": 100}]}]  # no mesh 7
    gltf.extensions = {"VRM": {"blendShapeMaster": {"blendShapeGroups": groups}}}
    gltf.save(str(path))
    avatar = load_avatar(path)
    assert avatar.expressions == {"aa": [("mouthA", 1.0)], "blink": [("lidL", 1.0), ("lidR", 0.5)]}
    face = FaceRig.of_avatar(avatar)
    assert face.morphs["mouth_open"] == [("mouthA", 1.0)] and face.morphs["squint"] == [("lidL", 0.5), ("lidR", 0.25)]
    assert "brow_raise" not in face.morphs  # "brows" is neither a blend shape nor an expression of the table
