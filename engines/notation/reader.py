"""Read HamNoSys (Unicode private-use symbols) or SiGML into a SignDescription.

Two steps: the symbols become a tree (`hamseqbegin`/`hamparbegin`/`hamfusionbegin` groups, checked
for balance: a malformed string raises NotationError with a stable code), then each top-level
compound part is read in the order HamNoSys writes it — symmetry, posture (handshape,
extended-finger direction, palm), location (site, side, contact, hand parts), then the motions
(movements with their modifiers, replacements, targets, repetitions). A symbol that does not fit
where it stands is not guessed at: it is listed in `unsupported` with its name and why.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from engines.notation import symbols as S
from engines.notation.description import (
    HandSite,
    Handshape,
    Location,
    Motion,
    Posture,
    SignDescription,
    SignPart,
    Unsupported,
)
from engines.notation.symbols import NotationError


@dataclass
class Group:
    """A bracketed group of the tree; `plus` markers stay in `items` as the string "hamplus"."""

    kind: str  # "seq" | "par" | "fusion"
    items: list[Node]


Node = str | Group

_POSTURE = set(S.HANDSHAPES) | set(S.THUMB_MODS) | set(S.FINGER_MODS) | set(S.EXT_FINGER) | set(S.PALMS)
_LOCATION = (set(S.BODY_SITES) | set(S.ARM_SITES) | set(S.CONTACTS) | set(S.HAND_PARTS) | set(S.FINGER_PARTS)
             | {"hamlrat", "hamlrbeside"})
_MOTION = (set(S.MOVES) | set(S.CIRCLES) | set(S.WRIST_MOTIONS) | set(S.REPEATS)
           | {"hamreplace", "hamnomotion", "hamalternatingmotion"})
_SIDES = ("hampalm", "hamhandback", "hamthumbside", "hampinkyside")  # of a finger or wrist part
_SIDED = set(S.FINGER_PARTS) | {"hamwristback", "hamwristpulse", "hamthumbball"}
_MODIFIERS = set(S.ARCS) | set(S.PATH_MODS) | set(S.ELLIPSES) | set(S.SIZE_MODS) | set(S.SPEED_MODS)


def read_hamnosys(hamnosys: str) -> SignDescription:
    """The description of one HamNoSys string (raises NotationError if it is malformed)."""
    names = [n for n in S.names_of(hamnosys) if n not in S.IGNORED]
    return read_names(names, hamnosys)


def read_sigml(xml: str) -> list[tuple[str, SignDescription]]:
    """(gloss, description) of every `hamgestural_sign` / `hns_sign` of a SiGML document.

    Only the manual part (`hamnosys_manual`, one element per symbol, named as the symbol) is read.
    """
    return [read_sigml_sign(sign, i) for i, sign in enumerate(sigml_signs(xml))]


def sigml_signs(xml: str) -> list[ET.Element]:
    """The sign elements of a SiGML document, in order."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise NotationError(f"not well-formed SiGML: {exc}") from None
    return [el for el in root.iter() if el.tag in ("hamgestural_sign", "hns_sign")]


def read_sigml_sign(sign: ET.Element, i: int) -> tuple[str, SignDescription]:
    """(gloss, description) of the i-th sign element of a document (`sign {i + 1}` when it has no gloss)."""
    gloss = sign.get("gloss") or f"sign {i + 1}"
    manual = sign.find("hamnosys_manual")
    if manual is None and sign.find("sign_manual") is not None:
        raise NotationError(f"SiGML sign {gloss!r} is gestural SiGML (sign_manual): only HamNoSys SiGML "
                            "(hamnosys_manual, one element per symbol) is read", "sign_manual", i)
    if manual is None:
        raise NotationError(f"SiGML sign {gloss!r} has no hamnosys_manual element", gloss, i)
    names = [child.tag.lower() for child in manual]
    return gloss, read_names(names, S.to_hamnosys(names))


def read_names(names: list[str], hamnosys: str = "") -> SignDescription:
    """The description of a list of symbol names."""
    unsupported: list[Unsupported] = []
    parts = []
    for nodes in _split_plus(_tree(names)):
        if not nodes:
            raise NotationError("an empty compound part (hamplus at the start or end)", "hamplus")
        part, bad = _Part(nodes).read()
        parts.append(part)
        unsupported += bad
    return SignDescription(tuple(parts), hamnosys, tuple(unsupported))


