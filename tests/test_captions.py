"""The segmenter (commit rules, corrections) and the caption file readers."""

import pytest

from engines.formats.captions import CaptionFileError, Cue, parse_captions
from server.captions import EVERY_WORD, Cancel, Commit, Segmenter
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


NOT_STARTED = lambda unit: 0  # noqa: E731  (no word of any unit seen yet)
STARTED = lambda unit: EVERY_WORD  # noqa: E731  (every word of every unit seen)


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
    assert again[0] == Cancel(first[0].unit, "caption corrected; committed again: I like; replaced by the correction: cats")
    assert _texts(again) == ["I like dogs."]


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


def test_a_correction_while_a_unit_plays_recommits_the_words_not_yet_seen():
    """The issue's case: "pass" corrected to "fail" while the unit's first word is on screen. The
    words not seen yet are signed from the corrected text; the cancellation says what became of each."""
    s = _seg()
    first = s.caption("a", "The bill would pass today.", True, "ase", 0.0, NOT_STARTED)
    assert _texts(first) == ["The bill would pass today."]
    seen = {first[0].unit: 1}  # "The" is on screen
    again = s.caption("a", "The bill would fail today.", True, "ase", 1.0, lambda u: seen.get(u, 0))
    assert again[0] == Cancel(first[0].unit, "caption corrected; shown before the correction: The; "
                                             "committed again: bill would today; replaced by the correction: pass")
    assert _texts(again) == ["bill would fail today."]
    # Seen up to "would": only the replaced word and the rest follow.
    s = _seg()
    first = s.caption("a", "The bill would pass today.", True, "ase", 0.0, NOT_STARTED)
    again = s.caption("a", "The bill would fail today.", True, "ase", 1.0, lambda u: 3)
    assert _texts(again) == ["fail today."]


def test_long_runs_are_cut_at_clauses_then_before_conjunctions_then_at_the_limit():
    s = _seg(max_unit_words=6)
    texts = _texts(s.caption("a", "Today we will look at cells, membranes and proteins in the lab.", True, "ase", 0.0,
                             NOT_STARTED))
    assert texts == ["Today we will look at cells,", "membranes and proteins in the lab."]
    texts = _texts(s.caption("b", "We looked at the results of the experiment and then we went home.", True, "ase",
                             0.0, NOT_STARTED))
    assert texts == ["We looked at the results", "of the experiment", "and then we went home."]
    texts = _texts(s.caption("c", "one two three four five six seven eight nine", True, "ase", 0.0, NOT_STARTED))
    assert texts == ["one two three four five six", "seven eight nine"]
    assert all(len(t.split()) <= 6 for t in texts)


def test_lines_are_independent_and_forgotten_lines_are_committed_first():
    s = _seg(remembered_captions=2)
    s.caption("a", "one two", False, "ase", 0.0, NOT_STARTED)
    s.caption("b", "three", False, "gsg", 0.0, NOT_STARTED)
    out = s.caption("c", "four", False, "ase", 0.0, NOT_STARTED)
    assert [(a.caption, a.text, a.language) for a in out] == [("a", "one two", "ase")]


def test_vtt_and_srt_cues():
    vtt = "WEBVTT\n\nNOTE a comment\n\n1\n00:00:01.500 --> 00:00:03.000 line:0\n<v Bob>Hello <i>there</i>\n&amp; you\n\n01:00:00.000 --> 01:00:01.000\nlater\n"
    assert parse_captions(vtt).cues == [Cue(1.5, 3.0, "Bob: Hello there & you"), Cue(3600.0, 3601.0, "later")]
    srt = "1\n00:00:00,000 --> 00:00:02,500\n{\\an8}Hi\n\n2\n00:00:02,500 --> 00:00:04,000\n<b>Bye</b>\n"
    assert parse_captions(srt).cues == [Cue(0.0, 2.5, "Hi"), Cue(2.5, 4.0, "Bye")]
    # A file with no cue that can be played is refused, saying why (tests/test_caption_files.py
    # has the files where a bad cue is skipped and the rest plays).
    with pytest.raises(CaptionFileError, match="no cue that can be played .*line 2: bad start time"):
        parse_captions("1\n00:00 --> soon\nx\n", "x.srt")
    with pytest.raises(CaptionFileError, match="ends before it starts"):
        parse_captions("1\n00:00:02,000 --> 00:00:01,000\nx\n")
