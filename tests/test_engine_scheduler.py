"""The scheduler with the lexicon/fingerspelling backend, on the real letter recordings."""

import numpy as np
import pytest

from engines.engine import Scheduler, outcome
from engines.textnorm import tokenize, words
from engines.lexicon_backend import LexiconBackend


@pytest.fixture(scope="module")
def backend() -> LexiconBackend:
    return LexiconBackend(fps=25.0)


def _drain(sched: Scheduler, limit: int = 5000):
    frames, ended = [], []
    for _ in range(limit):
        if not sched.live:
            break
        f, e = sched.tick()
        frames += f
        ended += e
    return frames, ended


def test_words_drop_punctuation_and_apostrophes():
    assert words("Hello, world! It's 2024.", "ase") == ["Hello", "world", "Its", "2024"]


def test_unit_is_fingerspelled_frame_by_frame_from_recordings(backend):
    sched = Scheduler([backend])
    segments = sched.submit("u1", "Hi, Bob!", "ase")
    assert [(s.word, s.path, s.kind, s.gloss) for s in segments] == [
        ("Hi", "lexicon", "fingerspelling", "<ase> FS:H-I"),
        ("Bob", "lexicon", "fingerspelling", "<ase> FS:B-O-B"),
    ]
    frames, ended = _drain(sched)
    expected = [len(backend.sequence(w, "ase")) for w in ("Hi", "Bob")]
    assert [s.frames for s in segments] == expected and len(frames) == sum(expected)
    assert frames[-1].last and not any(f.last for f in frames[:-1])
    assert frames[expected[0] - 1].counter == 1.0 and frames[expected[0]].segment == 1
    assert np.array_equal(frames[0].points, backend.sequence("Hi", "ase").frames[0])
    assert outcome(segments) == "fingerspelled" and not ended


def test_unsignable_words_are_shown_as_text_with_the_reason(backend):
    sched = Scheduler([backend])
    segments = sched.submit("u1", "café 42", "fsl")
    assert [s.kind for s in segments] == ["text", "text"]
    assert "no letter for 'é'" in segments[0].reason and "'4'" in segments[1].reason
    frames, ended = _drain(sched)
    assert frames == [] and ended == ["u1"] and outcome(segments) == "shown_as_text"


def test_units_join_and_leave_mid_flight_and_cancel(backend):
    sched = Scheduler([backend])
    sched.submit("a", "hello", "ase")
    for _ in range(5):
        sched.tick()
    sched.submit("b", "hallo", "gsg")
    frames, _ = sched.tick()
    assert {f.key for f in frames} == {"a", "b"}
    assert sched.cancel("a") and not sched.cancel("a")
    frames, _ = sched.tick()
    assert {f.key for f in frames} == {"b"}
    got_b, _ = _drain(sched)
    assert len(got_b) + 2 == len(backend.sequence("hallo", "gsg")) and backend.live == 0
    with pytest.raises(ValueError, match="unknown sign language 'xx'"):
        sched.submit("c", "hi", "xx")


def test_a_bracketed_description_is_shown_as_text_never_signed(backend):
    assert [t.source for t in tokenize("[music] Hello [door slams] there [laugh")] == [
        "[music]", "Hello", "[door slams]", "there", "[laugh"]
    segments = Scheduler([backend]).plan("[MUSIC] Hi [applause]", "ase")
    assert [(s.word, s.path, s.kind) for s in segments] == [
        ("[MUSIC]", "text", "text"), ("Hi", "lexicon", "fingerspelling"), ("[applause]", "text", "text")]
    assert "description" in segments[0].reason
