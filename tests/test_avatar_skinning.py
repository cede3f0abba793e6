"""Skinning: rigid parts and linear blend skinning agree where the mesh is rigid, and the blended
torso follows its bones."""

from __future__ import annotations

import numpy as np

from tools.avatar_build import ASSET
from server.avatar.gltf import load_avatar
from server.avatar.retarget import Retargeter
from server.avatar.rotations import axis_angle
from server.avatar.skinning import Skinner


def test_rigid_and_blend_skinning_agree():
    avatar = load_avatar(ASSET)
    rig = avatar.rig
    local = Retargeter(rig).rest.copy()
    spine = rig.humanoid["spine"]
    local[spine] = axis_angle([0.0, 0.0, 1.0], 0.3) @ local[spine]  # bend the torso: blended vertices move
    world = rig.fk(local)
    rigid, lbs = Skinner(rig, avatar.mesh, "rigid"), Skinner(rig, avatar.mesh, "lbs")
    pr, nr = (a.copy() for a in rigid.skin(world))
    pl, nl = lbs.skin(world)
    back = np.empty_like(pr)
    back[rigid.order] = pr
    forward = np.empty_like(pl)
    forward[lbs.order] = pl
    np.testing.assert_allclose(back, forward, atol=1e-5)
    # Each vertex is where its weighted bones carry it from the bind pose.
    m = (world @ rig.inverse_bind)[avatar.mesh.joints]  # (V, 4, 4, 4)
    p = np.concatenate([avatar.mesh.positions, np.ones((len(back), 1))], axis=1)
    expect = np.einsum("vk,vkij,vj->vi", avatar.mesh.weights, m, p)[:, :3]
    np.testing.assert_allclose(back, expect, atol=1e-5)
    assert np.abs(back - avatar.mesh.positions).max() > 0.05  # it did move
