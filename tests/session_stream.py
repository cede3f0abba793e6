"""A real Session (segmenter, the bundled engine's Scheduler behind an EngineLoop, motion timeline)
driven frame by frame on a simulated clock, as server/overlay.py drives one: the harness of the
corrections and backlog tests. Every server message is checked against its schema."""

from __future__ import annotations

from typing import Any

import pytest

from engines.loader import open_scheduler
from server.config import Config, load_config
from server.engine_loop import EngineLoop
from server.metrics import Metrics
from server.protocol import SERVER_SCHEMAS, Caption, Hello, Message, PoseFrame, ServerMessage, schema_errors
from server.session import Session


@pytest.fixture(scope="module")
def scheduler():
    cfg = load_config()
    return open_scheduler(cfg.engine, float(cfg.video.fps))


class Stream:
    def __init__(self, scheduler, language: str = "ase", cfg: Config | None = None) -> None:
        self.cfg = cfg or load_config()
        self.fps = float(self.cfg.video.fps)
        self.language = language
        self.messages: list[dict[str, Any]] = []
        self.on_screen: dict[int, set[int]] = {}  # unit → segments that had a frame on screen
        self.captions: dict[str, str] = {}  # line → its latest text
        self.engine = EngineLoop(scheduler, Metrics())
        self.session = Session(1, self.cfg, self.engine, Metrics(), self, authed=True)  # the stream is its outlet
        self.session.feed(Hello(language=language, idle_frames=False), 0.0)
        self.index = 0

    def end(self, code: int) -> None:
        pass

    def put(self, msg: ServerMessage) -> None:
        if isinstance(msg, PoseFrame):
            if msg.unit and msg.segment >= 0:
                self.on_screen.setdefault(msg.unit, set()).add(msg.segment)
        elif isinstance(msg, Message):
            fields = {"type": msg.type, **msg.fields}
            assert schema_errors(SERVER_SCHEMAS[msg.type], fields) == [], fields
            self.messages.append(fields)

    def caption(self, line: str, text: str, final: bool = True) -> None:
        self.captions[line] = text
        self.session.feed(Caption(line, text, final=final), self.index / self.fps)

    def play(self, seconds: float | None = None) -> None:
        """Advance the clock `seconds`, or until every unit has its status."""
        stop = None if seconds is None else self.index + round(seconds * self.fps)
        while (self.index < stop) if stop is not None else self.session.units:
            self.engine.pump()
            self.session.tick(self.index / self.fps)
            self.index += 1
            assert self.index < 30000, "signing never ended"

    def units(self) -> dict[int, dict[str, Any]]:
        return {m["unit"]: m for m in self.messages if m["type"] == "unit"}

    def statuses(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "unit_status"]
