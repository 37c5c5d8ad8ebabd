"""Score saved weights on any data set: accuracy, per-class efficiency and purity, confusion.

The model source is a ``cohep train`` checkpoint or a run directory (:func:`cohep.outputs.checkpoint.resolve`);
its weights' sha256 is checked against the recorded digest before use. The data set is any file a
run can read (an HDF5 event file from the simulator, another detector or ``cohep import``; MNIST):
its class names label the report, and data the model does not fit (class count, image shape) is a
one-line error before anything is computed.

Beyond the summary: ``scores`` writes every event's class scores, prediction and truth
(:mod:`cohep.central.scores`), ``plots`` a folder of the figures a classifier paper shows
(:mod:`cohep.central.selection`, :mod:`cohep.outputs.plots.classifier`): ``roc.png``, ``scores.png``
(``scores_log.png`` with ``log``), ``efficiency_purity.png`` and ``efficiency_vs_<variable>.png`` for
each truth variable in ``vs`` the file carries (``nu_energy`` by default). ``balance`` decides between
two confusable classes at a working point fitted on another file of the user's (:func:`balance_classes`,
:mod:`cohep.central.working_point`) instead of the arg-max.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cohep.outputs import checkpoint
from cohep import models
from cohep.core.errors import DataError
from cohep.core.files import json_safe, write_json
from cohep.frameworks.training import TrainConfig
from cohep.central import working_point
from cohep.central.metrics import ClassificationMetrics
from cohep.central.scores import HDF5, PARQUET, EventScores
from cohep.central.selection import binned, select_all
from cohep.wire.weights import mismatch


SCORE_SUFFIXES = PARQUET + HDF5


@dataclass
class EvalReport:
    """The result of ``cohep evaluate``."""

    source: str
    source_kind: str
    weights_sha256: str | None
    data: str
    model: dict
    metrics: ClassificationMetrics
    seconds: float
    images_per_s: float
    selections: list = field(default_factory=list)  #: one ClassSelection per class (ROC, AUC, best cut)
    binned: list = field(default_factory=list)  #: one Binned per truth variable asked for and present
    files: dict = field(default_factory=dict)  #: what was written: scores, figures
    #: ``--balance``: the working point the decisions were taken at (None: the arg-max)
    working_point: dict | None = None

    @property
    def accuracy(self) -> float:
        return self.metrics.accuracy

    def to_dict(self) -> dict:
        return json_safe({
            "source": self.source,
            "source_kind": self.source_kind,
            "weights_sha256": self.weights_sha256,
            "data": self.data,
            "model": self.model,
            **self.metrics.to_dict(),
            "seconds": self.seconds,
            "images_per_s": self.images_per_s,
            "selections": [s.to_dict() for s in self.selections],
            "binned": [b.to_dict() for b in self.binned],
            "files": {k: str(v) for k, v in self.files.items()},
            "working_point": self.working_point,
        })

    def text(self) -> str:
        m = self.metrics
        head = (f"model {self.model['name']} ({self.source_kind} {self.source}) on {self.data}: "
                f"{m.n_events} events\naccuracy {m.accuracy:.4f}   loss {m.loss:.4f}   "
                f"({self.images_per_s:.0f} events/s)\n")
        if self.working_point is not None:
            w = self.working_point
            head += (f"working point: {w['class_a']} against {w['class_b']} balanced on {w['fitted_on']} "
                     f"({w['offset']:+.3f} on the {w['class_a']} log-probability; there {w['class_a']} "
                     f"{w['efficiency_a']:.3f} / {w['class_b']} {w['efficiency_b']:.3f} on {w['events_a']} / "
                     f"{w['events_b']} events); every other decision is the arg-max's\n")
        text = head + "\n" + m.table()
        if self.selections:
            w = max(8, *(len(s.name) for s in self.selections))
            lines = ["", "one-vs-rest selection on each class's score (best cut: maximum efficiency x purity, 95 % Wilson)",
                     f"{'class':<{w}}  {'AUC':>6}  {'cut':>6}  {'efficiency':>24}  {'purity':>24}"]
            for s in self.selections:
                e, p = s.best_efficiency, s.best_purity
                cell = lambda v: "n/a" if not math.isfinite(v[0]) else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"  # noqa: E731
                lines.append(f"{s.name:<{w}}  {s.auc:>6.3f}  {s.best_cut:>6.3f}  {cell(e):>24}  {cell(p):>24}")
            text += "\n" + "\n".join(lines)
        return text


def check_compatible(spec, class_names, image_shape, data_path) -> None:
    """The data must have the classes and image shape the weights were trained for."""
    if len(class_names) != spec.n_classes:
        raise DataError(
            f"{data_path}: {len(class_names)} classes ({', '.join(class_names)}) but model {spec.name} "
            f"was trained for {spec.n_classes}"
        )
    if tuple(image_shape) != tuple(spec.input_shape):
        raise DataError(
            f"{data_path}: images of shape {list(image_shape)} but model {spec.name} expects "
            f"{list(spec.input_shape)}"
        )


def evaluate(
    model_source: str | Path,
    data_path: str | Path,
    *,
    out_json: str | Path | None = None,
    plot: str | Path | None = None,
    batch_size: int = 64,
    device: str = "auto",
    data_kind: str = "auto",
    scores: str | Path | None = None,
    plots: str | Path | None = None,
    vs: tuple[str, ...] | list[str] = ("nu_energy",),
    log: bool = False,
    balance: str | tuple[str, ...] | list[str] | None = None,
    balance_on: str | Path | None = None,
) -> EvalReport:
    """Score a checkpoint or a run's final weights on a data file; optional JSON, scores and figures.

    ``balance`` (two class names, or the flag's text ``"A,B"``) with ``balance_on`` (another data file:
    the user's own validation or vote set, never the one scored): decide between those two classes at the working point that gives
    them equal efficiency on ``balance_on`` (:mod:`cohep.central.working_point`), every other decision
    the arg-max's; the efficiencies, purities, confusion and binned efficiencies are then the working
    point's (ROC and one-vs-rest cuts are on the scores, which it does not change)."""
    from cohep.config.experiment import DataSection
    from cohep.datasets.source import load_data

    src = checkpoint.resolve(model_source)
    models.get(src.spec.name)  # unknown model names fail before any data is read
    data = load_data(DataSection(kind=data_kind, path=str(data_path)).resolved_kind(), str(data_path))
    check_compatible(src.spec, data.class_names, data.input_shape, data_path)
    truth, units = read_truth(data, data_path)  # the outputs asked for are checked before anything is scored
    unknown = [v for v in vs if v not in truth and v != "nu_energy"]  # the default may be absent (MNIST)
    if unknown:
        raise DataError(f"{data_path}: no truth variable {', '.join(unknown)} (it has: {', '.join(truth) or 'none'})")
    if scores is not None and Path(scores).suffix.lower() not in SCORE_SUFFIXES:
        raise DataError(f"--scores {scores}: a scores file ends in {', '.join(SCORE_SUFFIXES)}")
    pair = balance_classes(balance, balance_on, data.class_names, data_path)
    fitting = None
    if pair is not None:
        fitting = load_data(DataSection(kind=data_kind, path=str(balance_on)).resolved_kind(), str(balance_on))
        check_compatible(src.spec, fitting.class_names, fitting.input_shape, balance_on)
        if list(fitting.class_names) != list(data.class_names):
            raise DataError(f"--balance-on {balance_on}: classes {', '.join(fitting.class_names)}, but {data_path} "
                            f"has {', '.join(data.class_names)}")
    weights = src.load_weights()
    reason = mismatch(weights, models.initial_weights(src.spec, 0))
    if reason is not None:
        raise DataError(f"{src.weights_path}: weights do not fit model {src.spec.name} of {src.path.name}: {reason}")
    dataset = data.subset(np.arange(len(data)))
    config = TrainConfig(eval_batch_size=batch_size, device=device)
    learner = models.build_learner(src.spec, None, None, None, config, seed=0, initial=weights)
    start = time.perf_counter()
    probs, labels = learner.predict(dataset)
    seconds = time.perf_counter() - start
    info = {"model": src.spec.to_dict(), "weights_sha256": src.digest, "source": str(src.path), "data": str(data_path)}
    point = None
    if pair is not None and fitting is not None:
        point = info["working_point"] = fit_working_point(learner, fitting, pair, balance_on)
    per_event = EventScores(list(data.class_names), probs, labels, truth, units, info)  # decides at the point
    metrics = ClassificationMetrics.from_predictions(labels, probs, data.class_names,
                                                     per_event.predicted if point is not None else None)
    report = EvalReport(
        source=str(model_source),
        source_kind=src.kind,
        weights_sha256=src.digest,
        data=str(data_path),
        model=src.spec.to_dict(),
        metrics=metrics,
        seconds=seconds,
        images_per_s=len(labels) / seconds if seconds > 0 else math.nan,
        working_point=point,
    )
    report.selections = select_all(per_event.scores, per_event.labels, data.class_names)
    for name in vs:
        if name in per_event.truth:
            report.binned.append(binned(per_event.truth[name], per_event.labels, per_event.predicted, data.class_names,
                                        variable=name, unit=per_event.units.get(name, "")))
    if scores is not None:
        report.files["scores"] = per_event.write(scores)
    if plots is not None:
        title = f"{src.spec.name} on {Path(str(data_path)).name}"
        report.files.update(draw_plots(report, per_event, plots, log=log, title=title))
    if out_json is not None:
        write_json(out_json, report.to_dict())
    if plot is not None:
        from cohep.outputs.plots.training import confusion_figure

        confusion_figure(
            metrics.confusion, metrics.class_names, plot,
            title=f"{src.spec.name} on {Path(str(data_path)).name}: accuracy {metrics.accuracy:.1%}",
        )
    return report


def balance_classes(balance, balance_on, class_names, data_path) -> tuple[int, int] | None:
    """``--balance A,B`` (the flag's text, or the two names) as two class indices of the data (None without
    it); one line for a name the data lacks, one class twice, or no file to fit on."""
    if balance is None:
        if balance_on is not None:
            raise DataError("--balance-on needs --balance A,B: the two classes whose efficiencies to equalise")
        return None
    if isinstance(balance, str):
        balance = [x.strip() for x in balance.split(",")]
    names = list(class_names)
    if len(balance) != 2 or balance[0] == balance[1]:
        raise DataError(f"--balance {','.join(balance)}: two different class names, e.g. "
                        f"--balance {','.join(names[:2])}")
    missing = [b for b in balance if b not in names]
    if missing:
        raise DataError(f"--balance: {data_path} has no class {', '.join(map(repr, missing))} "
                        f"(its classes: {', '.join(names)})")
    if balance_on is None:
        raise DataError("--balance needs --balance-on FILE: the working point is fitted on a set of your own "
                        "(a validation or vote set), not on the events it is scored on")
    if Path(str(balance_on)).resolve() == Path(str(data_path)).resolve():
        raise DataError(f"--balance-on {balance_on}: the events scored; fit the working point on another set")
    return names.index(balance[0]), names.index(balance[1])


def fit_working_point(learner, fitting, pair: tuple[int, int], path) -> dict:
    """The working point between ``pair`` fitted on the ``fitting`` data's events, as the report records it."""
    probs, labels = learner.predict(fitting.subset(np.arange(len(fitting))))
    a, b = pair
    try:
        point = working_point.fit(working_point.logits_of(probs), labels, a, b)
    except DataError as exc:
        raise DataError(f"--balance-on {path}: {exc}") from None
    names = list(fitting.class_names)
    return {"a": a, "b": b, "class_a": names[a], "class_b": names[b], "offset": point.offset,
            "fitted_on": str(path), "efficiency_a": point.eff_a, "efficiency_b": point.eff_b,
            "events_a": point.n_a, "events_b": point.n_b}


def read_truth(data, data_path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The event file's truth fields and their units (none for MNIST)."""
    if data.kind != "events":
        return {}, {}
    from cohep.datasets.events import EventFile

    with EventFile(data_path) as f:
        return {k: np.asarray(v) for k, v in f.truth.items()}, {k: v for k, v in f.truth_units().items() if v}


def draw_plots(report: EvalReport, per_event: EventScores, folder: str | Path, *, log: bool = False,
               title: str = "") -> dict[str, Path]:
    """The classifier figures into ``folder``; returns their paths by name."""
    from cohep.outputs.plots import classifier

    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise DataError(f"--plots {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "roc": classifier.roc_figure(report.selections, out / "roc.png", title=title),
        "score_distributions": classifier.score_figure(per_event.scores, per_event.labels, per_event.class_names,
                                                       out / "scores.png", title=title),
        "efficiency_purity": classifier.efficiency_purity_figure(report.selections, out / "efficiency_purity.png",
                                                                 title=title),
    }
    if log:
        files["scores_log"] = classifier.score_figure(per_event.scores, per_event.labels, per_event.class_names,
                                                      out / "scores_log.png", log=True, title=title)
    for b in report.binned:
        files[f"efficiency_vs_{b.variable}"] = classifier.binned_figure(b, out / f"efficiency_vs_{b.variable}.png",
                                                                        title=title)
    return files