def _tree(names: list[str]) -> list[Node]:
    stack: list[Group] = [Group("top", [])]
    for i, name in enumerate(names):
        if name in S.GROUP_OPEN:
            group = Group(S.GROUP_OPEN[name], [])
            stack[-1].items.append(group)
            stack.append(group)
        elif name in S.GROUP_CLOSE:
            if len(stack) == 1 or stack[-1].kind != S.GROUP_CLOSE[name]:
                raise NotationError(f"{name} at {i} closes no open {S.GROUP_CLOSE[name]} group", name, i)
            stack.pop()
        else:
            stack[-1].items.append(name)
    if len(stack) > 1:
        raise NotationError(f"a {stack[-1].kind} group is never closed", f"ham{stack[-1].kind}begin")
    return stack[0].items


def _flat(nodes: list[Node]) -> list[str]:
    out: list[str] = []
    for n in nodes:
        out += _flat(n.items) if isinstance(n, Group) else [n]
    return out


def _role(node: Node) -> str:
    """posture | location | motion | other, of a symbol or (by its contents) a group."""
    names = _flat([node]) if isinstance(node, Group) else [node]
    if any(n in _MOTION or n in S.ARCS for n in names):
        return "motion"
    if any(n in _POSTURE for n in names):
        return "posture"
    if any(n in _LOCATION for n in names):
        return "location"
    return "other"


def _split_plus(items: list[Node]) -> list[list[Node]]:
    halves: list[list[Node]] = [[]]
    for n in items:
        if n == "hamplus":
            halves.append([])
        else:
            halves[-1].append(n)
    return halves


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):]


