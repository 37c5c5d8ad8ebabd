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
``best.safetensors`` with ``checkpoint.json`` (:mod:`cohep.outputs.checkpoint`): ``cohep evaluate`` loads it.
``metrics.json`` holds the best epoch's validation report (efficiency, purity, confusion) and
``figure4.png`` the curves and the normalised confusion matrix.

One optimizer persists across all epochs with a constant learning rate, for torch and Keras models
alike (a collaborative proposal, by contrast, starts a fresh optimizer and its own schedule).
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from cohep.outputs import checkpoint
from cohep import models
from cohep.config.experiment import ExperimentConfig
from cohep.core.errors import ConfigError
from cohep.core.files import atomic_write_text, claim_output, replace_output, write_json
from cohep.frameworks.torch import check_device
from cohep.frameworks.training import TrainConfig
from cohep.outputs.manifest import package_versions
from cohep.central.metrics import ClassificationMetrics
from cohep.models import ModelSpec
from cohep.core.settings import share_count

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


def _subset(dataset: Dataset, size: int | None, seed: int) -> Dataset:
    """A fixed random subset of at most ``size`` items (the whole set when size is None or larger)."""
    n = len(dataset)
    if size is None or size >= n:
        return dataset
    idx = np.sort(np.random.default_rng([seed, 7]).choice(n, size=size, replace=False))
    return Subset(dataset, idx.tolist())  # lazy: no copy of the images


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, 1000 + epoch]).generate_state(1)[0])


def _write_history(out: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_FIELDS})
    atomic_write_text(out / "history.csv", buf.getvalue())
    write_json(out / "history.json", history, indent=1)


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
    from cohep.core import progress as prog
    from cohep.wire.weights import encode

    if not (isinstance(epochs, int) and epochs >= 1):
        raise ConfigError(f"central.epochs must be a positive integer, got {epochs!r}")
    if len(train_ds) == 0:
        raise ConfigError("the training set is empty")
    if len(val_ds) == 0:
        raise ConfigError("the validation set is empty")
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(spec.n_classes)]
    if len(class_names) != spec.n_classes:
        raise ConfigError(f"{len(class_names)} class names for a model with {spec.n_classes} classes")
    check_device(config.device)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"central.out: cannot create {out}: {exc.strerror or exc}") from None

    learner = models.build_learner(spec, train_ds, val_ds, None, config, seed=seed)
    n_parameters = learner.n_parameters()
    optimizer = learner.make_optimizer()  # one optimizer for the whole run, constant learning rate
    train_probe = _subset(train_ds, train_eval, seed)

    history: list[dict] = []
    best: dict | None = None
    best_metrics: ClassificationMetrics | None = None
    best_sha = ""
    train_images = 0
    train_seconds = 0.0
    eval_images = 0
    eval_seconds = 0.0
    correct = [0, 0]  # this epoch's running [right, seen] on the training batches

    def on_batch(probs: torch.Tensor, y: torch.Tensor, loss: float) -> None:
        correct[0] += int((probs.argmax(1) == y).sum())
        correct[1] += int(len(y))

    with prog.progress() as bar:
        task = bar.add_task(f"train {spec.name}", total=epochs) if progress else None
        for epoch in range(1, epochs + 1):
            correct[:] = [0, 0]
            start = time.perf_counter()
            losses = learner.train_steps(train_ds, 1.0, seed=_epoch_seed(seed, epoch), optimizer=optimizer,
                                         on_batch=on_batch)
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
                best_sha = checkpoint.write(
                    out, encode(learner.live_weights()), spec=spec,
                    epoch=epoch, epochs=epochs,
                    metrics={k: row[k] for k in ("val_accuracy", "val_loss", "train_accuracy", "train_loss")},
                    efficiency=val.efficiency, purity=val.purity, class_names=class_names,
                    n_parameters=n_parameters, train=asdict(config), seed=seed, data=data_info or {},
                    versions=package_versions(),
                )
            _write_history(out, history)
            if on_epoch is not None:
                on_epoch(dict(row, best=improved))
            if task is not None:
                bar.update(task, advance=1, description=f"train {spec.name} val acc {val.accuracy:.3f}")

    assert best is not None and best_metrics is not None
    files = {
        "checkpoint": out / checkpoint.METADATA,
        "weights": out / checkpoint.WEIGHTS,
        "history": out / "history.csv",
        "history_json": out / "history.json",
        "metrics": out / "metrics.json",
    }
    train_ips = train_images / train_seconds if train_seconds > 0 else math.nan
    infer_ips = eval_images / eval_seconds if eval_seconds > 0 else math.nan
    write_json(out / "metrics.json", {
        "model": spec.to_dict(),
        "best_epoch": best["epoch"],
        "best": best,
        "validation": best_metrics.to_dict(),
        "train_images_per_s": train_ips,
        "inference_images_per_s": infer_ips,
        "n_parameters": n_parameters,
        "weights_sha256": best_sha,
        "torch_threads": torch.get_num_threads(),
    })
    if figure:
        from cohep.outputs.plots.training import figure4

        files["figure"] = figure4(
            history, best_metrics.confusion, class_names, out / "figure4.png",
            title=f"{spec.name}: best validation accuracy {best['val_accuracy']:.1%} (epoch {best['epoch']})",
            best_epoch=best["epoch"],
        )
    return TrainResult(out, spec, history, best["epoch"], best, best_metrics, train_ips, infer_ips,
                       n_parameters, best_sha, files)


