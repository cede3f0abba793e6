"""Notation lexicons: gloss → HamNoSys, read from SiGML, CSV or JSON, checked entry by entry.

A lexicon file belongs to one sign language. Formats:
- SiGML (`.sigml`, `.xml`): `hamgestural_sign` / `hns_sign` elements with a `gloss` attribute;
- CSV (`.csv`): a header with `gloss` and `hamnosys` columns;
- JSON (`.json`): a list of {"gloss": …, "hamnosys": …} (extra keys kept: `fsw`, `sign_id`), or
  an object gloss → HamNoSys.
A malformed entry is reported (code `bad_lexicon_entry`, naming the entry) and skipped; the good
entries still load. The bundled DSGS lexicon is packed from PyPI `signwriting` 0.1.19
(`signwriting/hamnosys/parallel.json`, Ebling & Boyes Braem) by `pack_dsgs`.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engines.errors import SignStreamError
from engines.notation.description import SignDescription
from engines.notation.reader import read_hamnosys, read_sigml_sign, sigml_signs
from engines.notation.symbols import NotationError

LEXICON_DIR = "notation"  # inside an engine folder: <language>.json, and <language>.forms (lemmas)
FORMS_SUFFIX = ".forms"


class NotationLexiconError(SignStreamError):
    """A lexicon file cannot be read at all."""

    code = "bad_lexicon"


@dataclass(frozen=True)
class EntryError:
    """One entry that could not be read: where, which gloss, the error's code and message."""

    where: str
    gloss: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.gloss}: {self.code}: {self.message}"


@dataclass(frozen=True)
class NotationEntry:
    gloss: str  # as written, variant suffix included (HAUS, FLUGZEUG_A)
    hamnosys: str
    sign: SignDescription
    fsw: str = ""
    sign_id: str = ""


@dataclass
class NotationLexicon:
    language: str
    entries: list[NotationEntry] = field(default_factory=list)
    errors: list[EntryError] = field(default_factory=list)

    def by_word(self) -> dict[str, list[NotationEntry]]:
        """Folded base gloss (variant suffix dropped) → its entries, renderable ones first, then
        in file order: the first is the deterministic choice."""
        out: dict[str, list[NotationEntry]] = {}
        for e in self.entries:
            out.setdefault(gloss_key(e.gloss), []).append(e)
        for key, entries in out.items():
            out[key] = sorted(entries, key=lambda e: (not e.sign.renderable, _variant_rank(e.gloss)))
        return out


_VARIANT = re.compile(r"(?:_(?:[A-Z]|\d+|INT|B|A|\d+[A-Z]?))+$")


def base_gloss(gloss: str) -> str:
    """HAUS_B → HAUS, GUTEN_MORGEN_1 → GUTEN_MORGEN (a variant suffix: letters, numbers, INT)."""
    return _VARIANT.sub("", gloss.strip()) or gloss.strip()


def gloss_key(gloss: str) -> str:
    """The matching form of a gloss or word: base gloss, NFC, lower case, underscores as spaces."""
    return unicodedata.normalize("NFC", base_gloss(gloss)).lower().replace("_", " ")


def _variant_rank(gloss: str) -> tuple[int, str]:
    """The plain gloss first, then _A, _B, _1, … in order: deterministic variant choice."""
    suffix = gloss.strip()[len(base_gloss(gloss)):]
    return (len(suffix), suffix)


def _entry(lex: NotationLexicon, where: str, gloss: str, hamnosys: str, **extra: str) -> None:
    gloss = (gloss or "").strip()
    if not gloss:
        lex.errors.append(EntryError(where, "(no gloss)", "bad_lexicon_entry", "the entry names no gloss"))
        return
    if not hamnosys or not hamnosys.strip():
        lex.errors.append(EntryError(where, gloss, "bad_lexicon_entry", "the entry has no HamNoSys"))
        return
    try:
        sign = read_hamnosys(hamnosys)
    except NotationError as exc:
        lex.errors.append(EntryError(where, gloss, exc.code, exc.message))
        return
    lex.entries.append(NotationEntry(gloss, hamnosys, sign, extra.get("fsw", ""), extra.get("sign_id", "")))


