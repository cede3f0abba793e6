"""Pseudo-gloss pretraining (Sign2GPT §3): pseudo-glosses from the spoken text, prototypes from the
frozen LM, and the localisation loss (a softmax over classes times a softmax over time).

Deviations, because the paper's tools are not available here:
- No part-of-speech tagger (spaCy): content words are approximated by dropping closed-class
  words, taken as the words wordfreq rates at Zipf frequency ≥ `FUNCTION_ZIPF` (a language's top
  ~100 words: articles, prepositions, conjunctions, auxiliaries). Lemmas come from simplemma.
- No fastText: a pseudo-gloss's prototype is the frozen LM's mean last hidden state over the
  gloss's tokens (after the bos token). Our LM reads characters, so its input embeddings alone
  would make anagrams identical; its hidden states do not.
- Fingerspelled words (gloss `FS:...`) give the word and each of its letters, so the encoder
  learns to localise letters, which is what reading fingerspelling needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engines.langgloss import is_fingerspelled

FUNCTION_ZIPF = 6.0


@lru_cache(maxsize=200_000)
def is_function_word(word: str, spoken: str) -> bool:
    import wordfreq

    from training.corpus import WORDFREQ_LANG

    try:
        return wordfreq.zipf_frequency(word, WORDFREQ_LANG.get(spoken, spoken)) >= FUNCTION_ZIPF
    except LookupError:  # a language wordfreq lacks (Estonian): keep every word
        return False


def lemma(word: str, spoken: str) -> str:
    import simplemma

    try:
        return simplemma.lemmatize(word, lang=spoken).lower()
    except ValueError:  # a language simplemma lacks
        return word.lower()


def pseudo_glosses(text: str, gloss: str, spoken: str) -> list[str]:
    """Pseudo-glosses of one example, in spoken order, without repeats.

    Words: lemmas of the content words. A fingerspelled example (`FS:` in the gloss) also gives
    its letters, as upper-case classes ('H', 'O', ...), even when the word itself is a
    function word: its letters are still signed.
    """
    out: list[str] = []
    fingerspelled = is_fingerspelled(gloss)
    for word in text.split():
        word = word.strip(".,;:!?¿¡\"'()").lower()
        if not word:
            continue
        if not is_function_word(word, spoken):
            out.append(lemma(word, spoken))
        if fingerspelled:
            out += [c.upper() for c in word if c.isalpha()]
    return list(dict.fromkeys(out))


@dataclass
class GlossVocab:
    items: list[str]

    def __post_init__(self) -> None:
        self.index = {g: i for i, g in enumerate(self.items)}

    @classmethod
    def build(cls, gloss_lists: list[list[str]], min_count: int) -> GlossVocab:
        """Letters always; words seen at least `min_count` times."""
        counts: dict[str, int] = {}
        for glosses in gloss_lists:
            for g in glosses:
                counts[g] = counts.get(g, 0) + 1
        return cls(sorted(g for g, n in counts.items() if n >= min_count or (len(g) == 1 and g.isupper())))

    def targets(self, gloss_lists: list[list[str]]) -> Tensor:
        """(B, C) multi-hot."""
        y = torch.zeros(len(gloss_lists), len(self.items))
        for i, glosses in enumerate(gloss_lists):
            for g in glosses:
                if g in self.index:
                    y[i, self.index[g]] = 1.0
        return y


@torch.no_grad()
def lm_prototypes(lm: nn.Module, tokenizer, items: list[str], batch: int = 256) -> Tensor:
    """(C, d_lm): the frozen LM's mean last hidden state over each item's tokens (lower-cased)."""
    rows = []
    for i in range(0, len(items), batch):
        chunk = [g.lower() for g in items[i: i + batch]]
        ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        width = 1 + max(map(len, ids))
        x = torch.full((len(ids), width), tokenizer.eos_token_id)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for j, seq in enumerate(ids):
            x[j, 0] = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            x[j, 1: 1 + len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[j, : 1 + len(seq)] = 1
        h = lm(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        keep = mask.clone()
        keep[:, 0] = 0
        rows.append((h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1))
    return torch.cat(rows)


class PseudoGlossHead(nn.Module):
    """Scores sign features against fixed prototypes; trained only in the pretraining stage."""

    def __init__(self, d_sign: int, prototypes: Tensor, temperature: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.Linear(d_sign, prototypes.shape[1])
        # Centred first: LM hidden states share a large common direction (ours: mean cosine 0.49
        # between letter prototypes, −0.03 once centred), which would leave classes hard to tell apart.
        self.register_buffer("prototypes", F.normalize(prototypes - prototypes.mean(0), dim=-1))
        self.temperature = temperature

    def presence(self, features: Tensor, pad: Tensor) -> Tensor:
        """(B, T, d), (B, T) padding → (B, C) probability that each pseudo-gloss occurs.

        Sign2GPT: s = cos(proj(f_t), p_c) / τ; softmax over classes (what is at t) times softmax
        over time (where class c is), summed over time.
        """
        s = F.normalize(self.proj(features), dim=-1) @ self.prototypes.T / self.temperature
        over_time = s.masked_fill(pad[..., None], float("-inf")).softmax(dim=1)
        return (s.softmax(dim=-1) * over_time).sum(dim=1).clamp(1e-6, 1 - 1e-6)

    def loss(self, features: Tensor, pad: Tensor, targets: Tensor) -> Tensor:
        # Summed over classes: averaged over thousands of absent classes the few present ones vanish.
        return F.binary_cross_entropy(self.presence(features, pad), targets, reduction="sum") / len(targets)
