"""Sign lexicons in the spoken-to-signed format, and fingerspelling from their letter recordings.

A lexicon is a folder of `.pose` files with an `index.csv` (path, spoken_language,
signed_language, start, end, words, glosses, priority). The bundled one is the fingerspelling
lexicon of the `spoken-to-signed` package: one recording per letter for 20 sign languages.
"""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engines.errors import PoseFormatError, SignStreamError
from engines.formats.posefile import read_pose
from engines.sequence import PoseSequence, concatenate

INDEX_COLUMNS = ("path", "spoken_language", "signed_language", "start", "end", "words", "glosses", "priority")

# A letter recording holds the handshape for about a second; fluent fingerspelling is several
# letters a second. Clips are played faster, down to LETTER_SECONDS (a clear, unhurried pace
# for an avatar), but never more than MAX_SPEEDUP times faster, so moving letters (J, Z) keep
# their motion.
LETTER_SECONDS = 0.44
MAX_SPEEDUP = 3.0
TRANSITION_SECONDS = 0.12


class LexiconError(SignStreamError):
    code = "bad_lexicon"


class CannotSpell(SignStreamError):
    """A word holds characters the sign language's manual alphabet does not cover."""

    code = "cannot_fingerspell"

    def __init__(self, word: str, language: str, missing: str) -> None:
        self.word, self.language, self.missing = word, language, missing
        super().__init__(f"{language} fingerspelling has no letter for {missing!r} in {word!r}")


_GREEK_MARKS = {"\u0301", "\u0308"}  # tonos, dialytika


def _is_greek(ch: str) -> bool:
    return "\u0370" <= ch <= "\u03ff" or "\u1f00" <= ch <= "\u1fff"


def fold(text: str) -> str:
    """The matching form of text: NFC, lower case, Greek final sigma as sigma.

    Greek is fingerspelled as written in capitals, which carry no tonos or dialytika, so those
    marks are dropped from Greek letters; every other script keeps its diacritics (Ä, Č, Ñ are
    letters of their own manual alphabets, and a missing one is reported, never guessed).
    """
    out = []
    for ch in unicodedata.normalize("NFD", text.lower()):
        if ch in _GREEK_MARKS and out and _is_greek(out[-1]):
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out)).replace("ς", "σ")


def bundled_lexicon_dir() -> Path:
    """The fingerspelling lexicon shipped by the spoken-to-signed package."""
    try:
        import spoken_to_signed
    except ImportError:
        raise LexiconError("the bundled fingerspelling lexicon needs the spoken-to-signed package "
                           "(pip install 'signstream[train]' or spoken-to-signed==0.4.0)") from None
    return Path(spoken_to_signed.__file__).parent / "assets" / "fingerspelling_lexicon"


@dataclass(frozen=True)
class Entry:
    """One recording of the lexicon: what it signs (`name`, as the index spells it) and where."""

    name: str
    path: Path
    spoken_language: str
    signed_language: str
    gloss: str = ""


@dataclass
class Alphabet:
    """The manual alphabet of one sign language: folded letter → entry."""

    signed_language: str
    spoken_language: str
    letters: dict[str, Entry] = field(default_factory=dict)

    @property
    def longest(self) -> int:
        return max((len(k) for k in self.letters), default=0)

    def spell(self, word: str) -> list[Entry]:
        """Split a word into letters of this alphabet, longest match first (digraphs like LL, SCH).

        Raises CannotSpell naming the first character no letter covers.
        """
        text = fold(word)
        out: list[Entry] = []
        i = 0
        while i < len(text):
            for n in range(min(self.longest, len(text) - i), 0, -1):
                entry = self.letters.get(text[i : i + n])
                if entry is not None:
                    out.append(entry)
                    i += n
                    break
            else:
                raise CannotSpell(word, self.signed_language, text[i])
        return out


def read_index(lexicon_dir: str | Path) -> list[tuple[Entry, int]]:
    """Every row of a lexicon's index.csv as (entry, priority), checked."""
    root = Path(lexicon_dir)
    index = root / "index.csv"
    try:
        with open(index, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(INDEX_COLUMNS) <= set(reader.fieldnames):
                raise LexiconError(f"{index}: header must hold {', '.join(INDEX_COLUMNS)}, got {reader.fieldnames}")
            rows = list(reader)
    except FileNotFoundError:
        raise LexiconError(f"{index}: no such file") from None
    out = []
    for lineno, row in enumerate(rows, 2):
        lang, words = row["signed_language"], row["words"]
        if not lang or not words or not row["path"]:
            raise LexiconError(f"{index}: line {lineno}: empty signed_language, words or path")
        try:
            priority = int(row["priority"] or 0)
        except ValueError:
            raise LexiconError(f"{index}: line {lineno}: priority {row['priority']!r} is not a number") from None
        name = unicodedata.normalize("NFC", words)
        out.append((Entry(name, root / row["path"], row["spoken_language"], lang, row["glosses"] or name), priority))
    return out


def best_entries(rows: list[tuple[Entry, int]]) -> dict[tuple[str, str], Entry]:
    """(signed language, folded words) → the entry with the lowest priority number (first of equals)."""
    best: dict[tuple[str, str], tuple[Entry, int]] = {}
    for entry, priority in rows:
        key = (entry.signed_language, fold(entry.name))
        if key not in best or priority < best[key][1]:
            best[key] = (entry, priority)
    return {k: e for k, (e, _) in best.items()}


def load_alphabets(lexicon_dir: str | Path | None = None) -> dict[str, Alphabet]:
    """The manual alphabets of a fingerspelling lexicon: each entry is a letter or digraph."""
    root = Path(lexicon_dir) if lexicon_dir is not None else bundled_lexicon_dir()
    alphabets: dict[str, Alphabet] = {}
    for (lang, key), entry in best_entries(read_index(root)).items():
        alpha = alphabets.setdefault(lang, Alphabet(lang, entry.spoken_language))
        alpha.letters[key] = entry
    return alphabets


@lru_cache(maxsize=4096)
def letter_clip(path: Path, fps: float) -> PoseSequence:
    """A letter recording ready to join: canonical, trimmed to the frames with hands, sped up
    to the fingerspelling pace and resampled to `fps`."""
    seq = read_pose(path).trim()
    if len(seq) == 0:
        raise PoseFormatError(path, None, "no frame shows a hand")
    speedup = min(MAX_SPEEDUP, max(1.0, seq.duration / LETTER_SECONDS))
    played = PoseSequence(seq.frames, seq.confidence, seq.fps * speedup, repaired=seq.repaired)
    return played.resample(fps)


def fingerspell(entries: list[Entry], fps: float) -> PoseSequence:
    """Join the letters' recordings with natural transitions."""
    return concatenate([letter_clip(e.path, fps) for e in entries], fps, transition=TRANSITION_SECONDS)
