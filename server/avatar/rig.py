"""The avatar's skeleton and its forward kinematics.

A rig lives in canonical-oriented world space (y up, the avatar facing +z, its left hand towards +x)
in its own units. `bind` holds each joint's world transform in the bind pose, the pose the mesh
was modelled in; a joint's local transform is its rest translation with a rotation that the
retargeter chooses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.avatar.rotations import project_to_rotation


@dataclass
class Rig:
    names: tuple[str, ...]
    parents: np.ndarray  # (J,) index of each joint's parent joint, -1 for a root
    bind: np.ndarray  # (J, 4, 4) world bind transforms
    humanoid: dict[str, int]  # VRM humanoid bone name → joint index
    tips: dict[int, np.ndarray] = field(default_factory=dict)  # world bind position of a leaf bone's end
    rest_local: np.ndarray = field(init=False)  # (J, 4, 4)
    rest_rotation: np.ndarray = field(init=False)  # (J, 3, 3) rotation part of rest_local
    _scale: np.ndarray = field(init=False)  # (J, 3, 3) what the local linear part keeps besides rotation
    _levels: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.parents = np.asarray(self.parents, dtype=np.int64)
        self.bind = np.asarray(self.bind, dtype=np.float64)
        j = len(self.names)
        if self.parents.shape != (j,) or self.bind.shape != (j, 4, 4):
            raise ValueError(f"rig of {j} joints needs parents ({j},) and bind ({j}, 4, 4)")
        parent_bind = np.where((self.parents >= 0)[:, None, None], self.bind[self.parents], np.eye(4))
        self.rest_local = np.linalg.solve(parent_bind, self.bind)
        self.rest_rotation = project_to_rotation(self.rest_local[:, :3, :3])
        self._scale = np.swapaxes(self.rest_rotation, -1, -2) @ self.rest_local[:, :3, :3]
        depth = np.zeros(j, dtype=np.int64)
        for i in range(j):  # parents may come after children in a file: walk up
            p, d = self.parents[i], 0
            while p >= 0:
                p, d = self.parents[p], d + 1
                if d > j:
                    raise ValueError("the joint hierarchy has a cycle")
            depth[i] = d
        self._levels = [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def inverse_bind(self) -> np.ndarray:
        return np.linalg.inv(self.bind)

    def bone(self, name: str) -> int | None:
        return self.humanoid.get(name)

    def fk(self, local_rotation: np.ndarray) -> np.ndarray:
        """World transforms (..., J, 4, 4) for local rotations (..., J, 3, 3)."""
        local = np.broadcast_to(self.rest_local, local_rotation.shape[:-3] + self.rest_local.shape).copy()
        local[..., :3, :3] = local_rotation @ self._scale
        world = np.empty_like(local)
        for level in self._levels:
            roots = level[self.parents[level] < 0]
            kids = level[self.parents[level] >= 0]
            world[..., roots, :, :] = local[..., roots, :, :]
            world[..., kids, :, :] = world[..., self.parents[kids], :, :] @ local[..., kids, :, :]
        return world

    def tip_positions(self, world: np.ndarray) -> dict[int, np.ndarray]:
        """World positions (..., 3) of the leaf bones' ends, for FK transforms `world`."""
        out = {}
        for j, tip in self.tips.items():
            local = np.linalg.solve(self.bind[j], np.append(tip, 1.0))
            out[j] = (world[..., j, :, :] @ local)[..., :3]
        return out

    def end_of(self, joint: int, child: int | None) -> np.ndarray:
        """World bind position where bone `joint` ends: its child joint's head, or its tip."""
        if child is not None:
            return self.bind[child, :3, 3]
        if joint in self.tips:
            return self.tips[joint]
        # A leaf with no tip: continue the parent bone's direction by the parent's length.
        p = self.parents[joint]
        head = self.bind[joint, :3, 3]
        return head + (head - self.bind[p, :3, 3]) * 0.8 if p >= 0 else head + np.array([0.0, 0.01, 0.0])
