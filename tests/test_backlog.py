"""The per-word backlog policy through a real Session (segmenter, the bundled engine's Scheduler behind
an EngineLoop, motion timeline) on a simulated clock: when captions come faster than the avatar can
sign, fingerspelling is given up before signs — the spelled words of the oldest units are shown as
text, the units keep their signs — and only then whole units. Every word ends in the accounting: the
`unit` message holds the plan, the `unit_status` the segments as they ended."""

from __future__ import annotations

from typing import Any

import pytest

from engines.engine import Segment
from engines.textnorm import tokenize
from server.config import Config, load_config
import session_stream
from session_stream import scheduler  # noqa: F401  (the fixture)

# DSGS lexicon words the bundled engine signs (HEUTE, REGEN, HAUS, FAMILIE), and names it spells.
SIGNS = ("Heute", "Regen", "Haus", "Familie")


def _behind_soon(cfg: Config) -> Config:
    """A backlog within a few seconds, so the policy acts in a short test."""
    cfg.live.speedup_after_s, cfg.live.max_speedup, cfg.live.text_after_s = 1.0, 1.5, 4.0
    return cfg


class Stream(session_stream.Stream):
    def statuses(self) -> dict[int, dict[str, Any]]:  # type: ignore[override]  # by unit, each once
        got: dict[int, dict[str, Any]] = {}
        for m in self.messages:
            if m["type"] == "unit_status":
                assert m["unit"] not in got, f"two statuses for unit {m['unit']}"
                got[m["unit"]] = m
        return got

    def check_accounting(self) -> None:
        """Every word of every caption is in exactly one unit, and ends in that unit's status as
        signed, fingerspelled or text; statuses come in unit order (no correction here); the status's
        segments are what the viewer got: a signing segment had frames on screen, a text one none."""
        units, statuses = self.units(), self.statuses()
        assert set(statuses) == set(units)
        assert [m["unit"] for m in self.messages if m["type"] == "unit_status"] == sorted(units)
        for line, text in self.captions.items():
            words = [t.text for t in tokenize(text, self.language)]
            held = [s["word"] for u in sorted(units) if units[u]["caption"] == line for s in statuses[u]["segments"]]
            assert held == words, line
        for uid, st in statuses.items():
            plan = units[uid]["segments"]
            assert [s["word"] for s in st["segments"]] == [s["word"] for s in plan]
            for i, (planned, ended) in enumerate(zip(plan, st["segments"])):
                if ended["kind"] == "text":
                    assert ended["frames"] == 0 and i not in self.on_screen.get(uid, set())
                    assert ended["reason"]
                else:
                    assert st["status"] in ("signed", "fingerspelled")
                    assert (ended["kind"], ended["path"]) == (planned["kind"], planned["path"])  # only ever to text
                    assert ended["frames"] > 0 and i in self.on_screen[uid]


def _switched(planned: dict[str, Any], ended: dict[str, Any]) -> bool:
    return planned["kind"] != "text" and ended["kind"] == "text"


def test_under_backlog_signs_are_signed_and_fingerspelled_words_become_text(scheduler):
    """DSGS captions 2.5 s apart, each two lexicon signs (about 2 s) and two names to spell (about
    7 s): far more than anyone signs, but not more signs than fit. Before, the policy showed whole waiting units as text, signs included; now every
    planned sign is signed, the spelled words of the oldest units go to text (reason: backlog), and
    a unit that keeps its signs ends `signed`."""
    s = Stream(scheduler, "sgg", load_config())  # the default policy
    names = ("Xaver Bernhard", "Kolumbus Brunner", "Oberholzer Xaver", "Bernhard Kolumbus")
    for i in range(8):
        s.caption(f"c{i}", f"{SIGNS[i % 4]} {SIGNS[(i + 1) % 4]}, {names[i % 4]}.")
        s.play(2.5)
    s.play()
    s.check_accounting()
    units, statuses = s.units(), s.statuses()
    planned_signs = [(u, i) for u, m in units.items() for i, seg in enumerate(m["segments"]) if seg["kind"] == "sign"]
    assert len(planned_signs) == 16  # the engine plans every lexicon word as a sign
    for u, i in planned_signs:  # ... and every one of them is signed, on screen
        assert statuses[u]["status"] == "signed" and statuses[u]["segments"][i]["kind"] == "sign", statuses[u]
    switched = [(u, i) for u, m in units.items() for i, (p, e) in enumerate(zip(m["segments"], statuses[u]["segments"]))
                if _switched(p, e)]
    assert switched, "the backlog never gave up fingerspelling"
    for u, i in switched:
        assert units[u]["segments"][i]["kind"] == "fingerspelling"  # only spelled words were given up
        assert statuses[u]["segments"][i]["reason"].startswith("backlog: ")
        assert " s of signing waiting" in statuses[u]["segments"][i]["reason"]
    # A unit whose spelled words all went to text but which signed its signs ends `signed`, and its
    # reason names the words shown as text.
    mixed = [u for u in units if all(e["kind"] != "fingerspelling" for e in statuses[u]["segments"])
             and any(_switched(p, e) for p, e in zip(units[u]["segments"], statuses[u]["segments"]))
             and any(e["kind"] == "sign" for e in statuses[u]["segments"])]
    assert mixed
    for u in mixed:
        assert statuses[u]["status"] == "signed"
        assert "backlog" in statuses[u]["reason"]
    # The oldest words went: the last caption's spelling was not given up.
    last = [u for u, m in units.items() if m["caption"] == "c7"]
    assert all(e["kind"] != "text" or p["kind"] == "text" for u in last
               for p, e in zip(units[u]["segments"], statuses[u]["segments"]))


