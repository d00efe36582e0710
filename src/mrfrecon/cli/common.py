"""What the command groups of ``mrfrecon`` share: the ``cli`` group, error handling, progress, threads.

Every command module (:mod:`.core`, :mod:`.nets`, :mod:`.experiments`) imports this module and
registers its commands on :data:`cli`; none imports another.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .. import __version__
from ..errors import MrfreconError


class _Group(click.Group):
    """A click group that turns :class:`MrfreconError` and click's usage errors into a one-line
    message (exit status 2), and accepts ``--debug`` before or after the subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `mrfrecon simulate ... --debug` means the same as `mrfrecon --debug simulate ...`
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:
            args = ["--debug", *[a for a in args[:end] if a != "--debug"], *args[end:]]
        return super().parse_args(ctx, args)

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[override]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:  # an error in the top-level options: one line too
            if "--debug" in args:
                raise
            click.echo(f"mrfrecon: error: {e.format_message()}", err=True)
            raise click.exceptions.Exit(2) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MrfreconError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"mrfrecon: error: {e}", err=True)
            ctx.exit(2)
        except click.UsageError as e:  # bad options of a subcommand: one line naming the option
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"mrfrecon: error: {e.format_message()}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("mrfrecon: interrupted", err=True)
            ctx.exit(130)


@contextlib.contextmanager
def progress(total: int, description: str, *, lazy: bool = False) -> Iterator[Callable[[int], None]]:
    """Progress of ``total`` items; yields a callback taking the number done so far.

    On a terminal a rich progress bar; otherwise (a log file, a pipe, CI) plain lines — one at
    every tenth of the work and at least every 30 s, never a redraw. ``lazy``: the bar appears at
    the first callback (after the command's checks, so that a refusal stays one line)."""
    if not sys.stdout.isatty():
        yield _plain_progress(total, description)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    bar = Progress(*columns, transient=False)
    task = bar.add_task(description, total=total)
    started = False

    def update(done: int) -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=done)

    if not lazy:
        update(0)
    try:
        yield update
    finally:
        if started:
            bar.stop()


def _plain_progress(total: int, description: str, every_s: float = 30.0) -> Callable[[int], None]:
    t0 = time.monotonic()
    state = {"step": -1, "t": t0}

    def update(done: int) -> None:
        now = time.monotonic()
        step = int(10 * done / total) if total else 10
        if step > state["step"] or now - state["t"] >= every_s or (done >= total and state["step"] < 10):
            state.update(step=max(step, state["step"]), t=now)
            pct = 100.0 * done / total if total else 100.0
            click.echo(f"{description}: {done:,}/{total:,} ({pct:.0f} %), {now - t0:.1f} s")
            if done >= total:
                state["step"] = 11

    return update


def check_out(path: Path, *, kind: str, suffixes: tuple[str, ...] = (), inputs: tuple[Path, ...] = ()) -> Path:
    """Refuse an ``--out`` that cannot be written, before any work: a folder (``kind="dir"``)
    where a file exists, a file (``kind="file"``) where a folder exists or with a suffix not in
    ``suffixes``, one of the ``inputs``, or a place under a file or in a read-only folder."""
    name = path.name.lower()
    if kind == "file":
        if path.is_dir():
            raise MrfreconError(f"--out: {path} is a folder; expected a file{f' ({chr(44).join(suffixes)})' if suffixes else ''}")
        if suffixes and not name.endswith(suffixes):
            raise MrfreconError(f"--out: {path} must end in {' or '.join(suffixes)}")
    elif path.exists() and not path.is_dir():
        raise MrfreconError(f"--out: {path} is a file; expected a folder")
    if any(path.resolve() == Path(i).resolve() for i in inputs):
        raise MrfreconError(f"--out: {path} is an input file; choose another")
    anc = path.parent if kind == "file" else path
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise MrfreconError(f"--out: {path} lies under {anc}, which is a file")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise MrfreconError(f"--out: {path}: cannot write in {anc} (permission denied)")
    return path


def _sequence(path: Path | None, echo_spacing: float):
    from ..sequence import Sequence

    return Sequence.load(path) if path is not None else Sequence.mrf_wf(echo_spacing_ms=echo_spacing)




