"""The lexicon and fingerspelling backend: recorded signs where a lexicon has the word, the
manual alphabet's letter recordings where it does not.

Nothing is generated: every frame comes from a real recording, joined with natural
transitions. It has the same incremental interface as the model runtimes (one frame per
generation per step), so the scheduler treats both alike.
"""

from __future__ import annotations

from pathlib import Path

from engines.engine import Kind
from engines.lexicon import (
    Alphabet,
    CannotSpell,
    Entry,
    best_entries,
    fingerspell,
    fold,
    load_alphabets,
    read_index,
)
from engines.formats.posefile import read_pose
from engines.langgloss import format_gloss, gloss_line
from engines.playback import SequencePlayback
from engines.sequence import PoseSequence


class LexiconBackend(SequencePlayback):
    """Signs words from a sign lexicon (optional) and fingerspells from an alphabet lexicon."""

    name = "lexicon"

    def __init__(self, fps: float, alphabet_dir: str | Path | None = None, sign_dir: str | Path | None = None) -> None:
        super().__init__()
        self.fps = fps
        self.alphabets: dict[str, Alphabet] = load_alphabets(alphabet_dir)
        self.signs: dict[tuple[str, str], Entry] = best_entries(read_index(sign_dir)) if sign_dir else {}
        self.languages = frozenset(self.alphabets) | frozenset(lang for lang, _ in self.signs)

    def plan(self, word: str, language: str) -> tuple[str, Kind] | str:
        sign = self.signs.get((language, fold(word)))
        if sign is not None:
            return gloss_line(language, sign.gloss), "sign"
        alphabet = self.alphabets.get(language)
        if alphabet is None:
            return f"no sign for {word!r} and no manual alphabet for {language}"
        try:
            letters = alphabet.spell(word)
        except CannotSpell as exc:
            return exc.message
        return format_gloss(language, [e.name for e in letters]), "fingerspelling"

    def sequence(self, word: str, language: str) -> PoseSequence:
        """The whole sequence for a word (planned before, so it can be signed)."""
        sign = self.signs.get((language, fold(word)))
        if sign is not None:
            return read_pose(sign.path).trim().resample(self.fps)  # a sign keeps its own tempo
        return fingerspell(self.alphabets[language].spell(word), self.fps)

