"""The one place that turns the engine config into a Scheduler.

Backends are tried in order for each word: the notation backend first for every sign language
with a notation lexicon (the engine folder's `notation/<language>.json`, and the files named in
`[engine] notation`), then the SignLLM engine folder (when one is installed and its runtime
opens), then the lexicon / fingerspelling backend, which always works.
Both produce frames at the output rate: the model's are re-timed when it was trained at another.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engines.engine import Backend, Scheduler
from engines.lexicon_backend import LexiconBackend
from engines.manifest import LETTERS_FILE, MANIFEST

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent


def notation_lexicons(folder: Path, extra: dict[str, str]) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """(language → NotationLexicon, language → lemma table): a deployer's files (`[engine]
    notation`, language → file) in front of the engine folder's own `notation/<language>.json`.
    Bad entries are logged with their code and skipped; the good ones load."""
    from engines.notation.lexicon import FORMS_SUFFIX, LEXICON_DIR, NotationLexicon, cached_lexicon, load_forms

    out: dict[str, NotationLexicon] = {}
    lemmas: dict[str, dict[str, str]] = {}
    files = [(lang, REPO / p if not Path(p).is_absolute() else Path(p), True) for lang, p in extra.items()]
    files += [(f.stem, f, False) for f in sorted((folder / LEXICON_DIR).glob("*.json"))]
    for lang, path, theirs in files:
        lex = cached_lexicon(path, lang)
        for err in lex.errors:  # a deployer's file: say so; the engine's own: `signstream lexicon check` lists them
            log.log(logging.WARNING if theirs else logging.INFO, "notation lexicon entry skipped: %s", err)
        have = out.setdefault(lang, NotationLexicon(lang))
        have.entries = have.entries + lex.entries
        have.errors = have.errors + lex.errors
        lemmas.setdefault(lang, {}).update(load_forms(path.with_suffix(FORMS_SUFFIX)))
    return out, lemmas


def open_scheduler(cfg_engine: Any, fps: float) -> Scheduler:
    """The scheduler for `cfg_engine` (server.config.EngineSection) at `fps` frames per second."""
    folder = Path(cfg_engine.path)
    if not folder.is_absolute():
        folder = Path(__file__).resolve().parent.parent / folder  # config paths are repository-relative
    backends: list[Backend] = []
    letters = folder / LETTERS_FILE  # the engine's packed letters: no spoken-to-signed package needed
    lexicons, lemmas = notation_lexicons(folder, dict(getattr(cfg_engine, "notation", {}) or {}))
    if lexicons:
        from engines.notation_backend import NotationBackend

        backends.append(NotationBackend(fps, letters if letters.is_file() else None, lexicons, lemmas))
    if (folder / MANIFEST).is_file():  # a model is installed; a broken one is a clear error, not skipped
        from engines.signllm_backend import SignLLMBackend

        model = SignLLMBackend.open(folder, cfg_engine.backend)
        if abs(model.fps - fps) > 1e-6:  # the model's own rate, played on the output clock
            from engines.retime import Retimed

            backends.append(Retimed(model, model.fps, fps))
        else:
            backends.append(model)
    backends.append(LexiconBackend(fps, letters if letters.is_file() else None))
    return Scheduler(backends)
