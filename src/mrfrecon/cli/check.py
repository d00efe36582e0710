"""``mrfrecon check PATH…``: validate project files and report every problem (exit status 2 if any)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import cli


@cli.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def check_cmd(paths: tuple[Path, ...]) -> None:
    """Check scans, dictionaries, cohorts, checkpoints, maps, sequences and grids: structure, checksums,
    finite values and physical ranges. One line per file that is sound, one per problem otherwise."""
    from ..check import check_path

    bad = 0
    for p in paths:
        kind, problems = check_path(p)
        if problems:
            bad += 1
            for msg in problems:
                click.echo(f"mrfrecon: problem: {msg}", err=True)
        else:
            click.echo(f"{p}: ok ({kind})")
    if bad:
        click.echo(f"mrfrecon: {bad} of {len(paths)} path(s) have problems", err=True)
        raise click.exceptions.Exit(2)
