"""Training commands, mounted lazily by `server/cli.py` (`signstream data ...`, `signstream train`, ...)."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(no_args_is_help=True, help="Build, lift and preview training corpora.")


@data_app.callback()
def data_main() -> None:
    """Build, lift and preview training corpora."""


@data_app.command("build")
def data_build(
    out: Path = typer.Option(None, "--out", help="output folder (default: [corpus] out of the config)"),
    langs: str = typer.Option(None, "--langs", help="comma-separated sign languages, e.g. ase,gsg (default: all)"),
    words_per_lang: int = typer.Option(None, "--words-per-lang", min=1, help="words a language"),
    seed: int = typer.Option(None, "--seed", help="seed of the word split"),
    config: Path = typer.Option(None, "--config", help="config file (default: the repository's config.toml)"),
) -> None:
    """Build the bundled fingerspelling corpus (Prompt2Sign format) from real letter recordings."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from server.config import load_config
    from training.corpus import build_corpus

    cfg = load_config(config).corpus
    out = out or Path(load_config(config).resolve(cfg.out))
    languages = [x.strip() for x in langs.split(",") if x.strip()] if langs else (cfg.languages or None)
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]corpus"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("", total=len(languages) if languages else 20)

        def done(res) -> None:
            progress.update(task, advance=1, description=f"{res.language}: {sum(res.counts.values())} words")

        try:
            manifest = build_corpus(out, languages, words_per_lang or cfg.words_per_lang,
                                    cfg.seed if seed is None else seed, cfg.fps, on_done=done)
        except ValueError as exc:
            console.print(f"error [bad_argument]: {exc}")
            raise typer.Exit(2)
    for lang, res in manifest["languages"].items():
        console.print(f"{lang} ({res['spoken']}): " + ", ".join(f"{k} {v}" for k, v in res["counts"].items())
                      + f"; skipped {res['skipped']} words with uncovered letters")
    console.print(f"totals {manifest['totals']} in {manifest['build_seconds']} s → {out}")


@data_app.command("preview")
def data_preview(
    file: Path = typer.Argument(..., help=".pose file, or .skels file (see --index)"),
    out: Path = typer.Option(..., "-o", "--out", help="output .gif or .mp4"),
    index: int = typer.Option(0, "--index", min=0, help="which sequence (line, from 0) of a .skels file"),
    fps: float = typer.Option(25.0, "--fps", help="frame rate of a .skels file"),
) -> None:
    """Draw a pose sequence as a 2D skeleton video."""
    from engines.errors import SignStreamError
    from engines.formats.anyfile import load_sequence
    from training.preview import write_preview

    try:
        seq = load_sequence(file, index=index, fps=fps)
        label = file.name
        text = file.with_suffix(".text")
        if file.suffix == ".skels" and text.exists():
            lines = text.read_text(encoding="utf-8").splitlines()
            label = lines[index] if index < len(lines) else label
        n = write_preview(seq, out, label)
    except SignStreamError as exc:
        typer.echo(f"error [{exc.code}]: {exc.message}", err=True)
        raise typer.Exit(2)
    except ValueError as exc:
        typer.echo(f"error [bad_argument]: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {n} frames to {out}")


@data_app.command("lift")
def data_lift(
    input_dir: Path = typer.Argument(..., help="folder of clips: sub-folders of OpenPose JSON frames, or MediaPipe .pose files"),
    out: Path = typer.Option(..., "--out", help="output folder (Prompt2Sign split; rerun to resume)"),
    text: Path = typer.Option(None, "--text", help="transcripts: name<TAB>text[<TAB>gloss] a line; adds .text/.gloss"),
    keep_stages: bool = typer.Option(False, "--keep-stages", help="keep each stage's output in OUT/stages/<clip>/"),
    pose: bool = typer.Option(False, "--pose", help="also write OUT/pose/<clip>.pose"),
    fps: float = typer.Option(25.0, "--fps", min=1.0, help="frame rate of OpenPose clips (JSON carries none)"),
    split: str = typer.Option("train", "--split", help="name of the split files"),
    batch: int = typer.Option(8, "--batch", min=1, help="clips optimized together"),
) -> None:
    """Lift 2D keypoints of your own videos to 3D and write Prompt2Sign training data."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engines.errors import SignStreamError
    from training.lift import run_lift

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]lift"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("", total=None)

        def clip_done(name: str, error: str | None) -> None:
            if error:
                progress.console.print(f"[red]failed[/red] {name}: {error}", markup=True, highlight=False)
            progress.update(task, advance=1, description=name)

        try:
            summary = run_lift(input_dir, out, text, keep_stages, pose, fps, split, batch,
                               on_start=lambda total: progress.update(task, total=total), on_clip=clip_done)
        except SignStreamError as exc:
            console.print(f"error [{exc.code}]: {exc.message}", markup=False)
            raise typer.Exit(2)
    console.print(f"lifted {summary.lifted}, normalized (3D input) {summary.normalized}, "
                  f"already done {summary.skipped}, failed {len(summary.failed)}; "
                  f"{summary.written} clips in {out / split}.skels", markup=False)
    if summary.failed:
        raise typer.Exit(1)
