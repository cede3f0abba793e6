"""One hand during synthesis: its state (wrist position, shape, orientation), where a location puts
it (the site, the contact distance, the part of the hand that meets the site), and the points of
its parts (fingertip, palm, thumb side, …) that sites on a hand refer to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.notation.body import DISTANCE, Body
from engines.notation.description import HandSite, Location, Posture
from engines.notation.handshapes import CHAINS, FINGER_NAMES, shape_points
from engines.notation.orientation import MIRROR, cross, direction, frame, hand_axes, rotation_between, unit


@dataclass(slots=True, eq=False)
class HandState:
    """One hand: wrist position, local shape (21, 3), finger direction, palm normal, side. Treated
    as immutable (every change makes a new state; effects and caches rely on that), but not a
    frozen dataclass: a frozen one costs four times as much to make, and synthesis makes one for
    every hand in every frame of every effect."""

    pos: np.ndarray
    shape: np.ndarray
    f: np.ndarray
    p: np.ndarray
    sign: float  # -1 right (dominant), +1 left

    def points(self) -> np.ndarray:
        """The hand's 21 points in the world."""
        if self.sign < 0:
            return self.pos + self.shape @ frame(self.f, self.p)
        right = self.shape @ frame(self.f * MIRROR, self.p * MIRROR)
        return self.pos + right * MIRROR

    def with_(self, pos: np.ndarray | None = None, shape: np.ndarray | None = None, f: np.ndarray | None = None,
              p: np.ndarray | None = None, sign: float | None = None) -> HandState:
        """A copy with some fields changed (dataclasses.replace is 10x slower per frame)."""
        return HandState(self.pos if pos is None else pos, self.shape if shape is None else shape,
                         self.f if f is None else f, self.p if p is None else p, self.sign if sign is None else sign)

    def mirrored(self) -> HandState:
        return HandState(self.pos * MIRROR, self.shape, self.f * MIRROR, self.p * MIRROR, -self.sign)


def _smooth(u: float) -> float:
    return u * u * (3 - 2 * u)


def _mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return a + (b - a) * w


_unit = unit


def _toward(a: HandState, b: HandState, w: float, pos: np.ndarray, nudge: float = 1e-6) -> HandState:
    """`a`'s shape and orientation a share `w` of the way to `b`'s, at `pos` (what is the same
    object in both is not recomputed: most effects change only some fields). The finger direction
    is nudged towards `b`'s palm so that opposite directions still turn one way."""
    shape = a.shape if b.shape is a.shape else _mix(a.shape, b.shape, w)
    if b.f is a.f and b.p is a.p:
        return HandState(pos, shape, _unit(a.f + nudge * b.p) if nudge else a.f, a.p, a.sign)
    return HandState(pos, shape, _unit(_mix(a.f, b.f, w) + nudge * b.p), _unit(_mix(a.p, b.p, w)), a.sign)


def _with(s: HandState, **changes: object) -> HandState:
    return s.with_(**changes)  # type: ignore[arg-type]


class _Memo:
    """A small cache keyed by the identity of an effect's start state: the sampler passes the same
    start object for every frame, so each effect computes its end states once, not per frame. It
    keeps a few starts (a repetition or a sequence asks from more than one), each with its object,
    so an identity cannot be reused by another state while it is cached."""

    MEMO_SIZE = 8

    def memo(self, s: object, compute):  # type: ignore[no-untyped-def]
        cache = self.__dict__.setdefault("_memo_cache", {})
        hit = cache.get(id(s))
        if hit is not None and hit[0] is s:
            return hit[1]
        if len(cache) >= self.MEMO_SIZE:
            cache.clear()
        value = compute()
        cache[id(s)] = (s, value)
        return value


