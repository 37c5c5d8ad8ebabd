"""The Python API: the CLI's commands as functions a notebook can call (docs/api.md).

Each function takes plain Python values, builds its settings through the same layer the CLI uses
(so a bad value is the same one-line :class:`~cohep.core.errors.CohepError` naming ``section.field``)
and returns a typed result whose rows come out as a table: ``.table()`` (a list of dicts, no extra
package) or ``.to_pandas()`` (a DataFrame, when pandas is installed).

Settings come in three layers, later ones winning: ``config`` (a TOML path, a dict of tables, or an
:class:`~cohep.config.experiment.ExperimentConfig`), keyword arguments named after the experiment
file's tables (``experiment={"learners": 3}``, the shape of the TOML file and of
``ExperimentConfig.replace``), then ``overrides`` as ``{"section.field": value}`` (the CLI's flags).

The heavy modules (torch, the simulator) load when a function is called, not when this module is
imported, so ``import cohep`` stays quick.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cohep.core.errors import CohepError, ConfigError

if TYPE_CHECKING:
    from cohep.central.evaluation import EvalReport
    from cohep.central.scores import EventScores
    from cohep.outputs.export import Exported
    from cohep.central.train import TrainResult
    from cohep.config.experiment import ExperimentConfig
    from cohep.protocol.records import RoundRecord
    from cohep.run.local import RunResult
    from cohep.studies.quality import Contributions, QualityReport

__all__ = ["Evaluation", "Experiment", "Quality", "Training", "evaluate", "export", "quality", "merge", "run_experiment",
           "scores", "settings", "simulate", "train"]

PathLike = str | os.PathLike


# -- settings ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A path becomes its string (the settings hold paths as text, as a TOML file does)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _nested(overrides: Mapping[str, Any] | None) -> dict:
    """``{"train.lr": 0.1}`` -> ``{"train": {"lr": 0.1}}``; a key that is not ``section.field`` is one line."""
    from cohep.core.settings import dotted

    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must be a dict of 'section.field': value, got {type(overrides).__name__}")
    for key in overrides:
        if not isinstance(key, str) or "." not in key.strip(".") or "" in key.split("."):
            raise ConfigError(f"override {key!r} must name a section.field (like 'train.lr')")
    return dotted({key: _plain(value) for key, value in overrides.items()})


def _tables(sections: Mapping[str, Any]) -> dict:
    """Keyword arguments named after the file's tables; each must be a dict of fields."""
    from cohep.config.experiment import SECTIONS

    out = {}
    for name, table in sections.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown section {name}= (known: {', '.join(SECTIONS)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{name}= must be a dict of {name} fields, got {type(table).__name__}")
        out[name] = {field: _plain(value) for field, value in table.items()}
    return out


def settings(config: PathLike | Mapping[str, Any] | ExperimentConfig | None = None, *,
             overrides: Mapping[str, Any] | None = None, **sections: Mapping[str, Any]) -> ExperimentConfig:
    """The validated experiment settings the other functions run on (see the module docstring)."""
    from cohep.config import experiment as cfgmod
    from cohep.core.settings import merge

    changes = merge(_tables(sections), _nested(overrides))
    if config is None or isinstance(config, (str, os.PathLike)):
        return cfgmod.load(config, changes)
    if isinstance(config, cfgmod.ExperimentConfig):
        return config.replace(**changes)
    if isinstance(config, Mapping):
        cfgmod.from_dict(dict(config))  # the dict alone first, so its own mistakes are named as such
        return cfgmod.load(None, merge(dict(config), changes))
    raise ConfigError(f"config must be a TOML path, a dict of tables or an ExperimentConfig, "
                      f"got {type(config).__name__}")


# -- tables --------------------------------------------------------------------------------------


def _row(item: Any) -> dict:
    return dataclasses.asdict(item) if dataclasses.is_dataclass(item) and not isinstance(item, type) else dict(item)


class _Tabular:
    """A result whose rows read as a table; subclasses say what a row is."""

    def _rows(self) -> list[dict]:
        raise NotImplementedError

    def table(self) -> list[dict]:
        """One dict per row (column -> value); needs no extra package."""
        return [dict(row) for row in self._rows()]

    def to_pandas(self):
        """The rows as a pandas DataFrame."""
        try:
            import pandas
        except ImportError:
            raise CohepError(f"{type(self).__name__}.to_pandas needs pandas: pip install pandas "
                             "(or use .table(), which needs nothing)") from None
        return pandas.DataFrame.from_records(self.table())


@dataclass(frozen=True)
class Experiment(_Tabular):
    """A finished run: its records (one row per round and learner) and the run's own result."""

    result: RunResult

    @property
    def records(self) -> list[RoundRecord]:
        return self.result.records

    @property
    def out_dir(self) -> Path:
        return self.result.out_dir

    @property
    def final_accuracy(self) -> float:
        return self.result.final_accuracy

    @property
    def accepted(self) -> list[int]:
        return self.result.accepted

    def _rows(self) -> list[dict]:
        return [_row(r) for r in self.records]


@dataclass(frozen=True)
class Training(_Tabular):
    """A central training: one row per epoch, and the checkpoint it wrote."""

    result: TrainResult

    @property
    def out_dir(self) -> Path:
        return self.result.out_dir

    @property
    def checkpoint(self) -> Path:
        return self.result.files["checkpoint"]

    @property
    def best(self) -> dict:
        return self.result.best

    def _rows(self) -> list[dict]:
        return [dict(row) for row in self.result.history]


@dataclass(frozen=True)
class Evaluation(_Tabular):
    """Trained weights scored on an event file: one row per class (events, efficiency, purity)."""

    report: EvalReport

    @property
    def accuracy(self) -> float:
        return self.report.accuracy

    def text(self) -> str:
        return self.report.text()

    def _rows(self) -> list[dict]:
        m = self.report.metrics
        return [{"class": name, "events": m.events_per_class[i], "efficiency": m.efficiency[i],
                 "purity": m.purity[i]} for i, name in enumerate(m.class_names)]


@dataclass(frozen=True)
class Quality(_Tabular):
    """Per-learner data quality, one row per learner, worst first; Shapley values when asked for."""

    report: QualityReport
    contributions: Contributions | None = None

    def text(self) -> str:
        return "\n".join([self.report.text(), *([self.contributions.text()] if self.contributions else [])])

    def _rows(self) -> list[dict]:
        return [_row(q) for q in self.report.ranked()]


# -- the commands --------------------------------------------------------------------------------


def _path(value: Any, what: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise CohepError(f"{what} must be a path, got {type(value).__name__}")
    return Path(value)


def simulate(events: int, out: PathLike, *, seed: int = 0, workers: int = 1, detector: str | None = None,
             config: PathLike | None = None, progress: bool = False, client: Any = None,
             scheduler: str | None = None, shard: tuple[int, int] | None = None) -> Path:
    """``cohep simulate``: ``events`` LArTPC events to the HDF5 file ``out``; returns its path.

    One worker by default (a notebook's kernel need not fork); the content does not depend on it.
    ``client``: a ``distributed.Client`` whose cluster simulates the blocks of events (``scheduler``:
    its address, or ``local:K``); ``shard=(i, N)``: only shard i of N (0-based), for :func:`merge`.
    The same seed gives the same bytes on every one of these ways.
    """
    from cohep.lartpc.simulate import default_config, load_config, simulate as run_simulation

    out = _path(out, "out")
    cfg = load_config(_path(config, "config"), detector=detector) if config is not None else \
        default_config(detector or "microboone")
    return run_simulation(events, out, seed=seed, workers=workers, config=cfg, progress=progress, client=client,
                          scheduler=scheduler, shard=shard)


def merge(shards: Sequence[PathLike], out: PathLike) -> Path:
    """``cohep merge``: the shards of one simulation run joined into the whole run's file (byte for byte)."""
    from cohep.lartpc.shards import merge as merge_shards

    return merge_shards([_path(p, "shard") for p in shards], _path(out, "out"))


def run_experiment(config: PathLike | Mapping[str, Any] | ExperimentConfig | None = None, *,
                   out: PathLike | None = None, figure: bool = False,
                   overrides: Mapping[str, Any] | None = None, **sections: Mapping[str, Any]) -> Experiment:
    """``cohep run``: a collaborative (or baseline) experiment into ``out`` (default runs/<name>).

    Named ``run_experiment`` because ``cohep.run`` is the package of runners. No figure by default.
    """
    from cohep.run.local import run_experiment as run_local

    cfg = settings(config, overrides=overrides, **sections)
    target = _path(out, "out") if out is not None else Path("runs") / cfg.experiment.name
    return Experiment(run_local(cfg, target, figure=figure))


def train(config: PathLike | Mapping[str, Any] | ExperimentConfig | None = None, *, out: PathLike | None = None,
          progress: bool = False, overrides: Mapping[str, Any] | None = None,
          **sections: Mapping[str, Any]) -> Training:
    """``cohep train``: one model trained centrally on ``data.path`` for ``central.epochs``."""
    from cohep.central.train import train_from_config

    cfg = settings(config, overrides=overrides, **sections)
    return Training(train_from_config(cfg, out_dir=_path(out, "out") if out is not None else None,
                                      progress=progress))


def evaluate(source: PathLike | Experiment | Training, data: PathLike, *, batch_size: int = 64,
             device: str = "auto", json: PathLike | None = None, plot: PathLike | None = None,
             scores: PathLike | None = None, plots: PathLike | None = None, vs: tuple[str, ...] | list[str] = ("nu_energy",),
             log: bool = False, balance: str | tuple[str, str] | None = None,
             balance_on: PathLike | None = None) -> Evaluation:
    """``cohep evaluate``: a checkpoint, a run directory (or the result naming one) scored on ``data``;
    ``scores=`` writes the per-event scores (``.parquet`` or ``.h5``; read back with :func:`scores`),
    ``plots=`` a folder of classifier figures; ``balance=("NC", "numu_CC")`` with ``balance_on=`` a
    validation file of one's own decides between those two classes at the working point that equalises
    their efficiencies there (``--balance``)."""
    from cohep.central.evaluation import evaluate as run_evaluation

    if isinstance(source, Experiment):
        source = source.out_dir
    elif isinstance(source, Training):
        source = source.checkpoint
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return Evaluation(run_evaluation(
        _path(source, "source"), _path(data, "data"), batch_size=batch_size, device=device,
        out_json=_path(json, "json") if json is not None else None,
        plot=_path(plot, "plot") if plot is not None else None,
        scores=_path(scores, "scores") if scores is not None else None,
        plots=_path(plots, "plots") if plots is not None else None, vs=tuple(vs), log=bool(log),
        balance=balance if balance is None or isinstance(balance, str) else tuple(balance),
        balance_on=_path(balance_on, "balance_on") if balance_on is not None else None))


def scores(path: PathLike) -> EventScores:
    """A per-event scores file of ``evaluate(scores=...)``: ``.scores``, ``.labels``, ``.truth``, ``.to_pandas()``."""
    from cohep.central.scores import read

    return read(_path(path, "path"))


def export(source: PathLike | Experiment | Training, *, onnx: PathLike | None = None,
           torchscript: PathLike | None = None, keras: PathLike | None = None) -> Exported:
    """``cohep export``: a checkpoint or run's weights as ONNX / TorchScript (torch) or ``.keras`` (Keras)."""
    from cohep.outputs.export import export as run_export

    if isinstance(source, Experiment):
        source = source.out_dir
    elif isinstance(source, Training):
        source = source.checkpoint
    opt = lambda v, what: _path(v, what) if v is not None else None  # noqa: E731
    return run_export(_path(source, "source"), onnx=opt(onnx, "onnx"), torchscript=opt(torchscript, "torchscript"),
                      keras=opt(keras, "keras"))


def quality(run: PathLike | Experiment | None = None, *, experiment: PathLike | None = None,
            rpc: str | None = None, shapley: bool = False, permutations: int | None = None,
            client: Any = None, scheduler: str | None = None) -> Quality:
    """``cohep quality``: per-learner data quality of a finished run, or of a deployed experiment's events.

    ``client`` (a ``distributed.Client``) or ``scheduler`` (an address, ``local:K``): the Shapley
    retrainings run on that Dask cluster, with the same values."""
    from cohep.studies import quality as q

    if isinstance(run, Experiment):
        run = run.out_dir
    if (run is None) == (experiment is None):
        raise CohepError("give a run (directory or result), or experiment= a deployed experiment file with rpc=")
    if experiment is not None and rpc is None:
        raise CohepError("experiment= needs rpc=")
    if shapley and run is None:
        raise CohepError("shapley=True needs a run (it retrains on the run's data)")
    report = q.from_run(_path(run, "run")) if run is not None else q.from_chain(_path(experiment, "experiment"), rpc)
    contrib = None
    if shapley:
        from cohep.core.executor import resolve

        ex, close = resolve(client=client, scheduler=scheduler)
        try:
            contrib = q.contributions_of_run(_path(run, "run"), permutations=permutations or None, executor=ex)
        finally:
            if close:
                ex.close()
    return Quality(report, contrib)
