"""Caption text normalisation (engines/textnorm.py) on real subtitle conventions, and its use by
the segmenter (units end at the sentence ends it finds) and the scheduler (each token's kind).

The real files are tests/data/subtitles/ (README there: sources, licences, quirks)."""

from itertools import count
from pathlib import Path

import pytest

from engines.engine import Scheduler
from engines.lexicon_backend import LexiconBackend
from engines.textnorm import tokenize, words
from engines.formats.captions import read_captions
from server.captions import Commit, Segmenter
from server.config import SegmenterSection

SUBTITLES = Path(__file__).parent / "data" / "subtitles"
# Each real file and the sign language its spoken language goes to.
FILES = {
    "ocw-20-219-lecture-excerpt.en.srt": "ase",
    "pysrt-anchorman-excerpt.fr.srt": "fsl",
    "videojs-elephantsdream-captions.sv.vtt": "swl",
    "videojs-example-captions.vtt": "ase",
    "vttjs-example1-voices.vtt": "ase",
    "webvtt-py-netflix-excerpt.es.vtt": "ssp",
    "webvtt-py-youtube-dl.vtt": "ase",
}


@pytest.fixture(scope="module")
def scheduler() -> Scheduler:
    return Scheduler([LexiconBackend(fps=25.0)])


def _cue(name: str, number: str) -> str:
    return next(c.text for c in read_captions(SUBTITLES / name).cues if c.number == number)


def _kinds(text: str, language: str) -> list[tuple[str, str]]:
    return [(t.text, t.kind) for t in tokenize(text, language)]


def _sentences(text: str, language: str) -> list[str]:
    """The text of each sentence, as the stage's sentence ends cut it."""
    out, first = [], None
    for t in tokenize(text, language):
        first = t.start if first is None else first
        if t.ends_sentence:
            out.append(text[first:t.end])
            first = None
    return out


def _units(text: str, language: str) -> list[str]:
    seg = Segmenter(SegmenterSection(), count(1).__next__)
    actions = seg.caption("c", text, True, language, 0.0, lambda unit: 0)
    return [a.text for a in actions if isinstance(a, Commit)]


def test_english_contractions_are_one_word_without_the_apostrophe():
    text = _cue("ocw-20-219-lecture-excerpt.en.srt", "19")  # "but you just can't find it,"
    assert words(text, "ase") == ["but", "you", "just", "cant", "find", "it"]
    assert words("I'm sure it didn't start at 10 o'clock, 'cos we're late.", "ase") == [
        "Im", "sure", "it", "didnt", "start", "at", "10", "oclock", "cos", "were", "late"]


def test_french_elisions_are_two_words_and_hyphens_separate(scheduler):
    assert words("Epoque où seul l'homme présentait les nouvelles.", "fsl")[3:5] == ["l", "homme"]
    assert words(_cue("pysrt-anchorman-excerpt.fr.srt", "18"), "fsl")[:3] == ["J", "ai", "mangé"]
    assert words(_cue("pysrt-anchorman-excerpt.fr.srt", "59"), "fsl") == [
        "alors", "qu", "il", "ne", "fait", "que", "8", "dans", "le", "nord", "ouest"]
    assert words(_cue("pysrt-anchorman-excerpt.fr.srt", "39"), "fsl") == ["T", "entends", "Audrey", "Regarde", "moi"]
    assert words("aujourd'hui", "fsl") == ["aujourdhui"]  # one word, not an elision
    # Spelled, not shown as text: every part is letters of the French manual alphabet.
    segments = scheduler.plan("J'ai vu l'homme qu'il aime. Regarde-moi!", "fsl")
    assert [s.kind for s in segments] == ["fingerspelling"] * len(segments) and len(segments) == 10


def test_abbreviations_numbers_and_addresses_are_not_cut_at_their_dots():
    assert _sentences("The show starts at 3 p.m. in the U.S. and Dr. Smith said so. Prices rose 1.2 % and "
                      "3.5 % according to ocw.mit.edu. e.g. this one.", "ase") == [
        "The show starts at 3 p.m. in the U.S. and Dr. Smith said so",
        "Prices rose 1.2 % and 3.5 % according to ocw.mit.edu",
        "e.g. this one"]
    # A live caption being typed: "p.m" without its last dot commits nothing at its first dot.
    seg = Segmenter(SegmenterSection(), count(1).__next__)
    assert seg.caption("c", "It starts at 3 p.m", False, "ase", 0.0, lambda unit: 0) == []
    # A letter-dot abbreviation still ends a sentence when a capitalised word follows, and the
    # segmenter commits a unit there.
    assert _units("We meet at 3 p.m. Then we eat.", "ase") == ["We meet at 3 p.m.", "Then we eat."]
    assert _units("It rose 1.2 %. See ocw.mit.edu. Dr. Smith agrees.", "ase") == [
        "It rose 1.2 %.", "See ocw.mit.edu.", "Dr. Smith agrees."]
    # Real cues: the lecture's URL, the French film's "J.T." (an abbreviation of journal télévisé).
    assert _kinds(_cue("ocw-20-219-lecture-excerpt.en.srt", "7"), "ase") == [("at", "word"), ("ocw.mit.edu", "address")]
    assert _sentences(_cue("pysrt-anchorman-excerpt.fr.srt", "52"), "fsl") == ["Le J.T. de Channel 4 à 6h00"]
    assert words("Am 3. Oktober, z.B. um 10 Uhr, geht's los.", "gsg") == [
        "Am", "3", "Oktober", "zB", "um", "10", "Uhr", "gehts", "los"]
    assert _sentences("Am 3. Oktober kommt Prof. Müller usw. Dann geht's los.", "gsg") == [
        "Am 3. Oktober kommt Prof. Müller usw.", "Dann geht's los"]


