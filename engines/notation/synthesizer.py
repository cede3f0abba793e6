"""A sign description → 50-joint pose frames in canonical space, procedurally (no recording of
the sign exists): hands from the letter recordings (handshapes.py), placed at the documented body
sites (body.py, hands.py) with two-bone arm IK, oriented by wrist rotation (orientation.py), moved
by the effects built from the motion tree (effects.py). Compound parts are joined by transitions;
each part starts and ends with a short hold. Deterministic: no randomness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.notation.body import DISTANCE, DOMINANT_SIDE, Body, standard_body
from engines.notation.description import HandSite, Handshape, Location, Posture, SignDescription, SignPart
from engines.notation.effects import Hold, Seq, build
from engines.notation.handshapes import shape_points
from engines.notation.hands import Context, HandState, _hand_site, _mix, _smooth, _toward, _unit, _with
from engines.notation.orientation import MIRROR, hand_axes
from engines.sequence import PoseSequence
from engines.skeleton import L_ELBOW, LEFT_HAND_SLICE, NUM_JOINTS, R_ELBOW, R_WRIST, RIGHT_HAND_SLICE, L_WRIST

START_HOLD_S, END_HOLD_S = 0.06, 0.10  # seconds: the posture shows before and after the motion
PART_TRANSITION_S = 0.22
SYMMETRIC_GAP = 0.20  # a symmetric sign at a central site: each hand this far to its side


def _rest_hand(ctx: Context, sign: float) -> HandState:
    """A hand that takes no part: hanging at the side, fingers down, palm in."""
    shape = shape_points(_FLAT, ctx.letters)
    s = ctx.body.shoulder(sign)
    reach = ctx.body.upper + ctx.body.fore
    f, p = np.array([0.0, -1.0, 0.0]), np.array([-sign, 0.0, 0.0])
    return HandState(s + np.array([0.05 * sign, -0.97 * reach, 0.15]), shape, f, p, sign)


def _start(part: SignPart, ctx: Context) -> tuple[HandState, HandState, bool]:
    """Both hands' start states and whether the non-dominant hand takes part."""
    blank = HandState(np.zeros(3), shape_points(_FLAT, ctx.letters), np.array([0.0, 0.0, 1.0]),
                      np.array([0.0, -1.0, 0.0]), DOMINANT_SIDE)
    dom = ctx.posture(blank, part.dominant)
    loc = part.location
    if not part.two_handed:
        ctx.other = {}
        return ctx.place(dom, loc), _rest_hand(ctx, -DOMINANT_SIDE), False
    if part.symmetry:
        nd = ctx.posture(blank, part.dominant).mirrored()
    else:
        nd = _as_left(ctx, part.nondominant or part.dominant)
    hands_meet = loc is not None and (loc.other_hand is not None or bool(loc.hands_contact))
    if part.symmetry and hands_meet:
        # Both hands come to the midline and meet there (each from its own side), at the site's
        # height and at its distance from the body.
        site, normal_body = ctx.body.site(loc.site or "neutralspace", "", DOMINANT_SIDE)
        if loc.between is not None and loc.site:
            site2, normal2 = ctx.body.site(loc.between.site or "neutralspace", "", DOMINANT_SIDE)
            site, normal_body = (site + site2) / 2, _unit(normal_body + normal2)
        meet = site * np.array([0.0, 1.0, 1.0]) + normal_body * DISTANCE[loc.contact]
        gap = DISTANCE[loc.hands_contact] / 2
        placed = []
        for s in (dom, nd):
            normal = np.array([s.sign, 0.0, 0.0])
            at0 = _with(s, pos=np.zeros(3))
            if s.sign < 0 and loc.hand is not None:
                anchor = _hand_site(at0, loc.hand)[0]
            elif s.sign > 0 and loc.other_hand is not None:
                anchor = _hand_site(at0, loc.other_hand)[0]
            else:
                pts = at0.points()
                anchor = pts[np.argmin(pts @ normal)]
            placed.append(_with(s, pos=meet + normal * gap - anchor))
        dom, nd = placed
    elif part.symmetry:
        dom = ctx.place(dom, loc)
        nd = ctx.place(nd, loc)
        if loc is None or (not loc.side and loc.site not in ("neutralspace", "ear", "earlobe", "cheek",
                                                                "shouldertop")):
            dom = _with(dom, pos=dom.pos + np.array([DOMINANT_SIDE * SYMMETRIC_GAP, 0.0, 0.0]))
            nd = _with(nd, pos=nd.pos + np.array([-DOMINANT_SIDE * SYMMETRIC_GAP, 0.0, 0.0]))
    else:
        if hands_meet and loc.other_hand is None:  # the hands touch, no part named: the palm
            loc = Location(loc.site, loc.side, loc.between, loc.contact, loc.hands_contact, loc.hand, HandSite(""))
        nd_loc = part.nd_location
        if nd_loc is None and hands_meet:  # the base hand where the pair is written, else before the chest
            nd_loc = Location(loc.site, loc.side, loc.between, loc.contact) if loc.site else Location("chest")
        nd = ctx.place(nd, nd_loc)
        if hands_meet and part.nd_location is None and not loc.site:  # a little to its own side
            nd = _with(nd, pos=nd.pos + np.array([0.08, 0.0, 0.12]))
        ctx.other = {nd.sign: nd}
        dom = ctx.place(dom, loc)
    ctx.other = {nd.sign: nd, dom.sign: dom}
    return dom, nd, True


