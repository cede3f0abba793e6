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


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory, alphabets) -> Path:
    """An engine folder exported from a tiny, untrained SignLLM (ase + gsg) with packed letters.

    For the engine tests only: it checks the export and runtime machinery, not sign quality.
    """
    import torch

    from training.export import export_engine
    from engines.langgloss import format_gloss
    from engines.lexicon import pack_alphabets
    from engines.model import ModelConfig, SignLLM, save_model
    from engines.tokenizer import Tokenizer

    languages = ["ase", "gsg"]
    words = ["hello", "world", "sign", "stream", "haus", "quiz", "jump", "vex", "bold", "crafty"]
    glosses = [format_gloss(lang, [e.name for e in alphabets[lang].spell(w)]) for lang in languages for w in words]
    tokenizer = Tokenizer.train(glosses, languages)
    torch.manual_seed(0)
    model = SignLLM(ModelConfig(vocab_size=tokenizer.vocab_size, languages=languages, d_model=32, n_heads=2,
                                enc_layers=1, dec_layers=2, d_ff=48, future=2))
    with torch.no_grad():  # a visible pose scale and a counter that ends words within the test cap
        model.pose_std.fill_(0.5)
        model.head.bias[150] = 0.05
    checkpoint = tmp_path_factory.mktemp("checkpoint")
    save_model(checkpoint, model.eval())
    tokenizer.save(checkpoint / "tokenizer.model")
    letters = pack_alphabets({k: alphabets[k] for k in ("ase", "gsg", "fsl")}, checkpoint / "letters.npz")
    return export_engine(checkpoint, tmp_path_factory.mktemp("engines") / "tiny", max_frames=60, letters=letters)
