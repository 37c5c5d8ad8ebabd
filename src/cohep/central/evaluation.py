"""Score saved weights on any data set: accuracy, per-class efficiency and purity, confusion.

The model source is a ``cohep train`` checkpoint or a run directory (:func:`cohep.outputs.checkpoint.resolve`);
its weights' sha256 is checked against the recorded digest before use. The data set is any file a
run can read (an HDF5 event file from the simulator, another detector or ``cohep import``; MNIST):
its class names label the report, and data the model does not fit (class count, image shape) is a
one-line error before anything is computed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cohep.outputs import checkpoint
from cohep import models
from cohep.core.errors import DataError
from cohep.core.files import json_safe, write_json
from cohep.frameworks.training import TrainConfig
from cohep.central.metrics import ClassificationMetrics
from cohep.wire.weights import mismatch


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
        })

    def text(self) -> str:
        m = self.metrics
        head = (f"model {self.model['name']} ({self.source_kind} {self.source}) on {self.data}: "
                f"{m.n_events} events\naccuracy {m.accuracy:.4f}   loss {m.loss:.4f}   "
                f"({self.images_per_s:.0f} events/s)\n")
        return head + "\n" + m.table()


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
) -> EvalReport:
    """Score a checkpoint or a run's final weights on a data file; optional JSON and figure."""
    from cohep.config.experiment import DataSection
    from cohep.datasets.source import load_data

    src = checkpoint.resolve(model_source)
    models.get(src.spec.name)  # unknown model names fail before any data is read
    data = load_data(DataSection(kind=data_kind, path=str(data_path)).resolved_kind(), str(data_path))
    check_compatible(src.spec, data.class_names, data.input_shape, data_path)
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
    metrics = ClassificationMetrics.from_predictions(labels, probs, data.class_names)
    report = EvalReport(
        source=str(model_source),
        source_kind=src.kind,
        weights_sha256=src.digest,
        data=str(data_path),
        model=src.spec.to_dict(),
        metrics=metrics,
        seconds=seconds,
        images_per_s=len(labels) / seconds if seconds > 0 else math.nan,
    )
    if out_json is not None:
        write_json(out_json, report.to_dict())
    if plot is not None:
        from cohep.outputs.plots.training import confusion_figure

        confusion_figure(
            metrics.confusion, metrics.class_names, plot,
            title=f"{src.spec.name} on {Path(str(data_path)).name}: accuracy {metrics.accuracy:.1%}",
        )
    return report
