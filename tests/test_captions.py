"""The segmenter (commit rules, corrections) and the caption file readers."""

import pytest

from server.caption_files import CaptionFileError, Cue, parse_captions
from server.captions import Cancel, Commit, Segmenter
from server.config import SegmenterSection


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def _seg(**kw) -> Segmenter:
    return Segmenter(SegmenterSection(**kw), _Counter())


def _texts(actions):
    return [a.text for a in actions if isinstance(a, Commit)]


NOT_STARTED = lambda unit: False  # noqa: E731
STARTED = lambda unit: True  # noqa: E731


def test_sentence_ends_commit_and_the_growing_word_waits():
    s = _seg()
    assert s.caption("a", "Hello wor", False, "ase", 0.0, NOT_STARTED) == []
    assert _texts(s.caption("a", "Hello world. How are", False, "ase", 0.1, NOT_STARTED)) == ["Hello world."]
    assert _texts(s.caption("a", "Hello world. How are you? Fine", False, "ase", 0.2, NOT_STARTED)) == ["How are you?"]
    assert _texts(s.caption("a", "Hello world. How are you? Fine thanks", True, "ase", 0.3, NOT_STARTED)) == ["Fine thanks"]
    assert s.uncommitted_words == 0


def test_clause_boundary_commits_after_a_pause_and_max_wait_commits_stable_words():
    s = _seg(pause_s=0.4, max_wait_s=2.0)
    assert s.caption("a", "When I came home, the cat", False, "ase", 0.0, NOT_STARTED) == []
    assert s.poll(0.3) == []  # no pause yet
    assert _texts(s.poll(0.5)) == ["When I came home,"]
    s.caption("a", "When I came home, the cat was sleeping on the so", False, "ase", 0.6, NOT_STARTED)
    assert s.poll(1.0) == []
    # Max wait (counted from the last commit's change): every word but the one still growing.
    assert _texts(s.poll(2.7)) == ["the cat was sleeping on the"]
    assert _texts(s.flush()) == ["so"]


def test_correction_of_an_unstarted_unit_recommits_from_its_start():
    s = _seg()
    first = s.caption("a", "I like cats. And", False, "ase", 0.0, NOT_STARTED)
    assert _texts(first) == ["I like cats."]
    again = s.caption("a", "I like dogs. And", False, "ase", 0.1, NOT_STARTED)
    assert again[0] == Cancel(first[0].unit, "caption corrected") and _texts(again) == ["I like dogs."]


def test_correction_after_a_unit_started_never_signs_a_word_twice():
    s = _seg()
    signed: list[str] = []
    for text, final in [("I like cats. And", False), ("I like dogs. And then", False), ("I like dogs. And then we left.", True)]:
        for a in s.caption("a", text, final, "ase", 0.0, STARTED):
            if isinstance(a, Commit):
                signed += a.text.split()
    # "I like" was (partly) signed inside the cancelled unit: it is not signed again.
    assert signed == ["I", "like", "cats.", "dogs.", "And", "then", "we", "left."]
    # A second correction inside the words already shown does not bring them back either.
    again = s.caption("a", "You like dogs. And then we left.", True, "ase", 0.0, STARTED)
    assert _texts(again) == ["You"]
    # Words inserted among shown words are signed; the rest is not repeated.
    again = s.caption("a", "You like big dogs. And then we left.", True, "ase", 0.0, STARTED)
    assert _texts(again) == ["big"]


def test_lines_are_independent_and_forgotten_lines_are_committed_first():
    s = _seg(remembered_captions=2)
    s.caption("a", "one two", False, "ase", 0.0, NOT_STARTED)
    s.caption("b", "three", False, "gsg", 0.0, NOT_STARTED)
    out = s.caption("c", "four", False, "ase", 0.0, NOT_STARTED)
    assert [(a.caption, a.text, a.language) for a in out] == [("a", "one two", "ase")]


def test_vtt_and_srt_cues():
    vtt = "WEBVTT\n\nNOTE a comment\n\n1\n00:00:01.500 --> 00:00:03.000 line:0\n<v Bob>Hello <i>there</i>\n&amp; you\n\n01:00:00.000 --> 01:00:01.000\nlater\n"
    assert parse_captions(vtt) == [Cue(1.5, 3.0, "Hello there & you"), Cue(3600.0, 3601.0, "later")]
    srt = "1\n00:00:00,000 --> 00:00:02,500\n{\\an8}Hi\n\n2\n00:00:02,500 --> 00:00:04,000\n<b>Bye</b>\n"
    assert parse_captions(srt) == [Cue(0.0, 2.5, "Hi"), Cue(2.5, 4.0, "Bye")]
    with pytest.raises(CaptionFileError, match="line 2: bad timing"):
        parse_captions("1\n00:00 --> soon\nx\n", "x.srt")
    with pytest.raises(CaptionFileError, match="ends before it starts"):
        parse_captions("1\n00:00:02,000 --> 00:00:01,000\nx\n")
