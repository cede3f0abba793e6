"""The typed sign description: what a HamNoSys or SiGML sign says, independent of its spelling.

A sign is one or more *parts* (HamNoSys `hamplus` at the top level joins compound parts). A part
has a symmetry (none, `par` = parallel, `lr` = mirrored), the dominant hand's posture (handshape,
extended-finger direction, palm orientation), optionally a different non-dominant posture, an
initial location, and a motion tree. Directions keep HamNoSys' own names (`u`, `ol`, `di`, …),
seen from the signer: l = the signer's left, o = away from the body, u = up.

Whatever the reader could not place in this structure is listed in `unsupported` with the
symbol's name; such a sign is not synthesized (it falls back, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Handshape:
    """One of the 12 HamNoSys bases with its thumb and finger modifiers."""

    base: str  # hamfist → "fist", hamfinger23spread → "finger23spread", …
    thumb: str = ""  # "out" | "across" | "open" | ""
    bend: str = ""  # "straight" | "bend" | "hook" | "doublebent" | "doublehooked" | ""
    finger_bends: tuple[tuple[str, str], ...] = ()  # (finger, bend) for single fingers
    extra_fingers: tuple[str, ...] = ()  # fingers named after the shape: extended as well
    between: Handshape | None = None  # `hambetween`: halfway to this shape


@dataclass(frozen=True)
class Posture:
    """A hand's shape and orientation; empty fields keep what the hand had (replacement)."""

    shape: Handshape | None = None
    ext: tuple[str, ...] = ()  # extended-finger direction(s); two = the direction between them
    palm: tuple[str, ...] = ()  # palm orientation(s), relative to the extended-finger direction


@dataclass(frozen=True)
class HandSite:
    """A part of a hand: `finger` is "" for the whole hand (palm, handback, …)."""

    part: str  # "fingertip", "palm", "thumbside", …, or "" for the hand's nearest point
    finger: str = ""  # "thumb", "indexfinger", …; "thumb+indexfinger": the point between them
    side: str = ""  # of a finger part: "palm", "handback", "thumbside", "pinkyside" (or "")
    between: HandSite | None = None  # `part hambetween part`: the point halfway to this part


@dataclass(frozen=True)
class Location:
    """Where a hand is: a body site (and side), and/or a site on the other hand, and the contact."""

    site: str = ""  # body or arm site name ("chest", "forehead", "elbow", "neutralspace") or ""
    side: str = ""  # "at" (hamlrat: the dominant side) | "beside" (hamlrbeside) | ""
    between: Location | None = None  # halfway to this location
    contact: str = ""  # with the body site: "touch" | "close" | "brush" | "interlock" | ""
    hands_contact: str = ""  # between the two hands (written before the site, or after hand parts)
    hand: HandSite | None = None  # the dominant hand's part that is placed (or contacts)
    other_hand: HandSite | None = None  # a site on the non-dominant hand


@dataclass(frozen=True)
class Motion:
    """One node of the motion tree.

    kind: "move" (straight, `direction`), "circle" (axis `direction`), "nod", "swing", "twist",
    "stir", "fingerplay", "replace" (to `posture`), "hold", "place" (to `target`),
    "seq" / "par" (`children`; a par with `nondominant` gives that hand its own motions),
    "repeat" (`children` repeated as `repeat` says).
    """

    kind: str
    direction: tuple[str, ...] = ()
    size: str = ""  # "small" | "large" | ""
    speed: str = ""  # "fast" | "slow" | "halt" | ""
    arc: str = ""  # "l" | "u" | "r" | "d" | ""
    path: str = ""  # "wavy" | "zigzag" | ""
    ellipse: str = ""  # "h" | "v" | "ur" | "ul" | ""
    target: Location | None = None  # a movement ending at a location / contact
    posture: Posture | None = None  # replacement (dominant)
    nd_posture: Posture | None = None  # replacement of the non-dominant hand
    children: tuple[Motion, ...] = ()
    nondominant: tuple[Motion, ...] | None = None
    repeat: str = ""  # "fromstart" | "fromstartseveral" | "continue" | "continueseveral" | "reverse"
    alternating: bool = False
    shift: tuple[Motion, ...] = ()  # repeat: the movement between repetitions ("seq(repeat moved)")


@dataclass(frozen=True)
class SignPart:
    """One compound part of a sign."""

    symmetry: str = ""  # "" | "par" | "lr"
    dominant: Posture = Posture()
    nondominant: Posture | None = None  # a posture of its own (two hands, not symmetric)
    location: Location | None = None
    nd_location: Location | None = None
    motion: Motion = Motion("seq")
    alternating: bool = False  # symmetry with hamalternatingmotion: the hands take turns

    @property
    def two_handed(self) -> bool:
        return bool(self.symmetry) or self.nondominant is not None


@dataclass(frozen=True)
class Unsupported:
    """A symbol the synthesizer does not render, and why."""

    symbol: str
    why: str
    code: str = "notation_unsupported"


@dataclass(frozen=True)
class SignDescription:
    """A whole sign as read from its notation."""

    parts: tuple[SignPart, ...]
    hamnosys: str
    unsupported: tuple[Unsupported, ...] = field(default=())

    @property
    def two_handed(self) -> bool:
        return any(p.two_handed for p in self.parts)

    @property
    def renderable(self) -> bool:
        return not self.unsupported and bool(self.parts)
