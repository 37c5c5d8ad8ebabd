"""Training settings shared by the torch and Keras adapters, and the optimizers they make.

Both adapters train with torch optimizers (a Keras model on the torch backend is a ``torch.nn.Module``
whose variables are ``torch.nn.Parameter``s), so both get identical optimizer semantics from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from cohep.core.errors import ConfigError
from cohep.core.settings import Section, setting
from cohep.frameworks.augment import AugmentConfig


@dataclass(frozen=True)
class TrainConfig(Section):
    """How a learner trains one proposal (the optimizer is reset for every proposal): ``[train]``."""

    section: ClassVar[str] = "train"

    epochs: float = setting(1.0, gt=0, help="Passes over the private train set per proposal (fractions allowed).")
    batch_size: int = setting(32, ge=1, help="Training batch size.")
    lr: float = setting(1e-3, gt=0, help="Learning rate.")
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", help="Optimizer of every proposal's training.")
    weight_decay: float = setting(0.0, ge=0)
    momentum: float = setting(0.9, ge=0, lt=1)  #: SGD only
    #: learning rate within one proposal: "constant", or "cosine" (anneals from ``lr`` to
    #: ``lr * lr_floor`` over the proposal's steps, so each proposal ends at a settled point
    #: instead of mid-stride, which is what the other learners then judge)
    lr_schedule: Literal["constant", "cosine"] = setting("constant", help="Within a proposal: constant | cosine.")
    lr_floor: float = setting(0.0, ge=0, le=1)
    max_steps: int | None = setting(None, ge=1)  #: optional cap on optimizer steps per proposal
    #: stochastic weight averaging (Izmailov et al. 2018, arXiv:1803.05407) within a proposal: propose
    #: the mean of the weights after each of the proposal's last ``average_tail`` (a fraction) of steps
    #: instead of the last weights. The mean sits in a flatter region of the loss, which is what holds
    #: on data the proposal was not trained on (other members' vote sets, other detectors; Cha et al.
    #: 2021, arXiv:2102.08604). 0: the last weights.
    average_tail: float = setting(0.0, ge=0, lt=1, help="Propose the mean weights over this last fraction of steps (0: off).")
    #: FedProx: a proposal's loss gains mu/2 * ||w - w_start||^2 over the trainable parameters, w_start
    #: being the adopted weights it trains from; keeps a member's update near the shared model on
    #: class-skewed data (0: plain training)
    proximal_mu: float = setting(0.0, ge=0, help="Proximal term mu (FedProx) within a proposal; 0: none.")
    #: "balanced": each training event's cross-entropy weighted by the inverse frequency of its class in
    #: the learner's own train set (:func:`class_weights`), so a class the set holds less of counts as
    #: much as the others; the reported vote and test losses stay unweighted
    class_weight: Literal["none", "balanced"] = setting(
        "none", help="Training loss per class: none, or balanced (inverse class frequency of the train set).")
    #: inference batch; None: the adapter's default (512 for torch models, twice the training batch up
    #: to 128 for Keras ones, whose 200 x 200 giants hold ~10 MB of activations per event in flight)
    eval_batch_size: int | None = setting(None, ge=1, help="Inference batch size (default: the framework's).")
    device: str = setting("auto", help="auto | cpu | cuda")  #: "auto" takes CUDA when present, else CPU
    mixed_precision: bool = False  #: bf16/fp16 autocast on CUDA only
    #: ``[train.augment]``: per-event variations of every training batch (frameworks/augment.py)
    augment: AugmentConfig = setting(factory=AugmentConfig)
    extra: dict = setting(factory=dict)

    def check(self) -> None:
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def steps_for(self, n_items: int, epochs: float) -> int:
        """Optimizer steps for ``epochs`` passes over ``n_items`` (at least one; ``max_steps`` caps it)."""
        per_epoch = max(1, math.ceil(n_items / self.batch_size))
        total = max(1, int(round(epochs * per_epoch)))
        return total if self.max_steps is None else min(total, self.max_steps)

    def averaged_steps(self, total: int) -> int:
        """How many of a proposal's ``total`` steps end in weights that enter the mean (0: no averaging)."""
        return 0 if self.average_tail == 0 else max(1, int(round(self.average_tail * total)))

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate for optimizer step ``step`` (0-based) of a proposal of ``total`` steps."""
        if self.lr_schedule == "constant" or total <= 1:
            return self.lr
        floor = self.lr * self.lr_floor
        return floor + 0.5 * (self.lr - floor) * (1.0 + math.cos(math.pi * step / (total - 1)))


def class_weights(labels, n_classes: int = 0) -> np.ndarray:
    """Per-class loss weights of ``class_weight = "balanced"`` for a train set's int labels.

    ``n / (k n_c)`` for each of the ``k`` classes present (scikit-learn's "balanced"): the weights of
    the set's events average 1, so the loss over the set is the mean over classes of each class's mean
    cross-entropy and the step size is that of the unweighted loss. A class absent from the set (no
    event of it is trained on) gets 1. The vector has ``max(n_classes, max(labels) + 1)`` entries.
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    weights = np.ones(len(counts))
    weights[present] = len(y) / (int(present.sum()) * counts[present])
    return weights


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names, over ``params``, at ``cfg.lr``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def set_lr(optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
