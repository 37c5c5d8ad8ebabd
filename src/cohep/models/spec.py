"""The model spec: what every learner of an experiment agrees to train.

Its canonical JSON form (``to_dict``) is hashed into the digest recorded on chain, and it is written
into run manifests and checkpoints, from which ``ModelSpec.from_dict`` reads it back.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

from cohep.core.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """Architecture name, input shape ``(views, H, W)``, number of classes and model parameters."""

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

    def digest(self) -> bytes:
        """sha256 of the canonical JSON form: recorded on chain as the model spec digest."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).digest()

    @classmethod
    def from_dict(cls, data: Any, where: str = "model") -> ModelSpec:
        """The spec from its ``to_dict`` form; anything malformed is one ``ConfigError`` line naming ``where``."""

        def bad(what: str) -> ConfigError:
            return ConfigError(f"{where}: malformed model spec: {what}")

        if not isinstance(data, Mapping):
            raise bad(f"expected a table with name, input_shape, n_classes, got {type(data).__name__}")
        for key in ("name", "input_shape", "n_classes"):
            if key not in data:
                raise bad(f"missing {key}")
        name, shape, n_classes = data["name"], data["input_shape"], data["n_classes"]
        params = data.get("params")
        if not isinstance(name, str) or not name:
            raise bad(f"name must be a non-empty string, got {name!r}")
        if (
            not isinstance(shape, (list, tuple))
            or not shape
            or not all(_is_int(s) and s > 0 for s in shape)
        ):
            raise bad(f"input_shape must be a list of positive integers, got {shape!r}")
        if not (_is_int(n_classes) and n_classes > 0):
            raise bad(f"n_classes must be a positive integer, got {n_classes!r}")
        if params is not None and not isinstance(params, Mapping):
            raise bad(f"params must be a table, got {type(params).__name__}")
        return cls(name, tuple(int(s) for s in shape), int(n_classes), dict(params or {}))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
