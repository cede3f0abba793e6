"""The one console script, `signstream`.

Serving commands live here. Training commands live in `training/cli.py` and are mounted lazily:
their module is imported only when one of them runs, so nothing of training (or torch) loads
when serving.
"""

from __future__ import annotations

import importlib

import click
import typer
from typer.core import TyperGroup

from engines.errors import fail
from server.config import load_config_or_fail

# name → ("module:typer_app", short help). A lazy app with one command becomes that command.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("training.cli:data_app", "Build, lift and preview training corpora."),
    "train": ("training.cli:train_app", "Train a SignLLM model from a TOML config."),
    "eval": ("training.cli:eval_app", "Evaluate a SignLLM checkpoint (DTW-MJE, JSON)."),
    "backtranslate": ("training.cli:backtranslate_app", "Back-translation judge (pose → text): train, eval."),
    "average": ("training.cli:average_app", "Average SignLLM checkpoints' weights (a model soup)."),
    "export": ("training.cli:export_app", "Export a SignLLM checkpoint to an engine folder (ONNX, TensorRT)."),
    "lexicon": ("engines.notation.cli:lexicon_app", "Notation lexicons (HamNoSys, SiGML): check a file, pack DSGS."),
}


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[name][0].partition(":")
            sub = getattr(importlib.import_module(module), attr)
            cmd = typer.main.get_command(sub)
            cmd.name = name
            return cmd
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # List lazy commands by their short help without importing them.
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(cls=LazyGroup, no_args_is_help=True, rich_markup_mode=None,
                  help="SignStream: live text to sign language, signed by a 3D avatar.")


@app.callback()
def main() -> None:
    """SignStream: live text to sign language, signed by a 3D avatar."""


@app.command("config-check")
def config_check(config: str = typer.Option(None, "--config", help="config file (default: the repository's config.toml)")) -> None:
    """Load and validate a config file; print it as the server will use it."""
    from dataclasses import asdict
    import json

    typer.echo(json.dumps(asdict(load_config_or_fail(config)), indent=2))


@app.command("serve")
def serve(config: str = typer.Option(None, "--config", help="config file (default: the repository's config.toml)"),
          host: str = typer.Option(None, "--host", help="override server.host"),
          port: int = typer.Option(None, "--port", help="override server.port (0: any free port)")) -> None:
    """Serve /ws, /offer, the client pages, /healthz and /metrics on one port."""
    import asyncio
    import logging

    from server.app import serve as run_server

    cfg = load_config_or_fail(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(bound_host: str, bound_port: int) -> None:
        typer.echo(f"listening on http://{bound_host}:{bound_port}", err=True)

    asyncio.run(run_server(cfg, host or cfg.server.host, cfg.server.port if port is None else port, ready))


_SERVER = typer.Option("http://127.0.0.1:8080", "--server", help="server URL (http://host:port or ws://host:port/ws)")
_TOKEN = typer.Option(None, "--token", envvar="SIGNSTREAM_TOKEN", help="bearer token, when the server needs one")
_CHANNEL = typer.Option(None, "--channel", help="caption this channel: its WebRTC viewers (browser, kiosk) see the avatar sign it")


def _run_client(coro) -> None:
    import asyncio

    try:
        seen = asyncio.run(coro)
    except (ConnectionError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    if seen.errors:
        raise typer.Exit(1)


@app.command("say")
def say(text: str = typer.Argument(None, help="text to sign (or --follow to read lines from stdin)"),
        lang: str = typer.Option(None, "--lang", help="sign language, e.g. ase, gsg (default: the server's)"),
        out: str = typer.Option(None, "--out", help="save the pose stream as a .pose file instead of printing it"),
        follow: bool = typer.Option(False, "--follow", help="read lines from stdin, one caption each, until EOF"),
        channel: str = _CHANNEL, server: str = _SERVER, token: str = _TOKEN) -> None:
    """Send text to a running server; save (--out) or print (JSON lines) the pose stream."""
    from pathlib import Path

    from server.client_cli import lines_of, say as say_lines, stdin_lines

    if (text is None) == (not follow):
        typer.echo("error: give TEXT or --follow", err=True)
        raise typer.Exit(2)
    lines = stdin_lines() if follow else lines_of(text)
    _run_client(say_lines(server, lines, lang, Path(out) if out else None, token, channel))


@app.command("captions")
def captions(file: str = typer.Argument(..., help="a WebVTT (.vtt) or SRT (.srt) file"),
             lang: str = typer.Option(None, "--lang", help="sign language (default: the server's)"),
             speed: float = typer.Option(1.0, "--speed", help="play the file this many times faster than real time"),
             channel: str = _CHANNEL, server: str = _SERVER, token: str = _TOKEN) -> None:
    """Play a caption file into a session in real time, printing units and their statuses."""
    from engines.formats.captions import CaptionFileError, read_captions
    from server.client_cli import play_cues

    try:
        captions_file = read_captions(file)
    except CaptionFileError as exc:
        fail(exc)
    _run_client(play_cues(server, captions_file.cues, lang, token, speed, channel, captions_file.skipped))


from server.avatar_cli import avatar_app, render as render_command  # noqa: E402  (typer only; heavy imports are lazy)

app.add_typer(avatar_app, name="avatar")
app.command("render")(render_command)



@app.command("kiosk")
def kiosk(server: str = typer.Option("http://127.0.0.1:8080", "--server", help="server URL; started here unless it answers /healthz"),
          lang: str = typer.Option(None, "--lang", help="sign language of the stream"),
          channel: str = typer.Option(None, "--channel", help="channel to show (shared with its other clients)"),
          bg: str = typer.Option(None, "--bg", help="background colour RRGGBB, e.g. 00ff00 for a chroma key"),
          no_captions: bool = typer.Option(False, "--no-captions", help="hide the captions"),
          config: str = typer.Option(None, "--config", help="config file of a server started here"),
          print_url: bool = typer.Option(False, "--print-url", help="print the kiosk URL and exit (start nothing)"),
          no_browser: bool = typer.Option(False, "--no-browser", help="start the server if needed and print the URL, no browser")) -> None:
    """Show the kiosk page (full-screen avatar and captions) in Chromium, starting the server if needed."""
    from server.kiosk import kiosk_url, run_kiosk

    url = kiosk_url(server, lang, channel, bg, captions=not no_captions)
    if print_url:
        typer.echo(url)
        return
    raise typer.Exit(run_kiosk(server, url, config, browser=not no_browser))


if __name__ == "__main__":
    app()
