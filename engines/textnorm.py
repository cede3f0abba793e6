"""Caption text normalisation: one caption text → tokens, each with its kind, and sentence ends.

This is the one place that decides what the words of a caption are. The segmenter
(server/captions.py) commits units at the sentence ends found here; the scheduler
(engines/engine.py Scheduler.plan) signs the `word` tokens and shows every other token as text
with the token's reason. Every character of a caption is either in a token or is punctuation
listed in `_SILENT`; nothing else is dropped. Rules are chosen by the *spoken* language of the
sign language the caption is for (`SPOKEN`: ase → en, fsl → fr, gsg/sgg/asq → de, …).

Rules, in the order they are tried at each position of the text:

1. **Sound descriptions** `[music]`, `(crowd cheering)`, `♪ la la ♪` are one `description`
   token each, brackets and notes included, shown as text, never signed. An unclosed one (a live
   caption still growing) runs to the end of the text.
2. **Speaker changes** are `speaker` tokens, shown, not spelled: `>>` (and `>>>`), a dialogue
   dash (`-`, `–`, `—`) at the start of a turn, and a speaker label at the start of a turn: one
   to three capitalised or upper-case words then `:`, French style ` :` too (`REPORTER:`,
   `Dolphin:`, `Roger Bingham:`, `JOURNALISTE :`;
   WebVTT voice tags `<v Roger>` become such a label in engines/formats/captions.py). A turn starts at
   the start of the text, after a line break, after a sentence end, or after another speaker token.
   A sentence always ends before a speaker token, so a dialogue dash starts the next unit.
3. **Web and e-mail addresses** (`https://…`, `www.…`, `ocw.mit.edu`, `a@b.org`) are one
   `address` token, shown as written: never cut at their dots, never spelled letter by letter.
4. **Abbreviations with dots** — letter-dot runs (`p.m.`, `U.S.`, `e.g.`, `z.B.`, `J.T.`) and
   the language's list (`Dr.`, `Mrs.`, `Mme.`, `Prof.`, `bzw.`, `etc.`; `No.` only before a
   number) — are one `word` token whose text drops the dots (`pm`, `US`, `Dr`). Their dot is not
   a sentence end; a letter-dot run or `etc.`-like word still ends the sentence when the next
   word starts with a capital (`… at 3 p.m. Then …`); `e.g.`, `i.e.`, `z.B.` and titles never do.
5. **Numbers** with inner separators (`1.2`, `1,000`, `3.5`, `10:30`) are one `word` token, as
   written: their dots are not sentence ends. German `3. Oktober` (an ordinal before a month) is
   not a sentence end either.
6. **Words**: letters and digits. An apostrophe inside a word is dropped and the word stays one
   (`I'm` → `Im`, `didn't` → `didnt`, `o'clock` → `oclock`, `geht's` → `gehts`): the way one
   fingerspells a contraction. In French, Italian and Catalan an elision is two words, since the
   elided article or pronoun is a word of its own (`l'homme` → `l`, `homme`; `j'ai` → `j`, `ai`;
   `qu'il` → `qu`, `il`; but `aujourd'hui` → `aujourdhui`). A hyphen separates words
   (`Regarde-moi` → `Regarde`, `moi`; `e-mailed` → `e`, `mailed`). Apostrophes at a word's edge
   are quotes (`'cos` → `cos`).
7. **Symbols** — anything else that is not whitespace or punctuation (`%`, `°`, `€`, `$`, `&`,
   `+`, emoji with their modifiers) — are one `symbol` token each, shown as written, with their
   Unicode name as the reason (`a symbol (degree sign), shown as written`).

Sentence ends: `.`, `!`, `?`, `…`/`...`, `。！？` after a token — but not an ellipsis followed by
a lower-case word (`je pense... que`), not the dot of an abbreviation or number (rules 4–5), not a
dot with a letter right after it (`p.m` while a live caption is still being typed).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Literal

TokenKind = Literal["word", "description", "speaker", "address", "symbol"]

# Sign language → the spoken language its captions are written in (the bundled lexicon's pairs).
SPOKEN: dict[str, str] = {
    "ase": "en", "asq": "de", "bzs": "pt", "cse": "cs", "csq": "hr", "eso": "et", "fsl": "fr",
    "gsg": "de", "gss": "el", "ise": "it", "jos": "ar", "lls": "lt", "mfs": "es", "psr": "pt",
    "sgg": "de", "ssp": "es", "svk": "sk", "swl": "sv", "tsm": "tr", "ukl": "uk",
}

DESCRIPTION = "a description in brackets or ♪ (a sound, music, a speaker), not speech"
SPEAKER_LABEL = "a speaker label: who speaks, not what is said"
SPEAKER_CHANGE = "a speaker change"
ADDRESS = "a web or e-mail address, shown as written"

# Elisions that are two words (rule 6), and the words that keep their apostrophe inside.
_ELIDING = frozenset({"fr", "it", "ca"})
_ELISION_KEPT = frozenset({"aujourd'hui", "prud'homme", "presqu'île", "presqu'ile", "entr'acte"})

# Abbreviations written with one final dot (folded, without the dot). TITLES never end a sentence;
# ENDING ones do when a capitalised word follows; BEFORE_NUMBER ones only count before a number.
_TITLES: dict[str, frozenset[str]] = {
    "en": frozenset("mr mrs ms dr prof st jr sr vs approx dept gen gov lt col sgt capt rev hon mt ave blvd rd".split()),
    "fr": frozenset("m mme mmes mlle mlles mm dr pr st ste av bd".split()),
    "de": frozenset("hr fr dr prof str bzw ca evtl ggf inkl vgl bspw nr abs".split()),
    "sv": frozenset("kl ca resp jfr".split()),
    "es": frozenset("sr sra srta dr dra ud uds av avda".split()),
    "it": frozenset("sig dott prof avv ing".split()),
    "pt": frozenset("sr sra dr dra prof av".split()),
}
_ENDING: dict[str, frozenset[str]] = {
    "en": frozenset({"etc"}), "fr": frozenset({"etc"}), "de": frozenset({"usw", "etc"}),
    "sv": frozenset({"osv", "etc"}), "es": frozenset({"etc"}), "it": frozenset({"ecc", "etc"}),
    "pt": frozenset({"etc"}),
}
_BEFORE_NUMBER: dict[str, frozenset[str]] = {
    "en": frozenset("no nos p pp vol ch fig art jan feb mar apr jun jul aug sep sept oct nov dec".split()),
    "fr": frozenset("n no p vol art".split()),
    "de": frozenset("s art".split()),
}
_NEVER_END_RUNS = frozenset({"eg", "ie", "zb", "dh", "ua", "tex", "bla", "cf", "og", "sk", "pex"})
_MONTHS_DE = frozenset("januar februar märz april mai juni juli august september oktober november dezember".split())

_WORD_CHAR = r"[^\W_]"
_DESCRIPTION = re.compile(r"\[[^\]]*\]?|\([^)]*\)?|[♪♫♬][^♪♫♬]*(?:[♪♫♬]+|$)")
_SPEAKER_MARK = re.compile(r">{2,}")
_DASH = re.compile(r"[-–—](?=\s|[^\W\d_])")
# One to three capitalised or upper-case words (initials allowed), then ':' and space or end.
# French typography puts a (narrow) space before the colon: "JOURNALISTE : Bonjour".
_LABEL = re.compile(r"(?:[A-ZÀ-ÖØ-ÞА-ЯΑ-Ω][\w'’.]*)(?:[ \t][A-ZÀ-ÖØ-ÞА-ЯΑ-Ω][\w'’.]*){0,2}[ \u00a0\u202f]?:(?=\s|$)")
_ADDRESS = re.compile(
    r"(?:https?://|www\.)[^\s<>\"]+"
    r"|[\w.+-]{1,64}@[\w-]+(?:\.[\w-]+)+"  # bounded: not rescanned from every word of a long text
    r"|(?<![\w.])[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|de|fr|se|uk|eu|ch|at|es|it)\b(?:/[^\s<>\"]*)?",
    re.IGNORECASE)
_RUN = re.compile(r"(?:[^\W\d_]{1,3}\.){2,}")  # letter-dot runs: p.m., U.S., z.B., bl.a.
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)+")
_WORD = re.compile(rf"{_WORD_CHAR}[\w\u0300-\u036f]*(?:['’ʼ]{_WORD_CHAR}[\w\u0300-\u036f]*)*")
_ABBREV = re.compile(rf"({_WORD_CHAR}+)\.")
_APOSTROPHE = re.compile(r"['’ʼ]")
# Punctuation that carries no word: dropped without a report (rule 7 reports everything else).
_SILENT = set(".,;:!?…'\"«»„“”‘’‚‹›()[]{}-‐‑‒–—―/\\¡¿·•‧、。！？，：；`´_*<>|~")
_SENTENCE_MARK = re.compile(r"[.!?…。！？]")
_ELLIPSIS_ONLY = re.compile(r"^\s*(?:…|\.{2,})\s*$")
_JOINERS = {"\u200d", "\ufe0f", "\ufe0e", "\u20e3"}


@dataclass(frozen=True)
class Token:
    """One token of a caption: `text` is what is signed or shown, `source` the caption's own
    characters (text[start:end]); `reason` says why a token other than a word is shown as text."""

    text: str
    kind: TokenKind
    start: int
    end: int
    source: str
    reason: str = ""
    ends_sentence: bool = False  # a sentence ends right after this token


def spoken_language(language: str) -> str:
    """The spoken language whose rules apply: a sign language code maps through SPOKEN; a
    spoken code (two letters) is itself; anything else gets the rules common to all."""
    return SPOKEN.get(language, language if len(language) == 2 else "")


def _symbol_reason(sym: str) -> str:
    name = unicodedata.name(sym[0], "").lower() or f"U+{ord(sym[0]):04X}"
    return f"a symbol ({name}), shown as written"


def _symbol_end(text: str, i: int) -> int:
    """End of a symbol starting at i: emoji keep their joiners, variation selectors, skin tones,
    and the second regional indicator of a flag."""
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch in _JOINERS or "\U0001f3fb" <= ch <= "\U0001f3ff":
            j += 1
            if ch == "\u200d" and j < len(text):
                j += 1
        elif "\U0001f1e6" <= text[i] <= "\U0001f1ff" and "\U0001f1e6" <= ch <= "\U0001f1ff" and j == i + 1:
            j += 1
        else:
            break
    return j


def _turn_start(text: str, i: int, prev: Token | None) -> bool:
    """Whether a new speaker's turn may start at i: start, line break, after a sentence end or
    another speaker token."""
    before = text[prev.end if prev else 0:i]
    if prev is None or prev.kind == "speaker" or "\n" in before:
        return True
    return prev.ends_sentence or bool(_SENTENCE_MARK.search(before))


def tokenize(text: str, language: str = "") -> list[Token]:
    """The tokens of a caption text, in order, with their kinds and sentence ends (module rules).

    `language` is the sign language (or spoken language) the caption is for."""
    lang = spoken_language(language)
    titles, ending = _TITLES.get(lang, frozenset()), _ENDING.get(lang, frozenset())
    before_number = _BEFORE_NUMBER.get(lang, frozenset())
    tokens: list[Token] = []
    i, n = 0, len(text)

    def add(word: str, kind: TokenKind, a: int, b: int, reason: str = "") -> None:
        tokens.append(Token(word, kind, a, b, text[a:b], reason))

    while i < n:
        ch = text[i]
        if ch.isspace() or (ch in _SILENT and ch not in "[(-–—>"):
            i += 1
            continue
        prev = tokens[-1] if tokens else None
        if prev is not None and not prev.ends_sentence:
            tokens[-1] = _with_end(prev, text, i, lang)
            prev = tokens[-1]
        if m := _DESCRIPTION.match(text, i):
            add(m.group(), "description", i, m.end(), DESCRIPTION)
            i = m.end()
            continue
        turn = _turn_start(text, i, prev)
        if m := _SPEAKER_MARK.match(text, i):
            add(">>", "speaker", i, m.end(), SPEAKER_CHANGE + " (>>)")
            i = m.end()
            continue
        if turn and (m := _DASH.match(text, i)):
            add(ch, "speaker", i, i + 1, SPEAKER_CHANGE + " (a dialogue dash)")
            i += 1
            continue
        if ch in _SILENT:
            i += 1
            continue
        if turn and (m := _LABEL.match(text, i)) and not text[m.end() - 2].isdigit():
            add(m.group(), "speaker", i, m.end(), SPEAKER_LABEL)
            i = m.end()
            continue
        if m := _ADDRESS.match(text, i):
            end = m.end()
            while end > i and text[end - 1] in ".,;:!?)]'\"”’":  # a sentence's own punctuation
                end -= 1
            add(text[i:end], "address", i, end, ADDRESS)
            i = end
            continue
        if (m := _RUN.match(text, i)) and not (m.end() < n and (text[m.end()].isalnum())):
            add(m.group().replace(".", ""), "word", i, m.end())
            i = m.end()
            continue
        if m := _NUMBER.match(text, i):
            if not (m.end() < n and text[m.end()].isalpha()):
                add(m.group(), "word", i, m.end())
                i = m.end()
                continue
        if m := _ABBREV.match(text, i):
            folded = m.group(1).lower()
            after = text[m.end():].lstrip()
            if folded in titles or folded in ending or (folded in before_number and after[:1].isdigit()):
                add(m.group(1), "word", i, m.end())
                i = m.end()
                continue
        if m := _WORD.match(text, i):
            _words(m.group(), i, lang, add)
            i = m.end()
            continue
        if unicodedata.category(ch)[0] == "M" or unicodedata.category(ch) == "Cf":  # a stray mark or joiner
            i += 1
            continue
        end = _symbol_end(text, i)
        add(text[i:end], "symbol", i, end, _symbol_reason(text[i:end]))
        i = end
    if tokens and not tokens[-1].ends_sentence:
        tokens[-1] = _with_end(tokens[-1], text, n, lang)
    return _mark_turns(tokens, lang, titles | _NEVER_END_RUNS, ending)


def _words(word: str, at: int, lang: str, add: Callable[..., None]) -> None:
    """Rule 6 for one run of letters joined by apostrophes."""
    if lang in _ELIDING and _APOSTROPHE.search(word) and word.lower().replace("’", "'") not in _ELISION_KEPT:
        pos = at
        for part in _APOSTROPHE.split(word):
            add(part, "word", pos, pos + len(part))
            pos += len(part) + 1
        return
    add(_APOSTROPHE.sub("", word), "word", at, at + len(word))


def _with_end(tok: Token, text: str, nxt: int, lang: str) -> Token:
    """Whether a sentence ends in the gap after `tok` (up to `nxt`, the next token's start),
    by the punctuation in the gap alone; abbreviations are settled in _mark_turns."""
    gap = text[tok.end:nxt]
    if not _SENTENCE_MARK.search(gap):
        return tok
    if _ELLIPSIS_ONLY.match(gap) and nxt < len(text) and text[nxt].islower():
        return tok  # "je pense... que": the sentence goes on
    if gap == "." and nxt < len(text) and text[nxt].isalpha():
        return tok  # "p.m" still being typed, "U.S" without its last dot: no space, no sentence end
    if lang == "de" and tok.kind == "word" and tok.text.isdigit() and gap.strip() == ".":
        following = re.match(r"\w+", text[nxt:])
        if following and following.group().lower() in _MONTHS_DE:
            return tok  # "am 3. Oktober": an ordinal
    return _replace_end(tok, True)


def _replace_end(tok: Token, ends: bool) -> Token:
    return Token(tok.text, tok.kind, tok.start, tok.end, tok.source, tok.reason, ends)


def _mark_turns(tokens: list[Token], lang: str, never: frozenset[str], ending: frozenset[str]) -> list[Token]:
    """Sentence ends that depend on the next token: before a speaker token, and after an
    abbreviation whose own dot ends the sentence when a capitalised word follows."""
    out = list(tokens)
    for k, tok in enumerate(out):
        nxt = out[k + 1] if k + 1 < len(out) else None
        if nxt is not None and nxt.kind == "speaker" and tok.kind != "speaker":
            out[k] = _replace_end(tok, True)
            continue
        if tok.kind == "word" and tok.source.endswith(".") and not tok.ends_sentence:
            folded = tok.text.lower()
            run = tok.source.count(".") >= 2
            if (run and folded not in never) or folded in ending:
                if nxt is None or nxt.source[:1].isupper():
                    out[k] = _replace_end(tok, True)
    return out


def words(text: str, language: str = "") -> list[str]:
    """The texts of the `word` tokens: what may be signed or fingerspelled."""
    return [t.text for t in tokenize(text, language) if t.kind == "word"]
