"""The decoder: a frozen causal LM, adapted with LoRA (peft) and a zero-initialised gated
cross-attention to the sign features after each of its blocks (Flamingo-style, as in Sign2GPT).

The cross-attentions are attached with forward hooks on the LM's own blocks, so any Hugging Face
causal LM works (ours, XGLM, GPT-2, Llama). Each adds tanh(gate) · attention and tanh(gate_ff) ·
feed-forward, scaled to the residual stream's RMS, to the block's output; the gates start at 0, so at initialisation the output equals
the frozen LM's exactly (and LoRA's B matrices start at 0 too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from training.backtranslate.encoder import EncoderConfig, SignEncoder


@dataclass
class DecoderConfig:
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=list)  # empty: peft's default for the LM's type
    xattn_heads: int = 4
    max_new_tokens: int = 32
    # A linear CTC head over the LM's vocabulary, for train.ctc_weight. Right for our character LM
    # (204 symbols); with a large sub-word vocabulary (XGLM: 256k) turn it off along with ctc_weight.
    ctc_head: bool = True


class GatedCrossAttention(nn.Module):
    def __init__(self, d_lm: int, d_sign: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_lm)
        self.attn = nn.MultiheadAttention(d_lm, heads, kdim=d_sign, vdim=d_sign, batch_first=True)
        self.ff_norm = nn.LayerNorm(d_lm)
        self.ff = nn.Sequential(nn.Linear(d_lm, 2 * d_lm), nn.GELU(), nn.Linear(2 * d_lm, d_lm))
        self.gate = nn.Parameter(torch.zeros(1))
        self.gate_ff = nn.Parameter(torch.zeros(1))

    def forward(self, h: Tensor, memory: Tensor, memory_pad: Tensor) -> Tensor:
        # Contributions are scaled to the residual stream's RMS: a trained LM's stream is large (ours:
        # ~4 per dimension) and a unit-scale addition, bounded by tanh(gate) ≤ 1, would be drowned.
        scale = h.detach().pow(2).mean(-1, keepdim=True).sqrt()
        a = self.attn(self.norm(h), memory, memory, key_padding_mask=memory_pad, need_weights=False)[0]
        h = h + torch.tanh(self.gate) * scale * a
        return h + torch.tanh(self.gate_ff) * scale * self.ff(self.ff_norm(h))


def decoder_blocks(lm: nn.Module) -> nn.ModuleList:
    """The LM's list of transformer blocks: the ModuleList as long as its number of layers."""
    n = lm.config.num_hidden_layers
    for module in lm.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"{type(lm).__name__}: no list of {n} transformer blocks found")


