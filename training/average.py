"""Weight averaging: one checkpoint whose weights are the mean of several (a uniform "model soup").

Checkpoints of one run taken at a low learning rate lie in the same basin; their mean often
decodes better than any of them (issue 19: runs/ft-low best + last, dev DTW 3.86 and 3.90 → 3.81).
Only checkpoints of one architecture, languages and tokenizer can be averaged.
"""

from __future__ import annotations

import json
from pathlib import Path

from engines.errors import SignStreamError
from engines.model import CONFIG, load_model, save_model
from engines.tokenizer import Tokenizer
from training.export import TOKENIZER


class AverageError(SignStreamError):
    code = "bad_checkpoint"


def average_checkpoints(folders: list[str | Path], out: str | Path, half: bool = False) -> Path:
    """Write the mean of the checkpoints in `folders` to `out` (model, config, tokenizer)."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise AverageError("averaging needs at least two checkpoints")
    for f in folders:
        for name in (CONFIG, TOKENIZER):
            if not (f / name).exists():
                raise AverageError(f"{f}: no {name} (not a SignLLM checkpoint folder)")
    first = folders[0]
    config, vocab = (first / CONFIG).read_text(encoding="utf-8"), (first / TOKENIZER).read_bytes()
    for f in folders[1:]:
        if json.loads((f / CONFIG).read_text(encoding="utf-8")) != json.loads(config):
            raise AverageError(f"{f}: its model config differs from {first}'s; only one architecture can be averaged")
        if (f / TOKENIZER).read_bytes() != vocab:
            raise AverageError(f"{f}: its tokenizer differs from {first}'s")
    models = [load_model(f) for f in folders]
    states = [m.state_dict() for m in models]
    mean = {k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v for k, v in states[0].items()}
    models[0].load_state_dict(mean)
    out = Path(out)
    save_model(out, models[0], half=half)
    Tokenizer.load(first / TOKENIZER).save(out / TOKENIZER)
    return out