def test_speaker_labels_and_dialogue_dashes_are_speaker_changes_shown_not_spelled(scheduler):
    dolphin = next(c.text for c in read_captions(SUBTITLES / "videojs-example-captions.vtt").cues
                   if c.text.startswith("Dolphin: Squawk"))
    assert _kinds(dolphin, "ase") == [("Dolphin:", "speaker"), ("Squawk", "word"), ("eeeEEE", "word")]
    lecture = _cue("ocw-20-219-lecture-excerpt.en.srt", "14")  # "JOSHUA: The science of search."
    segments = scheduler.plan(lecture, "ase")
    assert (segments[0].word, segments[0].kind, segments[0].reason) == (
        "JOSHUA:", "text", "a speaker label: who speaks, not what is said")
    # A dialogue dash starts the next unit instead of sticking to the end of the previous one.
    assert _units(_cue("pysrt-anchorman-excerpt.fr.srt", "31"), "fsl") == ["- Tu es à l'antenne.", "- Là, maintenant?"]
    assert _units(_cue("videojs-elephantsdream-captions.sv.vtt", "38"), "swl") == ["Varför då?", "- Blunda!"]
    assert _kinds("JOURNALISTE : Bonsoir.", "fsl") == [("JOURNALISTE :", "speaker"), ("Bonsoir", "word")]
    assert _kinds(">> Hello. >> REPORTER: Bye.", "ase") == [
        (">>", "speaker"), ("Hello", "word"), (">>", "speaker"), ("REPORTER:", "speaker"), ("Bye", "word")]
    # A hyphen inside a word and a dash that ends an interrupted sentence are not speaker changes.
    assert _kinds(_cue("videojs-elephantsdream-captions.sv.vtt", "33"), "swl") == [
        ("Men", "word"), ("är", "word"), ("det", "word"), ("inte", "word")]
    # A WebVTT voice tag is a speaker label, the first time a voice speaks.
    voices = read_captions(SUBTITLES / "vttjs-example1-voices.vtt").cues
    assert _kinds(voices[0].text, "ase")[:3] == [("Roger Bingham:", "speaker"), ("We", "word"), ("are", "word")]


def test_sound_descriptions_in_any_brackets_and_music_notes_are_shown_as_text(scheduler):
    segments = scheduler.plan("(crowd cheering) Hello [music] ♪ la la la ♪ there ♪ still singing", "ase")
    assert [(s.word, s.kind) for s in segments] == [
        ("(crowd cheering)", "text"), ("Hello", "fingerspelling"), ("[music]", "text"),
        ("♪ la la la ♪", "text"), ("there", "fingerspelling"), ("♪ still singing", "text")]
    assert all("description" in s.reason for s in segments if s.kind == "text")
    splash = _cue("webvtt-py-netflix-excerpt.es.vtt", "45")  # "[dos disparos]"
    assert _kinds(splash, "ssp") == [("[dos disparos]", "description")]
    assert _kinds(_cue("ocw-20-219-lecture-excerpt.en.srt", "10"), "ase")[-1] == ("[? Reids ?]", "description")


def test_symbols_are_reported_with_their_name_never_dropped(scheduler):
    segments = scheduler.plan(_cue("pysrt-anchorman-excerpt.fr.srt", "58"), "fsl")  # "II fait 27° dans …"
    degree = next(s for s in segments if s.word == "°")
    assert degree.kind == "text" and degree.reason == "a symbol (degree sign), shown as written"
    text = "It rose 3.5 % to 20 € 😀👍🏽 Q&A"
    symbols = [(t.text, t.reason) for t in tokenize(text, "ase") if t.kind == "symbol"]
    assert symbols == [("%", "a symbol (percent sign), shown as written"),
                       ("€", "a symbol (euro sign), shown as written"),
                       ("😀", "a symbol (grinning face), shown as written"),
                       ("👍🏽", "a symbol (thumbs up sign), shown as written"),
                       ("&", "a symbol (ampersand), shown as written")]


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_character_of_a_real_file_is_in_a_token_or_is_punctuation(name):
    """Nothing but whitespace and the listed punctuation falls between tokens: no word is lost."""
    from engines.textnorm import _SILENT

    for cue in read_captions(SUBTITLES / name).cues:
        tokens = tokenize(cue.text, FILES[name])
        covered = set()
        for t in tokens:
            covered.update(range(t.start, t.end))
            assert cue.text[t.start:t.end] == t.source
        left = {cue.text[i] for i in range(len(cue.text)) if i not in covered}
        assert left <= _SILENT | {" ", "\t", "\n"}, (cue.text, left)


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_token_of_a_real_file_ends_in_a_segment_with_one_reason(name, scheduler):
    """Segmenter → scheduler on each cue: the units' segments are the cue's tokens, in order, each
    signed, fingerspelled, or shown as text with one non-empty reason."""
    language = FILES[name]
    for cue in read_captions(SUBTITLES / name).cues:
        segments = [s for unit in _units(cue.text, language) for s in scheduler.plan(unit, language)]
        assert [s.word for s in segments] == [t.text for t in tokenize(cue.text, language)], cue.text
        for s in segments:
            assert s.kind != "text" or (s.reason and "; " not in s.reason), (cue.text, s)
