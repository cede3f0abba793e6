"""The one place that turns the engine config into a Scheduler.

Backends are tried in order for each word: the SignLLM engine folder first (when one is
installed and its runtime opens), then the lexicon / fingerspelling backend, which always works.
Both produce frames at the output rate: the model's are re-timed when it was trained at another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.engine import Backend, Scheduler
from engines.lexicon_backend import LexiconBackend
from engines.manifest import LETTERS_FILE, MANIFEST


def open_scheduler(cfg_engine: Any, fps: float) -> Scheduler:
    """The scheduler for `cfg_engine` (server.config.EngineSection) at `fps` frames per second."""
    folder = Path(cfg_engine.path)
    if not folder.is_absolute():
        folder = Path(__file__).resolve().parent.parent / folder  # config paths are repository-relative
    backends: list[Backend] = []
    if (folder / MANIFEST).is_file():  # a model is installed; a broken one is a clear error, not skipped
        from engines.signllm_backend import SignLLMBackend

        model = SignLLMBackend.open(folder, cfg_engine.backend)
        if abs(model.fps - fps) > 1e-6:  # the model's own rate, played on the output clock
            from engines.retime import Retimed

            backends.append(Retimed(model, model.fps, fps))
        else:
            backends.append(model)
    letters = folder / LETTERS_FILE  # the engine's packed letters: no spoken-to-signed package needed
    backends.append(LexiconBackend(fps, letters if letters.is_file() else None))
    return Scheduler(backends)
