"""Caption files as they really come (tests/data/subtitles/, sources and quirks in its README):
a bad cue is skipped and reported, the rest plays; WebVTT/SRT quirks are read as players do."""

import asyncio
import re
import socket
from pathlib import Path

import pytest

from engines.formats.captions import CaptionFileError, Cue, SkippedCue, parse_captions, read_captions

SUBTITLES = Path(__file__).parent / "data" / "subtitles"


def _read(name: str) -> str:
    return (SUBTITLES / name).read_text(encoding="utf-8")


def test_a_malformed_cue_is_skipped_and_reported_and_open_ended_cues_end_at_the_next_start():
    f = read_captions(SUBTITLES / "videojs-example-captions.vtt")
    # `00:00.700 --> line:0`: a cue setting where the end time should be. Players skip that cue.
    assert f.skipped == [SkippedCue(3, "bad end time 'line:0' in '00:00.700 --> line:0'")]
    assert len(f.cues) == 12 and f.cues[0].text == "[ Splash!!! ]"
    # `00:05.100 -->` and `00:10.525 -->`: no end time, so each lasts until the next cue starts.
    assert f.cues[1] == Cue(5.1, 8.0, "[ Sploosh!!! ]")
    assert f.cues[3] == Cue(10.525, 13.5, "[ Splash, Sploosh again ]")
    assert f.cues[-1] == Cue(42.593, 45.611, "[ BIG SPLASH ]")


def test_srt_numbered_from_zero_with_a_bom_and_crlf_reads_as_the_plain_file():
    text = _read("pysrt-anchorman-excerpt.fr.srt")
    plain = parse_captions(text)
    assert [c.number for c in plain.cues[:3]] == ["0", "1", "2"] and len(plain.cues) == 61 and not plain.skipped
    assert plain.cues[3] == Cue(48.061, 51.588, "Il fut un temps, avant l'existence du câble,")
    windows = parse_captions("\ufeff" + text.replace("\n", "\r\n"))
    assert windows.cues == plain.cues and [c.number for c in windows.cues] == [c.number for c in plain.cues]


def test_comma_decimals_in_webvtt_and_dots_in_srt_are_both_read():
    text = _read("videojs-elephantsdream-captions.sv.vtt")
    commas = parse_captions(re.sub(r"(\d\d)\.(\d{3})", r"\1,\2", text))  # 00:00:15,042 --> 00:00:18,250
    assert "00:00:15,042 --> 00:00:18,250" in re.sub(r"(\d\d)\.(\d{3})", r"\1,\2", text)
    plain = parse_captions(text)
    assert [(c.start, c.end) for c in commas.cues] == [(c.start, c.end) for c in plain.cues]
    assert plain.cues[0] == Cue(15.042, 18.25, "Till vänster kan vi se... Ser vi...")


def test_youtube_dl_header_karaoke_tags_and_a_cue_without_a_blank_line_before_it():
    f = read_captions(SUBTITLES / "webvtt-py-youtube-dl.vtt")
    assert not f.skipped
    assert [c.text for c in f.cues] == ["yeah", "yeah what", "this will happen is I'm telling",
                                        "this will happen is I'm telling"]
    assert (f.cues[1].start, f.cues[1].end, f.cues[2].start) == (286.47, 304.08, 304.08)


def test_netflix_note_blocks_whitespace_lines_cue_settings_and_italics():
    f = read_captions(SUBTITLES / "webvtt-py-netflix-excerpt.es.vtt")
    assert not f.skipped and len(f.cues) == 21
    assert f.cues[0] == Cue(7.96, 9.48, "[Alba] En 1928,") and f.cues[0].number == "1"
    assert f.cues[8].text == "- Déjala. - Tú no te metas. ¡No te metas!"


def test_voice_tags_become_a_speaker_label_when_the_voice_changes():
    cues = read_captions(SUBTITLES / "vttjs-example1-voices.vtt").cues
    assert cues[0].text == "Roger Bingham: We are in New York City"
    assert cues[1].text == "We're actually at the Lucern Hotel, just down the street"  # same voice
    assert cues[9].text == "Neil deGrasse Tyson: Didn't we talk about enough in that conversation?"
    assert cues[10].text == "Roger Bingham: No! No no no no; 'cos 'cos obviously 'cos"
    assert cues[9].end == 32.5 and cues[10].start == 32.0  # overlapping cues are kept as the file has them


def test_a_file_with_no_playable_cue_is_refused_with_the_first_reason():
    with pytest.raises(CaptionFileError, match="no cue that can be played .*line 3: bad end time 'line:0'"):
        parse_captions("WEBVTT\n\n00:00.700 --> line:0\nCaptions describe all relevant audio.\n", "x.vtt")
    with pytest.raises(CaptionFileError) as err:
        parse_captions("")
    assert err.value.code == "bad_caption_file"


def test_the_overlay_report_numbers_cues_as_the_file_does_and_lists_skipped_cues():
    from engines.loader import open_scheduler
    from server.config import load_config
    from server.overlay import CuePlayer

    cfg = load_config()
    srt = parse_captions(_read("pysrt-anchorman-excerpt.fr.srt").split("\n\n2\n")[0])  # cues 0 and 1
    skipped = read_captions(SUBTITLES / "videojs-example-captions.vtt").skipped
    player = CuePlayer(cfg, srt.cues[:1], "fsl", open_scheduler(cfg.engine, float(cfg.video.fps)), skipped=skipped)
    for _ in player.frames():
        pass
    report = player.report()
    assert [c["cue"] for c in report["cues"]] == [0]
    assert report["skipped"] == [{"line": 3, "reason": "bad end time 'line:0' in '00:00.700 --> line:0'", "number": ""}]
    assert {n["cue"] for n in report["not_signed"]} <= {0}
    address = [s for u in report["cues"][0]["units"] for s in u["segments"] if s["word"] == "www.AllSubs.org"]
    assert address and address[0]["shown"] == "text" and "address" in address[0]["reason"]


def test_signstream_captions_prints_the_skipped_cues(capsys):
    from server.client_cli import play_cues

    f = read_captions(SUBTITLES / "videojs-example-captions.vtt")
    with socket.socket() as s:  # a port nothing listens on: the cues are not sent, the skips are printed first
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Exception):
        asyncio.run(play_cues(f"127.0.0.1:{port}", f.cues, None, None, skipped=f.skipped))
    assert "skipped cue at line 3: bad end time 'line:0' in '00:00.700 --> line:0'" in capsys.readouterr().err
