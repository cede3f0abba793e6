"""The HamNoSys 4 symbol table: code point ↔ name, and what role each symbol plays.

The names and code points come from PyPI `hamnosys` 0.1.0 (`hamnosys/data/conversion_dict.txt`,
208 symbols, the names SiGML uses as element tags: U+E000 = `hamfist`). We read that file rather
than copy it, so there is one table. Roles are ours: they drive the reader.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from engines.errors import SignStreamError

HANDSHAPES = ("hamfist", "hamflathand", "hamfinger2", "hamfinger23", "hamfinger23spread", "hamfinger2345",
              "hampinch12", "hampinchall", "hampinch12open", "hamcee12", "hamceeall", "hamceeopen")
THUMB_MODS = ("hamthumboutmod", "hamthumbacrossmod", "hamthumbopenmod")
FINGER_MODS = ("hamfingerstraightmod", "hamfingerbendmod", "hamfingerhookmod", "hamdoublebent", "hamdoublehooked")
FINGERS = ("hamthumb", "hamindexfinger", "hammiddlefinger", "hamringfinger", "hampinky")
FINGER_PARTS = ("hamfingertip", "hamfingernail", "hamfingerpad", "hamfingermidjoint", "hamfingerbase", "hamfingerside")
HAND_PARTS = ("hamwristback", "hamwristpulse", "hamthumbball", "hampalm", "hamhandback", "hamthumbside", "hampinkyside")
ARM_SITES = ("hamupperarm", "hamelbow", "hamelbowinside", "hamlowerarm")
BODY_SITES = ("hamhead", "hamheadtop", "hamforehead", "hameyebrows", "hameyes", "hamnose", "hamnostrils", "hamear",
              "hamearlobe", "hamcheek", "hamlips", "hamtongue", "hamteeth", "hamchin", "hamunderchin", "hamneck",
              "hamshouldertop", "hamshoulders", "hamchest", "hamstomach", "hambelowstomach", "hamneutralspace")
CONTACTS = ("hamclose", "hamtouch", "haminterlock", "hamcross", "hambrushing")
DIRECTIONS = ("u", "ur", "r", "dr", "d", "dl", "l", "ul", "ol", "o", "or", "il", "i", "ir", "ui", "di", "do", "uo")
EXT_FINGER = tuple(f"hamextfinger{d}" for d in DIRECTIONS)
PALMS = tuple(f"hampalm{d}" for d in ("u", "ur", "r", "dr", "d", "dl", "l", "ul"))
MOVES = tuple(f"hammove{d}" for d in DIRECTIONS)
CIRCLES = tuple(f"hamcircle{d}" for d in DIRECTIONS)
ARCS = ("hamarcl", "hamarcu", "hamarcr", "hamarcd")
PATH_MODS = ("hamwavy", "hamzigzag")
ELLIPSES = ("hamellipseh", "hamellipseur", "hamellipsev", "hamellipseul")
SIZE_MODS = ("hamsmallmod", "hamlargemod")
SPEED_MODS = ("hamfast", "hamslow", "hamtense", "hamrest", "hamhalt")
WRIST_MOTIONS = ("hamnodding", "hamswinging", "hamtwisting", "hamstircw", "hamstirccw", "hamfingerplay")
REPEATS = ("hamrepeatfromstart", "hamrepeatfromstartseveral", "hamrepeatcontinue", "hamrepeatcontinueseveral",
           "hamrepeatreverse")
GROUP_OPEN = {"hamseqbegin": "seq", "hamparbegin": "par", "hamfusionbegin": "fusion"}
GROUP_CLOSE = {"hamseqend": "seq", "hamparend": "par", "hamfusionend": "fusion"}
SYMMETRY = ("hamsymmpar", "hamsymmlr")
# Written but not part of the manual form: spaces and punctuation a transcriber left in.
IGNORED = ("hamspace", "hamcomma", "hamfullstop", "hamexclaim", "hamquery")


class NotationError(SignStreamError):
    """A notation string cannot be read. `symbol` names the offending symbol, `index` its place."""

    code = "notation_syntax"

    def __init__(self, message: str, symbol: str = "", index: int = -1) -> None:
        self.symbol, self.index = symbol, index
        super().__init__(message)


class UnknownSymbol(NotationError):
    """A character that is no HamNoSys 4 symbol."""

    code = "notation_unknown_symbol"


@lru_cache(maxsize=1)
def table() -> tuple[dict[str, str], dict[str, str]]:
    """(character → name, name → character) from the `hamnosys` package's conversion table."""
    text = files("hamnosys.data").joinpath("conversion_dict.txt").read_text(encoding="utf-8")
    by_char: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for line in text.splitlines():
        if "," not in line:
            continue
        name, rest = (p.strip() for p in line.split(",", 1))
        ch = chr(int(rest.split()[0], 16))
        by_char[ch] = name.lower()
        by_name[name.lower()] = ch
    return by_char, by_name


def names_of(hamnosys: str) -> list[str]:
    """The symbol names of a HamNoSys string; raises UnknownSymbol at the first unknown character."""
    by_char, _ = table()
    out = []
    for i, ch in enumerate(hamnosys):
        name = by_char.get(ch)
        if name is None:
            if ch.isspace():
                continue
            raise UnknownSymbol(f"U+{ord(ch):04X} at {i} is no HamNoSys symbol", f"U+{ord(ch):04X}", i)
        out.append(name)
    return out


def to_hamnosys(names: list[str]) -> str:
    """The HamNoSys string of symbol names (the inverse of names_of)."""
    _, by_name = table()
    try:
        return "".join(by_name[n.lower()] for n in names)
    except KeyError as exc:
        raise UnknownSymbol(f"{exc.args[0]!r} is no HamNoSys symbol name", exc.args[0]) from None
