import numpy as np

from engines import skeleton as sk


def test_layout_has_50_joints_and_49_limbs_in_a_tree():
    assert sk.NUM_JOINTS == 50 and len(sk.JOINT_NAMES) == 50 and len(set(sk.JOINT_NAMES)) == 50
    assert len(sk.LIMBS) == 49
    assert [i for i, p in enumerate(sk.PARENTS) if p < 0] == [sk.NECK]
    for j in range(sk.NUM_JOINTS):  # every joint reaches the root without a cycle
        seen, k = set(), j
        while sk.PARENTS[k] >= 0:
            assert k not in seen
            seen.add(k)
            k = sk.PARENTS[k]
        assert k == sk.NECK


def test_body_order_is_openpose_body25_and_hands_follow():
    assert sk.BODY_NAMES[:2] == ("nose", "neck")
    assert sk.JOINT_NAMES[sk.LEFT_HAND] == "left_hand_wrist"
    assert sk.JOINT_NAMES[sk.RIGHT_HAND + 8] == "right_hand_index_tip"
    assert sk.PARENTS[sk.LEFT_HAND] == sk.L_WRIST and sk.PARENTS[sk.RIGHT_HAND] == sk.R_WRIST


def test_mirror_swaps_sides_and_is_an_involution():
    m = np.array(sk.MIRROR)
    assert (m[m] == np.arange(50)).all()
    assert sk.JOINT_NAMES[m[sk.R_ELBOW]] == "left_elbow"
    assert sk.JOINT_NAMES[m[sk.LEFT_HAND + 4]] == "right_hand_thumb_tip"


def test_bone_lengths_of_a_known_pose():
    pts = np.zeros((50, 3))
    pts[sk.R_SHOULDER] = [-0.5, 0, 0]
    pts[sk.R_ELBOW] = [-0.5, -0.8, 0]
    lengths = sk.bone_lengths(pts)
    assert lengths[sk.LIMBS.index((sk.NECK, sk.R_SHOULDER))] == 0.5
    assert abs(lengths[sk.LIMBS.index((sk.R_SHOULDER, sk.R_ELBOW))] - 0.8) < 1e-9
