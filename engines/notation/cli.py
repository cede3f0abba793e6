"""`signstream lexicon check FILE` and `signstream lexicon pack`: notation lexicons from the shell.

check: reads a lexicon (SiGML, CSV or JSON gloss → HamNoSys), then prints per entry whether it
parsed and which symbols the synthesizer does not render, and a JSON summary; exit status 1 if
an entry could not be read at all.
"""

from __future__ import annotations

import json
from collections import Counter

import typer

from engines.errors import fail

lexicon_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Notation lexicons (HamNoSys, SiGML).")


@lexicon_app.command("check")
def check(file: str = typer.Argument(..., help="a .sigml/.xml, .csv (gloss, hamnosys) or .json lexicon"),
          language: str = typer.Option("sgg", "--language", "--lang", help="its sign language"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="only the JSON summary")) -> None:
    """Report entries parsed and the unsupported symbols of each entry."""
    from engines.notation.lexicon import NotationLexiconError, load_lexicon

    try:
        lex = load_lexicon(file, language)
    except NotationLexiconError as exc:
        fail(exc)
    symbols: Counter[str] = Counter()
    renderable = 0
    for e in lex.entries:
        names = sorted({u.symbol for u in e.sign.unsupported})
        symbols.update(names)
        renderable += e.sign.renderable
        if not quiet:
            if names:
                why = "; ".join(sorted({f"{u.symbol}: {u.why}" for u in e.sign.unsupported}))
                typer.echo(f"{e.gloss}\tunsupported [notation_unsupported] {why}")
            else:
                typer.echo(f"{e.gloss}\tok")
    for err in lex.errors:
        typer.echo(f"{err.gloss}\terror [{err.code}] {err.where}: {err.message}", err=True)
    summary = {"file": file, "language": language, "entries": len(lex.entries) + len(lex.errors),
               "parsed": len(lex.entries), "renderable": renderable, "errors": len(lex.errors),
               "unsupported_symbols": dict(symbols.most_common())}
    typer.echo(json.dumps(summary, ensure_ascii=False))
    if lex.errors:
        raise typer.Exit(1)


@lexicon_app.command("pack")
def pack(out: str = typer.Option("engines/default/notation/sgg.json", "--out", help="the engine lexicon to write")) -> None:
    """Pack the DSGS lexicon of PyPI signwriting 0.1.19 (and its German word forms) into an engine folder."""
    from engines.notation.lexicon import pack_dsgs

    path = pack_dsgs(out)
    typer.echo(f"{path}: written")
