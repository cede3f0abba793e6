"""glTF 2.0 / VRM avatars: read a skinned humanoid, map its bones, check it can sign; write ours.

The one place that knows the glTF format. Accessors are decoded with numpy (strides, normalized
integers, sparse substitution), and every index is checked against what it points into, so a
broken file fails here with a clear error instead of as garbage on screen.

Everything comes out in canonical-oriented world space: y up, the avatar facing +z, its left hand
towards +x (VRM 0.x faces −z, some exporters are z-up: `_facing` turns them).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pygltflib

from server.avatar.errors import (
    AvatarAccessorError,
    AvatarBonesError,
    AvatarReadError,
    AvatarSkinError,
)
from server.avatar.humanoid import ALL_BONES, MIXAMO, OPTIONAL, REQUIRED, normalise, vrm0_to_vrm1
from server.avatar.rig import Rig
from server.avatar.rotations import frame, matrix_to_quat, normalize, quat_to_matrix

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_SHAPE = {"SCALAR": (), "VEC2": (2,), "VEC3": (3,), "VEC4": (4,), "MAT2": (2, 2), "MAT3": (3, 3), "MAT4": (4, 4)}


@dataclass
class AvatarMesh:
    """One skinned triangle mesh: all skinned primitives of the file, merged."""

    positions: np.ndarray  # (V, 3) float32, bind pose, world
    normals: np.ndarray  # (V, 3) float32
    colors: np.ndarray  # (V, 4) float32 linear RGBA (COLOR_0 × the material's base colour)
    indices: np.ndarray  # (F, 3) uint32
    joints: np.ndarray  # (V, 4) joint indices into the rig
    weights: np.ndarray  # (V, 4) float32, rows sum to 1
    # Morph targets by name (server/avatar/expressions.py): (V, 3) float32 position deltas, world.
    morphs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Avatar:
    rig: Rig
    mesh: AvatarMesh
    source: str
    notes: list[str] = field(default_factory=list)  # what the loader assumed or fixed, for `avatar check`
    # The rotation that took the file's axes to canonical ones (a page drawing the file turns it alike).
    turn: np.ndarray = field(default_factory=lambda: np.eye(3))
    # VRM expressions the file declares, each with the morph targets it binds.
    expressions: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def report(self) -> dict:
        """What `signstream avatar check` prints."""
        rig, mesh = self.rig, self.mesh
        heads = rig.bind[:, :3, 3]
        return {
            "file": self.source,
            "joints": len(rig),
            "vertices": int(len(mesh.positions)),
            "triangles": int(len(mesh.indices)),
            "height": float(np.ptp(mesh.positions[:, 1])),
            "humanoid_bones": {name: rig.names[j] for name, j in rig.humanoid.items()},
            "missing_optional": [b for b in OPTIONAL if b not in rig.humanoid],
            "shoulder_width": float(np.linalg.norm(heads[rig.humanoid["leftUpperArm"]] - heads[rig.humanoid["rightUpperArm"]])),
            "notes": self.notes,
        }


# --- reading ----------------------------------------------------------------------------------


def load_avatar(path: str | Path, bone_map: dict[str, str] | None = None) -> Avatar:
    """Read a .glb / .gltf / .vrm file and check that it has what signing needs.

    `bone_map` maps the file's node names to VRM humanoid names, for rigs named otherwise; VRM
    files' own humanoid tables, VRM names and Mixamo names are recognised without one.
    """
    path = Path(path)
    gltf = _open(path)
    blobs = _Buffers(gltf, path)
    if not gltf.skins:
        raise AvatarSkinError(path, "no skin: the file has no skinned mesh, so nothing can move it")
    skin_index, prims = _skinned_primitives(gltf, path)
    skin = gltf.skins[skin_index]
    joint_nodes = list(skin.joints)
    if not joint_nodes:
        raise AvatarSkinError(path, f"skin {skin_index} lists no joints")
    n_nodes = len(gltf.nodes)
    bad = [j for j in joint_nodes if not 0 <= j < n_nodes]
    if bad:
        raise AvatarSkinError(path, f"skin {skin_index} names nodes {bad} but the file has {n_nodes}")
    world = _node_world(gltf, path)
    if skin.inverseBindMatrices is not None:
        ibm = _accessor(gltf, blobs, skin.inverseBindMatrices, path, "skin.inverseBindMatrices", types=("MAT4",))
        if len(ibm) != len(joint_nodes):
            raise AvatarAccessorError(path, f"skin has {len(joint_nodes)} joints but {len(ibm)} inverse bind matrices")
        # Accessors store matrices column by column.
        ibm = np.swapaxes(ibm.astype(np.float64), -1, -2)
        if not np.isfinite(ibm).all() or np.any(np.abs(np.linalg.det(ibm)) < 1e-12):
            raise AvatarAccessorError(path, "inverse bind matrices are singular or not finite")
        bind = np.linalg.inv(ibm)
    else:
        bind = world[joint_nodes]
    names = tuple(gltf.nodes[j].name or f"node{j}" for j in joint_nodes)
    slot = {node: i for i, node in enumerate(joint_nodes)}
    parents = np.array([_joint_parent(gltf, node, slot) for node in joint_nodes])
    humanoid, notes = _map_bones(gltf, path, joint_nodes, names, bone_map or {})
    missing = [b for b in REQUIRED if b not in humanoid]
    if missing:
        raise AvatarBonesError(path, f"missing bones signing needs: {', '.join(missing)} "
                                     f"(found {len(humanoid)} humanoid bones; map names with [avatar] bone_map)")
    mesh = _merge(gltf, blobs, path, prims, len(joint_nodes))
    turn = _facing(bind, humanoid)
    if not np.allclose(turn, np.eye(3)):
        notes.append("turned to face +z with y up")
    bind = bind.copy()
    bind[:, :3, :] = turn @ bind[:, :3, :]
    mesh.positions = (mesh.positions @ turn.T).astype(np.float32)
    mesh.normals = (mesh.normals @ turn.T).astype(np.float32)
    mesh.morphs = {name: (d @ turn.T).astype(np.float32) for name, d in mesh.morphs.items()}
    tips = {}
    for name, j in humanoid.items():
        kids = np.flatnonzero(parents == j)
        if name.endswith("Distal") and len(kids):
            tips[j] = bind[kids[0], :3, 3].copy()
    rig = Rig(names, parents, bind, humanoid, tips)
    return Avatar(rig, mesh, str(path), notes, turn, _file_expressions(gltf))


def _open(path: Path) -> pygltflib.GLTF2:
    if not path.is_file():
        raise AvatarReadError(path, "no such file")
    data = path.read_bytes()
    try:
        if data[:4] == b"glTF":
            gltf = pygltflib.GLTF2.load_from_bytes(data)
        else:
            gltf = pygltflib.GLTF2.from_json(data.decode("utf-8"))
    except Exception as exc:  # pygltflib raises assorted errors on a bad file
        raise AvatarReadError(path, f"not a readable glTF 2.0 file ({type(exc).__name__}: {exc})") from None
    version = (gltf.asset.version if gltf.asset else None) or ""
    if not version.startswith("2."):
        raise AvatarReadError(path, f"glTF version {version!r}; only 2.x is supported")
    return gltf


class _Buffers:
    """Buffer bytes by index: the GLB binary chunk, data URIs, or files beside the glTF."""

    def __init__(self, gltf: pygltflib.GLTF2, path: Path) -> None:
        self._gltf, self._path, self._cache = gltf, path, {}

    def __call__(self, index: int) -> bytes:
        if index in self._cache:
            return self._cache[index]
        buffers = self._gltf.buffers
        if not 0 <= index < len(buffers):
            raise AvatarAccessorError(self._path, f"buffer {index} does not exist ({len(buffers)} buffers)")
        uri = buffers[index].uri
        if uri is None:
            data = self._gltf.binary_blob()
            if data is None:
                raise AvatarReadError(self._path, f"buffer {index} has no URI and the file has no binary chunk")
        elif uri.startswith("data:"):
            try:
                data = base64.b64decode(uri.split(",", 1)[1])
            except Exception:
                raise AvatarReadError(self._path, f"buffer {index}: bad data URI") from None
        else:
            target = self._path.parent / uri
            if not target.is_file():
                raise AvatarReadError(self._path, f"buffer {index}: file {uri!r} not found beside the glTF")
            data = target.read_bytes()
        if len(data) < (buffers[index].byteLength or 0):
            raise AvatarAccessorError(self._path, f"buffer {index} holds {len(data)} bytes, declares {buffers[index].byteLength}")
        self._cache[index] = data
        return data


def _accessor(gltf: pygltflib.GLTF2, blobs: _Buffers, index: int | None, path: Path, what: str,
              types: tuple[str, ...]) -> np.ndarray:
    """Decode accessor `index` into an array (count, *shape); integers stay integers unless normalized."""
    if index is None or not 0 <= index < len(gltf.accessors):
        raise AvatarAccessorError(path, f"{what}: accessor {index} does not exist")
    acc = gltf.accessors[index]
    where = f"{what} (accessor {index})"
    if acc.type not in types:
        raise AvatarAccessorError(path, f"{where}: type {acc.type}, expected {' or '.join(types)}")
    if acc.componentType not in _COMPONENTS:
        raise AvatarAccessorError(path, f"{where}: unknown componentType {acc.componentType}")
    dtype = np.dtype(_COMPONENTS[acc.componentType]).newbyteorder("<")
    width, count = _WIDTH[acc.type], acc.count or 0
    if count <= 0:
        raise AvatarAccessorError(path, f"{where}: count {acc.count}")
    if acc.bufferView is None:
        out = np.zeros((count, width), dtype=dtype)
    else:
        out = _view(gltf, blobs, acc.bufferView, acc.byteOffset or 0, count, width, dtype, path, where)
    if acc.sparse is not None:
        out = out.copy()
        sp = acc.sparse
        idx = _view(gltf, blobs, sp.indices.bufferView, sp.indices.byteOffset or 0, sp.count, 1,
                    np.dtype(_COMPONENTS.get(sp.indices.componentType, np.uint32)).newbyteorder("<"), path, where + " sparse indices")[:, 0]
        val = _view(gltf, blobs, sp.values.bufferView, sp.values.byteOffset or 0, sp.count, width, dtype, path, where + " sparse values")
        if idx.size and idx.max() >= count:
            raise AvatarAccessorError(path, f"{where}: sparse index {int(idx.max())} ≥ count {count}")
        out[idx] = val
    if acc.normalized and dtype.kind in "iu":
        out = np.maximum(out / np.iinfo(dtype).max, -1.0).astype(np.float32)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise AvatarAccessorError(path, f"{where}: holds NaN or infinite values")
    return out.reshape((count,) + _SHAPE[acc.type])


def _view(gltf: pygltflib.GLTF2, blobs: _Buffers, view_index: int, offset: int, count: int, width: int,
          dtype: np.dtype, path: Path, where: str) -> np.ndarray:
    if not 0 <= view_index < len(gltf.bufferViews):
        raise AvatarAccessorError(path, f"{where}: bufferView {view_index} does not exist")
    view = gltf.bufferViews[view_index]
    data = blobs(view.buffer)
    elem = dtype.itemsize * width
    stride = view.byteStride or elem
    start = (view.byteOffset or 0) + offset
    need = offset + stride * (count - 1) + elem
    if stride < elem or need > view.byteLength or (view.byteOffset or 0) + view.byteLength > len(data):
        raise AvatarAccessorError(path, f"{where}: {count} elements of {elem} bytes (stride {stride}) at offset "
                                        f"{offset} run past bufferView {view_index} ({view.byteLength} bytes)")
    raw = np.frombuffer(data, dtype=np.uint8, count=stride * (count - 1) + elem, offset=start)
    rows = np.lib.stride_tricks.as_strided(raw, shape=(count, elem), strides=(stride, 1))
    return np.ascontiguousarray(rows).view(dtype).reshape(count, width)


def _node_local(node: pygltflib.Node) -> np.ndarray:
    if node.matrix is not None and len(node.matrix) == 16:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T
    m = np.eye(4)
    r = quat_to_matrix(np.asarray(node.rotation, dtype=np.float64)) if node.rotation else np.eye(3)
    s = np.asarray(node.scale, dtype=np.float64) if node.scale else np.ones(3)
    m[:3, :3] = r * s
    if node.translation:
        m[:3, 3] = node.translation
    return m


def _node_world(gltf: pygltflib.GLTF2, path: Path) -> np.ndarray:
    n = len(gltf.nodes)
    parent = np.full(n, -1)
    for i, node in enumerate(gltf.nodes):
        for c in node.children or []:
            if not 0 <= c < n or parent[c] >= 0:
                raise AvatarReadError(path, f"node {i} has a bad or shared child {c}")
            parent[c] = i
    world = np.zeros((n, 4, 4))
    done = np.zeros(n, dtype=bool)

    def solve(i: int, depth: int = 0) -> np.ndarray:
        if depth > n:
            raise AvatarReadError(path, "the node hierarchy has a cycle")
        if not done[i]:
            local = _node_local(gltf.nodes[i])
            world[i] = local if parent[i] < 0 else solve(int(parent[i]), depth + 1) @ local
            done[i] = True
        return world[i]

    for i in range(n):
        solve(i)
    return world


def _joint_parent(gltf: pygltflib.GLTF2, node: int, slot: dict[int, int]) -> int:
    """The nearest ancestor node that is a joint of the skin (skipping helper nodes between)."""
    parent_of = {c: i for i, nd in enumerate(gltf.nodes) for c in (nd.children or [])}
    p = parent_of.get(node)
    while p is not None and p not in slot:
        p = parent_of.get(p)
    return -1 if p is None else slot[p]


def _skinned_primitives(gltf: pygltflib.GLTF2, path: Path) -> tuple[int, list[tuple[pygltflib.Primitive, list[str]]]]:
    """The primitives of every mesh node bound to the first used skin, each with its mesh's
    morph target names."""
    by_skin: dict[int, list] = {}
    for node in gltf.nodes:
        if node.skin is not None and node.mesh is not None:
            if not 0 <= node.mesh < len(gltf.meshes) or not 0 <= node.skin < len(gltf.skins):
                raise AvatarReadError(path, f"node {node.name!r} names a missing mesh or skin")
            mesh = gltf.meshes[node.mesh]
            by_skin.setdefault(node.skin, []).extend((p, _target_names(mesh)) for p in mesh.primitives)
    if not by_skin:
        raise AvatarSkinError(path, "no skin: no mesh node is bound to a skin")
    skin = min(by_skin)
    return skin, by_skin[skin]


def _merge(gltf: pygltflib.GLTF2, blobs: _Buffers, path: Path, prims: list, n_joints: int) -> AvatarMesh:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("positions", "normals", "colors", "indices", "joints", "weights")}
    base = 0
    morphs: dict[str, list[tuple[int, np.ndarray]]] = {}  # name → (first vertex, deltas) per primitive
    for p_i, (prim, names) in enumerate(prims):
        if (prim.mode if prim.mode is not None else 4) != 4:
            continue  # only triangle lists carry a surface
        attrs = prim.attributes
        where = f"primitive {p_i}"
        if attrs.POSITION is None:
            raise AvatarAccessorError(path, f"{where}: no POSITION")
        if attrs.JOINTS_0 is None or attrs.WEIGHTS_0 is None:
            raise AvatarSkinError(path, f"{where}: no JOINTS_0/WEIGHTS_0, so it is not skinned")
        pos = _accessor(gltf, blobs, attrs.POSITION, path, f"{where} POSITION", ("VEC3",)).astype(np.float32)
        v = len(pos)
        joints = _accessor(gltf, blobs, attrs.JOINTS_0, path, f"{where} JOINTS_0", ("VEC4",))
        weights = _accessor(gltf, blobs, attrs.WEIGHTS_0, path, f"{where} WEIGHTS_0", ("VEC4",)).astype(np.float32)
        if joints.dtype.kind not in "iu":
            raise AvatarAccessorError(path, f"{where} JOINTS_0: must be integers, got {joints.dtype}")
        for name, arr in (("JOINTS_0", joints), ("WEIGHTS_0", weights)):
            if len(arr) != v:
                raise AvatarAccessorError(path, f"{where} {name}: {len(arr)} values for {v} vertices")
        if joints.max() >= n_joints:
            raise AvatarAccessorError(path, f"{where} JOINTS_0: joint {int(joints.max())} but the skin has {n_joints}")
        total = weights.sum(axis=1, keepdims=True)
        if np.any(weights < 0) or np.any(total <= 0):
            raise AvatarAccessorError(path, f"{where} WEIGHTS_0: negative weights or a vertex weighted to nothing")
        if prim.indices is not None:
            idx = _accessor(gltf, blobs, prim.indices, path, f"{where} indices", ("SCALAR",))
            if idx.dtype.kind not in "iu" or len(idx) % 3:
                raise AvatarAccessorError(path, f"{where} indices: {len(idx)} {idx.dtype} values is not a triangle list")
            if idx.size and idx.max() >= v:
                raise AvatarAccessorError(path, f"{where} indices: vertex {int(idx.max())} of {v}")
        else:
            idx = np.arange(v - v % 3)
        normals = (_accessor(gltf, blobs, attrs.NORMAL, path, f"{where} NORMAL", ("VEC3",)) if attrs.NORMAL is not None
                   else _vertex_normals(pos, idx.reshape(-1, 3)))
        color = np.ones((v, 4), dtype=np.float32)
        if attrs.COLOR_0 is not None:
            c = _accessor(gltf, blobs, attrs.COLOR_0, path, f"{where} COLOR_0", ("VEC3", "VEC4")).astype(np.float32)
            color[:, : c.shape[1]] = c
        if prim.material is not None and 0 <= prim.material < len(gltf.materials or []):
            pbr = gltf.materials[prim.material].pbrMetallicRoughness
            if pbr is not None and pbr.baseColorFactor:
                color *= np.asarray(pbr.baseColorFactor, dtype=np.float32)
        parts["positions"].append(pos)
        parts["normals"].append(normals.astype(np.float32))
        parts["colors"].append(color)
        parts["indices"].append(idx.reshape(-1, 3).astype(np.uint32) + base)
        parts["joints"].append(joints.astype(np.int64))
        parts["weights"].append(weights / total)
        for k, target in enumerate(prim.targets or []):
            delta = target.get("POSITION") if isinstance(target, dict) else getattr(target, "POSITION", None)
            if delta is not None and k < len(names):
                d = _accessor(gltf, blobs, delta, path, f"{where} target {k}", ("VEC3",))
                if len(d) != v:
                    raise AvatarAccessorError(path, f"{where} target {k}: {len(d)} deltas for {v} vertices")
                morphs.setdefault(names[k], []).append((base, d.astype(np.float32)))
        base += v
    if not parts["positions"]:
        raise AvatarSkinError(path, "the skinned mesh has no triangles")
    mesh = AvatarMesh(**{k: np.concatenate(v) for k, v in parts.items()})
    for name, pieces in morphs.items():
        deltas = np.zeros((base, 3), np.float32)
        for start, d in pieces:
            deltas[start:start + len(d)] = d
        mesh.morphs[name] = deltas
    return mesh


# VRM 0.x blend shape presets → VRM 1.0 expression presets.
_VRM0 = {"a": "aa", "i": "ih", "u": "ou", "e": "ee", "o": "oh", "blink_l": "blinkLeft", "blink_r": "blinkRight",
         "joy": "happy", "sorrow": "sad", "fun": "relaxed", "lookup": "lookUp", "lookdown": "lookDown",
         "lookleft": "lookLeft", "lookright": "lookRight"}


def _target_names(mesh: pygltflib.Mesh) -> list[str]:
    """A glTF mesh's morph target names (`extras.targetNames`, as three.js reads them), else their
    indices as strings (three.js's names for unnamed targets)."""
    count = max((len(p.targets or []) for p in mesh.primitives), default=0)
    names = (mesh.extras or {}).get("targetNames") if isinstance(mesh.extras, dict) else None
    if isinstance(names, list) and len(names) >= count:
        return [str(n) for n in names[:count]]
    return [str(k) for k in range(count)]


def _file_expressions(gltf: pygltflib.GLTF2) -> dict[str, list[tuple[str, float]]]:
    """The expressions (VRM 1.0 `VRMC_vrm.expressions`) or blend shape groups (VRM 0.x) a file
    declares, each with the morph targets it binds."""
    def target(mesh: int | None, index: object) -> str | None:
        if mesh is None or not 0 <= mesh < len(gltf.meshes) or not isinstance(index, int):
            return None
        names = _target_names(gltf.meshes[mesh])
        return names[index] if 0 <= index < len(names) else None

    out: dict[str, list[tuple[str, float]]] = {}
    ext = gltf.extensions or {}
    expressions = (ext.get("VRMC_vrm") or {}).get("expressions") or {}
    for group in ("preset", "custom"):
        for name, spec in (expressions.get(group) or {}).items():
            binds = []
            for b in (spec or {}).get("morphTargetBinds") or []:
                node = b.get("node")
                mesh = gltf.nodes[node].mesh if isinstance(node, int) and 0 <= node < len(gltf.nodes) else None
                if (t := target(mesh, b.get("index"))) is not None:
                    binds.append((t, float(b.get("weight", 1.0))))
            out[str(name)] = binds
    for g in ((ext.get("VRM") or {}).get("blendShapeMaster") or {}).get("blendShapeGroups") or []:
        if not isinstance(g, dict):
            continue
        preset = str(g.get("presetName") or "")
        name = _VRM0.get(preset, preset) if preset and preset != "unknown" else str(g.get("name"))
        out[name] = [(t, float(b.get("weight", 100)) / 100) for b in g.get("binds") or []
                     if isinstance(b, dict) and (t := target(b.get("mesh"), b.get("index"))) is not None]
    return out


def _vertex_normals(pos: np.ndarray, tris: np.ndarray) -> np.ndarray:
    face = np.cross(pos[tris[:, 1]] - pos[tris[:, 0]], pos[tris[:, 2]] - pos[tris[:, 0]])
    out = np.zeros_like(pos)
    for k in range(3):
        np.add.at(out, tris[:, k], face)
    return normalize(out).astype(np.float32)


def _map_bones(gltf: pygltflib.GLTF2, path: Path, joint_nodes: list[int], names: tuple[str, ...],
               bone_map: dict[str, str]) -> tuple[dict[str, int], list[str]]:
    """VRM humanoid name → joint index, from the VRM extension, the config's bone_map, or names."""
    slot = {node: i for i, node in enumerate(joint_nodes)}
    ext = gltf.extensions or {}
    humanoid: dict[str, int] = {}
    notes: list[str] = []
    if "VRMC_vrm" in ext:  # VRM 1.0: {"humanBones": {"hips": {"node": 3}, ...}}
        for bone, spec in ((ext["VRMC_vrm"].get("humanoid") or {}).get("humanBones") or {}).items():
            if isinstance(spec, dict) and spec.get("node") in slot:
                humanoid[bone] = slot[spec["node"]]
        notes.append("bones from the VRMC_vrm (VRM 1.0) humanoid table")
    elif "VRM" in ext:  # VRM 0.x: {"humanBones": [{"bone": "hips", "node": 3}, ...]}
        for spec in (ext["VRM"].get("humanoid") or {}).get("humanBones") or []:
            if isinstance(spec, dict) and spec.get("node") in slot:
                humanoid[vrm0_to_vrm1(spec.get("bone", ""))] = slot[spec["node"]]
        notes.append("bones from the VRM 0.x humanoid table")
    by_name = {normalise(n): i for i, n in enumerate(names)}
    known = {normalise(b): b for b in ALL_BONES}
    mixamo = {normalise(k): v for k, v in MIXAMO.items()}
    vrm0 = any(n.endswith("thumbintermediate") for n in by_name)
    for key, i in by_name.items():
        bone = known.get(key) or mixamo.get(key)
        if vrm0 and bone and "Thumb" in bone:
            bone = vrm0_to_vrm1(bone)
        if bone and bone not in humanoid:
            humanoid[bone] = i
    for node_name, bone in bone_map.items():
        if bone not in ALL_BONES:
            raise AvatarBonesError(path, f"bone_map maps {node_name!r} to {bone!r}, which is not a VRM humanoid bone")
        i = by_name.get(normalise(node_name))
        if i is None:
            raise AvatarBonesError(path, f"bone_map names node {node_name!r}, which is not a joint of the skin")
        humanoid[bone] = i
    return humanoid, notes


def _facing(bind: np.ndarray, humanoid: dict[str, int]) -> np.ndarray:
    """Rotation taking the avatar's own (left, up, forward) to (+x, +y, +z)."""
    heads = bind[:, :3, 3]
    left = heads[humanoid["leftUpperArm"]] - heads[humanoid["rightUpperArm"]]
    low = next((humanoid[b] for b in ("hips", "spine", "chest") if b in humanoid), None)
    top = next((humanoid[b] for b in ("head", "neck") if b in humanoid), None)
    up = heads[top] - heads[low] if low is not None and top is not None else np.array([0.0, 1.0, 0.0])
    f = frame(left, up)  # columns: left, forward-ish, up  (x along left, z along up)
    own = np.stack([f[:, 0], f[:, 2], -f[:, 1]], axis=1)  # columns: left, up, forward
    turn = own.T
    # Files are authored axis-aligned: snap to the nearest quarter turns to keep their exact geometry.
    snapped = np.round(turn)
    return snapped if np.abs(turn - snapped).max() < 0.2 and abs(np.linalg.det(snapped) - 1) < 1e-9 else turn


# --- writing ----------------------------------------------------------------------------------


def write_glb(path: str | Path, rig: Rig, mesh: AvatarMesh, extras: dict | None = None) -> None:
    """Write a rig and its skinned mesh as a .glb (one mesh, one skin, one material), with its
    morph targets (named in the mesh's `extras.targetNames`)."""
    blob = bytearray()
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0", generator="signstream avatar build"))

    def add(array: np.ndarray, kind: str, ctype: int, target: int | None = None, normalized: bool = False) -> int:
        data = np.ascontiguousarray(array)
        while len(blob) % 4:
            blob.append(0)
        gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=data.nbytes, target=target))
        blob.extend(data.tobytes())
        flat = data.reshape(len(data), -1).astype(np.float64)
        acc = pygltflib.Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=ctype, count=len(data), type=kind,
                                 normalized=normalized or None)
        if kind == "VEC3" and target == pygltflib.ARRAY_BUFFER:
            acc.min, acc.max = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        gltf.accessors.append(acc)
        return len(gltf.accessors) - 1

    j = len(rig)
    local = rig.rest_local
    for i in range(j):
        node = pygltflib.Node(name=rig.names[i], translation=local[i, :3, 3].tolist())
        q = matrix_to_quat(rig.rest_rotation[i])
        if not np.allclose(q, [0, 0, 0, 1]):
            node.rotation = q.tolist()
        node.children = [int(c) for c in np.flatnonzero(rig.parents == i)]
        gltf.nodes.append(node)
    ab, eb = pygltflib.ARRAY_BUFFER, pygltflib.ELEMENT_ARRAY_BUFFER
    attrs = pygltflib.Attributes(
        POSITION=add(mesh.positions.astype(np.float32), "VEC3", pygltflib.FLOAT, ab),
        NORMAL=add(normalize(mesh.normals).astype(np.float32), "VEC3", pygltflib.FLOAT, ab),
        # 16-bit: dark linear colours lose their hue in 8 bits.
        COLOR_0=add(np.round(np.clip(mesh.colors, 0, 1) * 65535).astype(np.uint16), "VEC4", pygltflib.UNSIGNED_SHORT, ab, True),
        JOINTS_0=add(mesh.joints.astype(np.uint8 if j < 256 else np.uint16), "VEC4",
                     pygltflib.UNSIGNED_BYTE if j < 256 else pygltflib.UNSIGNED_SHORT, ab),
        WEIGHTS_0=add(mesh.weights.astype(np.float32), "VEC4", pygltflib.FLOAT, ab),
    )
    big = len(mesh.positions) >= 65535
    indices = add(mesh.indices.reshape(-1).astype(np.uint32 if big else np.uint16), "SCALAR",
                  pygltflib.UNSIGNED_INT if big else pygltflib.UNSIGNED_SHORT, eb)
    ibm = np.swapaxes(rig.inverse_bind, -1, -2).astype(np.float32)  # column-major
    gltf.skins.append(pygltflib.Skin(joints=list(range(j)), inverseBindMatrices=add(ibm, "MAT4", pygltflib.FLOAT),
                                     skeleton=int(np.flatnonzero(rig.parents < 0)[0])))
    gltf.materials.append(pygltflib.Material(
        name="body", doubleSided=True,
        pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(baseColorFactor=[1, 1, 1, 1], metallicFactor=0.0, roughnessFactor=0.8)))
    targets = [pygltflib.Attributes(POSITION=add(d.astype(np.float32), "VEC3", pygltflib.FLOAT, ab)) for d in mesh.morphs.values()]
    gltf.meshes.append(pygltflib.Mesh(name="body", primitives=[pygltflib.Primitive(attributes=attrs, indices=indices, material=0,
                                                                                  targets=targets)],
                                      extras={"targetNames": list(mesh.morphs)} if mesh.morphs else {}))
    gltf.nodes.append(pygltflib.Node(name="body", mesh=0, skin=0))
    roots = [int(r) for r in np.flatnonzero(rig.parents < 0)]
    gltf.scenes.append(pygltflib.Scene(nodes=roots + [len(gltf.nodes) - 1]))
    gltf.scene = 0
    if extras:
        gltf.extras = extras
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(bytes(blob))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(b"".join(gltf.save_to_bytes()))
