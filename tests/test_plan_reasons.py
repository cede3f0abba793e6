"""One reason per word: a word no path can sign is shown as text with one clear reason, not each
path's refusal in turn ("signllm: … ; lexicon: …" with the same text), on the bundled engine."""

from engines.loader import open_scheduler
from server.config import load_config


def test_a_word_no_path_signs_has_one_reason():
    scheduler = open_scheduler(load_config().engine, 25.0)
    assert len(scheduler.backends) >= 2  # the model and the recordings both refuse it
    (seg,) = scheduler.plan("café", "ase")
    assert seg.kind == "text" and seg.path == "text"
    assert seg.reason.count("é") == 2 and ";" not in seg.reason, seg.reason  # "no letter for 'é' in 'café'", once
    assert not seg.reason.startswith(tuple(f"{b.name}:" for b in scheduler.backends))


def test_a_greek_word_with_a_miscut_letter_is_shown_as_text_and_says_why():
    """gss ο and φ have recordings that are not letters (10.8 s and 4.2 s clips): never fingerspelled
    from them, neither by the model nor by the recordings, and the reason says so."""
    scheduler = open_scheduler(load_config().engine, 25.0)
    (seg,) = scheduler.plan("το", "gss")
    assert seg.kind == "text" and "not a letter" in seg.reason, seg.reason
    (seg,) = scheduler.plan("και", "gss")
    assert seg.kind == "fingerspelling"
