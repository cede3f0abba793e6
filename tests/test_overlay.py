"""`signstream render --captions`: a real caption file through the real engine (engines/default),
live session and renderer (the non-manual track included) into real .webm / .mov files with
alpha, decoded back with PyAV."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from server.avatar.errors import RenderError
from server.avatar.video import write_video
from server.cli import app

FPS = 25
# Cue 1 is short and far from cue 2, so the avatar is back at rest between them; "42" has no
# letters in any manual alphabet, so it must be reported as text, never signed.
VTT = """WEBVTT

NOTE a test file

00:00.400 --> 00:01.500
Hi.

00:06.000 --> 00:07.000
<i>ok</i> 42
"""
LAST_CUE_END = 7.0


def _render(tmp_path: Path, name: str, *extra: str):
    return CliRunner().invoke(app, ["render", "--captions", str(tmp_path / "talk.vtt"), "-o", str(tmp_path / name),
                                 "--size", "128x128", "--fps", str(FPS), "--language", "ase", "--engine", "engines/default",
                                 *extra])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("overlay")
    (tmp / "talk.vtt").write_text(VTT, encoding="utf-8")
    for name, report in (("overlay.webm", ()), ("overlay.mov", ("--report", str(tmp / "mov-report.json")))):
        result = _render(tmp, name, *report)
        assert result.exit_code == 0, result.output
    return tmp


def _decode_rgba(path: Path) -> tuple[np.ndarray, av.video.stream.VideoStream]:
    """Every frame as RGBA. FFmpeg's native VP9 decoder drops the alpha plane (WebM keeps it in a
    side channel), so VP9 is decoded with libvpx, which reads it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.codec_context.name == "vp9":
            assert stream.metadata.get("alpha_mode") == "1"
            decoder = av.CodecContext.create("libvpx-vp9", "r")
            frames = [f for packet in container.demux(stream) for f in decoder.decode(packet)]
        else:
            frames = list(container.decode(stream))
        assert all(f.format.name.startswith("yuva") for f in frames), frames[0].format.name
        return np.stack([f.to_ndarray(format="rgba") for f in frames]), stream


def _moved(alpha: np.ndarray, a: int, b: int) -> float:
    """Fraction of pixels whose coverage differs between frames a and b."""
    return float(np.mean((alpha[a] > 127) != (alpha[b] > 127)))


def test_webm_overlay_is_transparent_timed_and_moves_only_when_signing(rendered):
    report = json.loads((rendered / "overlay.json").read_text())
    rgba, _ = _decode_rgba(rendered / "overlay.webm")
    alpha = rgba[..., 3]
    # Duration: the report's, covering the last cue's end; one decoded frame per 1/fps.
    assert len(rgba) == report["frames"] == round(report["duration_s"] * FPS)
    assert report["duration_s"] >= LAST_CUE_END and rgba.shape[1:] == (128, 128, 4)
    # Transparent where no avatar is drawn, opaque on it, in every frame.
    assert np.all(alpha[:, :4, :4] == 0) and np.all(alpha[:, -4:, -4:] == 0)
    assert np.all((alpha == 255).mean(axis=(1, 2)) > 0.05)

    first, second = report["cues"][0]["units"][0], report["cues"][1]["units"][0]
    assert first["first_frame"] == report["cues"][0]["first_frame"] == 10  # 0.4 s: the cue's start, not later
    # During the cue the avatar moves away from rest; long after it and before cue 2, it is at rest,
    # where it breathes and sways as the live video's avatar does (the non-manual track on the rig,
    # server/avatar/face.py): it moves, but a little (without the track it stood still: < 0.002).
    signing = max(_moved(alpha, 0, i) for i in range(first["first_frame"], first["last_frame"] + 1))
    gap = range(first["last_frame"] + FPS, report["cues"][1]["first_frame"])
    at_rest = max(_moved(alpha, 0, i) for i in gap)
    assert len(gap) > FPS and 0.002 < at_rest < 0.03 < signing and signing > 2 * at_rest, (signing, at_rest)
    assert second["first_frame"] == report["cues"][1]["first_frame"] == 150
    assert _moved(alpha, 0, report["frames"] - 1) < 0.03  # it ends at rest
    umask = os.umask(0)
    os.umask(umask)  # written under a temporary name, the video still gets ordinary permissions
    assert stat.S_IMODE((rendered / "overlay.webm").stat().st_mode) == 0o666 & ~umask


def test_report_lists_every_cue_word_path_and_what_was_not_signed(rendered):
    report = json.loads((rendered / "overlay.json").read_text())
    assert [c["text"] for c in report["cues"]] == ["Hi.", "ok 42"]
    words = {s["word"]: (s, u, c) for c in report["cues"] for u in c["units"] for s in u["segments"]}
    assert set(words) == {"Hi", "ok", "42"}
    for word in ("Hi", "ok"):
        seg, unit, cue = words[word]
        assert seg["path"] in ("signllm", "lexicon") and seg["kind"] in ("sign", "fingerspelling")
        assert seg["shown"] == seg["kind"] and unit["status"] in ("signed", "fingerspelled")
        assert cue["first_frame"] <= unit["first_frame"] < seg["first_frame"] <= seg["last_frame"] <= unit["last_frame"]
    seg, unit, _ = words["42"]
    assert (seg["path"], seg["kind"], seg["shown"]) == ("text", "text", "text")
    assert seg["first_frame"] is None and "'4'" in seg["reason"]
    assert report["not_signed"] == [{"cue": 2, "word": "42", "shown": "text", "reason": seg["reason"]}]
    assert report["words"]["text"] == 1 and report["words"]["nothing"] == 0 and report["errors"] == []


