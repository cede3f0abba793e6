"""CPU skinning (pyrender has none): linear blend skinning, and rigid parts where a vertex has one bone.

Both are vectorized numpy over all vertices. `rigid` reorders the vertices by bone once, so a
frame costs one small matrix product per bone for the single-bone vertices, and linear blending
only for the vertices that really blend (our avatar's torso); `lbs` blends every vertex with its
four weights. bench/avatar.py measures both. Morph targets (the face's expressions:
server/avatar/expressions.py) are added, weighted, to the bind positions before skinning; the
normals stay the bind pose's (a face's expressions are small; the shading barely changes).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from server.avatar.gltf import AvatarMesh
from server.avatar.rig import Rig

SkinMode = Literal["lbs", "rigid"]
_RIGID = 0.999  # a vertex whose largest weight reaches this moves with that bone alone


class Skinner:
    """Skins `mesh` for world joint transforms. `order` is the vertex order the outputs use."""

    def __init__(self, rig: Rig, mesh: AvatarMesh, mode: SkinMode = "rigid") -> None:
        if mode not in ("lbs", "rigid"):
            raise ValueError(f"skinning mode must be 'lbs' or 'rigid', got {mode!r}")
        self.mode = mode
        self._ibm = rig.inverse_bind
        w, j = mesh.weights, mesh.joints
        top = np.argmax(w, axis=1)
        bone = j[np.arange(len(j)), top]
        rigid = (w.max(axis=1) >= _RIGID) if mode == "rigid" else np.zeros(len(w), dtype=bool)
        # Rigid vertices first, grouped by bone; blended ones after.
        self.order = np.lexsort((bone, ~rigid))
        inverse = np.empty_like(self.order)
        inverse[self.order] = np.arange(len(self.order))
        self.indices = inverse[mesh.indices].astype(np.uint32)
        self.colors = mesh.colors[self.order]
        pos, nrm = mesh.positions[self.order].astype(np.float32), mesh.normals[self.order].astype(np.float32)
        n_rigid = int(rigid.sum())
        bones_sorted = bone[self.order][:n_rigid]
        starts = np.flatnonzero(np.r_[True, bones_sorted[1:] != bones_sorted[:-1]]) if n_rigid else np.array([], int)
        ends = np.r_[starts[1:], n_rigid] if n_rigid else np.array([], int)
        self._runs = [(int(bones_sorted[s]), int(s), int(e)) for s, e in zip(starts, ends)]
        self._n_rigid = n_rigid
        self._pos_h = np.concatenate([pos, np.ones((len(pos), 1), np.float32)], axis=1)  # homogeneous
        self._nrm = nrm
        self._blend_j = j[self.order][n_rigid:]
        self._blend_w = w[self.order][n_rigid:].astype(np.float32)
        self.morph_names = list(mesh.morphs)  # the order of `skin`'s morph weights
        # Per target, only the vertices it moves (a face's expressions move a few hundred of thousands);
        # all of them where it moves most (indexing would then cost more than it saves).
        self._morphs: list[tuple[np.ndarray | slice, np.ndarray]] = []
        for m in mesh.morphs.values():
            d = m[self.order].astype(np.float32)
            idx = np.flatnonzero(np.any(d != 0, axis=1))
            self._morphs.append((idx, d[idx]) if len(idx) < len(d) // 2 else (slice(None), d))
        self.positions = np.empty_like(pos)
        self.normals = np.empty_like(nrm)

    def skin(self, world: np.ndarray, morph: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions and normals (V, 3) float32, in `order`, for world transforms (J, 4, 4) and
        morph target weights (K,) in `morph_names` order (None: none).

        Normals use the linear part without re-normalising: the shader normalises them.
        """
        m = (world @ self._ibm)[:, :3, :].astype(np.float32)  # (J, 3, 4)
        pos, nrm = self.positions, self.normals
        src = self._pos_h
        if morph is not None and np.any(morph):
            src = src.copy()
            for k in np.flatnonzero(morph):
                idx, delta = self._morphs[k]
                src[idx, :3] += np.float32(morph[k]) * delta
        for b, s, e in self._runs:
            pos[s:e] = src[s:e] @ m[b].T
            nrm[s:e] = self._nrm[s:e] @ m[b, :, :3].T
        n = self._n_rigid
        if n < len(pos):
            blend = np.einsum("vk,vkij->vij", self._blend_w, m[self._blend_j])  # (V, 3, 4)
            pos[n:] = np.einsum("vij,vj->vi", blend, src[n:])
            nrm[n:] = np.einsum("vij,vj->vi", blend[:, :, :3], self._nrm[n:])
        return pos, nrm
