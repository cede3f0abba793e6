"""Shared fixtures: real data from the bundled lexicon, corpora built by our own code."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.lexicon import bundled_lexicon_dir, load_alphabets


@pytest.fixture(scope="session")
def lexicon_dir() -> Path:
    return bundled_lexicon_dir()


@pytest.fixture(scope="session")
def alphabets(lexicon_dir: Path):
    return load_alphabets(lexicon_dir)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A real corpus: 3 languages × 50 words, built by `training.corpus`."""
    from training.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, ["ase", "fsl", "gsg"], words_per_lang=50, seed=7, workers=1)
    return out
