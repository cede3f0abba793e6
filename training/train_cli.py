"""`signstream train` and `signstream eval`, mounted lazily by server/cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import typer

train_app = typer.Typer(add_completion=False, help="Train a SignLLM model from a TOML config.")
eval_app = typer.Typer(add_completion=False, help="Evaluate a SignLLM checkpoint: DTW-MJE on a corpus split.")


def _fail(exc: Exception) -> None:
    from engines.errors import SignStreamError

    code = exc.code if isinstance(exc, SignStreamError) else "bad_argument"
    message = exc.message if isinstance(exc, SignStreamError) else str(exc)
    typer.echo(f"error [{code}]: {message}", err=True)
    raise typer.Exit(2)


@train_app.command()
def train(
    config: Path = typer.Option(..., "--config", help="training config, e.g. training/configs/default.toml"),
    out: Path = typer.Option(..., "--out", help="run folder (checkpoints, logs); an existing run resumes"),
    resume: bool = typer.Option(True, "--resume/--fresh", help="continue the run in --out if it has a state"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Train SignLLM (progress bar, periodic dev DTW, checkpoints, resume)."""
    from engines.errors import SignStreamError
    from training.train import train as run

    try:
        summary = run(config, out, resume=resume, progress=progress)
    except (SignStreamError, FileNotFoundError) as exc:
        _fail(exc)
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
    from engines.errors import SignStreamError
    from training.evaluate import DEFAULT_JUDGE, evaluate_checkpoint, mean_baseline

    judge_dir = (judge or DEFAULT_JUDGE) if backtranslate or judge else None
    try:
        result = evaluate_checkpoint(checkpoint, corpus, split, max_frames, per_language, threads, cache, judge_dir,
                                     tuple(other_judge))
        if baseline:
            result["mean_baseline"] = mean_baseline(corpus, split, list(result["per_language"]), cache, per_language)
    except (SignStreamError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
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
