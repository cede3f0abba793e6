"""Corrections, status order and the backlog policy through a real Session (segmenter, the bundled
engine's Scheduler behind an EngineLoop, motion timeline) on a simulated clock: every word of every
caption ends in the stream's accounting, and statuses arrive in unit order except `cancelled`."""

from __future__ import annotations

from typing import Any

import pytest

from engines.loader import open_scheduler
from server.config import Config, load_config
from server.engine_loop import EngineLoop
from server.metrics import Metrics
from server.protocol import Caption, Hello, Message, PoseFrame, ServerMessage
from server.session import Session


@pytest.fixture(scope="module")
def scheduler():
    cfg = load_config()
    return open_scheduler(cfg.engine, float(cfg.video.fps))


class Stream:
    """A session driven frame by frame, as server/overlay.py drives one: captions at their times."""

    def __init__(self, scheduler, cfg: Config | None = None) -> None:
        self.cfg = cfg or load_config()
        self.fps = float(self.cfg.video.fps)
        self.messages: list[dict[str, Any]] = []
        self.shown: dict[int, set[int]] = {}  # unit → segments that had a frame on screen
        self.engine = EngineLoop(scheduler, Metrics())
        self.session = Session(1, self.cfg, self.engine, Metrics(), self._receive, lambda code: None, authed=True)
        self.session.feed(Hello(language="ase", idle_frames=False), 0.0)
        self.index = 0

    def _receive(self, msg: ServerMessage) -> None:
        if isinstance(msg, PoseFrame):
            if msg.unit and msg.segment >= 0:
                self.shown.setdefault(msg.unit, set()).add(msg.segment)
        elif isinstance(msg, Message):
            self.messages.append({"type": msg.type, **msg.fields})

    def caption(self, line: str, text: str, final: bool = True) -> None:
        self.session.feed(Caption(line, text, final=final), self.index / self.fps)

    def play(self, seconds: float | None = None) -> None:
        """Advance the clock `seconds`, or until every unit has its status."""
        stop = None if seconds is None else self.index + round(seconds * self.fps)
        while (self.index < stop) if stop is not None else self.session.units:
            self.engine.pump()
            self.session.tick(self.index / self.fps)
            self.index += 1
            assert self.index < 20000, "signing never ended"

    def units(self) -> dict[int, dict[str, Any]]:
        return {m["unit"]: m for m in self.messages if m["type"] == "unit"}

    def statuses(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "unit_status"]


def test_the_issue_correction_loses_no_word(scheduler):
    s = Stream(scheduler)
    s.caption("l", "The bill would pass today.")
    s.play(1.0)
    first = next(iter(s.units()))
    assert s.shown.get(first) == {0}  # one second in, only "The" has been on screen
    s.caption("l", "The bill would fail today.")
    s.play()
    statuses = {m["unit"]: m for m in s.statuses()}
    assert set(statuses) == set(s.units())  # every unit has exactly one status
    assert statuses[first]["status"] == "cancelled"
    reason = statuses[first]["reason"]
    assert "shown before the correction: The" in reason and "committed again: bill would today" in reason
    assert "replaced by the correction: pass" in reason
    # What the viewer saw: "The" inside the cancelled unit, then the corrected rest, each word once.
    seen = [s.units()[first]["segments"][i]["word"] for i in sorted(s.shown[first])]
    for uid, st in statuses.items():
        if uid != first:
            assert st["status"] == "fingerspelled"
            seen += [seg["word"] for seg in st["segments"]]
    assert seen == ["The", "bill", "would", "fail", "today"]


def test_statuses_arrive_in_unit_order_when_the_backlog_skips_units(scheduler):
    cfg = load_config()
    cfg.live.speedup_after_s, cfg.live.max_speedup, cfg.live.text_after_s = 1.0, 1.5, 5.0
    s = Stream(scheduler, cfg)
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
