"""One end-of-word rule: the live backend stops a word on the frame where the model's own decode
(engines.model.generate, what evaluation measures) stops it: engines.counter.reached_end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engines.counter import reached_end
from engines.model import load_model
from engines.signllm_backend import SignLLMBackend
from engines.tokenizer import PAD_ID

DEFAULT = Path(__file__).resolve().parent.parent / "engines" / "default"
WORDS = ["hello", "world", "sign", "stream", "quiz", "jump", "vex", "bold", "crafty", "kiwi", "zebra", "fox"]


def test_reached_end_rounds_to_the_nearest_frame() -> None:
    assert reached_end(1.0, 0.9) and reached_end(0.97, 0.9)  # 0.97 + 0.035 ≥ 1: the nearest frame is this one
    assert not reached_end(0.9, 0.8) and not reached_end(0.94, 0.9)


@pytest.mark.skipif(not (DEFAULT / "engine.json").is_file(), reason="engines/default has no exported model")
def test_backend_stops_each_word_where_the_model_decode_stops() -> None:
    torch.set_num_threads(1)
    backend = SignLLMBackend.open(DEFAULT, "onnxruntime")
    language = "ase"
    for key, word in enumerate(WORDS):
        backend.begin(key, word, language)
    live, lengths = list(range(len(WORDS))), {}
    steps = 0
    while live and steps < backend.manifest.max_frames + 1:
        out = backend.step(live)
        steps += 1
        for key, o in out.items():
            if o.done:
                lengths[key] = steps
                backend.end(key)
        live = [k for k in live if k not in lengths]
    model = load_model(DEFAULT)
    ids = [backend.tokenizer.encode(backend.gloss(w, language)) for w in WORDS]
    tokens = torch.full((len(ids), max(map(len, ids))), PAD_ID, dtype=torch.long)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = torch.tensor(row)
    lang = torch.full((len(ids),), backend.manifest.language_index(language), dtype=torch.long)
    decoded = model.generate(tokens, lang, max_frames=backend.manifest.max_frames)
    want = [len(d) for d in decoded]
    assert [lengths[k] for k in range(len(WORDS))] == want
    # Not vacuous: some word ends by the rounding half of the rule, before its counter reaches 1.
    assert any(float(d[-1, -1]) < 1.0 for d in decoded)
