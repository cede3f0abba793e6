"""Loading avatars: the bundled one, other naming schemes and facings, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pygltflib
import pytest
from typer.testing import CliRunner

from tools.avatar_build import ASSET, build
from server.avatar.errors import AvatarAccessorError, AvatarBonesError, AvatarReadError, AvatarSkinError
from server.avatar.gltf import load_avatar, write_glb
from server.avatar.humanoid import MIXAMO, REQUIRED
from server.cli import app


def _edit(tmp_path: Path, change, name: str = "edited.glb") -> Path:
    """A copy of the bundled avatar with `change(gltf)` applied to its glTF structure."""
    gltf = pygltflib.GLTF2.load(str(ASSET))
    change(gltf)
    out = tmp_path / name
    out.write_bytes(b"".join(gltf.save_to_bytes()))
    return out


def _rename(gltf: pygltflib.GLTF2, rename) -> None:
    for node in gltf.nodes:
        node.name = rename(node.name)


def test_bundled_avatar_is_complete_and_small():
    avatar = load_avatar(ASSET)
    assert set(REQUIRED) <= set(avatar.rig.humanoid)
    assert {"hips", "spine", "chest", "neck", "head", "leftShoulder", "rightShoulder", "jaw"} <= set(avatar.rig.humanoid)
    assert {"browLeft", "browRight"} <= set(avatar.rig.names)  # the face can move later
    assert ASSET.stat().st_size < 5 * 1024 * 1024
    mesh = avatar.mesh
    assert mesh.joints.max() < len(avatar.rig)
    np.testing.assert_allclose(mesh.weights.sum(axis=1), 1.0, atol=1e-5)
    assert len(np.unique(mesh.joints[mesh.weights > 0])) > 40  # every finger segment has skin


def test_bundled_asset_matches_its_generator(tmp_path):
    rig, mesh = build()
    out = tmp_path / "again.glb"
    write_glb(out, rig, mesh)
    fresh, kept = load_avatar(out), load_avatar(ASSET)
    assert fresh.rig.names == kept.rig.names
    np.testing.assert_allclose(fresh.mesh.positions, kept.mesh.positions, atol=1e-6)
    np.testing.assert_allclose(fresh.rig.bind, kept.rig.bind, atol=1e-6)


def test_mixamo_names_and_bone_map(tmp_path):
    to_mixamo = {v: k for k, v in MIXAMO.items()}
    path = _edit(tmp_path, lambda g: _rename(g, lambda n: f"mixamorig:{to_mixamo[n]}" if n in to_mixamo else n))
    assert set(REQUIRED) <= set(load_avatar(path).rig.humanoid)
    odd = _edit(tmp_path, lambda g: _rename(g, lambda n: f"Bip_{n}"), "odd.glb")
    with pytest.raises(AvatarBonesError):
        load_avatar(odd)
    mapping = {f"Bip_{b}": b for b in REQUIRED}
    assert set(REQUIRED) <= set(load_avatar(odd, mapping).rig.humanoid)
    with pytest.raises(AvatarBonesError, match="not a VRM humanoid bone"):
        load_avatar(odd, {"Bip_leftHand": "leftPaw"})


@pytest.mark.parametrize("turn", [np.diag([-1.0, 1.0, -1.0]), np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])],
                         ids=["faces-minus-z", "z-up"])
def test_avatar_facing_is_normalised(tmp_path, turn):
    """A VRM 0.x-style avatar faces −z with its left hand at −x; some exporters are z-up: the
    loader turns both to face +z with y up."""
    rig, mesh = build()
    rig.bind[:, :3, :] = turn @ rig.bind[:, :3, :]
    rig.tips = {j: turn @ p for j, p in rig.tips.items()}
    mesh.positions = (mesh.positions @ turn.T).astype(np.float32)
    mesh.normals = (mesh.normals @ turn.T).astype(np.float32)
    path = tmp_path / "backwards.glb"
    write_glb(path, type(rig)(rig.names, rig.parents, rig.bind, rig.humanoid, rig.tips), mesh)
    avatar = load_avatar(path)
    heads = avatar.rig.bind[:, :3, 3]
    assert heads[avatar.rig.humanoid["leftHand"], 0] > 0.5
    assert any("turned" in n for n in avatar.notes)
    np.testing.assert_allclose(avatar.rig.bind, load_avatar(ASSET).rig.bind, atol=1e-6)


def test_no_skin(tmp_path):
    def drop(g):
        g.skins = []
        for n in g.nodes:
            n.skin = None

    with pytest.raises(AvatarSkinError) as info:
        load_avatar(_edit(tmp_path, drop))
    assert info.value.code == "avatar_no_skin" and "no skin" in info.value.message


def test_missing_finger_bones(tmp_path):
    path = _edit(tmp_path, lambda g: _rename(g, lambda n: "ornament" if n in ("leftIndexDistal", "rightLittleIntermediate") else n))
    with pytest.raises(AvatarBonesError) as info:
        load_avatar(path)
    assert info.value.code == "avatar_missing_bones"
    assert "leftIndexDistal" in info.value.message and "rightLittleIntermediate" in info.value.message


@pytest.mark.parametrize("breakage, words", [
    (lambda g: setattr(g.accessors[g.meshes[0].primitives[0].attributes.POSITION], "count", 10**7), "run past bufferView"),
    (lambda g: setattr(g.accessors[g.meshes[0].primitives[0].attributes.JOINTS_0], "type", "SCALAR"), "expected VEC4"),
    (lambda g: setattr(g.meshes[0].primitives[0].attributes, "WEIGHTS_0", 999), "does not exist"),
    (lambda g: setattr(g.accessors[g.skins[0].inverseBindMatrices], "count", 3), "inverse bind matrices"),
])
def test_broken_accessors(tmp_path, breakage, words):
    with pytest.raises(AvatarAccessorError, match=words) as info:
        load_avatar(_edit(tmp_path, breakage))
    assert info.value.code == "avatar_bad_accessor"


@pytest.mark.parametrize("where", ["joints", "indices", "bind"])
def test_values_out_of_range(tmp_path, where):
    rig, mesh = build()
    if where == "joints":
        mesh.joints[0, 0] = len(rig) + 3
    elif where == "indices":
        mesh.indices[5, 1] = len(mesh.positions) + 7
    else:
        rig.bind[3, 0, 0] = np.nan
    path = tmp_path / f"{where}.glb"
    write_glb(path, rig, mesh)
    words = {"joints": "JOINTS_0: joint", "indices": "indices: vertex", "bind": "NaN"}[where]
    with pytest.raises(AvatarAccessorError, match=words):
        load_avatar(path)


def test_not_gltf(tmp_path):
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(AvatarReadError) as info:
        load_avatar(junk)
    assert info.value.code == "avatar_unreadable"
    with pytest.raises(AvatarReadError, match="no such file"):
        load_avatar(tmp_path / "absent.glb")


def test_cli_check_reports_and_fails_clearly(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["avatar", "check", str(ASSET), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["humanoid_bones"]["leftIndexDistal"] == "leftIndexDistal" and report["triangles"] > 1000
    text = runner.invoke(app, ["avatar", "check", str(ASSET)])
    assert "ready to sign" in text.output
    bad = _edit(tmp_path, lambda g: _rename(g, lambda n: "x" if n == "rightThumbDistal" else n))
    fail = runner.invoke(app, ["avatar", "check", str(bad)])
    assert fail.exit_code == 2 and "avatar_missing_bones" in fail.output and "rightThumbDistal" in fail.output
