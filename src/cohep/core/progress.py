"""One progress-bar style for every long step (simulation, training, rounds)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def enabled() -> bool:
    """Bars are drawn on a terminal, never in CI logs or when COHEP_PROGRESS=0 (or ``lines``)."""
    if os.environ.get("COHEP_PROGRESS") in ("0", "lines"):
        return False
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


@contextlib.contextmanager
def progress() -> Iterator[Progress]:
    """A rich Progress with description, bar, n/total, elapsed and remaining time."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled(),
        transient=False,
    )
    with bar:
        yield bar


def line(text: str) -> None:
    """One plain line per step for batch jobs (``COHEP_PROGRESS=lines``: a SLURM or CI log, where a
    bar would be noise and a silent hour-long run tells nothing)."""
    if os.environ.get("COHEP_PROGRESS") == "lines":
        print(text, file=sys.stderr, flush=True)


def elapsed(start: float) -> str:
    """The time since ``start`` (a ``time.perf_counter()`` reading), labelled: ``42 s elapsed``."""
    return f"{time.perf_counter() - start:.0f} s elapsed"
