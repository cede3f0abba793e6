"""The segmenter: live caption lines (growing partials, a final, corrections) → translation units.

A caption *line* has an id; each message carries the whole text of the line so far. Words are
committed into units at sentence ends, at clause boundaries once the line has paused, after a
maximum wait, and at the final. A correction (a message whose words differ from words already
committed) cancels the units it invalidates; units that have started playing are not re-signed,
so no word is signed twice: the line resumes after the last word a started unit covered.

Pure logic with an explicit clock (`now`), so the rules are tested without waiting.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Callable

from engines.engine import words_of
from engines.lexicon import fold
from server.config import SegmenterSection

_SENTENCE_END = re.compile(r"[.!?…。！？]")
_CLAUSE = re.compile(r"[,;:—–]")
_SHOWN = 0  # pseudo unit: words a started, then cancelled, unit may have shown


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
    committed: int = 0  # words[:committed] are handled (in units, or skipped after a correction)
    units: list[tuple[int, int, int]] = field(default_factory=list)  # (unit id, first word, end word)
    final: bool = False
    pending_since: float | None = None  # when the oldest uncommitted word appeared
    changed_at: float = 0.0


def _spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of `text` (words_of returns substrings, in order)."""
    spans, pos = [], 0
    for word in words_of(text):
        start = text.index(word, pos)
        pos = start + len(word)
        spans.append((start, pos))
    return spans


class Segmenter:
    def __init__(self, cfg: SegmenterSection, next_unit: Callable[[], int]) -> None:
        self.cfg = cfg
        self._next_unit = next_unit
        self._lines: OrderedDict[str, _Line] = OrderedDict()

    def caption(self, line_id: str, text: str, final: bool, language: str, now: float,
                started: Callable[[int], bool]) -> list[Action]:
        """A partial or final message for a line; `started(unit)` tells whether a unit has begun playing."""
        actions: list[Action] = []
        line = self._lines.get(line_id)
        if line is None:
            line = self._lines[line_id] = _Line(language)
            actions += self._forget_oldest(now)
        self._lines.move_to_end(line_id)
        line.language = language
        spans = _spans(text)
        words = [fold(text[a:b]) for a, b in spans]
        if text != line.text:
            line.changed_at = now
        same = 0
        for old, new in zip(line.words, words):
            if old != new:
                break
            same += 1
        old = line.words
        line.text, line.words, line.spans, line.final = text, words, spans, final
        if same < line.committed:
            actions += self._correct(line_id, line, old, same, started)
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
            if _SENTENCE_END.search(self._gap(line, i)):
                actions += self._commit(line_id, line, i + 1)
        return actions

    def _commit(self, line_id: str, line: _Line, end: int) -> list[Action]:
        if end <= line.committed:
            return []
        start = line.committed
        a = line.spans[start][0]
        b = line.spans[end][0] if end < len(line.spans) else len(line.text)
        unit = self._next_unit()
        line.units.append((unit, start, end))
        line.committed = end
        line.pending_since = None if end >= len(line.words) else line.changed_at
        return [Commit(unit, line_id, line.text[a:b].strip(), line.language)]

    def _correct(self, line_id: str, line: _Line, old: list[str], same: int,
                 started: Callable[[int], bool]) -> list[Action]:
        """Words from `same` on changed: cancel the units that hold them.

        An unstarted unit's words were never shown: they are committed again from its start. A
        started unit's words were (partly) shown: only the words the correction replaced or
        inserted among them are signed, and the line resumes after the last shown word.
        """
        hit = sorted((u for u in line.units if u[2] > same), key=lambda u: u[1])
        line.units = [u for u in line.units if u[2] <= same]
        actions: list[Action] = [Cancel(u, "caption corrected") for u, _, _ in hit if u != _SHOWN]
        shown = [u for u in hit if u[0] == _SHOWN or started(u[0])]
        line.pending_since = None
        if not shown:
            line.committed = hit[0][1]
            return actions
        start, end = shown[0][1], max(u[2] for u in shown)
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
