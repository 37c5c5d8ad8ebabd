"""Model registry: a name maps to a builder, so configs and the CLI name models by string.

A builder makes a ready ``Learner`` for one participant from a ``ModelSpec``, that participant's
private data sets and the shared training settings. Every learner of an experiment builds the same
architecture; the initial weights come from the spec and seed alone, so any party can check them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError
from ..frameworks.training import TrainConfig
from ..learner import Learner, Weights


@dataclass(frozen=True)
class ModelSpec:
    """What every learner agrees to train: architecture name, input shape, classes, parameters."""

    name: str
    input_shape: tuple[int, ...]
    n_classes: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "model") -> "ModelSpec":
        # TEMPORARY shim until the models branch lands
        try:
            return cls(name=str(data["name"]), input_shape=tuple(int(s) for s in data["input_shape"]),
                       n_classes=int(data["n_classes"]), params=dict(data.get("params") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: malformed model spec ({exc.__class__.__name__}: {exc})") from None

    def digest(self) -> bytes:
        """sha256 of the canonical JSON form: recorded on chain as the model spec digest."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).digest()


@dataclass(frozen=True)
class ModelEntry:
    """How to build one registered architecture."""

    name: str
    framework: str  # "torch" or "keras"
    description: str
    #: builds a learner: (spec, train, vote, test, config, seed, initial) -> Learner
    make_learner: Callable[..., Learner]
    #: deterministic initial weights from (spec, seed)
    initial_weights: Callable[[ModelSpec, int], Weights]


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    _REGISTRY[entry.name] = entry
    return entry


def _ensure_loaded() -> None:
    # Importing the model modules registers their entries; Keras is imported lazily by its builders.
    from . import catalog  # noqa: F401


def available() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get(name: str) -> ModelEntry:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r} (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def initial_weights(spec: ModelSpec, seed: int) -> Weights:
    return get(spec.name).initial_weights(spec, seed)


def build_learner(
    spec: ModelSpec,
    train,
    vote,
    test,
    config: TrainConfig,
    *,
    seed: int,
    initial: Weights | None = None,
) -> Learner:
    return get(spec.name).make_learner(spec, train, vote, test, config, seed=seed, initial=initial)


def default_for(input_shape) -> str:  # TEMPORARY shim until the models branch lands
    return "mnist_cnn" if tuple(input_shape) == (1, 28, 28) else "compact"


def check_fits(spec: ModelSpec, source: str) -> None:  # TEMPORARY shim
    get(spec.name)
