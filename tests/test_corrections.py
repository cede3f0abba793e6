"""Corrections, status order and the backlog policy through a real Session (segmenter, the bundled
engine's Scheduler behind an EngineLoop, motion timeline) on a simulated clock: every word of every
caption ends in the stream's accounting, and statuses arrive in unit order except `cancelled`."""

from __future__ import annotations

from server.config import load_config
from session_stream import Stream, scheduler  # noqa: F401  (scheduler: the fixture)


def test_the_issue_correction_loses_no_word(scheduler):
    s = Stream(scheduler)
    s.caption("l", "The bill would pass today.")
    s.play(1.0)
    first = next(iter(s.units()))
    assert s.on_screen.get(first) == {0}  # one second in, only "The" has been on screen
    s.caption("l", "The bill would fail today.")
    s.play()
    statuses = {m["unit"]: m for m in s.statuses()}
    assert set(statuses) == set(s.units())  # every unit has exactly one status
    assert statuses[first]["status"] == "cancelled"
    reason = statuses[first]["reason"]
    assert "shown before the correction: The" in reason and "committed again: bill would today" in reason
    assert "replaced by the correction: pass" in reason
    # What the viewer saw: "The" inside the cancelled unit, then the corrected rest, each word once.
    seen = [s.units()[first]["segments"][i]["word"] for i in sorted(s.on_screen[first])]
    for uid, st in statuses.items():
        if uid != first:
            assert st["status"] == "fingerspelled"
            seen += [seg["word"] for seg in st["segments"]]
    assert seen == ["The", "bill", "would", "fail", "today"]


def test_statuses_arrive_in_unit_order_when_the_backlog_skips_units(scheduler):
    cfg = load_config()
    cfg.live.speedup_after_s, cfg.live.max_speedup, cfg.live.text_after_s = 1.0, 1.5, 5.0
    s = Stream(scheduler, cfg=cfg)
    for i in range(8):  # faster than anyone signs: a caption a second
        s.caption(f"c{i}", "Good morning everyone, welcome back.")
        s.play(1.0)
    s.play()
    statuses = s.statuses()
    assert len(statuses) == len(s.units())
    assert [m["unit"] for m in statuses] == sorted(s.units())  # in unit order, skipped ones included
    kinds = [m["status"] for m in statuses]
    assert "shown_as_text" in kinds and kinds.count("fingerspelled") >= 2  # the policy skipped some, signed others
    skipped = [m for m in statuses if m["status"] == "shown_as_text"]
    assert all(m["reason"].startswith("backlog:") for m in skipped)


def test_a_long_sentence_is_not_dropped_whole_while_another_unit_plays(scheduler):
    """Default config: a 15-word sentence committed while a unit plays. Before, the policy showed it
    all as text at once; now it is cut into short units, and what the backlog drops is the oldest of
    them: the signing catches up with the captions instead of skipping the new sentence."""
    s = Stream(scheduler)
    s.caption("a", "Hello everyone.")
    s.play(0.5)
    s.caption("b", "Today we will look at how cells make proteins, and why that matters for medicine.")
    s.play()
    statuses = {m["unit"]: m for m in s.statuses()}
    later = [u for u, m in s.units().items() if m["caption"] == "b"]
    assert len(later) >= 3 and all(len(s.units()[u]["segments"]) <= 6 for u in later)
    signed = [u for u in later if statuses[u]["status"] == "fingerspelled"]
    dropped = [u for u in later if statuses[u]["status"] == "shown_as_text"]
    assert signed and signed[-1] == later[-1], [statuses[u]["status"] for u in later]  # the newest words signed
    assert all(d < min(signed) for d in dropped)  # only older words went to text
