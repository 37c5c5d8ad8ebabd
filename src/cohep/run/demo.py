"""The neutrino demo behind ``make demo``: simulate, learn collaboratively, show the result.

It needs nothing but this package: a small LArTPC data set is simulated, three learners train the
compact multi-view CNN through the on-chain protocol, and the run directory receives the event
displays (the paper's Figure 3), the round figure (its Figure 2: scores above the vote grid) and a
run report.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import ClassVar

from cohep.config import experiment as cfgmod
from cohep.outputs import rundir
from cohep.core.errors import ConfigError
from cohep.run.local import RunResult, run_experiment
from cohep.core.settings import Section, setting


DATA = "events.h5"  #: the simulated events, in the demo directory (``cohep demo --overwrite`` looks for it)


@dataclass(frozen=True)
class DemoSettings(Section):
    """``cohep demo``: how big a demo to run (the defaults take about a minute on 2 cores)."""

    section: ClassVar[str] = "demo"

    events: int = setting(3000, ge=1, help="Events to simulate.")
    learners: int = setting(3, ge=2, help="Number of learners.")
    rounds: int = setting(15, ge=1, help="Number of rounds.")
    seed: int = setting(0, ge=0, help="Seed for simulation and learning.")
    workers: int = setting(2, ge=0, help="Simulation worker processes (0: all cores).")
    model: str = "compact"
    epochs: float = 2.0
    lr_schedule: str = "cosine"  #: the recipe of experiments/fig5_compact.toml

    def check(self) -> None:
        if self.events < 10 * self.learners:
            raise ConfigError(
                f"demo.events: need at least {10 * self.learners} events for {self.learners} learners, got {self.events}"
            )


def demo_config(data_path: Path, s: DemoSettings) -> cfgmod.ExperimentConfig:
    return cfgmod.load(None, {
        "experiment": {"name": "neutrino-demo", "learners": s.learners, "rounds": s.rounds, "seed": s.seed},
        "data": {"kind": "events", "path": str(data_path), "holdout": 0.2, "split": "iid", "vote_fraction": 0.2},
        "model": {"name": s.model},
        "train": {"epochs": s.epochs, "batch_size": 32, "lr": 2e-3, "lr_schedule": s.lr_schedule},
    })


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(),
             announce: Callable[[str], None] | None = None) -> tuple[RunResult, dict[str, Path]]:
    """Simulate the demo's events, draw three, and run the experiment on them; ``announce`` gets the run's
    start line (what it chose: model, protocol, augmentation) before any training."""
    from cohep.lartpc.simulate import simulate
    from cohep.outputs.plots.events import event_display

    with rundir.created(out_dir) as out:
        data = out / DATA
        simulate(settings.events, data, seed=settings.seed, workers=settings.workers)
        shown = {f"event_{i}": event_display(data, i, out / f"event_{i}.png") for i in range(3)}
        result = run_experiment(demo_config(data, settings), out / "run", announce=announce)
    return result, {"data": data, **shown}
