"""The notation backend: words signed with lexical signs synthesized from HamNoSys.

For each sign language with a notation lexicon (the engine folder's `notation/<language>.json`,
or a file named in config.toml `[engine] notation`), a word is looked up by the German gloss
rules (engines/german_glosses.py) for DSGS (`sgg`), by its folded form for any other language.
A word whose every sign is renderable is planned as `sign`; an article or the copula as `text`
(the scheduler shows it, with the rule as the reason, and makes no frames); anything else is
refused with the reason, so the next path (SignLLM, letter recordings) fingerspells it. A sign
with a symbol the synthesizer does not render is never used: its refusal is a `Fallback`, which
the scheduler keeps as the reason of the segment that signs the word instead. Frames come from a per-sign cache; the signs of one word (a compound) are
joined by a transition. Words join as on every path: the backend keeps no state between
generations, so no pose of one unit can leak into another.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from engines.engine import Kind
from engines.german_glosses import dropped, glosses
from engines.langgloss import gloss_line
from engines.lexicon import fold
from engines.notation.lexicon import NotationEntry, NotationLexicon, gloss_key
from engines.notation.reader import read_hamnosys
from engines.notation.synthesizer import synthesize
from engines.playback import SequencePlayback
from engines.sequence import PoseSequence, concatenate

GERMAN_RULES = frozenset({"sgg", "gsg"})  # sign languages captioned in German: the German gloss rules
SIGN_TRANSITION_S = 0.20  # between two signs of one word (a compound)


class Fallback(str):
    """A refusal worth telling the viewer even when a later path signs the word: the lexicon has
    a sign for it, but one we do not render (the scheduler reads `reported`)."""

    reported = True


class NotationBackend(SequencePlayback):
    """Signs words from notation lexicons, one sign language each."""

    name = "notation"

    def __init__(self, fps: float, letters: Path | None, lexicons: dict[str, NotationLexicon],
                 lemmas: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__()
        self.fps = fps
        self.letters = letters
        self.lexicons = lexicons
        self.lemmas = lemmas or {}  # language → word form → lemma (german_glosses)
        self._words = {lang: lex.by_word() for lang, lex in lexicons.items()}
        self.languages = frozenset(lexicons)

    # --- planning ---------------------------------------------------------------------------------

    def entry(self, key: str, language: str) -> NotationEntry | None:
        """The sign of a gloss key: the first renderable variant (deterministic), or None."""
        entries = self._words[language].get(key)
        return entries[0] if entries and entries[0].sign.renderable else None

    def signs_for(self, word: str, language: str) -> list[NotationEntry] | str:
        """The entries signing `word` ([] = not signed, see german_glosses), or why none can."""
        def known(key: str) -> bool:
            return self.entry(key, language) is not None

        if language in GERMAN_RULES:
            keys = glosses(word, known, self.lemmas.get(language, {}))
        else:
            keys = [gloss_key(fold(word))] if known(gloss_key(fold(word))) else None
        if keys is None:
            unrenderable = self._words[language].get(gloss_key(fold(word)))
            if unrenderable:
                first = unrenderable[0]
                symbols = ", ".join(sorted({u.symbol for u in first.sign.unsupported}))
                return Fallback(f"the {language} sign {first.gloss} is not rendered: it uses {symbols} "
                                "(notation_unsupported)")
            return f"no {language} sign for {word!r} in the notation lexicon"
        return [e for e in (self.entry(k, language) for k in keys) if e is not None]

    def plan(self, word: str, language: str) -> tuple[str, Kind] | str:
        got = self.signs_for(word, language)
        if isinstance(got, str):
            return got
        if not got:  # the scheduler shows it as text with this reason, and makes no frames
            return f"not signed in {language}: {dropped(word)} (German gloss rules, docs/notation.md)", "text"
        return gloss_line(language, " ".join(e.gloss for e in got)), "sign"

    # --- generating -------------------------------------------------------------------------------

    def sequence(self, word: str, language: str) -> PoseSequence:
        """The frames of a planned word: its signs joined by transitions."""
        got = self.signs_for(word, language)
        if isinstance(got, str) or not got:
            raise ValueError(got or f"{word!r} is not signed in {language}")
        return concatenate([self.sign(e) for e in got], self.fps, transition=SIGN_TRANSITION_S)

    def sign(self, entry: NotationEntry) -> PoseSequence:
        """One sign's frames, cached by its notation (the same sign is synthesized once)."""
        return _synthesized(entry.hamnosys, self.fps, self.letters)


@lru_cache(maxsize=4096)
def _synthesized(hamnosys: str, fps: float, letters: Path | None) -> PoseSequence:
    return synthesize(read_hamnosys(hamnosys), fps, letters)