class SignTranslator(nn.Module):
    """Sign encoder + frozen LM (LoRA) + gated cross-attention: poses → text."""

    def __init__(self, lm: nn.Module, tokenizer, enc_cfg: EncoderConfig, dec_cfg: DecoderConfig) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.enc_cfg, self.dec_cfg, self.tokenizer = enc_cfg, dec_cfg, tokenizer
        for p in lm.parameters():
            p.requires_grad_(False)
        lora = LoraConfig(r=dec_cfg.lora_rank, lora_alpha=dec_cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=dec_cfg.lora_targets or None)
        self.lm = get_peft_model(lm, lora)
        self.encoder = SignEncoder(enc_cfg)
        d_lm = lm.config.hidden_size
        self.xattn = nn.ModuleList(GatedCrossAttention(d_lm, enc_cfg.d_model, dec_cfg.xattn_heads)
                                   for _ in decoder_blocks(lm))
        # Auxiliary CTC over the LM's own characters (blank = pad): makes the encoder emit letters in
        # order, which the zero-gated cross-attention can then read (joint CTC-attention training).
        self.ctc_head = nn.Linear(enc_cfg.d_model, len(tokenizer)) if dec_cfg.ctc_head else None
        self._memory: tuple[Tensor, Tensor] | None = None
        for block, xattn in zip(decoder_blocks(lm), self.xattn):
            block.register_forward_hook(self._hook(xattn))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []

    def _hook(self, xattn: GatedCrossAttention):
        def hook(module: nn.Module, args: tuple, output):
            if self._memory is None:  # plain LM use: no sign features
                return output
            memory, pad = self._memory
            if isinstance(output, tuple):
                return (xattn(output[0], memory, pad),) + output[1:]
            return xattn(output, memory, pad)
        return hook

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    # --- text ---------------------------------------------------------------------------------

    def prompt(self, marker: str) -> list[int]:
        """bos + the language marker ('<ase>'): the decoder is told which language it reads."""
        return self.bos + self.tokenizer(marker, add_special_tokens=False)["input_ids"]

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    # --- forward ------------------------------------------------------------------------------

    def lm_logits(self, ids: Tensor, attention_mask: Tensor | None, memory: tuple[Tensor, Tensor] | None) -> Tensor:
        self._memory = memory
        try:
            return self.lm(input_ids=ids, attention_mask=attention_mask).logits
        finally:
            self._memory = None

    def ctc_loss(self, memory: tuple[Tensor, Tensor], texts: list[str]) -> Tensor:
        """CTC of the texts' characters (no bos/eos) against the sign features, per target token."""
        if self.ctc_head is None:
            raise ValueError("a CTC loss needs decoder.ctc_head = true")
        feats, pad = memory
        targets = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        log_probs = self.ctc_head(feats).log_softmax(-1).transpose(0, 1)
        return nn.functional.ctc_loss(log_probs, torch.tensor([i for t in targets for i in t]), (~pad).sum(1),
                                      torch.tensor([len(t) for t in targets]), blank=self.pad_id,
                                      reduction="mean", zero_infinity=True)

    def loss(self, frames: Tensor, confidence: Tensor, lengths: Tensor, markers: list[str], texts: list[str],
             ctc_weight: float = 0.0) -> Tensor:
        """Teacher-forced cross-entropy of the texts given the poses (prompt tokens not scored),
        plus `ctc_weight` × the auxiliary CTC loss."""
        memory = self.encoder(frames, confidence, lengths)
        logits, labels = self._teacher_forced(memory, markers, texts)
        ce = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return ce + ctc_weight * self.ctc_loss(memory, texts) if ctc_weight else ce

    def log_likelihood(self, frames: Tensor, confidence: Tensor, lengths: Tensor, markers: list[str],
                       texts: list[str]) -> Tensor:
        """(B,) mean log-probability per text token (eos included) of each text given its poses:
        how well the judge reads the poses as that text (the RL reward of training/train.py)."""
        logits, labels = self._teacher_forced(self.encoder(frames, confidence, lengths), markers, texts)
        logp = logits[:, :-1].log_softmax(-1)
        target = labels[:, 1:]
        scored = target != -100
        picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
        return (picked * scored).sum(1) / scored.sum(1).clamp(min=1)

    def _teacher_forced(self, memory: tuple[Tensor, Tensor], markers: list[str], texts: list[str]) -> tuple[Tensor, Tensor]:
        """LM logits over prompt + text + eos, and labels (-100 on the prompt and padding)."""
        seqs, starts = [], []
        for marker, text in zip(markers, texts):
            p = self.prompt(marker)
            seqs.append(p + self.text_ids(text))
            starts.append(len(p))
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), self.pad_id)
        labels = torch.full((len(seqs), width), -100)
        for i, (s, start) in enumerate(zip(seqs, starts)):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, start: len(s)] = torch.tensor(s[start:])
        mask = (labels != -100) | (torch.arange(width)[None] < torch.tensor(starts)[:, None])
        return self.lm_logits(ids, mask.long(), memory), labels

    @torch.no_grad()
    def generate(self, frames: Tensor, confidence: Tensor, lengths: Tensor, markers: list[str]) -> list[str]:
        """Greedy decoding with the KV cache; examples are grouped by prompt length (no padding)."""
        memory, pad = self.encoder(frames, confidence, lengths)
        prompts = [self.prompt(m) for m in markers]
        out: list[str] = [""] * len(markers)
        special = torch.tensor(sorted(set(self.tokenizer.all_special_ids) - {self.tokenizer.eos_token_id}))
        for width in sorted({len(p) for p in prompts}):
            rows = [i for i, p in enumerate(prompts) if len(p) == width]
            ids = torch.tensor([prompts[i] for i in rows])
            self._memory = (memory[rows], pad[rows])
            try:
                step = self.lm(input_ids=ids, use_cache=True)
                tokens = [[] for _ in rows]
                done = torch.zeros(len(rows), dtype=torch.bool)
                for _ in range(self.dec_cfg.max_new_tokens):
                    logits = step.logits[:, -1]
                    if len(special):
                        logits[:, special] = float("-inf")
                    nxt = logits.argmax(-1)
                    for j, t in enumerate(nxt.tolist()):
                        if not done[j] and t != self.tokenizer.eos_token_id:
                            tokens[j].append(t)
                    done |= nxt == self.tokenizer.eos_token_id
                    if done.all():
                        break
                    step = self.lm(input_ids=nxt[:, None], past_key_values=step.past_key_values, use_cache=True)
            finally:
                self._memory = None
            for j, i in enumerate(rows):
                out[i] = self.tokenizer.decode(tokens[j], skip_special_tokens=True).strip()
        return out
