"""What the command groups of ``mrfrecon`` share: the ``cli`` group, error handling, progress, threads.

Every command module (:mod:`.core`, :mod:`.nets`, :mod:`.experiments`) imports this module and
registers its commands on :data:`cli`; none imports another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .. import __version__
from ..errors import MrfreconError


class _Group(click.Group):
    """A click group that turns :class:`MrfreconError` into a one-line message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MrfreconError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"mrfrecon: error: {e}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("mrfrecon: interrupted", err=True)
            ctx.exit(130)


@contextlib.contextmanager
def progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields a callback taking the number of items done so far."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


def _sequence(path: Path | None, echo_spacing: float):
    from ..sequence import Sequence

    return Sequence.load(path) if path is not None else Sequence.mrf_wf(echo_spacing_ms=echo_spacing)


_seq_opts = [
    click.option("--sequence", "sequence_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Sequence JSON file (default: the built-in MRF-WF schedule)."),
    click.option("--echo-spacing", type=float, default=1.11, show_default=True,
                 help="MRF-WF echo spacing TR − TE in ms (when no --sequence is given)."),
]


def _with(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f

    return deco


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mrfrecon")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--device", default=None, help="Torch device, e.g. cpu or cuda:0 (default: CUDA if available).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, device: str | None) -> None:
    """mrfrecon: water T1 (ms), fat fraction (0-1) and B1 (a.u.) maps from MR fingerprinting.

    Times are in ms, off-resonance in Hz, flip angles in degrees.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if device:
        import os

        os.environ["MRFRECON_DEVICE"] = device


def set_threads(threads: int | None, echo=click.echo) -> int:
    """Set torch's intra-op threads: ``threads``, or :func:`~mrfrecon.experiments.common.auto_threads`
    (the cores not kept busy by other processes). Returns the number set."""
    import torch

    from ..experiments.common import auto_threads

    if threads is not None and threads < 1:
        raise MrfreconError(f"--threads: expected >= 1, got {threads}")
    n = threads or auto_threads()
    torch.set_num_threads(n)
    echo(f"torch threads: {n}{'' if threads else ' (auto: free cores)'}")
    return n
