"""The bundled corpus: real words of each spoken language, fingerspelled from real letter recordings.

For each sign language of the lexicon: take the spoken language's frequent words (wordfreq;
Estonian from simplemma's dictionary, which wordfreq lacks), keep those whose letters the manual
alphabet covers (the rest are counted), and build each word's sequence from the letter
recordings (engines.lexicon.fingerspell). Splits are by word and deterministic for a seed; a
word gets the same split in every language that shares recordings (fsl uses the ase files), so
no test word's poses are seen in training.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from engines.formats.posefile import LEXICON_DEPTH
from engines.formats.prompt2sign import Record, write_split
from engines.langgloss import format_gloss
from engines.lexicon import Alphabet, CannotSpell, Entry, bundled_lexicon_dir, fingerspell, load_alphabets, repaired_recording
from engines.recording_repair import Repairs
from engines.typed_config import DEFAULT_CONFIG, load_toml

SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
MIN_LETTERS, MAX_LETTERS = 2, 14
# wordfreq codes where the lexicon's code differs.
WORDFREQ_LANG = {"hr": "sh"}


@dataclass
class CorpusConfig:
    """The `[corpus]` table of config.toml: what `signstream data build` builds unless told otherwise."""

    out: str = "data/corpus"  # relative to the repository root unless absolute
    languages: list[str] = field(default_factory=list)
    words_per_lang: int = 1000
    seed: int = 0
    fps: float = 25.0


def load_corpus_config(path: str | Path | None = None) -> CorpusConfig:
    """The `[corpus]` table of a config file (the repository's config.toml by default), checked by
    the one typed loader; the server's tables of the file are left to the server."""
    return load_toml(CorpusConfig, path if path is not None else DEFAULT_CONFIG, table="corpus")


def recording_group(alphabet: Alphabet) -> str:
    """Languages whose letters come from the same recordings share a group (fsl → ase)."""
    dirs = sorted({e.path.parent.name for e in alphabet.letters.values()})
    return "+".join(dirs)


def split_of(word: str, group: str, seed: int) -> str:
    """Deterministic split of a word: a hash, so it is stable across languages and runs."""
    digest = hashlib.sha256(f"{seed}\0{group}\0{word}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, frac in zip(SPLITS, SPLIT_FRACTIONS):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


def candidate_words(spoken: str, limit: int, seed: int) -> tuple[list[str], str]:
    """Up to `limit` distinct lower-case alphabetic words of a spoken language, most frequent first."""
    import wordfreq

    code = WORDFREQ_LANG.get(spoken, spoken)
    try:
        words = wordfreq.top_n_list(code, limit)
        source = f"wordfreq top_n_list({code!r})"
    except LookupError:
        words = _simplemma_words(spoken, limit, seed)
        source = f"simplemma dictionary lemmas ({spoken!r}, seeded sample: no frequencies)"
    seen: set[str] = set()
    out = []
    for w in words:
        w = w.strip().lower()
        if w.isalpha() and w not in seen:
            seen.add(w)
            out.append(w)
    return out, source


def _simplemma_words(spoken: str, limit: int, seed: int) -> list[str]:
    import random

    from simplemma.strategies.dictionaries.dictionary_factory import DefaultDictionaryFactory

    lemmas = sorted({v for v in DefaultDictionaryFactory().get_dictionary(spoken).values()
                     if v.isalpha() and MIN_LETTERS <= len(v) <= MAX_LETTERS and v.islower()})
    return random.Random(seed).sample(lemmas, min(limit, len(lemmas)))


@dataclass
class LanguageResult:
    language: str
    spoken: str
    counts: dict[str, int]
    frames: int
    skipped: int
    skipped_examples: list[str]
    missing_letters: dict[str, int]
    word_source: str
    repaired_points: int  # non-finite points the readers marked missing (PoseSequence.repaired of the words)
    recording_repairs: dict[str, int]  # over the alphabet's distinct letter recordings, by rule (engines.recording_repair)
    letters_left_out: dict[str, str]  # letters whose recording is not a letter (Alphabet.left_out): why


def spelled_record(alphabet: Alphabet, word: str, entries: list[Entry], fps: float) -> Record:
    """A corpus record of `word` fingerspelled from its letter `entries` (Alphabet.spell)."""
    return Record(f"{alphabet.signed_language}/{word}", word,
                  format_gloss(alphabet.signed_language, [e.name for e in entries]), fingerspell(entries, fps))


def each_language(work: Callable, jobs: list[tuple], workers: int | None = None) -> Iterator:
    """work(job) for each job, in order: in a process pool of `workers` (default: one a core, at most
    one a job), or in this process when that is one."""
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        yield from map(work, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(work, jobs)


def build_language(alphabet: Alphabet, out: Path, words_per_lang: int, seed: int, fps: float,
                   scale: float = 1.0) -> LanguageResult:
    """Build and write one language's train/dev/test files."""
    candidates, source = candidate_words(alphabet.spoken_language, words_per_lang * 8, seed)
    group = recording_group(alphabet)
    records: dict[str, list[Record]] = {s: [] for s in SPLITS}
    skipped, missing, examples = 0, Counter(), []
    kept = frames = repaired = 0
    for word in candidates:
        if kept >= words_per_lang:
            break
        try:
            entries = alphabet.spell(word)
        except CannotSpell as exc:
            skipped += 1
            missing[exc.missing] += 1
            if len(examples) < 20:
                examples.append(word)
            continue
        if not MIN_LETTERS <= len(entries) <= MAX_LETTERS:
            continue  # one-letter words and very long ones are not useful training units
        record = spelled_record(alphabet, word, entries, fps)
        records[split_of(word, group, seed)].append(record)
        kept += 1
        frames += len(record.sequence)
        repaired += record.sequence.repaired
    repairs = Repairs()
    for path in sorted({e.path for e in alphabet.letters.values() if e.recording is None}):
        repairs = repairs + repaired_recording(path)[1]
    lang_dir = out / alphabet.signed_language
    for split in SPLITS:
        write_split(lang_dir, split, records[split], scale)
    return LanguageResult(alphabet.signed_language, alphabet.spoken_language, {s: len(records[s]) for s in SPLITS},
                          frames, skipped, examples, dict(missing.most_common(10)), source, repaired,
                          asdict(repairs) | {"recordings": len({e.path for e in alphabet.letters.values()})},
                          dict(alphabet.left_out))


def _build_one(args: tuple) -> LanguageResult:
    lexicon_dir, lang, out, words, seed, fps = args
    return build_language(load_alphabets(lexicon_dir)[lang], Path(out), words, seed, fps)


def build_corpus(out: str | Path, languages: list[str] | None = None, words_per_lang: int = 1000, seed: int = 0,
                 fps: float = 25.0, lexicon_dir: str | Path | None = None, workers: int | None = None,
                 on_done: Callable[[LanguageResult], None] | None = None) -> dict:
    """Build the corpus into `out` and write its manifest; returns the manifest."""
    out = Path(out)
    lexicon_dir = Path(lexicon_dir) if lexicon_dir is not None else bundled_lexicon_dir()
    alphabets = load_alphabets(lexicon_dir)
    languages = languages or sorted(alphabets)
    unknown = [lang for lang in languages if lang not in alphabets]
    if unknown:
        raise ValueError(f"unknown sign language(s) {', '.join(unknown)}; the lexicon has {', '.join(sorted(alphabets))}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(lexicon_dir, lang, out, words_per_lang, seed, fps) for lang in languages]
    results: dict[str, LanguageResult] = {}
    for res in each_language(_build_one, jobs, workers):
        results[res.language] = res
        if on_done:
            on_done(res)
    manifest = {
        "format": "prompt2sign",
        "layout": "<lang>/<split>.{text,gloss,skels,files}",
        "skeleton": "signllm-50",
        "space": "canonical (origin neck, unit shoulder width, x viewer's right, y up, z towards viewer)",
        "skels_scale": 1.0,
        "mediapipe_depth": asdict(LEXICON_DEPTH),  # z → pixels: (z − offset) × scale; docs/data.md, pose contract
        "fps": fps,
        "seed": seed,
        "words_per_lang": words_per_lang,
        "splits": dict(zip(SPLITS, SPLIT_FRACTIONS)),
        "split_rule": "sha256(seed, recording group, word); languages sharing recordings share splits",
        "gloss_format": format_gloss("lang", list("letters")),  # <lang> FS:L-E-T-T-E-R-S
        "languages": {lang: vars(results[lang]) for lang in languages},
        "totals": {s: sum(r.counts[s] for r in results.values()) for s in SPLITS},
        "build_seconds": round(time.perf_counter() - started, 1),
        "provenance": _provenance(lexicon_dir),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest


def _respell_one(args: tuple) -> tuple[str, dict[str, int]]:
    source, letters, out, lang, splits, fps = args
    alphabet = load_alphabets(letters)[lang]
    counts = {}
    for split in splits:
        words = (source / lang / f"{split}.text").read_text(encoding="utf-8").splitlines()
        glosses = source / lang / f"{split}.gloss"
        expected = glosses.read_text(encoding="utf-8").splitlines() if glosses.exists() else None
        if expected is not None and len(expected) != len(words):
            raise ValueError(f"{glosses}: {len(expected)} lines for the {len(words)} words of {split}.text")
        records = [spelled_record(alphabet, word, alphabet.spell(word), fps) for word in words]
        for record, gloss in zip(records, expected or []):
            if record.gloss != gloss:
                raise ValueError(f"{source / lang / split}: {record.text!r} spells {record.gloss!r} with {letters}, "
                                 f"the corpus has {gloss!r} (another alphabet)")
        write_split(out / lang, split, records)
        counts[split] = len(records)
    return lang, counts


def respell_corpus(source: str | Path, letters: str | Path, out: str | Path, splits: tuple[str, ...] = SPLITS,
                   workers: int | None = None) -> dict:
    """Rebuild a corpus's sequences from its word lists (manifest.json and <lang>/<split>.text, about
    1 MB) and a packed letters file (an engine's letters.npz, 2.7 MB): for a training machine that has
    neither the letter recordings nor the word lists' sources (a GPU box). The same words in the same
    splits; points within float16 rounding (5e-4 shoulder widths) of a build from the recordings."""
    source, out = Path(source), Path(out)
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    missing = sorted(set(manifest["languages"]) - set(load_alphabets(letters)))
    if missing:
        raise ValueError(f"{letters} has no alphabet for {', '.join(missing)} (the corpus has {', '.join(manifest['languages'])})")
    jobs = [(source, Path(letters), out, lang, splits, manifest["fps"]) for lang in manifest["languages"]]
    out.mkdir(parents=True, exist_ok=True)
    counts = dict(each_language(_respell_one, jobs, workers))
    manifest["respelled"] = {"from": str(source), "letters": str(letters), "splits": list(splits)}
    manifest["totals"] = {s: sum(c[s] for c in counts.values()) for s in splits}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest


def _provenance(lexicon_dir: Path) -> dict:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "poses": {
            "source": f"spoken-to-signed {version('spoken-to-signed')} fingerspelling lexicon ({lexicon_dir})",
            "content": "MediaPipe Holistic recordings of manual alphabets, trimmed, normalized and anonymized by the package",
            "licence": "MIT (spoken-to-signed, ZurichNLP)",
        },
        "words": {
            "source": f"wordfreq {version('wordfreq')}; Estonian from simplemma {version('simplemma')}",
            "licence": "wordfreq code Apache-2.0, word list data CC BY-SA 4.0; simplemma MIT",
        },
        "python": sys.version.split()[0],
    }