def split_validation(labels: np.ndarray, val: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split: ``val`` is a fraction (0 < val < 1) or a count (>= 1) of events."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    k = share_count(val, n, "central.val_fraction")
    if k < 1 or k >= n:
        raise ConfigError(f"central.val_fraction {val!r} leaves {n - k} training and {k} validation events (of {n})")
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


def default_out(cfg: ExperimentConfig) -> Path:
    """Where ``cohep train`` writes when ``central.out`` is not set."""
    return Path(cfg.central.out) if cfg.central.out else Path("runs") / f"train-{cfg.model.name or 'default'}"


def train_from_config(
    cfg: ExperimentConfig,
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    overwrite: bool | None = None,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """``cohep train``: read ``data.path``, split off (or read ``central.val``) the validation set, train.

    Uses ``[data]`` (path, kind, limit), ``[model]``, ``[train]`` (batch size, optimizer, learning
    rate, device...), ``experiment.seed`` and ``[central]`` (epochs, validation, output folder).
    ``overwrite`` is ``cohep train --overwrite``: False refuses an existing output folder, True replaces
    an earlier training's folder; None (library callers) writes into the folder as it is.
    ``announce`` gets one line before training: the model, the epochs and the augmentation (the CLI prints it).
    """
    from cohep.datasets.source import load_data
    from cohep.outputs.report import augmentation_text

    d, c = cfg.data, cfg.central
    if d.path is None:
        raise ConfigError("data.path: no data (give a data file, or a --config whose [data] table names one)")
    from cohep.run.tasks import load_task

    cfg, data, spec = load_task(cfg)
    if announce is not None:
        announce(f"central training: model {cfg.model.name}, {c.epochs:g} epoch(s){augmentation_text(cfg)}")
    out = Path(out_dir) if out_dir is not None else default_out(cfg)  # the model's name is known now
    if overwrite is not None:
        claim_output(out, overwrite=overwrite, flag="central.out", marker=checkpoint.METADATA)
    kind = d.resolved_kind()
    seed = cfg.experiment.seed
    if c.val is not None:
        val_data = load_data(kind, c.val)
        if list(val_data.class_names) != list(data.class_names):
            raise ConfigError(f"{c.val}: class names {val_data.class_names} differ from {d.path}'s {data.class_names}")
        if tuple(val_data.input_shape) != tuple(data.input_shape):
            raise ConfigError(
                f"{c.val}: images {list(val_data.input_shape)} differ from {d.path}'s {list(data.input_shape)}"
            )
        train_ds = data.subset(np.arange(len(data)))
        val_ds = val_data.subset(np.arange(len(val_data)))
    else:
        train_idx, val_idx = split_validation(data.labels, c.val_fraction, seed)
        train_ds, val_ds = data.subset(train_idx), data.subset(val_idx)
    info = {
        "path": str(d.path),
        "n_events": len(data),
        "train": int(len(train_ds)),
        "validation": int(len(val_ds)),
        "val_path": c.val,
        "val_fraction": None if c.val is not None else c.val_fraction,
        "limit": d.limit,
    }
    if overwrite:  # the data, the model and the validation set are checked: the earlier training goes
        replace_output(out, flag="central.out", marker=checkpoint.METADATA)
    return train_central(
        spec, train_ds, val_ds, cfg.train, epochs=c.epochs, seed=seed,
        out_dir=out, progress=progress,
        class_names=data.class_names, train_eval=c.train_eval, on_epoch=on_epoch, data_info=info,
    )
