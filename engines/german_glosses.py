"""German caption words → DSGS (Swiss German Sign Language) lexicon glosses: documented rules,
not a translation. Word order stays German; one caption word gives zero, one or more glosses.

Rules, in order (docs/notation.md):
1. Dropped (DSGS does not sign them as words): the articles (der, die, das, ein, eine, …) and the
   copula `sein` (ist, sind, war, …). The word still shows in the caption; no sign is made.
2. Numbers written in digits become their German number word (3 → drei) for 0–20, tens,
   hundert, tausend, Million, Milliarde; other numbers are left as written.
3. The word itself, folded (lower case, NFC; ß as ss, the Swiss spelling the lexicon uses).
4. Its lemma (simplemma's German dictionary): Häuser → Haus, regnet → regnen. Serving reads a
   table packed with the engine (`notation/<language>.forms`: every word form whose lemma is a
   gloss of the lexicon), so simplemma (4.8 s to load) is needed only to pack it.
5. A compound split into known glosses, longest first part first, each part also tried as a
   lemma, with the linking elements s/es/n/en/e/er between parts ("Regenzeit" → REGEN ZEIT,
   "Bundesratswahl" → BUNDESRAT + WAHL when both are known); at most three parts of ≥ 3 letters.
The caller decides which glosses are known (those whose sign renders).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping

ARTICLES = frozenset("der die das den dem des ein eine einen einem einer eines".split())
COPULA = frozenset("sein bin bist ist sind seid war warst waren wart gewesen sei seiest seien wäre wären".split())
NUMBER_WORDS = {
    0: "null", 1: "eins", 2: "zwei", 3: "drei", 4: "vier", 5: "fünf", 6: "sechs", 7: "sieben", 8: "acht",
    9: "neun", 10: "zehn", 11: "elf", 12: "zwölf", 13: "dreizehn", 14: "vierzehn", 15: "fünfzehn",
    16: "sechzehn", 17: "siebzehn", 18: "achtzehn", 19: "neunzehn", 20: "zwanzig", 30: "dreissig",
    40: "vierzig", 50: "fünfzig", 60: "sechzig", 70: "siebzig", 80: "achtzig", 90: "neunzig",
    100: "hundert", 1000: "tausend", 1_000_000: "million", 1_000_000_000: "milliarde",
}  # fmt: skip
LINKS = ("", "s", "es", "n", "en", "e", "er")
MIN_PART = 3
MAX_PARTS = 3


def fold(word: str) -> str:
    """Lower case, NFC, ß → ss (Swiss German spelling, as the lexicon's glosses)."""
    return unicodedata.normalize("NFC", word.lower()).replace("ß", "ss")


def dropped(word: str) -> str:
    """Why a word is not signed ("article", "copula"), or "" when it is."""
    w = fold(word)
    if w in ARTICLES:
        return "article"
    if w in COPULA:
        return "copula"
    return ""


Lemmas = Mapping[str, str]  # word form (as written, and lower case) → lemma


def lemma_table(keys: set[str]) -> dict[str, str]:
    """Every German word form simplemma knows whose lemma folds to one of `keys` (gloss keys)."""
    from simplemma.strategies.dictionaries import DefaultDictionaryFactory

    table = {}
    for form, lemma in DefaultDictionaryFactory().get_dictionary("de").items():
        lemma = lemma.decode() if isinstance(lemma, bytes) else lemma
        form = form.decode() if isinstance(form, bytes) else form
        if fold(lemma) in keys and fold(form) != fold(lemma):
            table[form] = fold(lemma)
    return table


def forms(word: str, lemmas: Lemmas) -> list[str]:
    """The folded word, then its lemma as written, capitalised (nouns) and in lower case."""
    out = [fold(word)]
    if word.isdigit() and int(word) in NUMBER_WORDS:
        out.insert(0, NUMBER_WORDS[int(word)])
    for w in (word, word.capitalize(), word.lower()):
        if w in lemmas:
            out.append(lemmas[w])
    return list(dict.fromkeys(out))


def glosses(word: str, known: Callable[[str], bool], lemmas: Lemmas) -> list[str] | None:
    """The gloss keys signing `word` (rule order above): [] = dropped, None = no sign."""
    if dropped(word):
        return []
    for form in forms(word, lemmas):
        if known(form):
            return [form]
    if word.isalpha():
        return split_compound(fold(word), known, lemmas)
    return None


def split_compound(word: str, known: Callable[[str], bool], lemmas: Lemmas,
                   parts_left: int = MAX_PARTS) -> list[str] | None:
    """Known glosses that make up `word` (a compound), longest first part first; None if none."""
    if parts_left <= 1:
        return None
    for cut in range(len(word) - MIN_PART, MIN_PART - 1, -1):
        head_key = next((f for f in forms(word[:cut], lemmas) if known(f)), None)
        if head_key is None:
            continue
        for link in LINKS:
            rest = word[cut:]
            if not rest.startswith(link) or len(rest) - len(link) < MIN_PART:
                continue
            rest = rest[len(link):]
            tail = next((f for f in forms(rest, lemmas) if known(f)), None)
            if tail is not None:
                return [head_key, tail]
            more = split_compound(rest, known, lemmas, parts_left - 1)
            if more:
                return [head_key, *more]
    return None
