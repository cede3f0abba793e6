"""Playback of whole pose sequences as incremental generations: the shared half of the backends
that know a word's frames up front (the letter recordings, the notation synthesizer).

A subclass says how a word becomes a `PoseSequence` (`sequence`); this class hands it out one
frame a step, with the progress counter the scheduler expects, under the generation's key.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.frame import PoseFrame, generated
from engines.sequence import PoseSequence


@dataclass
class _Generation:
    sequence: PoseSequence
    cursor: int = 0


class SequencePlayback:
    def __init__(self) -> None:
        self._live: dict[int, _Generation] = {}

    def sequence(self, word: str, language: str) -> PoseSequence:
        """The whole sequence for a word (planned before, so it can be signed)."""
        raise NotImplementedError

    def begin(self, key: int, word: str, language: str) -> None:
        self._live[key] = _Generation(self.sequence(word, language))

    def step(self, keys: list[int]) -> dict[int, PoseFrame]:
        out = {}
        for key in keys:
            gen = self._live[key]
            seq, i = gen.sequence, gen.cursor
            gen.cursor += 1
            out[key] = generated(seq.frames[i], seq.confidence[i], float(gen.cursor / len(seq)),
                                  gen.cursor >= len(seq))
        return out

    def end(self, key: int) -> None:
        self._live.pop(key, None)

    @property
    def live(self) -> int:
        return len(self._live)