def test_fingerspelling_only_gives_up_the_oldest_words_first(scheduler):
    """A language with fingerspelling only (ASL with the bundled engine): a waiting unit whose spelled
    words all go to text is reported `shown_as_text` (reason: backlog) at once, the oldest first,
    and the newest caption is still spelled."""
    s = Stream(scheduler, "ase", load_config())  # the default policy
    for i in range(10):
        s.caption(f"c{i}", "Good morning, all.")  # about 8 s to spell, a caption a second
        s.play(1.0)
    s.play()
    s.check_accounting()
    units, statuses = s.units(), s.statuses()
    order = sorted(units)
    given_up = [u for u in order if any(_switched(p, e) for p, e in zip(units[u]["segments"], statuses[u]["segments"]))]
    whole = [u for u in order if statuses[u]["status"] == "shown_as_text"]
    assert whole and set(whole) <= set(given_up)
    assert all(statuses[u]["reason"].startswith("backlog: ") for u in whole)
    assert statuses[order[-1]]["status"] == "fingerspelled" and order[-1] not in given_up


def test_units_dropped_whole_end_with_text_segments(scheduler):
    """Signs alone can fall behind too: then whole oldest units are shown as text, and their status's
    segments say text (with the backlog reason), not the signs the `unit` message planned."""
    cfg = _behind_soon(load_config())
    cfg.live.text_after_s = 1.0
    s = Stream(scheduler, "sgg", cfg)
    for i in range(10):
        s.caption(f"c{i}", "Heute Regen Haus Familie.")
        s.play(0.4)
    s.play()
    s.check_accounting()
    units, statuses = s.units(), s.statuses()
    dropped = [u for u in units if statuses[u]["status"] == "shown_as_text"]
    assert dropped and any(statuses[u]["status"] == "signed" for u in units)
    for u in dropped:
        assert statuses[u]["reason"].startswith("backlog: ")
        assert [e["kind"] for e in statuses[u]["segments"]] == ["text"] * 4
        assert [p["kind"] for p in units[u]["segments"]] == ["sign"] * 4  # the plan, as sent
        assert all(e["reason"].startswith("backlog: ") and e["gloss"] == "" for e in statuses[u]["segments"])


def test_the_scheduler_takes_a_plan_with_words_switched_to_text(scheduler):
    """What the session relies on: a unit submitted with a plan whose words were switched to text
    does not sign those words, and signs the others as planned."""
    plan = scheduler.plan("Heute Xaver Regen.", "sgg")
    assert [p.kind for p in plan] == ["sign", "fingerspelling", "sign"]
    plan[1] = Segment(plan[1].word, "text", "text", reason="backlog: test")
    segments = scheduler.submit("backlog-test", "Heute Xaver Regen.", "sgg", plan)
    assert [(x.kind, x.reason) for x in segments][1] == ("text", "backlog: test")
    frames = []
    while scheduler.live:
        got, _ = scheduler.tick()
        frames += [f for f in got if f.key == "backlog-test"]
    assert {f.segment for f in frames} == {0, 2}  # HEUTE and REGEN, not X-A-V-E-R
    assert [x.kind for x in segments] == ["sign", "text", "sign"] and segments[1].frames == 0
    with pytest.raises(ValueError):
        scheduler.submit("backlog-test-2", "Heute Regen.", "sgg", plan)  # a plan of other words
