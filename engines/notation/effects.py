"""Motions as effects: an effect maps a hand's state at its start and a phase u ∈ [0, 1] to the
state at u. `build` turns a description's motion tree into one effect per hand, of equal length:
the non-dominant hand gets the mirrored effect (hamsymmlr), the parallel one (hamsymmpar), its own
(a par group with hamplus), or a hold. Timing and sizes are JASigning-like defaults (docs/notation.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engines.notation.description import Location, Motion, Posture
from engines.notation.handshapes import CHAINS
from engines.notation.hands import Context, HandState, _Memo, _mix, _smooth, _toward, _unit, _with
from engines.notation.orientation import MIRROR, cross, direction, rotate

# Seconds (in the spirit of JASigning's defaults: a straight movement ≈ 0.25 s, a circle ≈ 0.45 s;
# brisk, because live captions come at 150-180 words a minute).
MOVE_S = {"": 0.25, "small": 0.18, "large": 0.35}
CIRCLE_S = {"": 0.45, "small": 0.36, "large": 0.60}
OSCILLATION_S = 0.36
FINGERPLAY_S = 0.45
REPLACE_S = 0.25
HOLD_S = 0.20
PLACE_S = 0.25
RETURN_S = 0.15
SPEED = {"": 1.0, "fast": 0.65, "slow": 1.5, "halt": 1.0}
# Shoulder widths (≈ 36 cm): a straight movement ≈ 11 cm, a circle's radius ≈ 4 cm.
MOVE_LEN = {"": 0.32, "small": 0.14, "large": 0.60}
CIRCLE_R = {"": 0.12, "small": 0.06, "large": 0.20}
ARC_BULGE = 0.25  # of the movement's length
WAVE_AMPLITUDE, WAVE_CYCLES = 0.04, 2.0
OSCILLATION_DEG = {"nod": 25.0, "swing": 30.0, "twist": 45.0}
_ELLIPSE = {"h": np.array([1.0, 0.5, 1.0]), "v": np.array([0.5, 1.0, 1.0])}  # halve the other axis


def _length(v: np.ndarray) -> float:
    return math.sqrt(float(v.dot(v)))


REPEATS = {"fromstart": 2, "fromstartseveral": 3, "continue": 2, "continueseveral": 3, "reverse": 2}


class Effect(Protocol):
    duration: float

    def at(self, s: HandState, u: float, ctx: Context) -> HandState: ...


@dataclass
class Hold:
    duration: float

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        return s


@dataclass(eq=False)
class Path_(_Memo):
    """A path relative to the start: straight (vector), arc, wavy or zigzag; or towards a goal."""

    duration: float
    vector: np.ndarray | None
    goal: Location | None = None
    arc: str = ""
    wave: str = ""
    ellipse: str = ""
    halt: bool = False

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        w = u * (2 - u) if self.halt else _smooth(u)  # halt: ends abruptly, no slowing down
        d, side, across = self.memo(s, lambda: self._plan(s, ctx))
        pos = s.pos + d * w
        if side is not None:
            pos = pos + side * math.sin(math.pi * w)
        if across is not None:
            phase = WAVE_CYCLES * w
            wave = math.sin(2 * math.pi * phase)
            if self.wave != "wavy":  # zigzag: the triangle wave through the same points
                wave = 2 / math.pi * math.asin(wave)
            pos = pos + across * wave
        if self.ellipse:  # flatten the path's deviation from the straight line, as for a circle
            line = s.pos + d * w
            pos = line + (pos - line) * _ELLIPSE[self.ellipse]
        return HandState(pos, s.shape, s.f, s.p, s.sign)

    def _plan(self, s: HandState, ctx: Context) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """What does not change along the path from `s`: the displacement, the arc's bulge and the
        wave's sideways swing at their largest (computed once, not per frame)."""
        if self.goal is not None:
            end = ctx.place(s, self.goal).pos
            if self.vector is not None and _length(end - s.pos) < 1e-3:
                end = s.pos + self.vector
        else:
            assert self.vector is not None
            end = s.pos + self.vector
        d = end - s.pos
        length = _length(d)
        side = across = None
        if self.arc and length > 1e-6:
            bend = np.array(direction((self.arc,)))
            bend = bend - bend.dot(d) / length**2 * d
            side = _unit(bend) * (ARC_BULGE * length)
        if self.wave and length > 1e-6:
            across = _unit(cross(_unit(d), s.p)) * WAVE_AMPLITUDE
        return d, side, across


