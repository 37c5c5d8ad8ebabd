"""Central training: one learner, all the data, per-epoch curves, best-epoch checkpoint, Figure 4.

This is the paper's baseline (its Figure 4): a model trained on 10,000 events and validated on 2,000.
It uses the registry's learner (torch or Keras alike) through ``train_steps`` / ``predict``, so the
central numbers come from exactly the code that trains proposals in collaborative runs.

Per epoch it records, in ``history.csv`` and ``history.json``:

* ``train_accuracy`` / ``train_loss``: the weights at the end of the epoch scored in evaluation mode on
  (a fixed random subset of, ``train_eval`` events) the training set - comparable with validation;
* ``train_loss_running`` (and ``train_accuracy_running`` where the learner reports its batches): the
  mean over the epoch's optimizer steps, as Keras' ``fit`` prints;
* ``val_accuracy`` / ``val_loss``, seconds and training throughput (events/s).

The best epoch (highest validation accuracy, then lowest validation loss) is saved as
``best.safetensors`` (:func:`cohep.weights.encode`, atomic) with ``checkpoint.json`` (format, model
spec, sha256, epoch, metrics, class names, settings): ``cohep evaluate`` loads it. ``metrics.json``
holds the best epoch's validation report (efficiency, purity, confusion) and ``figure4.png`` the
curves and the normalised confusion matrix.

The optimizer persists across epochs when the learner's ``train_steps`` accepts ``optimizer=`` (as the
Keras adapter's does); otherwise each epoch starts a fresh one, the collaborative-proposal behaviour.
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .errors import ConfigError
from .evaluation import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_JSON,
    CHECKPOINT_WEIGHTS,
    ClassificationMetrics,
    _json_safe,
)
from .files import atomic_write_bytes, atomic_write_text
from .frameworks.training import TrainConfig
from .models import registry
from .models.registry import ModelSpec

HISTORY_FIELDS = (
    "epoch", "train_accuracy", "train_loss", "train_accuracy_running", "train_loss_running",
    "val_accuracy", "val_loss", "train_seconds", "eval_seconds", "train_images_per_s",
)


@dataclass
class TrainResult:
    """What ``train_central`` produced."""

    out_dir: Path
    spec: ModelSpec
    history: list[dict]
    best_epoch: int
    best: dict  # the best epoch's history row
    val_metrics: ClassificationMetrics
    train_images_per_s: float
    inference_images_per_s: float
    n_parameters: int
    weights_sha256: str
    files: dict[str, Path] = field(default_factory=dict)


def _labels_of(dataset: Dataset) -> np.ndarray | None:
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    labels = getattr(dataset, "labels", None)
    return None if labels is None else np.asarray(labels)


def _subset(dataset: Dataset, size: int | None, seed: int) -> Dataset:
    """A fixed random subset of at most ``size`` items (the whole set when size is None or larger)."""
    n = len(dataset)
    if size is None or size >= n:
        return dataset
    idx = np.sort(np.random.default_rng([seed, 7]).choice(n, size=size, replace=False))
    return Subset(dataset, idx.tolist())  # lazy: no copy of the images


def _count_parameters(learner) -> int:
    model = getattr(learner, "model", None)
    if isinstance(model, torch.nn.Module):
        return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return 0


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, 1000 + epoch]).generate_state(1)[0])


def _write_history(out: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_FIELDS})
    atomic_write_text(out / "history.csv", buf.getvalue())
    atomic_write_text(out / "history.json", json.dumps(_json_safe(history), indent=1) + "\n")


def train_central(
    spec: ModelSpec,
    train_ds: Dataset,
    val_ds: Dataset,
    config: TrainConfig,
    *,
    epochs: int,
    seed: int,
    out_dir: str | Path,
    progress: bool = True,
    class_names: Sequence[str] | None = None,
    train_eval: int | None = 2000,
    on_epoch: Callable[[dict], None] | None = None,
    figure: bool = True,
    data_info: dict | None = None,
) -> TrainResult:
    """Train ``spec`` centrally for ``epochs`` epochs; write history, best checkpoint and Figure 4."""
    from . import progress as prog
    from .weights import encode

    if not (isinstance(epochs, int) and epochs >= 1):
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    if len(train_ds) == 0:
        raise ConfigError("the training set is empty")
    if len(val_ds) == 0:
        raise ConfigError("the validation set is empty")
    if class_names is None:
        class_names = getattr(train_ds, "class_names", None) or [str(i) for i in range(spec.n_classes)]
    class_names = list(class_names)
    if len(class_names) != spec.n_classes:
        raise ConfigError(f"{len(class_names)} class names for a model with {spec.n_classes} classes")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    learner = registry.build_learner(spec, train_ds, val_ds, None, config, seed=seed)
    n_parameters = _count_parameters(learner)
    params = inspect.signature(learner.train_steps).parameters
    optimizer = learner.make_optimizer() if ("optimizer" in params and hasattr(learner, "make_optimizer")) else None
    running_metrics = "on_batch" in params
    train_probe = _subset(train_ds, train_eval, seed)

    history: list[dict] = []
    best: dict | None = None
    best_metrics: ClassificationMetrics | None = None
    best_sha = ""
    train_images = 0
    train_seconds = 0.0
    eval_images = 0
    eval_seconds = 0.0
    with prog.progress() as bar:
        task = bar.add_task(f"train {spec.name}", total=epochs) if progress else None
        for epoch in range(1, epochs + 1):
            correct = [0, 0]

            def on_batch(probs: torch.Tensor, y: torch.Tensor, loss: float) -> None:
                correct[0] += int((probs.argmax(1) == y).sum())
                correct[1] += int(len(y))

            kwargs = {}
            if optimizer is not None:
                kwargs["optimizer"] = optimizer
            if running_metrics:
                kwargs["on_batch"] = on_batch
            start = time.perf_counter()
            losses = learner.train_steps(train_ds, 1.0, seed=_epoch_seed(seed, epoch), **kwargs)
            t_train = time.perf_counter() - start
            n_seen = min(len(train_ds), len(losses) * config.batch_size)
            train_images += n_seen
            train_seconds += t_train

            start = time.perf_counter()
            probs, labels = learner.predict(val_ds)
            t_val = time.perf_counter() - start
            eval_images += len(labels)
            eval_seconds += t_val
            val = ClassificationMetrics.from_predictions(labels, probs, class_names)
            train_score = learner.score(train_probe)
            t_eval = time.perf_counter() - start

            row = {
                "epoch": epoch,
                "train_accuracy": train_score.accuracy,
                "train_loss": train_score.loss,
                "train_accuracy_running": correct[0] / correct[1] if correct[1] else None,
                "train_loss_running": float(np.mean(losses)) if losses else None,
                "val_accuracy": val.accuracy,
                "val_loss": val.loss,
                "train_seconds": round(t_train, 3),
                "eval_seconds": round(t_eval, 3),
                "train_images_per_s": n_seen / t_train if t_train > 0 else None,
            }
            history.append(row)
            improved = best is None or (val.accuracy, -val.loss) > (best["val_accuracy"], -best["val_loss"])
            if improved:
                best, best_metrics = row, val
                blob = encode(_live_weights(learner))
                best_sha = hashlib.sha256(blob).hexdigest()
                atomic_write_bytes(out / CHECKPOINT_WEIGHTS, blob)
                _write_checkpoint(out, spec, best_sha, row, val, class_names, config, seed, epochs,
                                  n_parameters, data_info)
            _write_history(out, history)
            if on_epoch is not None:
                on_epoch(dict(row, best=improved))
            if task is not None:
                bar.update(task, advance=1, description=f"train {spec.name} val acc {val.accuracy:.3f}")

    assert best is not None and best_metrics is not None
    files = {
        "checkpoint": out / CHECKPOINT_JSON,
        "weights": out / CHECKPOINT_WEIGHTS,
        "history": out / "history.csv",
        "history_json": out / "history.json",
        "metrics": out / "metrics.json",
    }
    train_ips = train_images / train_seconds if train_seconds > 0 else math.nan
    infer_ips = eval_images / eval_seconds if eval_seconds > 0 else math.nan
    summary = {
        "model": spec.to_dict(),
        "best_epoch": best["epoch"],
        "best": best,
        "validation": best_metrics.to_dict(),
        "train_images_per_s": train_ips,
        "inference_images_per_s": infer_ips,
        "n_parameters": n_parameters,
        "weights_sha256": best_sha,
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_text(out / "metrics.json", json.dumps(_json_safe(summary), indent=2) + "\n")
    if figure:
        from .plots.training import figure4

        files["figure"] = figure4(
            history, best_metrics.confusion, class_names, out / "figure4.png",
            title=f"{spec.name}: best validation accuracy {best['val_accuracy']:.1%} (epoch {best['epoch']})",
            best_epoch=best["epoch"],
        )
    return TrainResult(out, spec, history, best["epoch"], best, best_metrics, train_ips, infer_ips,
                       n_parameters, best_sha, files)


def _live_weights(learner):
    """The learner's model weights as they are now (after the epoch's training)."""
    live = getattr(learner, "live_weights", None)
    if live is not None:
        return live()
    from .frameworks.torch import state_to_weights

    return state_to_weights(learner.model)


def _write_checkpoint(out: Path, spec: ModelSpec, sha: str, row: dict, val: ClassificationMetrics,
                      class_names, config: TrainConfig, seed: int, epochs: int, n_parameters: int,
                      data_info: dict | None) -> None:
    from dataclasses import asdict

    cfg = asdict(config)
    data = {
        "format": CHECKPOINT_FORMAT,
        "model": spec.to_dict(),
        "model_digest": spec.digest().hex(),
        "weights": CHECKPOINT_WEIGHTS,
        "sha256": sha,
        "epoch": row["epoch"],
        "epochs": epochs,
        "metrics": {k: row[k] for k in ("val_accuracy", "val_loss", "train_accuracy", "train_loss")},
        "efficiency": val.efficiency,
        "purity": val.purity,
        "class_names": list(class_names),
        "n_parameters": n_parameters,
        "train": cfg,
        "seed": seed,
        "data": data_info or {},
    }
    atomic_write_text(out / CHECKPOINT_JSON, json.dumps(_json_safe(data), indent=2, default=str) + "\n")


def split_validation(labels: np.ndarray, val: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split: ``val`` is a fraction (0 < val < 1) or a count (>= 1) of events."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 0:
        raise ConfigError(f"--val-fraction must be a fraction in (0, 1) or a count >= 1, got {val!r}")
    k = int(round(val * n)) if val < 1 else int(val)
    if k < 1 or k >= n:
        raise ConfigError(f"--val-fraction {val!r} leaves {n - k} training and {k} validation events (of {n})")
    rng = np.random.default_rng([seed, 11])
    val_idx = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        val_idx.append(members[: int(round(k * len(members) / n))])
    chosen = np.concatenate(val_idx)
    if len(chosen) != k:  # rounding per class: top up or trim at random
        rest = rng.permutation(np.setdiff1d(np.arange(n), chosen))
        chosen = np.concatenate([chosen, rest[: max(0, k - len(chosen))]])[:k]
    val_idx = np.sort(chosen)
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx


def train_from_file(
    data_path: str | Path,
    *,
    out_dir: str | Path,
    model: str = "compact",
    epochs: int = 10,
    val_fraction: float | int = 0.2,
    val_path: str | Path | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    optimizer: str = "adam",
    seed: int = 0,
    limit: int | None = None,
    device: str = "auto",
    params: dict | None = None,
    train_eval: int | None = 2000,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """``cohep train``: read an HDF5 event file, split off (or read) the validation set, train centrally."""
    from .datasets.source import load_data
    from .evaluation import check_compatible

    registry.get(model)  # unknown names fail first, listing the known ones
    data = load_data("events", str(data_path), limit=limit)
    if val_path is not None:
        val_data = load_data("events", str(val_path))
        if list(val_data.class_names) != list(data.class_names):
            raise ConfigError(
                f"{val_path}: class names {val_data.class_names} differ from {data_path}'s {data.class_names}"
            )
        if tuple(val_data.input_shape) != tuple(data.input_shape):
            raise ConfigError(
                f"{val_path}: images {list(val_data.input_shape)} differ from {data_path}'s {list(data.input_shape)}"
            )
        train_idx = np.arange(len(data))
        train_ds = data.subset(train_idx)
        val_ds = val_data.subset(np.arange(len(val_data)))
    else:
        train_idx, val_idx = split_validation(data.labels, val_fraction, seed)
        train_ds, val_ds = data.subset(train_idx), data.subset(val_idx)
    spec = ModelSpec(model, tuple(int(s) for s in data.input_shape), len(data.class_names), dict(params or {}))
    check_compatible(spec, data.class_names, data.input_shape, data_path)
    # inference batches stay moderate: the Keras giants at 200 x 200 need ~10 MB per event in flight
    config = TrainConfig(batch_size=batch_size, lr=lr, optimizer=optimizer, device=device,
                         eval_batch_size=min(128, 2 * batch_size))
    info = {
        "path": str(data_path),
        "n_events": len(data),
        "train": int(len(train_ds)),
        "validation": int(len(val_ds)),
        "val_path": None if val_path is None else str(val_path),
        "val_fraction": None if val_path is not None else val_fraction,
        "limit": limit,
    }
    return train_central(
        spec, train_ds, val_ds, config, epochs=epochs, seed=seed, out_dir=out_dir, progress=progress,
        class_names=data.class_names, train_eval=train_eval, on_epoch=on_epoch, data_info=info,
    )


#: ``[central]`` keys of an experiment file and ``train_from_file`` defaults (``data`` and ``out`` aside).
CENTRAL_DEFAULTS = {
    "data": None,
    "val": None,
    "out": None,
    "model": "compact",
    "epochs": 10,
    "val_fraction": 0.2,
    "batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adam",
    "seed": 0,
    "limit": None,
    "device": "auto",
    "params": {},
    "train_eval": 2000,
}


def load_central_config(path: str | Path) -> dict:
    """The ``[central]`` section of an experiment TOML (``cohep train --config``), checked, with defaults.

    Keys: data, val, out, model, epochs, val_fraction (fraction < 1 or count), batch_size, lr,
    optimizer, seed, limit, device, params (a table of model params), train_eval.
    """
    import tomllib

    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    if "central" not in raw or not isinstance(raw["central"], dict):
        raise ConfigError(f"{p} has no [central] section (cohep train reads [central])")
    section = raw["central"]
    unknown = sorted(set(section) - set(CENTRAL_DEFAULTS))
    if unknown:
        raise ConfigError(f"{p}: unknown key central.{unknown[0]} (known: {', '.join(CENTRAL_DEFAULTS)})")
    checks = {
        "model": str, "data": str, "val": str, "out": str, "optimizer": str, "device": str,
        "epochs": int, "batch_size": int, "seed": int, "limit": int, "train_eval": int,
        "lr": (int, float), "val_fraction": (int, float), "params": dict,
    }
    for key, value in section.items():
        if isinstance(value, bool) or not isinstance(value, checks[key]):
            raise ConfigError(f"{p}: central.{key} has the wrong type ({type(value).__name__}: {value!r})")
    return {**CENTRAL_DEFAULTS, **section}
