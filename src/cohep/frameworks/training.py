"""Framework-neutral training settings shared by the torch and Keras adapters."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """How a learner trains one proposal (the optimizer is reset for every proposal)."""

    epochs: float = 1.0  #: passes over the private train set per proposal (fractions allowed)
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9  #: SGD only
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
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"train.max_steps must be > 0, got {self.max_steps!r}")