def _as_left(ctx: Context, posture: Posture) -> HandState:
    """A non-dominant hand in a posture written for it (directions as written, not mirrored)."""
    shape = shape_points(posture.shape, ctx.letters) if posture.shape else shape_points(_FLAT, ctx.letters)
    f, p = hand_axes(posture.ext or ("o",), posture.palm or ("d",))
    # The palm symbols of a left hand read as the mirror image of a right hand's.
    _, pm = hand_axes(tuple(_mirror_name(e) for e in posture.ext or ("o",)),
                       tuple(_mirror_name(q) for q in posture.palm or ("d",)))
    return HandState(np.zeros(3), shape, f, pm * MIRROR, -DOMINANT_SIDE)


def _mirror_name(name: str) -> str:
    return name.translate(str.maketrans("lr", "rl"))


_FLAT = Handshape("flathand")  # the shape of a hand that takes no part


def _frames(states: list[tuple[HandState, HandState, bool]], body: Body) -> np.ndarray:
    """Frames (T, 50, 3) for per-frame hand states: hands placed, arms by IK, all frames at once."""
    out = np.zeros((len(states), NUM_JOINTS, 3))
    out[:, :8] = body.points
    for k, elbow_j, wrist_j, hand in ((0, R_ELBOW, R_WRIST, RIGHT_HAND_SLICE), (1, L_ELBOW, L_WRIST, LEFT_HAND_SLICE)):
        # Each distinct state once (holds and a resting hand repeat the same state object), then
        # spread over the frames.
        index: dict[int, int] = {}
        hs: list[HandState] = []
        which = []
        for st in states:
            h = st[k]
            j = index.get(id(h))
            if j is None:
                j = index[id(h)] = len(hs)
                hs.append(h)
            which.append(j)
        sign = hs[0].sign
        m = MIRROR if sign > 0 else np.ones(3)
        pos = np.array([h.pos for h in hs])
        f = np.array([h.f for h in hs]) * m
        p = np.array([h.p for h in hs]) * m
        f /= np.sqrt((f * f).sum(axis=1))[:, None]
        p -= (p * f).sum(axis=1)[:, None] * f
        p /= np.sqrt((p * p).sum(axis=1))[:, None]
        rot = np.empty((len(hs), 3, 3))  # rows x, y, z of the right-hand frame: x = f × p
        rot[:, 0, 0] = f[:, 1] * p[:, 2] - f[:, 2] * p[:, 1]
        rot[:, 0, 1] = f[:, 2] * p[:, 0] - f[:, 0] * p[:, 2]
        rot[:, 0, 2] = f[:, 0] * p[:, 1] - f[:, 1] * p[:, 0]
        rot[:, 1], rot[:, 2] = f, p
        pts = np.matmul(np.array([h.shape for h in hs]), rot) * m + pos[:, None]
        elbow, wrist = body.arms(pos, sign)
        pts = pts + (wrist - pos)[:, None]  # an unreachable wrist carries the hand along
        if len(hs) < len(states):
            elbow, wrist, pts = elbow[which], wrist[which], pts[which]
        out[:, elbow_j], out[:, wrist_j] = elbow, wrist
        out[:, hand] = pts
    return out


def synthesize(sign: SignDescription, fps: float, letters: Path) -> PoseSequence:
    """The sign's frames at `fps` (raises ValueError for a description that is not renderable)."""
    if not sign.renderable:
        raise ValueError(f"not renderable: {', '.join(u.symbol for u in sign.unsupported)}")
    body = standard_body(letters)
    ctx = Context(body, letters)
    timeline: list[tuple[float, object]] = []  # (duration, sampler(u) → (dom, nd, active))
    previous: tuple[HandState, HandState, bool] | None = None
    for part in sign.parts:
        dom0, nd0, active = _start(part, ctx)
        eff_d, eff_n = build(part.motion, part.symmetry if part.two_handed else "")
        if part.alternating and part.symmetry:
            half = eff_d.duration / 2
            eff_d, eff_n = Seq([eff_d, Hold(half)]), Seq([Hold(half), eff_n])
        frozen = Context(body, letters, dict(ctx.other))
        if previous is not None:
            a, b = previous, (dom0, nd0, active)
            timeline.append((PART_TRANSITION_S, _blend(a, b)))
        timeline.append((START_HOLD_S, lambda u, d=dom0, n=nd0, a=active: (d, n, a)))

        def sample(u: float, d=dom0, n=nd0, ed=eff_d, en=eff_n, c=frozen, a=active):
            return ed.at(d, u, c), (en.at(n, u, c) if a else n), a

        timeline.append((max(eff_d.duration, 1e-3), sample))
        previous = sample(1.0)
        timeline.append((END_HOLD_S if part is sign.parts[-1] else 0.0, lambda u, e=previous: e))
    total = sum(d for d, _ in timeline)
    n = max(2, int(round(total * fps)) + 1)
    states = []
    for i in range(n):
        t = min(total, i / fps)
        for d, sampler in timeline:
            if t <= d or sampler is timeline[-1][1]:
                states.append(sampler(min(1.0, t / d) if d > 0 else 1.0))  # type: ignore[operator]
                break
            t -= d
    frames = _frames(states, body).astype(np.float32)
    return PoseSequence(frames, np.ones(frames.shape[:2], dtype=np.float32), fps)


def _blend(a: tuple[HandState, HandState, bool], b: tuple[HandState, HandState, bool]):
    def at(u: float):
        w = _smooth(u)
        mix = [_toward(x, y, w, _mix(x.pos, y.pos, w)) for x, y in zip(a[:2], b[:2])]
        return mix[0], mix[1], a[2] or b[2]
    return at
