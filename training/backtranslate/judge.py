"""A judge folder: judge.json (encoder/decoder config, the LM folder, languages, provenance) and
judge.safetensors (the trained parameters only, float16). Written by training, read by evaluation.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from training.backtranslate.decoder import DecoderConfig, SignTranslator
from training.backtranslate.encoder import EncoderConfig
from training.backtranslate.lm import load_lm

JUDGE_CONFIG = "judge.json"
JUDGE_WEIGHTS = "judge.safetensors"


def save_judge(folder: Path, model: SignTranslator, lm_path: str, spoken: dict[str, str], extra: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    trained = {n: p.detach().to(torch.float16).contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trained, folder / JUDGE_WEIGHTS)
    meta = {"lm": lm_path, "encoder": asdict(model.enc_cfg), "decoder": asdict(model.dec_cfg),
            "languages": spoken} | extra
    (folder / JUDGE_CONFIG).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_judge(folder: str | Path) -> SignTranslator:
    """A trained judge folder → SignTranslator in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / JUDGE_CONFIG).exists():
        raise FileNotFoundError(f"{folder}: no {JUDGE_CONFIG}; not a back-translation judge")
    meta = json.loads((folder / JUDGE_CONFIG).read_text(encoding="utf-8"))
    lm, tokenizer = load_lm(folder / meta["lm"])
    model = SignTranslator(lm, tokenizer, EncoderConfig(**meta["encoder"]), DecoderConfig(**meta["decoder"]))
    state = {k: v.float() for k, v in load_file(folder / JUDGE_WEIGHTS).items()}
    missing = set(model.trainable_names()) - set(state)
    unexpected = set(state) - set(model.trainable_names())
    if missing or unexpected:
        raise ValueError(f"{folder / JUDGE_WEIGHTS}: does not fit the judge config "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    model.load_state_dict(state, strict=False)
    return model.eval()
