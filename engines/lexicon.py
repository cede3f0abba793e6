"""Sign lexicons in the spoken-to-signed format, and fingerspelling from their letter recordings.

A lexicon is a folder of `.pose` files with an `index.csv` (path, spoken_language,
signed_language, start, end, words, glosses, priority). The bundled one is the fingerspelling
lexicon of the `spoken-to-signed` package: one recording per letter for 20 sign languages.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from engines.errors import PoseFormatError, SignStreamError
from engines.formats.posefile import pose_seconds, read_pose
from engines.recording_repair import Repairs, repair_recording
from engines.sequence import PoseSequence, concatenate

INDEX_COLUMNS = ("path", "spoken_language", "signed_language", "start", "end", "words", "glosses", "priority")

# A letter recording holds the handshape for about a second; fluent fingerspelling is several
# letters a second. Clips are played faster, down to LETTER_SECONDS (a clear, unhurried pace
# for an avatar), but never more than MAX_SPEEDUP times faster, so moving letters (J, Z) keep
# their motion.
LETTER_SECONDS = 0.44
MAX_SPEEDUP = 3.0
TRANSITION_SECONDS = 0.12
# A letter recording this many times longer than its alphabet's median letter is a mis-cut clip, not
# a letter: gss ο (10.8 s: the signer at rest, a raised index) and φ (4.2 s) against 0.32 s; every
# other letter of the 20 alphabets is within 1.5× its median. Such a letter is left out (never shown).
MAX_LETTER_RATIO = 4.0


class LexiconError(SignStreamError):
    code = "bad_lexicon"


class CannotSpell(SignStreamError):
    """A word holds characters the sign language's manual alphabet does not cover."""

    code = "cannot_fingerspell"

    def __init__(self, word: str, language: str, missing: str, why: str = "") -> None:
        self.word, self.language, self.missing = word, language, missing
        super().__init__(f"{language} fingerspelling has no letter for {missing!r} in {word!r}"
                         + (f" ({why})" if why else ""))


_GREEK_MARKS = {"\u0301", "\u0308"}  # tonos, dialytika


def _is_greek(ch: str) -> bool:
    return "\u0370" <= ch <= "\u03ff" or "\u1f00" <= ch <= "\u1fff"


def fold(text: str) -> str:
    """The matching form of text: NFC, lower case, Greek final sigma as sigma.

    Greek is fingerspelled as written in capitals, which carry no tonos or dialytika, so those
    marks are dropped from Greek letters; every other script keeps its diacritics (Ä, Č, Ñ are
    letters of their own manual alphabets, and a missing one is reported, never guessed).
    """
    if text.isascii():  # the common case, with nothing to normalise (a hot path of planning)
        return text.lower()
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
    # Set for letters read from a packed file (an engine's letters.npz): the trimmed recording
    # itself, so serving needs neither the .pose files nor the package that ships them.
    recording: PoseSequence | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass
class Alphabet:
    """The manual alphabet of one sign language: folded letter → entry."""

    signed_language: str
    spoken_language: str
    letters: dict[str, Entry] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # folded letter → why its recording is not used

    @property
    def longest(self) -> int:
        return max((len(k) for k in self.letters), default=0)

    def spell(self, word: str) -> list[Entry]:
        """Split a word into letters of this alphabet, longest match first (digraphs like LL, SCH).

        Raises CannotSpell naming the first character no letter covers.
        """
        text = fold(word)
        out: list[Entry] = []
        longest = self.longest  # once: a property over every letter (it made a long word cost ms)
        i = 0
        while i < len(text):
            for n in range(min(longest, len(text) - i), 0, -1):
                entry = self.letters.get(text[i : i + n])
                if entry is not None:
                    out.append(entry)
                    i += n
                    break
            else:
                raise CannotSpell(word, self.signed_language, text[i], self.left_out.get(text[i], ""))
        return out

    def leave_out_miscut(self) -> None:
        """Move letters whose recording is over MAX_LETTER_RATIO × the alphabet's median length to
        `left_out` (reads each recording's header, not its frames)."""
        seconds = {k: pose_seconds(e.path) for k, e in self.letters.items()}
        if not seconds:
            return
        median = float(np.median(list(seconds.values())))
        for key, s in seconds.items():
            if s > MAX_LETTER_RATIO * median:
                del self.letters[key]
                self.left_out[key] = (f"its recording is not a letter: {s:.1f} s, "
                                      f"{s / median:.0f}x the alphabet's median letter")


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
    """The manual alphabets of a fingerspelling lexicon: each entry is a letter or digraph.

    `lexicon_dir` may also be a packed letters file (`.npz`, see pack_alphabets).
    """
    root = Path(lexicon_dir) if lexicon_dir is not None else bundled_lexicon_dir()
    if root.suffix == ".npz":
        return load_packed_alphabets(root)
    alphabets: dict[str, Alphabet] = {}
    for (lang, key), entry in best_entries(read_index(root)).items():
        alpha = alphabets.setdefault(lang, Alphabet(lang, entry.spoken_language))
        alpha.letters[key] = entry
    for alpha in alphabets.values():
        alpha.leave_out_miscut()
    return alphabets


