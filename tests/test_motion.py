"""The rest pose and the motion timeline: transitions, hold and return to rest, speed, event order."""

import numpy as np

from engines.frame import PoseFrame
from engines.skeleton import L_SHOULDER, L_WRIST, NECK, R_SHOULDER, R_WRIST, bone_lengths
from server.motion import Timeline, rest_pose
from server.protocol import Message


def test_rest_pose_has_both_arms_down_and_real_proportions():
    points, conf = rest_pose()
    assert points.shape == (50, 3) and (conf == 1).all() and np.allclose(points[NECK], 0)
    assert abs(np.linalg.norm(points[L_SHOULDER] - points[R_SHOULDER]) - 1.0) < 0.05  # unit shoulder width
    for wrist, shoulder in ((L_WRIST, L_SHOULDER), (R_WRIST, R_SHOULDER)):
        assert points[wrist, 1] < points[shoulder, 1] - 1.0  # hanging well below the shoulder
    assert points[L_WRIST, 0] > 0 > points[R_WRIST, 0]  # the signer's left is the viewer's right
    assert (bone_lengths(points) < 1.5).all()


def _frame(value: float):
    p, c = rest_pose()
    return p + value, c


def test_a_unit_is_eased_into_played_then_held_and_eased_back_to_rest():
    t = Timeline(25.0, transition_s=0.2, rest_transition_s=0.4, hold_s=0.12)
    assert t.next()[0].kind == "rest"
    for i in range(3):
        t.push(PoseFrame(1, 0, 0, 0.0, "fingerspelling", *_frame(0.5 + i * 0.01)))
    status = Message("unit_status", {"unit": 1})
    assert t.event(status) == []  # rides on the last frame
    kinds, events = [], []
    for _ in range(30):
        frame, ev = t.next()
        kinds.append((frame.unit, frame.kind))
        events += [(len(kinds), e) for e in ev]
    assert kinds[:10] == [(1, "transition")] * 10  # 0.4 s from rest at 25 fps
    assert kinds[10:13] == [(1, "fingerspelling")] * 3
    assert events == [(13, status)]  # right after the unit's last frame
    assert kinds[13:16] == [(0, "transition")] * 3  # hold 0.12 s
    assert kinds[-1] == (0, "rest")
    assert t.event(Message("x")) == [Message("x")]  # nothing buffered: at once


def test_speed_consumes_the_buffer_faster_and_drop_keeps_other_units_events():
    t = Timeline(25.0, transition_s=0.0, rest_transition_s=0.0, hold_s=0.0)
    for i in range(20):
        t.push(PoseFrame(1, 0, 0, 0.0, "sign", *_frame(i * 0.01)))
    t.speed = 2.0
    n = 0
    while t.queued:
        t.next()
        n += 1
    assert n == 10
    for i in range(4):
        t.push(PoseFrame(2, 0, 0, 0.0, "sign", *_frame(0.0)))
    t.event(Message("after-2"))
    t.push(PoseFrame(3, 0, 0, 0.0, "sign", *_frame(0.0)))
    assert t.drop(3) == []
    assert t.drop(2) == [Message("after-2")]  # nothing left to ride on
