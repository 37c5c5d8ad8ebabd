"""Framework-neutral training settings shared by the torch and Keras adapters."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..errors import ConfigError
from ..settings import Section, setting


@dataclass(frozen=True)
class TrainConfig(Section):
    """How a learner trains one proposal (the optimizer is reset for every proposal): ``[train]``."""

    section: ClassVar[str] = "train"

    epochs: float = setting(1.0, gt=0, help="Passes over the private train set per proposal (fractions allowed).")
    batch_size: int = setting(32, ge=1, help="Training batch size.")
    lr: float = setting(1e-3, gt=0, help="Learning rate.")
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", help="adam | adamw | sgd")
    weight_decay: float = setting(0.0, ge=0)
    momentum: float = setting(0.9, ge=0, lt=1)  #: SGD only
    #: learning rate within one proposal: "constant", or "cosine" (anneals from ``lr`` to
    #: ``lr * lr_floor`` over the proposal's steps, so each proposal ends at a settled point
    #: instead of mid-stride, which is what the other learners then judge)
    lr_schedule: Literal["constant", "cosine"] = setting("constant", help="Within a proposal: constant | cosine.")
    lr_floor: float = setting(0.0, ge=0, le=1)
    max_steps: int | None = setting(None, ge=1)  #: optional cap on optimizer steps per proposal
    eval_batch_size: int = setting(512, ge=1, help="Inference batch size.")
    device: str = setting("auto", help="auto | cpu | cuda")  #: "auto" takes CUDA when present, else CPU
    mixed_precision: bool = False  #: bf16/fp16 autocast on CUDA only
    extra: dict = setting(factory=dict)

    def check(self) -> None:
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

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


def set_lr(optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (torch optimizers; the Keras adapter uses them too)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
