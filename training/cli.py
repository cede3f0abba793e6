"""The training commands, mounted lazily by `server/cli.py`: `signstream data ...`, `train`, `eval`,
`backtranslate ...` and `export`. Only typer loads with this module; each command imports what it
runs (torch, the corpus builders) when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from engines.errors import SignStreamError, fail

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

    from engines.typed_config import REPO_ROOT, ConfigError
    from training.corpus import build_corpus, load_corpus_config

    try:
        cfg = load_corpus_config(config)
    except ConfigError as exc:
        fail(exc)
    out = out or REPO_ROOT / cfg.out
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
            fail(exc)
    for lang, res in manifest["languages"].items():
        console.print(f"{lang} ({res['spoken']}): " + ", ".join(f"{k} {v}" for k, v in res["counts"].items())
                      + f"; skipped {res['skipped']} words with uncovered letters")
    console.print(f"totals {manifest['totals']} in {manifest['build_seconds']} s → {out}")


@data_app.command("respell")
def data_respell(
    source: Path = typer.Argument(..., help="a built corpus, or its word lists alone (manifest.json, <lang>/<split>.text)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    letters: Path = typer.Option(None, "--letters", help="packed letters file (default: the default engine's)"),
    splits: str = typer.Option("train,dev,test", "--splits", help="comma-separated splits to rebuild"),
) -> None:
    """Rebuild a corpus from its word lists and an engine's packed letters (no recordings or wordfreq needed)."""
    from engines.typed_config import REPO_ROOT
    from training.corpus import respell_corpus

    try:
        manifest = respell_corpus(source, letters or REPO_ROOT / "engines/default/letters.npz", out, tuple(x.strip() for x in splits.split(",") if x.strip()))
    except (OSError, ValueError, SignStreamError) as exc:
        fail(exc)
    typer.echo(f"totals {manifest['totals']} → {out}")


@data_app.command("preview")
def data_preview(
    file: Path = typer.Argument(..., help=".pose file, or .skels file (see --index)"),
    out: Path = typer.Option(..., "-o", "--out", help="output .gif or .mp4"),
    index: int = typer.Option(0, "--index", min=0, help="which sequence (line, from 0) of a .skels file"),
    fps: float = typer.Option(25.0, "--fps", help="frame rate of a .skels file"),
) -> None:
    """Draw a pose sequence as a 2D skeleton video."""
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
    except (SignStreamError, ValueError) as exc:
        fail(exc)
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
            fail(exc)
    console.print(f"lifted {summary.lifted}, normalized (3D input) {summary.normalized}, "
                  f"already done {summary.skipped}, failed {len(summary.failed)}; "
                  f"{summary.written} clips in {out / split}.skels", markup=False)
    if summary.failed:
        raise typer.Exit(1)


train_app = typer.Typer(add_completion=False, help="Train a SignLLM model from a TOML config.")
eval_app = typer.Typer(add_completion=False, help="Evaluate a SignLLM checkpoint: DTW-MJE on a corpus split.")


