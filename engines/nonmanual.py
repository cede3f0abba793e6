"""The non-manual track: brows, eyes, head and mouth, per frame, from the text of a unit.

Sign languages carry grammar on the face and head, so the avatar gets, beside each pose frame, a
small vector of typed values (`CHANNELS`, in this order):

| channel | range | meaning |
|---|---|---|
| brow_raise | [0, 1] | both brows up (yes/no question) |
| brow_furrow | [0, 1] | brows down and together (wh-question) |
| blink | [0, 1] | eyelids closed (1) |
| squint | [0, 1] | eyes narrowed |
| head_nod | [−1, 1] | head pitch, + chin down |
| head_shake | [−1, 1] | head yaw, + towards the signer's left |
| head_tilt | [−1, 1] | head roll, + towards the signer's left shoulder |
| mouth_open | [0, 1] | jaw open |
| mouth_spread | [0, 1] | lips spread (i, e) |
| mouth_round | [0, 1] | lips rounded (o, u) |
| breath | [−1, 1] | chest in/out (alive at rest) |
| sway | [−1, 1] | weight shift left/right (alive at rest) |

Rules from the text (`plan`), per unit; a unit's words are its segments, in order:

1. **Yes/no question**: a sentence that ends in "?" and holds no wh-word → brow_raise 1 over
   every word of that sentence.
2. **Wh-question**: a sentence that ends in "?" (or starts with a wh-word and ends in "?") and
   holds a wh-word of the unit's spoken language (`WH_WORDS`: en, de, fr, es, it, pt) →
   brow_furrow 1 over the sentence, a slight squint.
3. **Negation**: a negation word (`NEGATIONS`: not, no, never, nicht, kein…, nie, …) → a head
   shake (≈2 Hz, three half-turns a second at 25 fps) across the negation word and the word after
   it (the negated sign), in the same sentence.
4. **Mouthing** for DSGS (`sgg`) signs from notation: the German word is mouthed, grapheme by
   grapheme (`VISEMES`: a → open; e, i, ä → spread; o, u, ö, ü → round; m, b, p → closed; f, v, w
   → a little open and spread; sch → round), the graphemes spread evenly across the sign's frames,
   each eased into the next.

Alive at rest (`alive`): breathing (a 4.2 s sine), blinks every 3–5 s (from a seeded generator,
so a session's blinks repeat run to run), a slow weight shift (a 9 s sine); gaze stays at the
viewer (the head returns to face the camera; the eyes are not turned). Breath and sway move the
torso, so they fade out while a unit is signed (`signing=True`): the hands stay where the engine
puts them. Blinks go on while signing (a signer blinks too).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

CHANNELS: tuple[str, ...] = ("brow_raise", "brow_furrow", "blink", "squint", "head_nod", "head_shake",
                             "head_tilt", "mouth_open", "mouth_spread", "mouth_round", "breath", "sway")
INDEX: dict[str, int] = {c: i for i, c in enumerate(CHANNELS)}
SIGNED = frozenset({"head_nod", "head_shake", "head_tilt", "breath", "sway"})  # range [−1, 1]; the rest [0, 1]
LOW = np.array([-1.0 if c in SIGNED else 0.0 for c in CHANNELS], dtype=np.float32)

WH_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset("what who whom whose which where when why how".split()),
    "de": frozenset("was wer wen wem wessen welche welcher welches welchen welchem wo wohin woher wann warum "
                    "wieso weshalb wie wieviel wozu womit".split()),
    "fr": frozenset("que quoi qui quel quelle quels quelles où quand pourquoi comment combien".split()),
    "es": frozenset("qué quién quiénes cuál cuáles dónde cuándo por qué cómo cuánto".split()),
    "it": frozenset("che cosa chi quale quali dove quando perché come quanto".split()),
    "pt": frozenset("que quem qual quais onde quando porque como quanto".split()),
}
NEGATIONS: frozenset[str] = frozenset(
    "not no never nothing nobody none cannot cant dont doesnt didnt isnt arent wasnt werent wont nt "
    "nicht kein keine keinen keinem keiner keines nie niemals nichts niemand "
    "ne pas jamais non nunca nada nadie".split())

# German grapheme → (open, spread, round) viseme targets; longest graphemes first.
VISEMES: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("sch", (0.2, 0.0, 0.8)), ("ch", (0.3, 0.4, 0.0)), ("ei", (0.7, 0.5, 0.0)), ("au", (0.7, 0.0, 0.6)),
    ("eu", (0.5, 0.0, 0.7)), ("ie", (0.2, 0.9, 0.0)),
    ("a", (0.9, 0.1, 0.0)), ("ä", (0.6, 0.6, 0.0)), ("e", (0.4, 0.8, 0.0)), ("i", (0.2, 0.9, 0.0)),
    ("o", (0.5, 0.0, 0.9)), ("ö", (0.4, 0.2, 0.8)), ("u", (0.3, 0.0, 1.0)), ("ü", (0.2, 0.2, 1.0)),
    ("m", (0.0, 0.0, 0.0)), ("b", (0.0, 0.0, 0.0)), ("p", (0.0, 0.0, 0.0)),
    ("f", (0.1, 0.3, 0.0)), ("v", (0.1, 0.3, 0.0)), ("w", (0.1, 0.3, 0.0)),
)
_CONSONANT = (0.15, 0.1, 0.0)  # any other letter: lips barely apart
_SHAKE_HZ = 2.0
_WORD = re.compile(r"[^\W\d_]+")


@dataclass
class WordCues:
    """What one word (segment) of a unit carries besides its manual sign."""

    brow_raise: float = 0.0
    brow_furrow: float = 0.0
    squint: float = 0.0
    shake: bool = False
    mouthing: list[tuple[float, float, float]] = field(default_factory=list)  # visemes, evenly timed


def visemes(word: str) -> list[tuple[float, float, float]]:
    """The mouthing of a German word: one (open, spread, round) target per grapheme (rule 4)."""
    w, out, i = word.lower(), [], 0
    while i < len(w):
        for g, v in VISEMES:
            if w.startswith(g, i):
                out.append(v)
                i += len(g)
                break
        else:
            if w[i].isalpha():
                out.append(_CONSONANT)
            i += 1
    return out


def _sentences(text: str, n_words: int) -> list[tuple[int, int, str]]:
    """(first word, end word, closing mark) of each sentence of `text`, by word index."""
    out, start, count = [], 0, 0
    for part in re.finditer(r"[^.!?…]+([.!?…]*)", text):
        k = len(_WORD.findall(part.group()))
        if k:
            out.append((count, count + k, part.group(1)[-1:] if part.group(1) else ""))
            count += k
    if count < n_words:
        out.append((count, n_words, ""))
    return out or [(start, n_words, "")]


def plan(text: str, spoken: str, words: list[str], mouthed: list[bool] | None = None) -> list[WordCues]:
    """The non-manual cues of each word of a unit (rules 1–4 of the module docstring).

    `words` are the unit's words (one per segment), `spoken` its spoken language (en, de, …),
    `mouthed[i]` whether word i is a DSGS notation sign (mouthed in German)."""
    cues = [WordCues() for _ in words]
    folded = [w.lower() for w in words]
    wh = WH_WORDS.get(spoken, frozenset()) | (WH_WORDS["en"] if not spoken else frozenset())
    for a, b, mark in _sentences(text, len(words)):
        span = range(a, min(b, len(words)))
        if mark == "?":
            if any(folded[i] in wh for i in span):
                for i in span:
                    cues[i].brow_furrow, cues[i].squint = 1.0, 0.4
            else:
                for i in span:
                    cues[i].brow_raise = 1.0
        for i in span:
            if folded[i] in NEGATIONS:
                cues[i].shake = True
                if i + 1 in span:
                    cues[i + 1].shake = True
    for i, m in enumerate(mouthed or []):
        if m and i < len(words):
            cues[i].mouthing = visemes(words[i])
    return cues


def word_values(cue: WordCues, k: int, n: int, fps: float, shake_phase: int) -> np.ndarray:
    """The track's values at frame k of n of a word's sign (grammar only, no life)."""
    v = np.zeros(len(CHANNELS), dtype=np.float32)
    v[INDEX["brow_raise"]] = cue.brow_raise
    v[INDEX["brow_furrow"]] = cue.brow_furrow
    v[INDEX["squint"]] = cue.squint
    if cue.shake:
        v[INDEX["head_shake"]] = math.sin(2 * math.pi * _SHAKE_HZ * shake_phase / fps)
    if cue.mouthing:
        m = cue.mouthing
        x = (k + 0.5) / max(n, 1) * len(m) - 0.5  # grapheme position, evenly across the sign
        i = min(max(math.floor(x), 0), len(m) - 1)  # plain floats: this runs once a frame per session
        j = min(i + 1, len(m) - 1)
        w = min(max(x - i, 0.0), 1.0)
        w = w * w * (3 - 2 * w)  # eased from one viseme into the next
        for c, name in enumerate(("mouth_open", "mouth_spread", "mouth_round")):
            v[INDEX[name]] = m[i][c] * (1 - w) + m[j][c] * w
    return v


class Life:
    """Alive at rest: breathing, seeded blinks, weight shifts (module docstring)."""

    BLINK_S = 0.2

    def __init__(self, fps: float, seed: int = 0) -> None:
        self.fps = fps
        self._rng = np.random.default_rng(seed)
        self._next_blink = float(self._rng.uniform(3.0, 5.0))
        self._amount = 1.0  # breath and sway, faded in at rest and out while signing

    def values(self, index: int, signing: bool) -> np.ndarray:
        """The life channels for output frame `index` (call once per frame, in order)."""
        t = index / self.fps
        v = np.zeros(len(CHANNELS), dtype=np.float32)
        if t >= self._next_blink + self.BLINK_S:
            self._next_blink += float(self._rng.uniform(3.0, 5.0))
        d = t - self._next_blink
        if 0 <= d < self.BLINK_S:
            v[INDEX["blink"]] = math.sin(math.pi * d / self.BLINK_S)
        step = 1.0 / (0.4 * self.fps)  # 0.4 s fade
        self._amount = max(0.0, self._amount - step) if signing else min(1.0, self._amount + step)
        v[INDEX["breath"]] = self._amount * math.sin(2 * math.pi * t / 4.2)
        v[INDEX["sway"]] = self._amount * math.sin(2 * math.pi * t / 9.0)
        return v


def combine(grammar: np.ndarray, life: np.ndarray) -> np.ndarray:
    """Grammar plus life, clipped to each channel's range."""
    return np.minimum(np.maximum(grammar + life, LOW), np.float32(1.0))