@dataclass
class Context:
    """What effects need from the sign: the body, shapes, and where the other hand is."""

    body: Body
    letters: Path
    other: dict[float, HandState] = field(default_factory=dict)  # side → the hand's start state

    def posture(self, s: HandState, posture: Posture | None, mirrored: bool = False) -> HandState:
        """`s` with the posture's written fields replaced."""
        if posture is None:
            return s
        shape = shape_points(posture.shape, self.letters) if posture.shape else s.shape
        f, p = s.f, s.p
        if posture.ext or posture.palm:
            ext = posture.ext or _nearest_name(s.f * (MIRROR if mirrored else 1))
            palm = posture.palm or ("d",)
            if not posture.palm:  # keep the palm as it was, turned along with the fingers
                f_new = direction(ext) * (MIRROR if mirrored else 1)
                p = _unit(rotation_between(_unit(s.f), _unit(f_new)) @ s.p)
                f = f_new
            else:
                f, p = hand_axes(ext, palm)
                if mirrored:
                    f, p = f * MIRROR, p * MIRROR
        return HandState(s.pos, shape, f, p, s.sign)

    def place(self, s: HandState, loc: Location | None) -> HandState:
        """`s` moved so its hand is at `loc` (its contact part on the site, at the contact's distance)."""
        if loc is None:
            site, normal = self.body.site("neutralspace", "", s.sign)
        elif loc.other_hand is not None and -s.sign in self.other:
            other = self.other[-s.sign]
            site, normal = _hand_site(other, loc.other_hand)
        else:
            site, normal = self.body.site(loc.site or "neutralspace", loc.side, s.sign)
            if loc.between is not None:
                site2, normal2 = self.body.site(loc.between.site or "neutralspace", loc.between.side, s.sign)
                site, normal = (site + site2) / 2, _unit(normal + normal2)
        on_hand = loc is not None and loc.other_hand is not None and -s.sign in self.other
        distance = DISTANCE[(loc.hands_contact or loc.contact) if on_hand else (loc.contact if loc else "")]
        at_origin = _with(s, pos=np.zeros(3))
        pts = at_origin.points()
        if loc is not None and loc.hand is not None:
            anchor = _hand_site(at_origin, loc.hand)[0]
        else:  # the hand's point nearest the site as it comes from the site's outside
            cand = np.vstack([pts[[4, 8, 12, 16, 20, 5, 9, 13, 17, 0]], _palm_centre(at_origin)[None]])
            anchor = cand[np.argmin(cand @ normal)]
        return _with(s, pos=site + normal * distance - anchor)


_NAMES = ("u", "d", "l", "r", "o", "i", "ul", "ur", "dl", "dr", "ol", "or", "il", "ir", "uo", "ui", "do", "di")


def _nearest_name(v: np.ndarray) -> tuple[str]:
    return (max(_NAMES, key=lambda n: float(np.dot(direction((n,)), v))),)


def _palm_centre(s: HandState) -> np.ndarray:
    pts = s.points()
    return pts[[0, 5, 9, 13, 17]].mean(axis=0) + 0.02 * s.p


def _hand_site(s: HandState, site: HandSite) -> tuple[np.ndarray, np.ndarray]:
    """(point, outward normal) of a part of hand `s`."""
    if site.between is not None:  # halfway between two parts
        a = _hand_site(s, HandSite(site.part, site.finger, site.side))
        b = _hand_site(s, site.between)
        return (a[0] + b[0]) / 2, _unit(a[1] + b[1] + 1e-6 * s.p)
    if "+" in site.finger:  # between two fingers' parts
        got = [_hand_site(s, HandSite(site.part, f, site.side)) for f in site.finger.split("+")]
        return np.mean([g[0] for g in got], axis=0), _unit(np.sum([g[1] for g in got], axis=0) + 1e-6 * s.p)
    pts = s.points()
    x = cross(s.f, s.p) * (1 if s.sign < 0 else -1)  # towards the thumb
    finger = FINGER_NAMES.get(site.finger, "index")
    chain = CHAINS[finger]
    base, mid, end, tip = (2, 3, 3, 4) if finger == "thumb" else chain
    part = site.part
    if site.side and part not in ("palm", "handback", "thumbside", "pinkyside", ""):
        point = _hand_site(s, HandSite(part, site.finger))[0]
        normal = {"palm": s.p, "handback": -s.p, "thumbside": x, "pinkyside": -x}[site.side]
        return point + 0.01 * normal, normal
    if part == "fingertip":
        return pts[tip], _unit(pts[tip] - pts[end])
    if part == "fingernail":
        return pts[tip] - 0.01 * s.p, -s.p
    if part == "fingerpad":
        return 0.7 * pts[tip] + 0.3 * pts[end] + 0.01 * s.p, s.p
    if part == "fingermidjoint":
        return pts[mid], -s.p
    if part == "fingerbase":
        return pts[base], -s.p
    if part == "fingerside":
        return pts[end] + 0.01 * x, x
    if part in ("palm", ""):
        return _palm_centre(s), s.p
    if part == "handback":
        return _palm_centre(s) - 0.04 * s.p, -s.p
    if part == "thumbside":
        return (pts[5] + pts[2]) / 2 + 0.01 * x, x
    if part == "pinkyside":
        return (pts[0] + pts[17]) / 2 - 0.02 * x, -x
    if part == "wristback":
        return pts[0] - 0.03 * s.p, -s.p
    if part == "wristpulse":
        return pts[0] + 0.03 * s.p, s.p
    if part == "thumbball":
        return (pts[1] + pts[2]) / 2 + 0.02 * s.p, s.p
    raise ValueError(f"no hand part {part!r}")
