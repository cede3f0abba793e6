"""`signstream backtranslate ...`, mounted lazily by server/cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import typer

backtranslate_app = typer.Typer(no_args_is_help=True, add_completion=False,
                                help="Back-translation judge (pose → text, Sign2GPT-style): train and evaluate.")


def _fail(exc: Exception) -> None:
    from engines.errors import SignStreamError

    code = exc.code if isinstance(exc, SignStreamError) else "bad_argument"
    message = exc.message if isinstance(exc, SignStreamError) else str(exc)
    typer.echo(f"error [{code}]: {message}", err=True)
    raise typer.Exit(2)


@backtranslate_app.callback()
def main() -> None:
    """Back-translation judge (pose → text, Sign2GPT-style): train and evaluate."""


@backtranslate_app.command("train")
def train_cmd(
    config: Path = typer.Option(Path("training/configs/backtranslate.toml"), "--config", help="training config"),
    out: Path = typer.Option(..., "--out", help="judge folder to write"),
    lm: Path = typer.Option(None, "--lm", help="a saved causal LM to freeze (overrides [lm] path; default: pretrain ours)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/state.pt with OUT/config.toml (fresh if none)"),
    quiet: bool = typer.Option(False, "--quiet", help="no per-step log lines on stderr"),
) -> None:
    """Pretrain (LM, pseudo-glosses) and train a judge; prints a JSON summary with dev scores.
    Checkpoints (OUT/state.pt) are written atomically as it goes; `--resume` continues an interrupted run."""
    from engines.errors import SignStreamError
    from training.backtranslate.train import train

    def show(record: dict) -> None:
        if not quiet:
            typer.echo(json.dumps(record), err=True)

    try:
        summary = train(config, out, lm, progress=show, resume=resume)
    except (SignStreamError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))


@backtranslate_app.command("eval")
def eval_cmd(
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
    from engines.errors import SignStreamError
    from training.backtranslate.evaluate import evaluate_judge

    languages = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    try:
        result = evaluate_judge(judge, corpus, split, poses, languages, limit, threads)
    except (SignStreamError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    rows = [("generated", result["generated"]), ("reference", result["reference"])] if poses else [("reference", result)]
    for name, r in rows:
        typer.echo(f"{split} {name} poses: CER {r['cer']}%  accuracy {r['accuracy']}%  BLEU-1..4 "
                   f"{r['bleu1']}/{r['bleu2']}/{r['bleu3']}/{r['bleu4']}  ROUGE-L {r['rougeL']}  (n={r['n']})")