class _Part:
    """Reads one compound part; collects what it cannot place."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.bad: list[Unsupported] = []

    def unsupported(self, symbol: str, why: str) -> None:
        self.bad.append(Unsupported(symbol, why))

    def read(self) -> tuple[SignPart, list[Unsupported]]:
        nodes = list(self.nodes)
        symmetry = ""
        alternating = False
        while nodes and nodes[0] in S.SYMMETRY + ("hamnondominant",):
            name = nodes.pop(0)
            if name == "hamnondominant":
                self.unsupported(name, "signs made by the non-dominant hand alone")
                continue
            symmetry = "par" if name == "hamsymmpar" else "lr"
            while nodes and nodes[0] in ("hamfingerstraightmod", "hamlargemod", "hamalternatingmotion"):
                mod = nodes.pop(0)
                if mod == "hamalternatingmotion":
                    alternating = True
                else:
                    self.unsupported(mod, "a HamNoSys 4 symmetry variant")
        posture_nodes, location_nodes, motion_nodes = [], [], []
        phase = 0
        for n in nodes:
            role = _role(n)
            if role == "motion":
                phase = 2
            elif role == "location" and phase == 0:
                phase = 1
            elif role == "posture" and phase == 1:
                self.unsupported(_flat([n])[0], "a hand posture after the location")
                continue
            (posture_nodes, location_nodes, motion_nodes)[phase].append(n)
        dominant, nondominant = self.postures(posture_nodes)
        if dominant.shape is None:
            self.unsupported("hamfist", "no handshape is written")  # nothing to draw from
        if not dominant.ext or not dominant.palm:
            self.unsupported("hamextfingero" if not dominant.ext else "hampalmd", "no hand orientation is written")
        location, nd_location = self.locations(location_nodes, bool(symmetry) or nondominant is not None)
        motion = Motion("seq", children=tuple(self.motions(motion_nodes)))
        part = SignPart(symmetry, dominant, nondominant, location, nd_location, motion, alternating)
        if (location and location.other_hand or nd_location) and not part.two_handed:
            # One hand written, but a site on the other hand: the other hand is a passive base
            # with the same posture (HamNoSys leaves it to the reader; we take it mirrored).
            part = replace(part, nondominant=dominant)
        return part, self.bad

    # --- posture -------------------------------------------------------------------------------

    def postures(self, nodes: list[Node]) -> tuple[Posture, Posture | None]:
        dom: list[str] = []
        nd: list[str] | None = None
        for n in nodes:
            if isinstance(n, Group):
                halves = _split_plus(n.items)
                if n.kind != "par" or len(halves) != 2:
                    self.unsupported(f"ham{n.kind}begin", "a posture group other than (dominant + non-dominant)")
                    continue
                dom += _flat(halves[0])
                nd = (nd or []) + _flat(halves[1])
            else:
                dom.append(n)
                if nd is not None:
                    nd.append(n)
        dominant = self.posture(dom)
        if nd is None:
            return dominant, None
        other = self.posture(nd)
        # The non-dominant side inherits what only the dominant side wrote (shape before the group).
        return dominant, Posture(other.shape or dominant.shape, other.ext or dominant.ext, other.palm or dominant.palm)

    def posture(self, names: list[str]) -> Posture:
        shapes: list[Handshape] = []
        ext: list[str] = []
        palm: list[str] = []
        finger = ""
        between = False
        for name in names:
            if name == "hambetween":
                between = True
                continue
            if name in S.HANDSHAPES:
                shapes.append(Handshape(_strip(name, "ham")))
                if len(shapes) > 1 and not between:
                    self.unsupported(name, "two handshapes without hambetween")
            elif name in S.THUMB_MODS and shapes:
                shapes[-1] = replace(shapes[-1], thumb=_strip(name, "hamthumb")[:-3])
            elif name in S.FINGER_MODS and shapes:
                bend = {"hamfingerstraightmod": "straight", "hamfingerbendmod": "bend", "hamfingerhookmod": "hook",
                        "hamdoublebent": "doublebent", "hamdoublehooked": "doublehooked"}[name]
                if finger:
                    shapes[-1] = replace(shapes[-1], finger_bends=shapes[-1].finger_bends + ((finger, bend),))
                    finger = ""
                else:
                    shapes[-1] = replace(shapes[-1], bend=bend)
                continue
            elif name in S.FINGERS and shapes and not finger:
                finger = _strip(name, "ham")
                continue
            elif name in S.FINGERS and shapes:  # the finger before had no bending: it is extended too
                shapes[-1] = replace(shapes[-1], extra_fingers=shapes[-1].extra_fingers + (finger,))
                finger = _strip(name, "ham")
                continue
            elif name in S.EXT_FINGER:
                ext.append(_strip(name, "hamextfinger"))
            elif name in S.PALMS:
                palm.append(_strip(name, "hampalm"))
            else:
                self.unsupported(name, "not read as part of a hand posture")
            if finger:  # a finger named after the shape, no bending: it is extended as well
                shapes[-1] = replace(shapes[-1], extra_fingers=shapes[-1].extra_fingers + (finger,))
                finger = ""
            between = False
        if finger:
            shapes[-1] = replace(shapes[-1], extra_fingers=shapes[-1].extra_fingers + (finger,))
        if len(ext) > 2 or len(palm) > 2:
            self.unsupported("hamextfinger" if len(ext) > 2 else "hampalm", "more than two directions combined")
        shape = None
        if shapes:
            shape = shapes[0] if len(shapes) == 1 else replace(shapes[0], between=shapes[1])
        return Posture(shape, tuple(ext[:2]), tuple(palm[:2]))

    # --- location ------------------------------------------------------------------------------

    def locations(self, nodes: list[Node], two_handed: bool = False) -> tuple[Location | None, Location | None]:
        if not nodes:
            return None, None
        flat: list[str] = []
        nd: list[str] | None = None
        pair: tuple[list[str], list[str]] | None = None
        for n in nodes:
            if isinstance(n, Group):
                halves = _split_plus(n.items)
                if n.kind == "par" and len(halves) == 2:
                    a, b = _flat(halves[0]), _flat(halves[1])
                    if all(x in S.HAND_PARTS or x in S.FINGER_PARTS or x in S.FINGERS for x in a + b):
                        pair = (a, b)  # dominant hand part + non-dominant hand part
                    else:
                        flat += a
                        nd = b
                    continue
                if n.kind == "seq" and len(halves) == 1:
                    flat += _flat(n.items)  # "seq(touch fingertip)" reads as the symbols themselves
                    continue
                self.unsupported(f"ham{n.kind}begin", "a location group of this form")
                continue
            flat.append(n)
        loc = self.location(flat, two_handed or pair is not None)
        if pair is not None:
            loc = replace(loc, hand=self.hand_site(pair[0]), other_hand=self.hand_site(pair[1]))
        return loc, (self.location(nd) if nd is not None else None)

    def hand_site(self, names: list[str]) -> HandSite:
        """One site of a hand: [fingers] part [side], e.g. indexfinger fingerpad palm."""
        groups = self.hand_groups(names)
        if len(groups) > 1:
            self.unsupported(names[-1], "two parts of one hand")
        part = finger = side = ""
        for n in groups[0] if groups else []:
            if n in S.FINGERS:  # two fingers: the point between them ("the tips of thumb and index")
                finger = f"{finger}+{_strip(n, 'ham')}" if finger else _strip(n, "ham")
            elif part and n in _SIDES and not side:
                side = _strip(n, "ham")
            else:
                part = _strip(n, "ham")
        return HandSite(part, finger, side)

    def location(self, names: list[str], two_handed: bool = False) -> Location:
        """Sites, sides and contacts. In a two-handed part a contact written before any site, or
        right after hand parts, is the contact between the hands ("symmlr flathand … touch" =
        the hands touch); a contact after a site is with the body."""
        sites: list[list[str]] = [[]]  # hambetween starts a second site
        contacts = {"body": "", "hands": ""}
        hand: list[str] = []
        last = "start"
        for name in names:
            if name == "hambetween" and last == "hand":
                hand.append(name)  # between two parts of the hand: one point halfway
            elif name == "hambetween":
                sites.append([])
            elif name in S.BODY_SITES or name in S.ARM_SITES or name in ("hamlrat", "hamlrbeside"):
                sites[-1].append(name)
                last = "site"
            elif name == "hamcross":
                self.unsupported(name, "crossed hands are not rendered")
            elif name in S.CONTACTS:
                this = {"hambrushing": "brush"}.get(name, _strip(name, "ham"))
                key = "hands" if two_handed and last in ("start", "hand") else "body"
                have = contacts[key]
                if have and have != "brush" and this != "brush":
                    self.unsupported(name, "two contacts at one location")
                if not have or have == "brush":  # a brush passes; the contact after it stays
                    contacts[key] = this
            elif name in S.HAND_PARTS or name in S.FINGER_PARTS or name in S.FINGERS:
                hand.append(name)
                last = "hand"
            else:
                self.unsupported(name, "not read as part of a location")
        contact = contacts["body"]
        if len(sites) > 2:
            self.unsupported("hambetween", "more than two sites combined")
        placed = [self.site(s) for s in sites[:2]]
        first = placed[0] if placed[0] is not None else Location()
        if len(placed) == 2:
            first = replace(first, between=placed[1] or Location())
        groups = self.between_groups(hand)
        if len(groups) > 2:
            self.unsupported(hand[-1], "more than two hand parts")
        first = replace(first, hands_contact=contacts["hands"])
        if len(groups) == 2:  # the dominant hand's part, then the part of the other hand it meets
            return replace(first, contact=contact, hand=self.between_site(groups[0]),
                           other_hand=self.between_site(groups[1]))
        hand_site = self.between_site(groups[0]) if groups else None
        if hand_site is not None and not first.site:
            # No body site: the hand part is a site on the other hand.
            return replace(first, contact=contact, other_hand=hand_site)
        return replace(first, contact=contact, hand=hand_site)

    def between_groups(self, names: list[str]) -> list[list[list[str]]]:
        """Hand sites as lists of one part, or of two parts joined by `hambetween` (the point
        halfway between them: `hamthumbside hambetween hamindexfinger hamfingerside`)."""
        segments: list[list[str]] = [[]]
        for n in names:
            if n == "hambetween":
                segments.append([])
            else:
                segments[-1].append(n)
        out: list[list[list[str]]] = []
        for k, seg in enumerate(segments):
            groups = self.hand_groups(seg)
            if not groups:
                if len(segments) > 1:
                    self.unsupported("hambetween", "hambetween without a hand part on both sides")
                continue
            if k > 0 and out:
                out[-1].append(groups[0])  # joined to the last part before hambetween
                groups = groups[1:]
            out += [[g] for g in groups]
        return out

    def between_site(self, parts: list[list[str]]) -> HandSite:
        site = self.hand_site(parts[0])
        for other in parts[1:2]:
            site = replace(site, between=self.hand_site(other))
        if len(parts) > 2:
            self.unsupported("hambetween", "more than two hand parts combined")
        return site

    @staticmethod
    def hand_groups(names: list[str]) -> list[list[str]]:
        """Split hand-part symbols into sites of the form [fingers] part [side] or part finger
        ("fingertip middlefinger"): a side (palm, handback, thumbside, pinkyside) right after a
        finger or wrist part is that part's side, not a new site."""
        groups: list[list[str]] = []
        cur: list[str] = []

        def has_part(g: list[str]) -> bool:
            return any(x in S.HAND_PARTS or x in S.FINGER_PARTS for x in g)

        for n in names:
            if n in S.FINGERS:
                if has_part(cur) and (any(x in S.FINGERS for x in cur) or cur[-1] in _SIDES):
                    groups.append(cur)
                    cur = []
                cur.append(n)
            elif n in _SIDES and cur and cur[-1] in _SIDED and not any(x in _SIDES for x in cur):
                cur.append(n)
            else:
                if has_part(cur):
                    groups.append(cur)
                    cur = []
                cur.append(n)
        if cur:
            groups.append(cur)
        return groups

    def site(self, names: list[str]) -> Location | None:
        site = side = ""
        for name in names:
            if name in ("hamlrat", "hamlrbeside"):
                side = _strip(name, "hamlr")
            elif site:
                self.unsupported(name, "two sites without hambetween")
            else:
                site = _strip(name, "ham")
        if not site and not side:
            return None
        return Location(site or "neutralspace", side)

    # --- motions -------------------------------------------------------------------------------

    def motions(self, nodes: list[Node]) -> list[Motion]:
        out: list[Motion] = []
        pending_loc: list[str] = []

        def flush() -> None:
            if not pending_loc:
                return
            target = self.location(pending_loc)
            pending_loc.clear()
            if out and out[-1].kind in ("move", "circle", "seq", "par") and out[-1].target is None:
                out[-1] = replace(out[-1], target=target)
            else:
                out.append(Motion("place", target=target))

        i = 0
        while i < len(nodes):
            n = nodes[i]
            i += 1
            if isinstance(n, Group):
                if n.kind == "seq" and n.items and n.items[0] in S.REPEATS and out:
                    flush()  # "seq(repeat moved)": repeat what came before, moving on between repetitions
                    out[:] = [Motion("repeat", children=tuple(out), repeat=_strip(n.items[0], "hamrepeat"),
                                     shift=tuple(self.motions(n.items[1:])))]
                    continue
                if _role(n) in ("location", "other") and n.kind == "seq" and "hamplus" not in n.items:
                    pending_loc += _flat(n.items)
                    continue
                flush()
                halves = _split_plus(n.items)
                if len(halves) == 2 and n.kind == "par":
                    out.append(Motion("par", children=tuple(self.motions(halves[0])),
                                      nondominant=tuple(self.motions(halves[1]))))
                elif len(halves) == 1:
                    out.append(Motion("par" if n.kind == "par" else "seq", children=tuple(self.motions(n.items))))
                else:
                    self.unsupported("hamplus", f"a {n.kind} group with {len(halves)} hands")
                continue
            if n in _LOCATION or n == "hambetween" or n in S.FINGERS:
                pending_loc.append(n)
                continue
            flush()
            if n in S.MOVES:
                out.append(Motion("move", (_strip(n, "hammove"),)))
            elif n in S.CIRCLES:
                out.append(Motion("circle", (_strip(n, "hamcircle"),)))
            elif n in ("hamnodding", "hamswinging", "hamtwisting", "hamfingerplay"):
                out.append(Motion({"hamnodding": "nod", "hamswinging": "swing", "hamtwisting": "twist",
                                   "hamfingerplay": "fingerplay"}[n]))
            elif n in ("hamstircw", "hamstirccw"):
                out.append(Motion("stir", ("cw" if n == "hamstircw" else "ccw",)))
            elif n == "hamnomotion":
                out.append(Motion("hold"))
            elif n == "hamreplace":
                j = i
                while j < len(nodes) and (_role(nodes[j]) == "posture" or nodes[j] == "hambetween"
                                          or (nodes[j] in S.FINGERS and j > i)):
                    j += 1
                if j == i:
                    self.unsupported(n, "a replacement with no new posture")
                    continue
                dom, nd = self.postures(nodes[i:j])
                i = j
                out.append(Motion("replace", posture=dom, nd_posture=nd))
            elif n in S.REPEATS:
                if not out:
                    self.unsupported(n, "a repetition of nothing")
                    continue
                mode = _strip(n, "hamrepeat")
                body = out[:]  # repeat what came before in this group (HamNoSys: "from the start")
                out[:] = [Motion("repeat", children=tuple(body), repeat=mode)]
            elif n == "hamalternatingmotion":
                if not out:
                    self.unsupported(n, "alternation of nothing")
                    continue
                out[-1] = replace(out[-1], alternating=True)
            elif n in _MODIFIERS:
                if not out:
                    self.unsupported(n, "a modifier without a movement")
                    continue
                out[-1] = self.modify(out[-1], n)
            elif n in _POSTURE:
                self.unsupported(n, "a hand posture among the movements without hamreplace")
            else:
                self.unsupported(n, "not read as a movement")
        flush()
        return out

    def modify(self, m: Motion, name: str) -> Motion:
        if name in S.SIZE_MODS:
            return replace(m, size="small" if name == "hamsmallmod" else "large")
        if name in ("hamfast", "hamslow", "hamhalt"):
            return replace(m, speed=_strip(name, "ham"))
        if name in S.ARCS and m.kind == "move":
            return replace(m, arc=_strip(name, "hamarc"))
        if name in S.PATH_MODS and m.kind == "move":
            return replace(m, path=_strip(name, "ham"))
        if name in ("hamellipseh", "hamellipsev") and m.kind in ("circle", "move"):
            return replace(m, ellipse=_strip(name, "hamellipse"))
        self.unsupported(name, f"this modifier on a {m.kind} motion")
        return m
