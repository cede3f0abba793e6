"""Weight averaging (`signstream average`): the mean of real saved checkpoints, and coded refusals."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from engines.model import ModelConfig, SignLLM, load_model, save_model
from engines.tokenizer import Tokenizer
from server.cli import app

GLOSSES = ["<ase> FS:A-B", "<ase> FS:C-A-B"]


def checkpoint(folder: Path, seed: int, tok: Tokenizer, d_model: int = 16) -> Path:
    torch.manual_seed(seed)
    model = SignLLM(ModelConfig(vocab_size=tok.vocab_size, languages=["ase"], d_model=d_model, n_heads=2,
                                enc_layers=1, dec_layers=2, d_ff=16))
    save_model(folder, model)
    tok.save(folder / "tokenizer.model")
    return folder


def test_average_is_the_mean_of_the_weights_and_decodes(tmp_path) -> None:
    tok = Tokenizer.train(GLOSSES, ["ase"])
    a, b, c = (checkpoint(tmp_path / n, s, tok) for n, s in (("a", 0), ("b", 1), ("c", 2)))
    result = CliRunner().invoke(app, ["average", str(a), str(b), str(c), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    avg = load_model(tmp_path / "avg")
    parts = [load_model(f).state_dict() for f in (a, b, c)]
    for name, value in avg.state_dict().items():
        assert torch.allclose(value, sum(p[name] for p in parts) / 3, atol=1e-6), name
    assert not torch.allclose(avg.state_dict()["head.weight"], parts[0]["head.weight"])
    assert (tmp_path / "avg" / "tokenizer.model").read_bytes() == (a / "tokenizer.model").read_bytes()
    tokens = torch.tensor([Tokenizer.load(tmp_path / "avg" / "tokenizer.model").encode(GLOSSES[0])])
    (frames,) = avg.generate(tokens, torch.tensor([0]), max_frames=5)
    assert frames.shape[1] == 151 and torch.isfinite(frames).all()


def test_average_refuses_other_architectures_and_lone_checkpoints(tmp_path) -> None:
    tok = Tokenizer.train(GLOSSES, ["ase"])
    a = checkpoint(tmp_path / "a", 0, tok)
    wide = checkpoint(tmp_path / "wide", 1, tok, d_model=32)
    runner = CliRunner()
    result = runner.invoke(app, ["average", str(a), str(wide), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 2 and "error [bad_checkpoint]" in result.output and "config differs" in result.output
    result = runner.invoke(app, ["average", str(a), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 2 and "at least two" in result.output
    result = runner.invoke(app, ["average", str(a), str(tmp_path), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 2 and "not a SignLLM checkpoint" in result.output
    assert not (tmp_path / "avg").exists()