@dataclass
class Circle:
    duration: float
    axis: np.ndarray
    radius: float
    ellipse: str = ""

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        a = _unit(self.axis)
        up = np.array([0.0, 1.0, 0.0]) if abs(a[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
        u0 = _unit(up - up.dot(a) * a)
        t = 2 * math.pi * _smooth(u)
        off = u0 * (self.radius * (math.cos(t) - 1)) + cross(a, u0) * (self.radius * math.sin(t))
        if self.ellipse:
            off = off * _ELLIPSE[self.ellipse]
        return HandState(s.pos + off, s.shape, s.f, s.p, s.sign)


@dataclass
class Oscillate:
    duration: float
    kind: str  # nod | swing | twist | stir | fingerplay

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        wave = math.sin(2 * math.pi * u)
        if self.kind == "stir":  # a small horizontal circle, orientation kept
            t = 2 * math.pi * _smooth(u)
            return HandState(s.pos + np.array([0.05 * (math.cos(t) - 1), 0.0, 0.05 * math.sin(t)]), s.shape, s.f, s.p,
                             s.sign)
        if self.kind == "fingerplay":  # fingers flex in turn
            shape = s.shape.copy()
            for k, finger in enumerate(("index", "middle", "ring", "little")):
                idx = list(CHAINS[finger])
                angle = np.radians(25.0 * np.sin(2 * np.pi * (2 * u + k / 4)) * np.sin(np.pi * u))
                rel = shape[idx] - shape[idx[0]]
                c, sn = np.cos(angle), np.sin(angle)
                shape[idx] = shape[idx[0]] + np.stack([rel[:, 0], rel[:, 1] * c - rel[:, 2] * sn,
                                                       rel[:, 1] * sn + rel[:, 2] * c], axis=1)
            return _with(s, shape=shape)
        degrees = OSCILLATION_DEG[self.kind] * wave
        axis = {"nod": cross(s.f, s.p), "swing": s.p, "twist": s.f}[self.kind]
        axis = _unit(axis)
        return HandState(s.pos, s.shape, rotate(s.f, axis, degrees), rotate(s.p, axis, degrees), s.sign)


@dataclass(eq=False)
class Replace(_Memo):
    duration: float
    posture: Posture
    mirrored: bool = False

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        end = self.memo(s, lambda: ctx.posture(s, self.posture, self.mirrored))
        return _toward(s, end, _smooth(u), s.pos)


@dataclass(eq=False)
class Seq(_Memo):
    children: list[Effect]
    duration: float = 0.0

    def __post_init__(self) -> None:
        self.duration = sum(c.duration for c in self.children)

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        starts = self.memo(s, lambda: self._starts(s, ctx))
        t = u * self.duration
        for c, start in zip(self.children, starts):
            if t <= c.duration or c is self.children[-1]:
                return c.at(start, min(1.0, t / c.duration) if c.duration > 0 else 1.0, ctx)
            t -= c.duration
        return s

    def _starts(self, s: HandState, ctx: Context) -> list[HandState]:
        out = []
        for c in self.children:
            out.append(s)
            s = c.at(s, 1.0, ctx)
        return out


@dataclass
class Par:
    """Children at once: position changes add up; the last child that turns or reshapes the hand wins."""

    children: list[Effect]
    duration: float = 0.0

    def __post_init__(self) -> None:
        self.duration = max((c.duration for c in self.children), default=0.0)

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        if len(self.children) == 1:
            c = self.children[0]
            return c.at(s, min(1.0, u * self.duration / c.duration) if c.duration > 0 else 1.0, ctx)
        shape, f, p = s.shape, s.f, s.p
        pos = s.pos
        for c in self.children:
            r = c.at(s, min(1.0, u * self.duration / c.duration) if c.duration > 0 else 1.0, ctx)
            if r.pos is not s.pos:
                pos = pos + (r.pos - s.pos)
            if r.shape is not s.shape:
                shape = r.shape
            if r.f is not s.f:
                f, p = r.f, r.p
        return HandState(pos, shape, f, p, s.sign)


@dataclass
class Stretch:
    inner: Effect
    duration: float

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        return self.inner.at(s, min(1.0, u * self.duration / self.inner.duration) if self.inner.duration else 1.0, ctx)


@dataclass(eq=False)
class Repeat(_Memo):
    body: Effect
    mode: str
    shift: Effect | None = None
    duration: float = 0.0

    def __post_init__(self) -> None:
        n = REPEATS[self.mode]
        back = RETURN_S if self.mode.startswith("fromstart") else 0.0
        between = back + (self.shift.duration if self.shift else 0.0)
        self.duration = n * self.body.duration + (n - 1) * between

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        plan = self.memo(s, lambda: self._plan(s, ctx))
        t = u * self.duration
        d = self.body.duration
        gap = (RETURN_S if self.mode.startswith("fromstart") else 0.0) + (self.shift.duration if self.shift else 0.0)
        for k, (start, end, nxt) in enumerate(plan):
            reverse = self.mode == "reverse" and k % 2 == 1
            if t <= d:
                return self.body.at(start, 1 - t / d if reverse else t / d, ctx) if d else start
            t -= d
            if self.mode == "reverse":
                continue
            if t <= gap and gap > 0:
                w = _smooth(t / gap)
                return _toward(end, nxt, w, _mix(end.pos, nxt.pos, w), nudge=0.0)
            t -= gap
        return plan[-1][1]

    def _plan(self, s: HandState, ctx: Context) -> list[tuple[HandState, HandState, HandState]]:
        """(start, end, next start) of each repetition."""
        out = []
        start = s
        for k in range(REPEATS[self.mode]):
            reverse = self.mode == "reverse" and k % 2 == 1
            end = start if reverse else self.body.at(start, 1.0, ctx)
            nxt = end if self.mode.startswith("continue") or self.mode == "reverse" else start
            if self.shift is not None and self.mode != "reverse":
                nxt = self.shift.at(nxt, 1.0, ctx)
            out.append((start, end, nxt))
            start = nxt if self.mode != "reverse" else start
        return out


@dataclass(eq=False)
class Mirrored(_Memo):
    """The dominant hand's effect done by the other hand: mirrored (lr) or parallel (par)."""

    inner: Effect
    parallel: bool
    duration: float = 0.0

    def __post_init__(self) -> None:
        self.duration = self.inner.duration

    def at(self, s: HandState, u: float, ctx: Context) -> HandState:
        m = self.memo(s, s.mirrored)
        r = self.inner.at(m, u, ctx).mirrored()
        if self.parallel:  # the same movement, not its mirror image
            return HandState(s.pos + (r.pos - s.pos) * MIRROR, r.shape, r.f, r.p, r.sign)
        return r


# --- building effects from motions -----------------------------------------------------------


def _leaf(m: Motion) -> Effect:
    speed = SPEED[m.speed]
    if m.kind == "move":
        vec = direction(m.direction) * MOVE_LEN[m.size]
        return Path_(MOVE_S[m.size] * speed, vec, m.target, m.arc, m.path, m.ellipse, m.speed == "halt")
    if m.kind == "place":
        return Path_(PLACE_S * speed, None, m.target)
    if m.kind == "circle":
        circle = Circle(CIRCLE_S[m.size] * speed, direction(m.direction), CIRCLE_R[m.size], m.ellipse)
        if m.target is not None:
            return Seq([circle, Path_(PLACE_S * speed, None, m.target)])
        return circle
    if m.kind in ("nod", "swing", "twist", "stir", "fingerplay"):
        return Oscillate((FINGERPLAY_S if m.kind == "fingerplay" else OSCILLATION_S) * speed, m.kind)
    if m.kind == "hold":
        return Hold(HOLD_S * speed)
    raise ValueError(f"no leaf motion {m.kind!r}")


def _group(kind: str, children: list[Effect]) -> Effect:
    """A sequence or simultaneous group; a group of one is that one effect (the same motion, one
    level less to walk for every frame)."""
    if len(children) == 1:
        return children[0]
    return Seq(children) if kind == "seq" else Par(children)


def build(m: Motion, symmetry: str) -> tuple[Effect, Effect]:
    """(dominant, non-dominant) effects of one motion node, of equal duration."""
    if m.kind in ("seq", "par") and m.nondominant is None:
        pairs = [build(c, symmetry) for c in m.children]
        dom: Effect = _group(m.kind, [d for d, _ in pairs])
        nd: Effect = _group(m.kind, [n for _, n in pairs])
        if m.target is not None:
            dom = Seq([dom, Path_(PLACE_S, None, m.target)])
            nd = Seq([nd, Mirrored(Path_(PLACE_S, None, m.target), symmetry == "par") if symmetry else Hold(PLACE_S)])
    elif m.kind == "par":  # the dominant's motions + the non-dominant's own
        dom = Par([build(c, "")[0] for c in m.children])
        nd = Par([_own(c) for c in m.nondominant or ()])
        longest = max(dom.duration, nd.duration)
        dom, nd = Stretch(dom, longest), Stretch(nd, longest)
    elif m.kind == "repeat":
        body_d, body_n = build(Motion("seq", children=m.children), symmetry)
        shift_d = shift_n = None
        if m.shift:
            shift_d, shift_n = build(Motion("seq", children=m.shift), symmetry)
        dom, nd = Repeat(body_d, m.repeat, shift_d), Repeat(body_n, m.repeat, shift_n)
    elif m.kind == "replace":
        dom = Replace(REPLACE_S, m.posture or Posture())
        if m.nd_posture is not None:
            nd = Replace(REPLACE_S, m.nd_posture)
        elif symmetry:
            nd = Replace(REPLACE_S, m.posture or Posture(), mirrored=True)
        else:
            nd = Hold(REPLACE_S)
    else:
        dom = _leaf(m)
        nd = Mirrored(dom, symmetry == "par") if symmetry else Hold(dom.duration)
    if m.alternating:
        half = dom.duration / 2
        dom, nd = Seq([dom, Hold(half)]), Seq([Hold(half), nd])
    return dom, nd


def _own(m: Motion) -> Effect:
    """The non-dominant hand's own motion, as written."""
    if m.kind in ("seq", "par"):
        return _group(m.kind, [_own(c) for c in m.children])
    if m.kind == "replace":
        return Replace(REPLACE_S, m.posture or Posture())
    if m.kind == "repeat":
        return Repeat(Seq([_own(c) for c in m.children]), m.repeat)
    return _leaf(m)
