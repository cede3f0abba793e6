"""The segmenter: live caption lines (growing partials, a final, corrections) → translation units.

A caption *line* has an id; each message carries the whole text of the line so far. Words are
committed into units at sentence ends (as the normalisation stage, engines/textnorm.py, finds
them: not at the dots of p.m., 1.2 or a URL; always before a speaker change), at clause boundaries
once the line has paused, after a maximum wait, and at the final. A correction (a message whose words differ from words already
committed) cancels the units it invalidates. What the viewer has already seen of them is not
signed again (only the words the correction replaced or inserted among them are); every other word
of a cancelled unit is committed again from the corrected text, or, when the correction replaced
or removed it, the cancellation says so: no word leaves the stream's accounting unsaid.

A unit holds at most `segmenter.max_unit_words` words: a longer run is cut at clause punctuation
(`, ; : —`), else before a conjunction or preposition of the caption's language, else at the
limit, so the backlog policy can drop the oldest few words instead of a whole sentence.

Pure logic with an explicit clock (`now`), so the rules are tested without waiting.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Callable

from engines.textnorm import spoken_language, tokenize
from engines.lexicon import fold
from server.config import SegmenterSection

_CLAUSE = re.compile(r"[,;:—–]")
_SHOWN = 0  # pseudo unit: words a started, then cancelled, unit showed
EVERY_WORD = 1 << 30  # `shown(unit)` of a unit whose every word has been handled (played, shown as text)
# Words a unit may be cut before when a long run has no clause punctuation (folded forms), by spoken
# language: conjunctions and common prepositions start a clause or a phrase.
_CUT_BEFORE: dict[str, frozenset[str]] = {
    "en": frozenset("and but or so because when while if that which who where although though since until "
                    "after before then of in on at to for with from by about into over through during without "
                    "under between".split()),
    "fr": frozenset("et mais ou donc car parce quand si que qui où pendant avant après de à dans sur pour avec "
                    "sans par chez vers entre".split()),
    "de": frozenset("und aber oder denn weil wenn dass als ob während bevor nachdem in an auf mit für von zu bei "
                    "nach aus über unter ohne".split()),
    "es": frozenset("y pero o porque cuando si que mientras aunque de en a con para por sin sobre entre desde "
                    "hasta".split()),
    "it": frozenset("e ma o perché quando se che mentre di in a con per su da tra fra senza".split()),
    "pt": frozenset("e mas ou porque quando se que enquanto de em a com para por sem sobre entre".split()),
    "sv": frozenset("och men eller för att som när om eftersom medan i på till från med av under över "
                    "utan".split()),
}


@dataclass(frozen=True)
class Commit:
    unit: int
    caption: str
    text: str
    language: str


@dataclass(frozen=True)
class Cancel:
    unit: int
    reason: str


Action = Commit | Cancel


@dataclass
class _Line:
    language: str
    text: str = ""
    words: list[str] = field(default_factory=list)  # folded, for comparison
    spans: list[tuple[int, int]] = field(default_factory=list)
    ends: list[bool] = field(default_factory=list)  # a sentence ends after word i (engines/textnorm.py)
    committed: int = 0  # words[:committed] are handled (in units, or skipped after a correction)
    units: list[tuple[int, int, int]] = field(default_factory=list)  # (unit id, first word, end word)
    final: bool = False
    pending_since: float | None = None  # when the oldest uncommitted word appeared
    changed_at: float = 0.0


def _tokens(text: str, language: str) -> tuple[list[tuple[int, int]], list[str], list[bool]]:
    """Character spans, folded words and sentence ends of the tokens of `text`: the words the
    normalisation stage finds (every kind: words, descriptions, speaker labels, symbols)."""
    tokens = tokenize(text, language)
    return [(t.start, t.end) for t in tokens], [fold(t.text) for t in tokens], [t.ends_sentence for t in tokens]


class Segmenter:
    def __init__(self, cfg: SegmenterSection, next_unit: Callable[[], int]) -> None:
        self.cfg = cfg
        self._next_unit = next_unit
        self._lines: OrderedDict[str, _Line] = OrderedDict()

    def caption(self, line_id: str, text: str, final: bool, language: str, now: float,
                shown: Callable[[int], int]) -> list[Action]:
        """A partial or final message for a line. `shown(unit)`: how many of a unit's words, from its
        first, the viewer has seen (at least in part); EVERY_WORD for a unit already handled."""
        actions: list[Action] = []
        line = self._lines.get(line_id)
        if line is None:
            line = self._lines[line_id] = _Line(language)
            actions += self._forget_oldest(now)
        self._lines.move_to_end(line_id)
        line.language = language
        spans, words, ends = _tokens(text, language)
        if text != line.text:
            line.changed_at = now
        same = 0
        for old, new in zip(line.words, words):
            if old != new:
                break
            same += 1
        old = line.words
        old_text = [line.text[a:b] for a, b in line.spans]  # as written, to name words in a cancellation
        line.text, line.words, line.spans, line.ends, line.final = text, words, spans, ends, final
        if same < line.committed:
            actions += self._correct(line_id, line, old, old_text, same, shown)
        if line.committed < len(words) and line.pending_since is None:
            line.pending_since = now
        if final:
            actions += self._commit_sentences(line_id, line, len(words))
            actions += self._commit(line_id, line, len(words))
        else:
            actions += self._commit_sentences(line_id, line, self._stable_end(line))
            actions += self.poll_line(line_id, line, now)
        return actions

    def poll(self, now: float) -> list[Action]:
        """Commits that time brings: a clause boundary after a pause, the maximum wait."""
        actions: list[Action] = []
        for line_id, line in list(self._lines.items()):
            actions += self.poll_line(line_id, line, now)
        return actions

    def flush(self) -> list[Action]:
        """Commit every uncommitted word of every line now."""
        actions: list[Action] = []
        for line_id, line in self._lines.items():
            actions += self._commit_sentences(line_id, line, len(line.words))
            actions += self._commit(line_id, line, len(line.words))
        return actions

    @property
    def uncommitted_words(self) -> int:
        return sum(len(line.words) - line.committed for line in self._lines.values())

    def poll_line(self, line_id: str, line: _Line, now: float) -> list[Action]:
        if line.final or line.committed >= len(line.words):
            return []
        stable = self._stable_end(line)
        if now - line.changed_at >= self.cfg.pause_s:
            clause = max((i + 1 for i in range(line.committed, stable) if _CLAUSE.search(self._gap(line, i))), default=0)
            if clause > line.committed:
                return self._commit(line_id, line, clause)
        if line.pending_since is not None and now - line.pending_since >= self.cfg.max_wait_s:
            return self._commit(line_id, line, stable)
        return []

    def _gap(self, line: _Line, i: int) -> str:
        """The text between word i and the next word (or the end of the line)."""
        end = line.spans[i + 1][0] if i + 1 < len(line.spans) else len(line.text)
        return line.text[line.spans[i][1]:end]

    def _stable_end(self, line: _Line) -> int:
        """Words of a partial that will not grow: all but a last word that touches the end of the text."""
        n = len(line.words)
        if n and line.spans[-1][1] == len(line.text):
            return n - 1
        return n

    def _commit_sentences(self, line_id: str, line: _Line, limit: int) -> list[Action]:
        actions: list[Action] = []
        for i in range(line.committed, limit):
            if line.ends[i]:
                actions += self._commit(line_id, line, i + 1)
        return actions

    def _commit(self, line_id: str, line: _Line, end: int) -> list[Action]:
        """Commit words up to `end` as units of at most `max_unit_words` words."""
        actions: list[Action] = []
        while end > line.committed:
            start = line.committed
            stop = end if end - start <= self.cfg.max_unit_words else self._cut(line, start, end)
            a = line.spans[start][0]
            b = line.spans[stop][0] if stop < len(line.spans) else len(line.text)
            unit = self._next_unit()
            line.units.append((unit, start, stop))
            line.committed = stop
            line.pending_since = None if stop >= len(line.words) else line.changed_at
            actions.append(Commit(unit, line_id, line.text[a:b].strip(), line.language))
        return actions

    def _cut(self, line: _Line, start: int, end: int) -> int:
        """Where a run of words [start, end) longer than max_unit_words ends its first unit: after the
        last clause punctuation, else before the last conjunction or preposition, in the second half
        of the longest unit; else at the limit."""
        most = self.cfg.max_unit_words
        window = range(min(end - 1, start + most), start + max(1, most // 2) - 1, -1)  # first unit's end, late first
        for k in window:
            if _CLAUSE.search(self._gap(line, k - 1)):
                return k
        cut_before = _CUT_BEFORE.get(spoken_language(line.language), frozenset())
        for k in window:  # before the first of a run ("… | and then", not "… and | then")
            if line.words[k] in cut_before and line.words[k - 1] not in cut_before:
                return k
        return start + most

    def _correct(self, line_id: str, line: _Line, old: list[str], old_text: list[str], same: int,
                 shown: Callable[[int], int]) -> list[Action]:
        """Words from `same` on changed: cancel the units that hold them.

        Words the viewer has not seen are committed again from the corrected text: all of an
        unstarted unit's, the unshown rest of a started one's. Of the words already seen, only those
        the correction replaced or inserted among them are signed, and the line resumes after the
        last seen word. Each cancellation names its words' fate: seen, committed again, replaced.
        """
        hit = sorted((u for u in line.units if u[2] > same), key=lambda u: u[1])
        line.units = [u for u in line.units if u[2] <= same]
        line.pending_since = None
        # Units play in order, so what was seen is a run of old words from the first hit unit's start.
        seen_end = max([hit[0][1]] + [first + (end - first if u == _SHOWN else min(shown(u), end - first))
                                      for u, first, end in hit])
        kept = _kept(old, line.words)
        actions: list[Action] = [Cancel(u, _fate(old_text, first, end, seen_end, kept)) for u, first, end in hit
                                 if u != _SHOWN]
        if seen_end == hit[0][1]:  # nothing seen: everything again from the first unit's start
            line.committed = hit[0][1]
            return actions
        start, end = hit[0][1], seen_end
        resume, changed = end, []  # changed: (first, end) word ranges of the new text
        for tag, i1, i2, j1, j2 in SequenceMatcher(None, old[:end], line.words, autojunk=False).get_opcodes():
            if tag != "equal" and j2 > j1:
                changed.append((j1, j2))
            if i1 <= end - 1 < i2:
                resume = j1 + (end - i1) if tag == "equal" else j2
        if not line.final:
            resume = max(same, min(resume, self._stable_end(line)))  # never commit a word still growing
        line.units.append((_SHOWN, start, resume))
        changed = [(a, min(b, resume)) for a, b in changed if a < resume]
        line.committed = resume  # the words after it (unseen) follow by the usual commit rules
        if changed:
            line.committed = max(same, changed[0][0])
            upto = changed[-1][1]
            actions += self._commit_sentences(line_id, line, upto)
            actions += self._commit(line_id, line, upto)
        line.committed = max(line.committed, resume)
        return actions

    def _forget_oldest(self, now: float) -> list[Action]:
        """Keep a bounded number of lines; a forgotten line's uncommitted words are committed first."""
        actions: list[Action] = []
        while len(self._lines) > self.cfg.remembered_captions:
            line_id, line = next(iter(self._lines.items()))
            actions += self._commit(line_id, line, len(line.words))
            del self._lines[line_id]
        return actions


def _kept(old: list[str], new: list[str]) -> set[int]:
    """Indices of old words the corrected text still has (in the same order)."""
    out: set[int] = set()
    for tag, i1, i2, _, _ in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            out.update(range(i1, i2))
    return out


def _fate(words: list[str], first: int, end: int, seen_end: int, kept: set[int]) -> str:
    """The reason a cancelled unit's status gives: what became of each of its words."""
    seen = words[first:min(end, seen_end)]
    again = [words[i] for i in range(max(first, seen_end), end) if i in kept]
    replaced = [words[i] for i in range(max(first, seen_end), end) if i not in kept]
    parts = ["caption corrected"]
    if seen:
        parts.append(f"shown before the correction: {' '.join(seen)}")
    if again:
        parts.append(f"committed again: {' '.join(again)}")
    if replaced:
        parts.append(f"replaced by the correction: {' '.join(replaced)}")
    return "; ".join(parts)
