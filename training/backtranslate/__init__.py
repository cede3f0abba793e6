"""Back-translation (pose → text), after Sign2GPT: a judge that reads pose sequences back into text.

encoder.py (pose embedding + local-attention sign encoder with temporal downsampling),
pseudogloss.py (pseudo-glosses from text, LM prototypes, the class×time softmax pretraining loss),
lm.py (the small multilingual causal LM we pretrain ourselves), decoder.py (frozen LM + LoRA +
zero-gated cross-attention), train.py (the two stages, the judge folder), evaluate.py (BLEU,
ROUGE-L, CER; `score_poses` for engine evaluation), cli.py (`signstream backtranslate ...`).
"""