@train_app.command()
def train(
    config: Path = typer.Option(..., "--config", help="training config, e.g. training/configs/default.toml"),
    out: Path = typer.Option(..., "--out", help="run folder (checkpoints, logs); an existing run resumes"),
    resume: bool = typer.Option(True, "--resume/--fresh", help="continue the run in --out if it has a state"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Train SignLLM (progress bar, periodic dev DTW, checkpoints, resume)."""
    from training.train import train as run

    try:
        summary = run(config, out, resume=resume, progress=progress)
    except (SignStreamError, FileNotFoundError) as exc:
        fail(exc)
    summary.pop("config")
    typer.echo(json.dumps(summary))


@eval_app.command()
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint folder (model.json, model.safetensors, tokenizer.model)"),
    corpus: Path = typer.Option(Path("data/corpus"), "--corpus", help="corpus folder"),
    split: str = typer.Option("test", "--split", help="train, dev or test"),
    max_frames: int = typer.Option(400, "--max-frames", help="generation cap per sequence"),
    per_language: int = typer.Option(0, "--per-language", help="only the first N sequences of each language (0: all)"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
    baseline: bool = typer.Option(False, "--baseline", help="also score the mean-sequence baseline"),
    as_json: bool = typer.Option(False, "--json", help="print metrics as JSON"),
    cache: Path = typer.Option(Path("runs/cache"), "--cache", help="where parsed splits are cached"),
    backtranslate: bool = typer.Option(False, "--backtranslate", help="also let the back-translation judge read the "
                                       "generated and the reference poses (BLEU, ROUGE-L, CER; slow: use --per-language)"),
    judge: Path = typer.Option(None, "--judge", help="judge folder for --backtranslate (default: the bundled judge)"),
    other_judge: list[Path] = typer.Option([], "--other-judge", help="a further judge to read the same generated "
                                           "poses (repeatable), reported under backtranslation_other"),
) -> None:
    """DTW-MJE of real inference (own frames, own counter), overall and per language; with
    --backtranslate, the judge's scores of the generated poses beside those of the references."""
    from training.evaluate import DEFAULT_JUDGE, evaluate_checkpoint, mean_baseline

    judge_dir = (judge or DEFAULT_JUDGE) if backtranslate or judge else None
    try:
        result = evaluate_checkpoint(checkpoint, corpus, split, max_frames, per_language, threads, cache, judge_dir,
                                     tuple(other_judge))
        if baseline:
            result["mean_baseline"] = mean_baseline(corpus, split, list(result["per_language"]), cache, per_language)
    except (SignStreamError, FileNotFoundError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{split}: DTW-MJE {result['dtw']:.4f} over {result['n']} sequences")
    for lang, row in result["per_language"].items():
        typer.echo(f"  {lang}: {row['dtw']:.4f} ({row['n']})")
    for name, r in result.get("backtranslation", {}).items():
        if isinstance(r, dict):
            typer.echo(f"back-translation of {name} poses: CER {r['cer']}%  accuracy {r['accuracy']}%  BLEU-1..4 "
                       f"{r['bleu1']}/{r['bleu2']}/{r['bleu3']}/{r['bleu4']}  ROUGE-L {r['rougeL']}  (n={r['n']})")


average_app = typer.Typer(add_completion=False, help="Average SignLLM checkpoints' weights into one checkpoint.")


@average_app.command()
def average(
    checkpoints: list[Path] = typer.Argument(..., help="checkpoint folders of one architecture and tokenizer"),
    out: Path = typer.Option(..., "--out", help="checkpoint folder to write"),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 weight storage"),
) -> None:
    """Average the weights of checkpoints (a uniform model soup): e.g. a run's best and last."""
    from training.average import average_checkpoints

    try:
        folder = average_checkpoints(checkpoints, out, fp16)
    except (SignStreamError, FileNotFoundError) as exc:
        fail(exc)
    typer.echo(json.dumps({"checkpoint": str(folder), "averaged": [str(c) for c in checkpoints]}))


backtranslate_app = typer.Typer(no_args_is_help=True, add_completion=False,
                                help="Back-translation judge (pose → text, Sign2GPT-style): train and evaluate.")


@backtranslate_app.callback()
def backtranslate_main() -> None:
    """Back-translation judge (pose → text, Sign2GPT-style): train and evaluate."""


@backtranslate_app.command("train")
def backtranslate_train(
    config: Path = typer.Option(Path("training/configs/backtranslate.toml"), "--config", help="training config"),
    out: Path = typer.Option(..., "--out", help="judge folder to write"),
    lm: Path = typer.Option(None, "--lm", help="a saved causal LM to freeze (overrides [lm] path; default: pretrain ours)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/state.pt with OUT/config.toml (fresh if none)"),
    quiet: bool = typer.Option(False, "--quiet", help="no per-step log lines on stderr"),
) -> None:
    """Pretrain (LM, pseudo-glosses) and train a judge; prints a JSON summary with dev scores.
    Checkpoints (OUT/state.pt) are written atomically as it goes; `--resume` continues an interrupted run."""
    from training.backtranslate.train import train

    def show(record: dict) -> None:
        if not quiet:
            typer.echo(json.dumps(record), err=True)

    try:
        summary = train(config, out, lm, progress=show, resume=resume)
    except (SignStreamError, FileNotFoundError, ValueError) as exc:
        fail(exc)
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))


@backtranslate_app.command("eval")
def backtranslate_eval(
    judge: Path = typer.Option(Path("training/checkpoints/judge-eval"), "--judge", help="judge folder"),
    corpus: Path = typer.Option(Path("data/corpus"), "--corpus", help="corpus folder (references)"),
    split: str = typer.Option("test", "--split", help="train, dev or test"),
    poses: Path = typer.Option(None, "--poses", help="generated poses, <lang>/<split>.skels line-aligned with the corpus"),
    langs: str = typer.Option(None, "--langs", help="comma-separated sign languages (default: all of the corpus)"),
    limit: int = typer.Option(0, "--limit", min=0, help="first N sequences a language (0: all)"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads"),
    as_json: bool = typer.Option(False, "--json", help="print the scores as JSON"),
) -> None:
    """BLEU-1..4, ROUGE-L, CER of the judge's readings (of reference poses, or of --poses beside them)."""
    from training.backtranslate.evaluate import evaluate_judge

    languages = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    try:
        result = evaluate_judge(judge, corpus, split, poses, languages, limit, threads)
    except (SignStreamError, FileNotFoundError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    rows = [("generated", result["generated"]), ("reference", result["reference"])] if poses else [("reference", result)]
    for name, r in rows:
        typer.echo(f"{split} {name} poses: CER {r['cer']}%  accuracy {r['accuracy']}%  BLEU-1..4 "
                   f"{r['bleu1']}/{r['bleu2']}/{r['bleu3']}/{r['bleu4']}  ROUGE-L {r['rougeL']}  (n={r['n']})")


export_app = typer.Typer(add_completion=False, help="Export a SignLLM checkpoint to an engine folder.")


@export_app.command()
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint folder (model.json, model.safetensors, tokenizer.model)"),
    out: Path = typer.Option(..., "--out", help="engine folder to write, e.g. engines/NAME"),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 weights for torch and fp16 TensorRT plans (ONNX stays fp32)"),
    tensorrt: bool = typer.Option(False, "--tensorrt", help="also build TensorRT plans (needs tensorrt and a GPU)"),
    letters: Path = typer.Option(None, "--letters", help="fingerspelling lexicon folder (or .npz) to pack into the engine"),
    fps: float = typer.Option(25.0, "--fps", help="frame rate the model was trained at"),
    max_frames: int = typer.Option(400, "--max-frames", help="generation cap per word"),
    name: str = typer.Option(None, "--name", help="engine name in engine.json (default: the folder's name)"),
) -> None:
    """Write an engine folder: engine.json, tokenizer, encoder/decoder ONNX graphs (+ plans)."""
    from training.export import export_engine

    try:
        folder = export_engine(checkpoint, out, fps, max_frames, fp16, tensorrt, letters, name)
    except (SignStreamError, FileNotFoundError) as exc:
        fail(exc, "file_not_found")
    typer.echo(json.dumps({"engine": str(folder), **{p.name: p.stat().st_size for p in sorted(folder.iterdir())}}))
