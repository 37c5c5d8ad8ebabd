"""Experiment configuration: a TOML file and/or CLI flags, validated into typed sections.

Every error names the offending field as ``section.field`` so a user can fix it in one go.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .frameworks.training import TrainConfig
from .protocol import METRICS

MODES = ("colearn", "individual", "centralised")


@dataclass(frozen=True)
class ExperimentSection:
    name: str = "experiment"
    mode: str = "colearn"
    learners: int = 3
    rounds: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"experiment.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (isinstance(self.learners, int) and self.learners >= 1):
            raise ConfigError(f"experiment.learners must be a positive integer, got {self.learners!r}")
        if self.mode == "colearn" and self.learners < 2:
            raise ConfigError("experiment.learners must be at least 2 for colearn mode")
        if not (isinstance(self.rounds, int) and self.rounds >= 1):
            raise ConfigError(f"experiment.rounds must be a positive integer, got {self.rounds!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"experiment.seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class DataSection:
    kind: str = "mnist"
    path: str | None = None
    holdout: float | int = 0.2  #: count, or fraction, of items at the end held out for testing
    split: str = "iid"
    alpha: float = 0.5
    vote_fraction: float = 0.2
    limit: int | None = None  #: keep only the first N items (quick runs)

    def __post_init__(self) -> None:
        if self.limit is not None and not (isinstance(self.limit, int) and self.limit > 0):
            raise ConfigError(f"data.limit must be a positive integer, got {self.limit!r}")


@dataclass(frozen=True)
class ModelSection:
    name: str = "mnist_cnn"
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VoteSection:
    metric: str = "accuracy"
    margin: float = 0.0
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"vote.metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"vote.threshold must be within [0, 1], got {self.threshold!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 0):
            raise ConfigError(f"vote.margin must be >= 0, got {self.margin!r}")


@dataclass(frozen=True)
class ChainSection:
    rpc: str | None = None  #: None: the embedded in-process EVM
    proposal_window: int = 50  #: blocks
    vote_window: int = 50  #: blocks

    def __post_init__(self) -> None:
        for name in ("proposal_window", "vote_window"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ConfigError(f"chain.{name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class StoreSection:
    url: str | None = None  #: None: <run dir>/weights


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: ExperimentSection = ExperimentSection()
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    train: TrainConfig = TrainConfig()
    vote: VoteSection = VoteSection()
    chain: ChainSection = ChainSection()
    store: StoreSection = StoreSection()

    def __post_init__(self) -> None:
        n = self.experiment.learners
        if self.experiment.mode == "colearn" and self.chain.vote_window < n - 1:
            # each vote is its own transaction; on an auto-mining chain each takes a block
            raise ConfigError(
                f"chain.vote_window ({self.chain.vote_window} blocks) must be at least learners - 1 ({n - 1})"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict) -> "ExperimentConfig":
        """A copy with some fields overridden: ``replace(train={"epochs": 2})``."""
        return from_dict(merge(self.to_dict(), sections))


_SECTIONS = {f.name: f.type for f in fields(ExperimentConfig)}
_SECTION_TYPES = {
    "experiment": ExperimentSection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainConfig,
    "vote": VoteSection,
    "chain": ChainSection,
    "store": StoreSection,
}


def merge(base: dict, override: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "params":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(section: str, cls, values: Any):
    if not isinstance(values, dict):
        raise ConfigError(f"[{section}] must be a table, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown field {section}.{key} (known: {', '.join(known)})")
    for key, value in values.items():
        expected = known[key].type
        if isinstance(expected, str) and value is not None:
            ok = {
                "int": isinstance(value, int) and not isinstance(value, bool),
                "float": isinstance(value, (int, float)) and not isinstance(value, bool),
                "str": isinstance(value, str),
                "bool": isinstance(value, bool),
            }
            base = expected.split("|")[0].strip()
            if base in ok and not ok[base] and not ("float | int" in expected and ok["float"]):
                raise ConfigError(f"{section}.{key} must be of type {base}, got {value!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


def from_dict(raw: dict) -> ExperimentConfig:
    for key in raw:
        if key not in _SECTIONS:
            raise ConfigError(f"unknown section [{key}] (known: {', '.join(_SECTIONS)})")
    return ExperimentConfig(**{k: _coerce(k, _SECTION_TYPES[k], v) for k, v in raw.items()})


def load(path: str | Path | None, overrides: dict | None = None) -> ExperimentConfig:
    """Read a TOML file (optional), apply overrides (nested dict), validate."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return from_dict(merge(raw, overrides or {}))
