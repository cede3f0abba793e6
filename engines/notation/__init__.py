"""Lexical signs from notation (docs/notation.md).

symbols (the HamNoSys name table) → reader (HamNoSys / SiGML → description) → synthesizer
(description → pose frames: handshapes from the letter recordings, body sites and arm IK, hands,
orientation, effects for the movements); lexicon (lexicon files, checked entry by entry); cli
(`signstream lexicon check | pack`). The backend that signs words with it is
engines/notation_backend.py; the German caption rules are engines/german_glosses.py.
"""