def test_mov_is_prores_4444_with_alpha_and_the_same_performance(rendered):
    rgba, stream = _decode_rgba(rendered / "overlay.mov")
    assert stream.codec_context.name == "prores" and stream.codec_context.profile == "4444"
    alpha = rgba[..., 3]
    assert np.all(alpha[:, :4, :4] == 0) and np.all((alpha == 255).mean(axis=(1, 2)) > 0.05)
    webm, mov = (json.loads((rendered / n).read_text()) for n in ("overlay.json", "mov-report.json"))
    assert len(rgba) == mov["frames"] and mov["video"].endswith(".mov")
    # Deterministic: the simulated clock gives the same performance whatever the container.
    assert {**webm, "video": ""} == {**mov, "video": ""}


@pytest.mark.parametrize("vtt, name, code", [
    ("WEBVTT\n\n00:01.000 -> 00:02.000\nHi\n", "bad.webm", "bad_caption_file"),  # no timing line
    ("WEBVTT\n\n00:01 --> 00:02.000\nHi\n", "bad.webm", "bad_caption_file"),  # malformed timing line
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n", "out.mp4", "render_failed"),  # H.264 has no alpha
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n", "out.gif", "render_failed"),
    ("WEBVTT\n\n", "empty.webm", "bad_caption_file"),  # no cues
])
def test_bad_input_is_a_coded_error_and_writes_nothing(tmp_path, vtt, name, code):
    (tmp_path / "talk.vtt").write_text(vtt, encoding="utf-8")
    result = _render(tmp_path, name)
    assert result.exit_code == 2 and f"[{code}]" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.vtt"]


def test_unknown_language_is_refused(tmp_path):
    (tmp_path / "talk.vtt").write_text(VTT, encoding="utf-8")
    result = _render(tmp_path, "out.webm", "--language", "xyz")
    assert result.exit_code == 2 and "[unknown_language]" in result.output and "ase" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.vtt"]


def test_a_failed_encode_leaves_no_file(tmp_path):
    def frames():
        for _ in range(3):
            yield np.zeros((16, 16, 4), np.uint8)
        raise RenderError("renderer died")

    old = tmp_path / "old.webm"
    old.write_bytes(b"previous file")
    with pytest.raises(RenderError):
        write_video(frames(), old, 25.0, rgba=True)
    assert old.read_bytes() == b"previous file" and [p.name for p in tmp_path.iterdir()] == ["old.webm"]


def test_a_backlog_speeds_up_then_shows_text_as_live_does():
    """Cues faster than fingerspelling can follow: the live backlog policy, not unbounded drift."""
    from engines.loader import open_scheduler
    from engines.formats.captions import Cue
    from server.config import load_config
    from server.overlay import CuePlayer

    cfg = load_config()
    cues = [Cue(i * 0.5, i * 0.5 + 0.5, "signing stream") for i in range(16)]
    player = CuePlayer(cfg, cues, "ase", open_scheduler(cfg.engine, float(cfg.video.fps)))
    count = sum(1 for _ in player.frames())
    report = player.report()
    units = [u for c in report["cues"] for u in c["units"]]
    assert count == report["frames"] and len(units) == 16 and all(u["status"] for u in units)
    skipped = [u for u in units if u["status"] == "shown_as_text"]
    played = [u for u in units if u["status"] != "shown_as_text"]
    assert skipped and played and all(u["reason"].startswith("backlog") and u["first_frame"] is None for u in skipped)
    assert max(u["max_speed"] for u in played) == cfg.live.max_speedup
    assert len(report["not_signed"]) == 2 * len(skipped) and report["words"]["text"] == 2 * len(skipped)
    # Without the policy all 16 units would play one after the other at normal speed.
    one_unit = (played[0]["last_frame"] - played[0]["first_frame"] + 1) / report["fps"]
    assert report["duration_s"] < 0.6 * 16 * one_unit


def test_cues_out_of_file_order_play_at_their_times():
    from engines.loader import open_scheduler
    from engines.formats.captions import parse_captions
    from server.config import load_config
    from server.overlay import CuePlayer

    cfg = load_config()
    cues = parse_captions("1\n00:00:03,000 --> 00:00:04,000\nyes\n\n2\n00:00:00,400 --> 00:00:01,000\nno\n").cues
    player = CuePlayer(cfg, cues, "ase", open_scheduler(cfg.engine, float(cfg.video.fps)))
    for _ in player.frames():
        pass
    late, early = (c["units"][0] for c in player.report()["cues"])
    assert (early["text"], early["first_frame"]) == ("no", 10)
    assert (late["text"], late["first_frame"]) == ("yes", 3 * FPS)