_read_opts = [
    click.option("--axes", default=None,
                 help="Storage order of a NumPy/MATLAB series, e.g. x,y,t or x,y,z,t or t,z,y,x (x columns, y rows, "
                      "z slices, t frames; MATLAB: size() order). NIfTI: x,y,z,t unless given."),
    click.option("--mask", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Foreground mask (NIfTI, or .npy in the series' axis order without t); default: the scan's "
                      "own, else estimated from the series."),
    click.option("--phase-units", type=click.Choice(["auto", "radians", "scanner", "uint12"]), default="auto",
                 show_default=True,
                 help="Units of phase images: radians (±π), scanner (−4096…4096 for −π…π, Siemens' rescaled values) "
                      "or uint12 (0…4095 for −π…π, Siemens' stored values without their rescale); auto: from the "
                      "files' rescale tags, else from an unambiguous range."),
    click.option("--pair", type=click.Choice(["magnitude-phase", "real-imag"]), default=None,
                 help="What two parts of a series are (default: from BIDS part- names, else magnitude-phase)."),
    click.option("--voxel-mm", default=None, help="Voxel size x,y,slice in mm of arrays without geometry (default 1,1,8)."),
    click.option("--orientation", default=None,
                 help="Axis codes of arrays without geometry, e.g. LPS (x → patient's left, y → posterior, slice → superior)."),
]


def read_options(axes, mask, phase_units, pair, voxel_mm, orientation) -> dict:
    """The keyword arguments of :func:`mrfrecon.io.readers.read_scan` from the reading options."""
    vox = None
    if voxel_mm is not None:
        try:
            vox = tuple(float(v) for v in voxel_mm.split(","))
        except ValueError:
            vox = ()
        if len(vox) != 3 or min(vox) <= 0:
            raise MrfreconError(f"--voxel-mm {voxel_mm!r}: expected three positive sizes in mm, e.g. 1,1,8")
    return {"axes": axes, "mask": mask, "phase_units": phase_units, "pair": pair, "voxel_mm": vox, "orientation": orientation}


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
@click.option("--threads", type=int, default=None,
              help="CPU threads of every stage (default: the cores free when each stage starts).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, device: str | None, threads: int | None) -> None:
    """mrfrecon: water T1 (ms), fat fraction (0-1) and B1 (a.u.) maps from MR fingerprinting.

    Times are in ms, off-resonance in Hz, flip angles in degrees.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if threads is not None:
        set_threads(threads, echo=lambda _msg: None)
    if device:
        from ..runtime import default_device

        default_device(device, what="--device")  # refuse a bogus or absent device before any work
        os.environ["MRFRECON_DEVICE"] = device


class Num(click.ParamType):
    """A finite number (``integer``: a whole one) in ``[lo, hi]`` (``lo_open``: ``(lo, hi]``);
    ``allow_inf`` also takes ``inf`` (e.g. an SNR without noise). Refusals name the option."""

    def __init__(self, lo: float, hi: float = float("inf"), *, lo_open: bool = False, integer: bool = False,
                 allow_inf: bool = False) -> None:
        self.lo, self.hi, self.lo_open, self.integer, self.allow_inf = lo, hi, lo_open, integer, allow_inf
        self.name = "integer" if integer else "number"

    def convert(self, value, param, ctx):
        import math

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = int(str(value), 10) if self.integer else float(str(value))
            except ValueError:
                self.fail(f"expected {'an integer' if self.integer else 'a number'}, got {value!r}", param, ctx)
        if math.isnan(v) or (math.isinf(v) and not self.allow_inf):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        low_bad = v <= self.lo if self.lo_open else v < self.lo
        if low_bad or (v > self.hi and not (self.allow_inf and math.isinf(v))):
            rng = f"{'>' if self.lo_open else '>='} {self.lo:g}" + (f" and <= {self.hi:g}" if math.isfinite(self.hi) else "")
            self.fail(f"expected {'an integer' if self.integer else 'a number'} {rng}, got {value!r}", param, ctx)
        return v


#: shared option types (the limits are the physics' or the machine's, not a matter of taste)
SEED = Num(0, 2**63 - 1, integer=True)
PROCESSES = Num(1, 256, integer=True)
COUNT = Num(1, 10**9, integer=True)

_seq_opts = [
    click.option("--sequence", "sequence_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Sequence JSON file (default: the built-in MRF-WF schedule)."),
    click.option("--echo-spacing", type=Num(0.0, 1000.0, lo_open=True), default=1.11, show_default=True,
                 help="MRF-WF echo spacing TR − TE in ms (when no --sequence is given)."),
]


def set_threads(threads: int | None, echo=click.echo) -> int:
    """Fix the CPU threads to ``threads`` for the rest of the command (:func:`mrfrecon.runtime.set_threads`
    and torch's own count), or, with ``None``, leave the choice to each stage
    (:func:`mrfrecon.runtime.auto_threads`: the cores free when it starts). Returns the number
    fixed, or the automatic choice at this moment."""
    import torch

    from ..runtime import auto_threads
    from ..runtime import set_threads as _set

    if threads is not None and not 1 <= threads <= 1024:
        raise MrfreconError(f"--threads: expected 1 to 1024, got {threads}")
    if threads is not None:
        _set(threads)
        torch.set_num_threads(threads)
        echo(f"torch threads: {threads}")
        return threads
    n = auto_threads()
    echo(f"torch threads: auto, chosen per stage from the free cores ({n} now)")
    return n


def _option_value(text: str) -> bool | int | float | str:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_model_options(items: tuple[str, ...]) -> dict[str, bool | int | float | str]:
    """``("batchnorm=false", "activation=relu")`` → ``{"batchnorm": False, "activation": "relu"}``;
    the names are checked against the network's options when it is built."""
    out: dict[str, bool | int | float | str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise MrfreconError(f"--option {item!r}: expected NAME=VALUE, e.g. batchnorm=false")
        name = name.strip().replace("-", "_")
        if name in out:
            raise MrfreconError(f"--option: {name} given twice")
        out[name] = _option_value(value)
    return out
