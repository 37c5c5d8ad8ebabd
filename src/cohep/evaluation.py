"""Score trained weights on any event data set: accuracy, per-class efficiency and purity, confusion.

A *model source* is one of

* a checkpoint written by ``cohep train``: ``checkpoint.json`` beside ``best.safetensors`` (either
  file, or their folder, may be named);
* a run directory written by the collaborative runner: ``manifest.json`` with ``"model"`` (the spec)
  and the final accepted weights (``files.weights``, default ``final_weights.safetensors``).

The weights' sha256 is checked against the digest the checkpoint or manifest recorded. The data set is
any HDF5 event file (DESIGN.md section 4), from the simulator or from another detector: its class names
label the report; a class count or image shape that does not fit the model is a one-line DataError.

Definitions (rows of the confusion matrix are true classes, columns predicted classes):
efficiency of class c = N(true c, predicted c) / N(true c) (recall); purity of class c =
N(true c, predicted c) / N(predicted c) (precision). An empty denominator gives null in JSON.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CohepError, DataError, IntegrityError
from .files import atomic_write_text
from .learner import Weights

CHECKPOINT_FORMAT = "cohep-checkpoint-1"
CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_WEIGHTS = "best.safetensors"
RUN_MANIFEST = "manifest.json"
RUN_WEIGHTS = "final_weights.safetensors"


# -- metrics -------------------------------------------------------------------------------------
def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` (int64, n_classes x n_classes)."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    return cm


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(n) / float(d) if d > 0 else None for n, d in zip(num, den)]


def normalise_rows(cm: np.ndarray) -> list[list[float | None]]:
    """Row-normalised confusion matrix (each true class sums to 1); an empty row is all null."""
    cm = np.asarray(cm)
    out = []
    for row in cm:
        total = row.sum()
        out.append([float(v) / float(total) if total > 0 else None for v in row])
    return out


@dataclass
class ClassificationMetrics:
    """Accuracy, loss and the per-class view of one set of predictions."""

    class_names: list[str]
    n_events: int
    accuracy: float
    loss: float
    efficiency: list[float | None]
    purity: list[float | None]
    confusion: list[list[int]]
    confusion_normalised: list[list[float | None]]
    events_per_class: list[int]

    @classmethod
    def from_predictions(
        cls, labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
    ) -> "ClassificationMetrics":
        labels = np.asarray(labels, dtype=np.int64)
        n = len(class_names)
        if len(labels) == 0:
            empty = np.zeros((n, n), dtype=np.int64)
            return cls(list(class_names), 0, math.nan, math.nan, [None] * n, [None] * n,
                       empty.tolist(), normalise_rows(empty), [0] * n)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != n:
            raise DataError(f"model gives {probs.shape[-1]} class scores but the data has {n} classes")
        predicted = probs.argmax(1)
        cm = confusion_matrix(labels, predicted, n)
        p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
        diag = np.diag(cm)
        return cls(
            class_names=list(class_names),
            n_events=int(len(labels)),
            accuracy=float((predicted == labels).mean()),
            loss=float(-np.log(p_true).mean()),
            efficiency=_ratio(diag, cm.sum(1)),
            purity=_ratio(diag, cm.sum(0)),
            confusion=cm.tolist(),
            confusion_normalised=normalise_rows(cm),
            events_per_class=cm.sum(1).tolist(),
        )

    def to_dict(self) -> dict:
        return _json_safe(asdict(self))

    def table(self) -> str:
        """The per-class table and the confusion matrix as fixed-width text."""
        names = self.class_names
        w = max(8, *(len(c) for c in names))
        fmt = lambda v: "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"  # noqa: E731
        lines = [f"{'class':<{w}}  {'events':>7}  {'efficiency':>10}  {'purity':>7}"]
        for i, c in enumerate(names):
            lines.append(f"{c:<{w}}  {self.events_per_class[i]:>7d}  {fmt(self.efficiency[i]):>10}  {fmt(self.purity[i]):>7}")
        lines.append("")
        lines.append("confusion matrix (rows: true class, columns: predicted), counts and row fractions")
        lines.append(" " * w + "  " + "  ".join(f"{c:>{w}}" for c in names))
        for i, c in enumerate(names):
            counts = "  ".join(f"{v:>{w}d}" for v in self.confusion[i])
            fracs = "  ".join(fmt(v).strip().rjust(6) for v in self.confusion_normalised[i])
            lines.append(f"{c:<{w}}  {counts}   | {fracs}")
        return "\n".join(lines)


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


# -- model sources -------------------------------------------------------------------------------
@dataclass
class ModelSource:
    """A resolved model source: what to build and which weights to load."""

    kind: str  # "checkpoint" or "run"
    path: Path  # the checkpoint.json or manifest.json
    weights_path: Path
    spec: object  # ModelSpec
    digest: str | None  # sha256 hex of the weights file, as recorded
    info: dict = field(default_factory=dict)

    def load_weights(self) -> Weights:
        from .weights import decode

        try:
            blob = self.weights_path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read weights {self.weights_path}: {exc.strerror or exc}") from None
        actual = hashlib.sha256(blob).hexdigest()
        if self.digest and actual != self.digest:
            raise IntegrityError(
                f"{self.weights_path}: sha256 {actual} does not match {self.digest} recorded in {self.path.name}"
            )
        self.digest = actual
        return decode(blob)


def spec_from_dict(data: dict, where: str = "model"):
    """A ModelSpec from its ``to_dict`` form; a missing or malformed field is a one-line CohepError."""
    from .models.registry import ModelSpec

    try:
        return ModelSpec(
            name=str(data["name"]),
            input_shape=tuple(int(s) for s in data["input_shape"]),
            n_classes=int(data["n_classes"]),
            params=dict(data.get("params") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CohepError(f"{where}: malformed model spec ({exc.__class__.__name__}: {exc})") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object")
    return data


def resolve_source(source: str | Path) -> ModelSource:
    """Find the spec and weights of a checkpoint (file or folder) or a run directory."""
    p = Path(source)
    if not p.exists():
        raise DataError(f"model source {p} does not exist")
    if p.is_dir():
        if (p / CHECKPOINT_JSON).exists():
            p = p / CHECKPOINT_JSON
        elif (p / RUN_MANIFEST).exists():
            p = p / RUN_MANIFEST
        else:
            raise DataError(f"{p} holds neither {CHECKPOINT_JSON} (a `cohep train` checkpoint) nor {RUN_MANIFEST} (a run)")
    elif p.suffix == ".safetensors":
        for meta in (CHECKPOINT_JSON, RUN_MANIFEST):
            if (p.parent / meta).exists():
                resolved = resolve_source(p.parent / meta)
                if resolved.weights_path.resolve() != p.resolve():
                    # an explicitly named weights file other than the recorded one: no recorded digest
                    resolved.weights_path, resolved.digest = p, None
                return resolved
        raise DataError(f"{p}: no {CHECKPOINT_JSON} or {RUN_MANIFEST} beside it says which model it belongs to")
    data = _read_json(p)
    if "model" not in data or not isinstance(data["model"], dict):
        raise DataError(f"{p} has no model spec (\"model\")")
    spec = spec_from_dict(data["model"], str(p))
    if p.name == RUN_MANIFEST or "format" not in data:
        weights_name = (data.get("files") or {}).get("weights") or RUN_WEIGHTS
        digest = (data.get("digests") or {}).get("final")  # sha256 of the encoded final weights
        return ModelSource("run", p, p.parent / weights_name, spec, digest, data)
    if data.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{p}: unknown checkpoint format {data.get('format')!r} (expected {CHECKPOINT_FORMAT})")
    return ModelSource("checkpoint", p, p.parent / data.get("weights", CHECKPOINT_WEIGHTS), spec,
                       data.get("sha256"), data)


# -- evaluate ------------------------------------------------------------------------------------
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
        return _json_safe({
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


def check_compatible(spec, class_names: Sequence[str], image_shape: Sequence[int], data_path) -> None:
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
) -> EvalReport:
    """Score a checkpoint or a run's final weights on an HDF5 event file; optional JSON and figure."""
    from .datasets.source import load_data
    from .frameworks.training import TrainConfig
    from .models import registry

    src = resolve_source(model_source)
    registry.get(src.spec.name)  # unknown model names fail before any data is read
    data = load_data("events", str(data_path))
    check_compatible(src.spec, data.class_names, data.input_shape, data_path)
    weights = src.load_weights()
    dataset = data.subset(np.arange(len(data)))
    config = TrainConfig(eval_batch_size=batch_size, device=device)
    learner = registry.build_learner(src.spec, None, None, None, config, seed=0, initial=weights)
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
        atomic_write_text(out_json, json.dumps(report.to_dict(), indent=2) + "\n")
    if plot is not None:
        from .plots.training import confusion_figure

        confusion_figure(
            metrics.confusion, metrics.class_names, plot,
            title=f"{src.spec.name} on {Path(str(data_path)).name}: accuracy {metrics.accuracy:.1%}",
        )
    return report
