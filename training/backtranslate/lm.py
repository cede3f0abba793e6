"""The small multilingual causal LM of the bundled judge, pretrained here (no model hub).

Sign2GPT freezes XGLM; any Hugging Face causal LM on disk works with decoder.py. For the bundled
set-up we train a character-level Llama-architecture LM (a few hundred thousand parameters) on
`<lang> word` lines: the corpus training words plus wordfreq word lists of each sign language's
spoken language. Dev and test words are left out of the LM's text on purpose: a judge whose LM
already knows the test words would autocorrect misspelled fingerspelling and hide the errors of
the engine it judges.

Characters, not sub-words, because fingerspelling is read letter by letter and CER is the key
metric. The tokenizer is a `tokenizers` BPE with no merges (one token per character), wrapped
for transformers and saved with the LM by `save_pretrained`.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engines.formats.prompt2sign import SPLIT_FILES
from engines.langgloss import gloss_line, language_marker, split_gloss

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
SPACE = "▁"


@dataclass
class LMConfig:
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    d_ff: int = 384
    max_positions: int = 64
    wordlist_size: int = 3000  # wordfreq words a spoken language adds to the corpus words
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


def corpus_spoken(corpus: Path) -> dict[str, str]:
    """Sign language → spoken language, from the corpus manifest."""
    manifest = corpus / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: missing (build a corpus with `signstream data build`)")
    return {lang: row["spoken"] for lang, row in json.loads(manifest.read_text(encoding="utf-8"))["languages"].items()}


def split_texts(corpus: Path, lang: str, split: str) -> list[str]:
    path = corpus / lang / f"{split}.{SPLIT_FILES[0]}"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def lm_lines(corpus: Path, wordlist_size: int) -> list[str]:
    """`<lang> text` lines: training texts, plus word-list words that are not dev/test texts."""
    from training.corpus import candidate_words

    lines: list[str] = []
    for lang, spoken in corpus_spoken(corpus).items():
        held_out = set(split_texts(corpus, lang, "dev")) | set(split_texts(corpus, lang, "test"))
        train = split_texts(corpus, lang, "train")
        words = candidate_words(spoken, wordlist_size, seed=0)[0] if wordlist_size else []
        texts = list(dict.fromkeys(train + [w for w in words if w not in held_out]))
        lines += [gloss_line(lang, t) for t in texts]
    return lines


def build_tokenizer(lines: list[str], markers: list[str]):
    """A character tokenizer over the characters of `lines`, with each language marker one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted({c for line in lines for c in split_gloss(line)[1] if c != " "} - {SPACE})
    vocab = {t: i for i, t in enumerate(SPECIALS + markers + [SPACE] + chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never")
    tok.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="never")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", additional_special_tokens=markers)


def encode_lines(tokenizer, lines: list[str], max_len: int) -> list[list[int]]:
    """bos + tokens + eos for each line, cut to max_len."""
    ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
    return [([tokenizer.bos_token_id] + x + [tokenizer.eos_token_id])[:max_len] for x in ids]


def pretrain_lm(corpus: str | Path, out: str | Path, cfg: LMConfig, log=print) -> dict:
    """Build the tokenizer, train the LM on the corpus + word-list lines, save both to `out`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    corpus, out = Path(corpus), Path(out)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    lines = lm_lines(corpus, cfg.wordlist_size)
    markers = [language_marker(lang) for lang in corpus_spoken(corpus)]
    tokenizer = build_tokenizer(lines, markers)
    data = encode_lines(tokenizer, lines, cfg.max_positions)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.d_ff, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads, max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    start, cpu0 = time.perf_counter(), time.process_time()
    model.train()
    for step in range(1, cfg.steps + 1):
        batch = rng.sample(data, min(cfg.batch_size, len(data)))
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = torch.tensor(x)
        mask = ids != tokenizer.pad_token_id
        labels = ids.masked_fill(~mask, -100)
        lr = cfg.lr * min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == cfg.steps:
            log(json.dumps({"stage": "lm", "step": step, "loss": round(loss.item(), 4)}))
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary = {"lines": len(lines), "vocab": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters()),
               "final_loss": round(loss.item(), 4), "cpu_seconds": round(time.process_time() - cpu0, 1),
               "wall_seconds": round(time.perf_counter() - start, 1)}
    (out / "pretraining.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def load_lm(folder: str | Path):
    """Any causal LM saved with save_pretrained (ours, or e.g. XGLM) → (model, tokenizer), eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json; not a saved Hugging Face causal LM")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{folder}: the tokenizer has no end-of-sequence token")
    return model.eval(), tokenizer
