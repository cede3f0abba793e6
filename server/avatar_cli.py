"""`signstream avatar check` and `signstream render`.

Only typer is imported at module level: numpy, pygltflib, pyrender and OpenGL load inside the
command bodies, so `signstream --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from engines.errors import fail
from server.config import load_config_or_fail

avatar_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Check rigged avatars.")

_CONFIG = typer.Option(None, "--config", help="config file (default: the repository's config.toml)")


@avatar_app.command("check")
def check(file: str = typer.Argument(..., help="a glTF 2.0 / VRM humanoid (.glb, .gltf, .vrm)"),
          as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
          config: str = _CONFIG) -> None:
    """Load an avatar, map its bones and report whether it can sign (exit 2 if not)."""
    from server.avatar.errors import AvatarError
    from server.avatar.gltf import load_avatar

    cfg = load_config_or_fail(config)
    try:
        avatar = load_avatar(file, cfg.avatar.bone_map)
    except AvatarError as exc:
        fail(exc)
    report = avatar.report()
    from server.avatar.face import FaceRig
    face = FaceRig.of_avatar(avatar)
    report["non_manual"] = face.channels()  # which face/head channels it can show
    report["non_manual_by"] = face.shown_by()  # and how: "bones", "expressions" or ""
    report["vrm_expressions"] = list(avatar.expressions)
    report["morph_targets"] = list(avatar.mesh.morphs)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{report['file']}: ready to sign")
    typer.echo(f"  mesh: {report['vertices']} vertices, {report['triangles']} triangles, {report['joints']} joints")
    typer.echo(f"  size: {report['height']:.3g} tall, shoulders {report['shoulder_width']:.3g} apart (file units)")
    bones = report["humanoid_bones"]
    typer.echo(f"  humanoid bones: {len(bones)} found (arms, hands and all 30 finger bones present)")
    for name, node in bones.items():
        typer.echo(f"    {name:24s} ← {node}")
    if report["missing_optional"]:
        typer.echo(f"  optional bones missing (they stay still): {', '.join(report['missing_optional'])}")
    for note in report["notes"]:
        typer.echo(f"  note: {note}")
    by = report["non_manual_by"]
    for how, label in (("bones", "by bones"), ("expressions", "by expressions (morph targets)")):
        if shown := [c for c, h in by.items() if h == how]:
            typer.echo(f"  non-manual channels shown {label}: {', '.join(shown)}")
    if lacking := [c for c, h in by.items() if not h]:
        typer.echo(f"  non-manual channels it cannot show (no bone or expression for them): {', '.join(lacking)}")
    if report["vrm_expressions"]:
        typer.echo(f"  VRM expressions in the file: {', '.join(report['vrm_expressions'])}")
    if report["morph_targets"]:
        typer.echo(f"  morph targets: {len(report['morph_targets'])} ({', '.join(report['morph_targets'][:12])}"
                   f"{', …' if len(report['morph_targets']) > 12 else ''})")


def render(input: str = typer.Argument(None, help="a .pose or .skels file (or give --captions)"),
           output: str = typer.Option(..., "-o", "--output",
                                      help="out.mp4, out.webm, out.mov or out.png; with --captions out.webm or out.mov"),
           captions: str = typer.Option(None, "--captions",
                                        help="a WebVTT/SRT file: render a transparent overlay signing its cues at their times"),
           language: str = typer.Option(None, "--language", "--lang", help="--captions: sign language (default: [live] default_language)"),
           engine: str = typer.Option(None, "--engine", help="--captions: engine folder (default: [engine] path)"),
           report: str = typer.Option(None, "--report", help="--captions: the JSON report (default: the video's name with .json)"),
           size: str = typer.Option(None, "--size", help="WIDTHxHEIGHT in pixels (default: [video] width, height)"),
           fps: int = typer.Option(None, "--fps", help="frames per second (default: [video] fps)"),
           avatar: str = typer.Option(None, "--avatar", help="a rigged .glb/.gltf/.vrm (default: [avatar] path)"),
           frame: int = typer.Option(None, "--frame", help=".png: which frame (default: the middle one)"),
           line: int = typer.Option(1, "--line", min=1, help=".skels: which sequence (line number, from 1)"),
           skels_scale: float = typer.Option(1.0, "--skels-scale", help=".skels: coordinate scale (Prompt2Sign 9, PT 3, ours 1)"),
           config: str = _CONFIG) -> None:
    """Render a pose file with the avatar to a video (.mp4/.webm/.mov) or a still (.png); or, with
    --captions, a caption file to a transparent overlay video (.webm/.mov) and a JSON report."""
    from engines.errors import SignStreamError

    if (input is None) == (captions is None):
        typer.echo("error: give either a pose file or --captions FILE", err=True)
        raise typer.Exit(2)
    cfg = _with_video(load_config_or_fail(config), size, fps, engine)
    try:
        if captions is not None:
            _render_overlay(cfg, Path(captions), Path(output), language, avatar, Path(report) if report else None)
        else:
            _render(cfg, Path(input), Path(output), avatar, frame, line, skels_scale)
    except SignStreamError as exc:
        fail(exc)


def _with_video(cfg, size: str | None, fps: int | None, engine: str | None):
    """The config with the command line's --size, --fps and --engine in place of its own."""
    from dataclasses import replace

    video = cfg.video
    if size is not None:
        try:
            width, height = (int(n) for n in size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(f"{size!r}: expected WIDTHxHEIGHT, e.g. 512x512", param_hint="--size") from None
        video = replace(video, width=width, height=height)
    if fps is not None:
        if fps <= 0:
            raise typer.BadParameter("must be positive", param_hint="--fps")
        video = replace(video, fps=fps)
    # --engine is a path on the command line, so relative to the working directory (config paths are to the repo)
    return replace(cfg, video=video, engine=replace(cfg.engine, path=str(Path(engine).resolve())) if engine else cfg.engine)


def _render_overlay(cfg, captions: Path, output: Path, language: str | None, avatar: str | None,
                    report_path: Path | None) -> None:
    from server.overlay import render_overlay, write_report

    report = render_overlay(cfg, captions, output, language, avatar)
    report_path = report_path or output.with_suffix(".json")
    write_report(report, report_path)
    w = report["words"]
    typer.echo(f"{output}: {report['frames']} frames at {report['fps']:g} fps ({report['duration_s']:.2f} s), "
               f"{report['width']}×{report['height']}, alpha; {len(report['cues'])} cues: {w['sign']} words signed, "
               f"{w['fingerspelling']} fingerspelled, {w['text'] + w['nothing']} not signed; report {report_path}")
    for skipped in report["skipped"]:  # cues of the file that could not be played; the rest were
        typer.echo(f"skipped the cue at line {skipped['line']}: {skipped['reason']}", err=True)


def _read_input(path: Path, fps: float, line: int, skels_scale: float):
    """The clip, and its non-manual track (None: none in the file; .skels files carry none)."""
    from engines.errors import PoseFormatError
    from engines.formats.anyfile import SUFFIXES, load_sequence_and_face

    if path.suffix.lower() not in SUFFIXES:
        raise PoseFormatError(path, None, "render reads .pose or .skels files; for text, save a pose stream first "
                                          "with `signstream say TEXT --out clip.pose`")
    return load_sequence_and_face(path, line - 1, fps, skels_scale)


def _render(cfg, input_path: Path, output: Path, avatar_path: str | None, frame: int | None, line: int,
            skels_scale: float) -> None:
    from server.avatar.errors import RenderError
    from server.avatar.painter import AvatarPainter
    from server.avatar.video import VIDEO_SUFFIXES, check_output, write_png, write_video

    v = cfg.video
    rgba = len(v.background) == 4 and v.background[3] < 1.0
    check_output(output, rgba)
    raw, face = _read_input(input_path, float(v.fps), line, skels_scale)
    seq = raw.resample(float(v.fps))
    if len(seq) == 0:
        raise RenderError(f"{input_path}: no frames to render")
    faces = _resample_track(face, raw.fps, float(v.fps), len(seq)) if face is not None else [None] * len(seq)
    poses = zip(seq.frames, seq.confidence, faces)
    with AvatarPainter.open(cfg, avatar_path) as painter:
        if output.suffix.lower() not in VIDEO_SUFFIXES:
            index = len(seq) // 2 if frame is None else frame
            if not 0 <= index < len(seq):
                raise RenderError(f"--frame {index}: the clip has frames 0 to {len(seq) - 1}")
            worlds = list(painter.worlds(poses))  # the whole clip: the still is smoothed as in the video
            write_png(painter.draw(*worlds[index]), output)
            typer.echo(f"{output}: frame {index} of {len(seq)}")
            return
        count = write_video(painter.paint_all(poses), output, float(v.fps), rgba)
    typer.echo(f"{output}: {count} frames at {v.fps} fps, {v.width}×{v.height}")


def _resample_track(face, src_fps: float, fps: float, n: int):
    """The non-manual track (T, C) at `fps`, n frames (as PoseSequence.resample times them), linearly."""
    import numpy as np

    t = np.minimum(np.arange(n) * (src_fps / fps), len(face) - 1)
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, len(face) - 1)
    w = (t - i0)[:, None].astype(np.float32)
    return list(face[i0] * (1 - w) + face[i1] * w)