def load_lexicon(path: str | Path, language: str) -> NotationLexicon:
    """Read a lexicon file (format by extension); bad entries are in `errors`, not raised."""
    path = Path(path)
    lex = NotationLexicon(language)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotationLexiconError(f"{path}: no such lexicon file") from None
    suffix = path.suffix.lower()
    if suffix in (".sigml", ".xml"):
        _load_sigml(lex, path, text)
    elif suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and not {"gloss", "hamnosys"} <= set(rows[0]):
            raise NotationLexiconError(f"{path}: the header must hold gloss and hamnosys, got {list(rows[0])}")
        for i, row in enumerate(rows, 2):
            _entry(lex, f"{path}:{i}", row.get("gloss") or "", row.get("hamnosys") or "")
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NotationLexiconError(f"{path}: not valid JSON: {exc}") from None
        items = list(data.items()) if isinstance(data, dict) else None
        if items is not None:
            for i, (gloss, ham) in enumerate(items):
                _entry(lex, f"{path}: entry {i + 1}", str(gloss), ham if isinstance(ham, str) else "")
        elif isinstance(data, list):
            for i, row in enumerate(data):
                if not isinstance(row, dict):
                    lex.errors.append(EntryError(f"{path}: entry {i + 1}", "(no gloss)", "bad_lexicon_entry",
                                                 "an entry must be an object with gloss and hamnosys"))
                    continue
                _entry(lex, f"{path}: entry {i + 1}", str(row.get("gloss", "")), str(row.get("hamnosys", "")),
                       fsw=str(row.get("fsw", "")), sign_id=str(row.get("sign_id", "")))
        else:
            raise NotationLexiconError(f"{path}: a JSON lexicon is a list of entries or an object gloss → HamNoSys")
    else:
        raise NotationLexiconError(f"{path}: unknown lexicon format {suffix!r} (.sigml, .xml, .csv, .json)")
    return lex


def _load_sigml(lex: NotationLexicon, path: Path, text: str) -> None:
    try:
        signs = sigml_signs(text)
    except NotationError as exc:
        raise NotationLexiconError(f"{path}: {exc.message}") from None
    for i, sign in enumerate(signs):
        gloss = sign.get("gloss") or ""
        try:
            _, desc = read_sigml_sign(sign, i)
        except NotationError as exc:
            lex.errors.append(EntryError(f"{path}: sign {i + 1}", gloss or "(no gloss)", exc.code, exc.message))
            continue
        if not gloss:
            lex.errors.append(EntryError(f"{path}: sign {i + 1}", "(no gloss)", "bad_lexicon_entry",
                                         "the sign has no gloss attribute"))
            continue
        lex.entries.append(NotationEntry(gloss, desc.hamnosys, desc))


@lru_cache(maxsize=16)
def _cached(path: Path, mtime: float, language: str) -> NotationLexicon:
    return load_lexicon(path, language)


def cached_lexicon(path: str | Path, language: str) -> NotationLexicon:
    """load_lexicon, read once per file version in a process (servers restarted in tests, CLIs)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise NotationLexiconError(f"{path}: no such lexicon file") from None
    return _cached(path.resolve(), mtime, language)


def load_forms(path: str | Path) -> dict[str, str]:
    """A packed lemma table (word form → gloss key), {} when there is none."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def pack_dsgs(out: str | Path) -> Path:
    """Write the DSGS entries with HamNoSys from PyPI `signwriting` (0.1.19) as an engine lexicon,
    and beside it the German word forms whose lemma is one of its glosses (needs simplemma)."""
    from importlib.resources import files

    data = json.loads(files("signwriting.hamnosys").joinpath("parallel.json").read_text(encoding="utf-8"))
    rows = []
    for e in data:
        for gloss in e.get("hns_gloss") or []:
            for ham in e.get("hamnosys") or []:
                rows.append({"gloss": gloss, "hamnosys": ham, "fsw": e.get("signwriting", ""),
                             "sign_id": e.get("sign_id", "")})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, ensure_ascii=False, indent=0), encoding="utf-8")
    from engines.german_glosses import lemma_table

    keys = {gloss_key(r["gloss"]) for r in rows}
    table = lemma_table(keys)
    out.with_suffix(FORMS_SUFFIX).write_text(json.dumps(table, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    return out
