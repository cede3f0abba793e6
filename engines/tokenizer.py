"""The gloss tokenizer: a SentencePiece model trained on the corpus glosses (no torch: the server uses it).

Fingerspelling glosses (`<ase> FS:H-O-U-S-E`) want one token per letter, so the default model is
character-level; language markers (`<ase>`) and the `FS:` prefix are whole symbols. Id 0 is
padding, id 1 unknown; there is no BOS/EOS (the decoder's counter ends a sequence).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from engines.langgloss import FS_PREFIX, language_marker

PAD_ID, UNK_ID = 0, 1


class Tokenizer:
    def __init__(self, model_proto: bytes) -> None:
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, glosses: Iterable[str], languages: list[str], model_type: str = "char",
              vocab_size: int = 0) -> Tokenizer:
        """Train on glosses. vocab_size 0 means: every character seen (char model) or 1000 (unigram)."""
        lines = list(glosses)
        symbols = [language_marker(lang) for lang in languages] + [FS_PREFIX]
        if vocab_size <= 0:
            chars = {c for line in lines for c in line.replace(" ", "")}
            vocab_size = len(chars) + len(symbols) + 3 if model_type == "char" else 1000
        out = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=out, model_type=model_type, vocab_size=vocab_size,
            hard_vocab_limit=False, user_defined_symbols=symbols, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1,
            eos_id=-1, character_coverage=1.0, add_dummy_prefix=False, minloglevel=2)
        return cls(out.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls(Path(path).read_bytes())

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, gloss: str) -> list[int]:
        return self.sp.encode(gloss)

    def pieces(self, gloss: str) -> list[str]:
        return self.sp.encode(gloss, out_type=str)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)
