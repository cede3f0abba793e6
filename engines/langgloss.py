"""Prompt2LangGloss: a text or question-style prompt → a gloss with a language attribute marker.

SignLLM's second mode turns a prompt into a gloss that carries the target language's marker, and
the gloss into poses; the gloss is also what the server shows viewers. For fingerspelling, the
gloss of a word is fully determined by the language's manual alphabet: this module extracts the
word(s) a prompt asks for and spells them with the alphabet (longest letter match first, as the
corpus builder does). It is a deterministic rule, not a learned text→gloss model: a learned one
needs a sentence-level corpus with glosses (e.g. Prompt2Sign's), which we do not bundle.

This is also the one place that knows the gloss line's format, `<lang> body` (a fingerspelled body
is `FS:` and the letters joined by `-`): the backends, the corpus builder and the back-translation
judge build and parse it with the functions here.
"""

from __future__ import annotations

import re

from engines.lexicon import Alphabet
from engines.textnorm import words

FS_PREFIX = "FS:"  # starts a fingerspelled body; one symbol of the gloss tokenizer

# "How do you sign 'house'?", "Spell “Haus” in DGS", "fingerspell: casa" → the quoted or named word(s).
_QUOTED = re.compile(r"[\"'“”‘’«»„](.+?)[\"'“”‘’«»]")
_ASKED = re.compile(r"\b(?:sign|spell|fingerspell|signs?\s+for|word)\s*:?\s+(.+?)\s*(?:\bin\b.*)?[?.!]*$",
                    re.IGNORECASE)


def language_marker(language: str) -> str:
    """The language attribute marker a gloss line starts with, e.g. `<ase>`."""
    return f"<{language}>"


def gloss_line(language: str, body: str) -> str:
    """The marker, a space, the body: `<gsg> HAUS`; the judge LM's text lines (`<ase> house`) alike."""
    return f"{language_marker(language)} {body}"


def format_gloss(language: str, letters: list[str]) -> str:
    """The fingerspelling gloss of one word, e.g. `<ase> FS:H-O-U-S-E` (upper case where it keeps length: ß stays ß)."""
    shown = [x.upper() if len(x.upper()) == len(x) else x for x in letters]
    return gloss_line(language, FS_PREFIX + "-".join(shown))


def split_gloss(line: str) -> tuple[str, str]:
    """(marker, body) of a gloss line; ValueError when it does not start with a language marker."""
    marker, _, body = line.partition(" ")
    if not (marker.startswith("<") and marker.endswith(">") and len(marker) > 2):
        raise ValueError(f"gloss {line!r} does not start with a language marker such as '<ase>'")
    return marker, body


def marker_language(marker: str) -> str:
    """The language a marker names: `<ase>` → `ase`."""
    return marker.strip("<>")


def is_fingerspelled(gloss: str) -> bool:
    return FS_PREFIX in gloss


def prompt_text(prompt: str) -> str:
    """The text a prompt asks to sign: a quoted part, else what follows sign/spell, else all of it."""
    prompt = prompt.strip()
    if m := _QUOTED.search(prompt):
        return m.group(1).strip()
    if m := _ASKED.search(prompt):
        return m.group(1).strip()
    return prompt


def prompt_to_glosses(prompt: str, alphabet: Alphabet) -> list[str]:
    """One gloss per word of the prompt's text (a fingerspelled unit is a word).

    Raises engines.lexicon.CannotSpell for a character the alphabet lacks.
    """
    return [format_gloss(alphabet.signed_language, [e.name for e in alphabet.spell(w)])
            for w in words(prompt_text(prompt), alphabet.signed_language)]