@lru_cache(maxsize=4096)
def repaired_recording(path: Path) -> tuple[PoseSequence, Repairs]:
    """A letter recording as every reader takes it: canonical (posefile.LEXICON_DEPTH), tracking
    failures repaired (engines.recording_repair), trimmed to the frames with hands; and its repairs."""
    seq, repairs = repair_recording(read_pose(path))
    return seq.trim(), repairs


@lru_cache(maxsize=4096)
def letter_clip(path: Path, fps: float) -> PoseSequence:
    """A letter recording ready to join: repaired_recording, sped up to the fingerspelling pace and
    resampled to `fps`."""
    return _played(repaired_recording(path)[0], path, fps)


@lru_cache(maxsize=4096)
def entry_clip(entry: Entry, fps: float) -> PoseSequence:
    """letter_clip of an entry, from its packed recording when it has one."""
    if entry.recording is None:
        return letter_clip(entry.path, fps)
    return _played(entry.recording, entry.path, fps)


def _played(seq: PoseSequence, path: Path, fps: float) -> PoseSequence:
    if len(seq) == 0:
        raise PoseFormatError(path, None, "no frame shows a hand")
    speedup = min(MAX_SPEEDUP, max(1.0, seq.duration / LETTER_SECONDS))
    played = PoseSequence(seq.frames, seq.confidence, seq.fps * speedup, repaired=seq.repaired)
    return played.resample(fps)


def fingerspell(entries: list[Entry], fps: float) -> PoseSequence:
    """Join the letters' recordings with natural transitions."""
    return concatenate([entry_clip(e, fps) for e in entries], fps, transition=TRANSITION_SECONDS)


# --- packed letters -------------------------------------------------------------------------
# One .npz: every distinct recording once (trimmed, float16 points and confidence, concatenated),
# and a JSON index of the letters (language, spoken language, name, gloss, recording number).


def pack_alphabets(alphabets: dict[str, Alphabet], path: str | Path) -> Path:
    """Write the alphabets' letter recordings to a compact .npz that load_alphabets reads back."""
    recordings: dict[Path, int] = {}
    clips: list[PoseSequence] = []
    index = []
    for lang, alpha in sorted(alphabets.items()):
        for key, entry in sorted(alpha.letters.items()):
            if entry.path not in recordings:
                recordings[entry.path] = len(clips)
                clips.append(entry.recording if entry.recording is not None else repaired_recording(entry.path)[0])
            index.append({"lang": lang, "spoken": entry.spoken_language, "name": entry.name, "gloss": entry.gloss,
                          "recording": recordings[entry.path]})
    bounds = np.cumsum([0] + [len(c) for c in clips])
    path = Path(path)
    left_out = {lang: alpha.left_out for lang, alpha in sorted(alphabets.items()) if alpha.left_out}
    np.savez_compressed(path, frames=np.concatenate([c.frames for c in clips]).astype(np.float16),
                        confidence=np.concatenate([c.confidence for c in clips]).astype(np.float16),
                        bounds=bounds.astype(np.int64), fps=np.array([c.fps for c in clips], dtype=np.float32),
                        index=np.array(json.dumps(index, ensure_ascii=False)),
                        left_out=np.array(json.dumps(left_out, ensure_ascii=False)))
    return path


def load_packed_alphabets(path: str | Path) -> dict[str, Alphabet]:
    """The alphabets of a packed letters file (pack_alphabets)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            frames, conf, bounds, fps = z["frames"], z["confidence"], z["bounds"], z["fps"]
            index = json.loads(str(z["index"]))
            left_out = json.loads(str(z["left_out"])) if "left_out" in z else {}  # files packed before it: {}
    except FileNotFoundError:
        raise LexiconError(f"{path}: no such file") from None
    except (KeyError, ValueError, OSError) as exc:
        raise LexiconError(f"{path}: not a packed letters file ({exc})") from None
    clips = [PoseSequence(frames[a:b], conf[a:b], float(f)) for a, b, f in zip(bounds[:-1], bounds[1:], fps)]
    alphabets: dict[str, Alphabet] = {}
    for row in index:
        alpha = alphabets.setdefault(row["lang"], Alphabet(row["lang"], row["spoken"]))
        n = row["recording"]
        # A per-recording path keeps entries distinct (and cacheable) without any file behind it.
        alpha.letters[fold(row["name"])] = Entry(row["name"], path / f"recording-{n}", row["spoken"], row["lang"],
                                                 row["gloss"], recording=clips[n])
    for lang, why in left_out.items():
        if lang in alphabets:
            alphabets[lang].left_out.update(why)
    return alphabets
