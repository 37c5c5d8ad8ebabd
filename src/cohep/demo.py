"""The neutrino demo behind ``make demo``: simulate, learn collaboratively, show the result.

It needs nothing but this package: a small LArTPC data set is simulated, three learners train the
compact multi-view CNN through the on-chain protocol, and the run directory receives the event
display (Figure 3), the round figure (Figure 5 in the paper's numbering) and a run report.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import config as cfgmod
from .runner import RunResult, run_experiment


@dataclass(frozen=True)
class DemoSettings:
    events: int = 3000
    learners: int = 3
    rounds: int = 15
    seed: int = 0
    workers: int = 2
    model: str = "compact"
    epochs: float = 2.0
    lr_schedule: str = "cosine"  #: the recipe of experiments/fig5_compact.toml


def demo_config(data_path: Path, s: DemoSettings) -> cfgmod.ExperimentConfig:
    return cfgmod.load(None, {
        "experiment": {"name": "neutrino-demo", "learners": s.learners, "rounds": s.rounds, "seed": s.seed},
        "data": {"kind": "events", "path": str(data_path), "holdout": 0.2, "split": "iid", "vote_fraction": 0.2},
        "model": {"name": s.model},
        "train": {"epochs": s.epochs, "batch_size": 32, "lr": 2e-3, "lr_schedule": s.lr_schedule},
    })


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings()) -> tuple[RunResult, dict[str, Path]]:
    from .lartpc.simulate import simulate
    from .plots.events import event_display

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "events.h5"
    simulate(settings.events, data, seed=settings.seed, workers=settings.workers)
    shown = {f"event_{i}": event_display(data, i, out / f"event_{i}.png") for i in range(3)}
    result = run_experiment(demo_config(data, settings), out / "run")
    return result, {"data": data, **shown}
