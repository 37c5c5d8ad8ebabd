"""Training settings shared by the torch and Keras adapters, and the optimizers they make.

Both adapters train with torch optimizers (a Keras model on the torch backend is a ``torch.nn.Module``
whose variables are ``torch.nn.Parameter``s), so both get identical optimizer semantics from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How a learner trains one proposal (the optimizer is reset for every proposal)."""

    epochs: float = 1.0  #: passes over the private train set per proposal (fractions allowed)
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9  #: SGD only
    #: learning rate within one proposal: "constant", or "cosine" (anneals from ``lr`` to
    #: ``lr * lr_floor`` over the proposal's steps, so each proposal ends at a settled point
    #: instead of mid-stride, which is what the other learners then judge)
    lr_schedule: str = "constant"
    lr_floor: float = 0.0
    max_steps: int | None = None  #: optional cap on optimizer steps per proposal
    eval_batch_size: int = 512
    device: str = "auto"  #: "auto" takes CUDA when present, else CPU
    mixed_precision: bool = False  #: bf16/fp16 autocast on CUDA only
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise ConfigError(f"train.epochs must be > 0, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size > 0):
            raise ConfigError(f"train.batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if not 0.0 <= self.lr_floor <= 1.0:
            raise ConfigError(f"train.lr_floor must be in [0, 1], got {self.lr_floor!r}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"train.max_steps must be > 0, got {self.max_steps!r}")

    def steps_for(self, n_items: int, epochs: float) -> int:
        """Optimizer steps for ``epochs`` passes over ``n_items`` (at least one; ``max_steps`` caps it)."""
        per_epoch = max(1, math.ceil(n_items / self.batch_size))
        total = max(1, int(round(epochs * per_epoch)))
        return total if self.max_steps is None else min(total, self.max_steps)

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate for optimizer step ``step`` (0-based) of a proposal of ``total`` steps."""
        if self.lr_schedule == "constant" or total <= 1:
            return self.lr
        floor = self.lr * self.lr_floor
        return floor + 0.5 * (self.lr - floor) * (1.0 + math.cos(math.pi * step / (total - 1)))


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
