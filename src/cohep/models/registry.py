"""Model registry: a name maps to a builder, so configs and the CLI name models by string.

A model module registers its builder with a decorator, stating the framework and the data it fits::

    @register_model("mnist_cnn", framework="torch", description="...", fits=DataFit(size=(28, 28)))
    def build_mnist_cnn(spec: ModelSpec) -> nn.Module: ...

The builder makes the framework's model from a ``ModelSpec`` with random weights; the framework
adapter (:mod:`cohep.frameworks.torch`, :mod:`cohep.frameworks.keras`) seeds it, wraps it in a
``TrainableLearner`` and draws the initial weights, which therefore follow from the spec and seed
alone, so any party can check them. This module imports no model module: ``cohep.models`` imports it
first and the model modules after, and they register themselves.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar
from collections.abc import Callable

from cohep.core.errors import ConfigError
from cohep.frameworks import keras as keras_framework
from cohep.frameworks import torch as torch_framework
from cohep.frameworks.privacy import Budget, check_model, dp_builder
from cohep.frameworks.training import TrainConfig
from cohep.frameworks.learner import TrainableLearner, Weights
from cohep.models.fit import DataFit
from cohep.models.spec import ModelSpec

__all__ = [
    "FRAMEWORKS", "ModelEntry", "ModelSpec", "available", "build_learner", "check_fits", "default_for",
    "get", "initial_weights", "register_model",
]

#: framework name -> adapter module (``initial_weights`` and ``make_learner`` over a builder). The
#: Keras adapter imports Keras only when it builds a model.
FRAMEWORKS = {"torch": torch_framework, "keras": keras_framework}


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture: how to build it and what data it fits."""

    name: str
    framework: str  #: a key of FRAMEWORKS
    description: str
    fits: DataFit
    build: Callable[[ModelSpec], Any]  #: spec -> the framework's model, random weights
    #: Keras only: spec -> the transform from ``[N, C, H, W]`` batches to the model's input
    preprocess: Callable[[ModelSpec], Callable] | None = None

    def builder(self, private: bool = False) -> Callable[[ModelSpec], Any]:
        """The builder; in a private experiment every member trains the DP-compatible model."""
        if not private:
            return self.build
        check_model(self.name, self.framework)
        return dp_builder(self.build)

    def initial_weights(self, spec: ModelSpec, seed: int, *, private: bool = False) -> Weights:
        return FRAMEWORKS[self.framework].initial_weights(self.builder(private), spec, seed)

    def make_learner(self, spec: ModelSpec, train, vote, test, config: TrainConfig, *, seed: int,
                     initial: Weights | None = None, privacy: Budget | None = None) -> TrainableLearner:
        options = {"preprocess": self.preprocess} if self.preprocess is not None else {}
        if privacy is not None:
            options["privacy"] = privacy
        return FRAMEWORKS[self.framework].make_learner(
            self.builder(privacy is not None), spec, train, vote, test, config, seed=seed, initial=initial, **options
        )


_REGISTRY: dict[str, ModelEntry] = {}

Builder = TypeVar("Builder", bound=Callable)


def register_model(
    name: str,
    *,
    framework: str,
    description: str,
    fits: DataFit,
    preprocess: Callable[[ModelSpec], Callable] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(spec) -> model`` under ``name``; the function is returned unchanged.

    The declaration is checked here, when the model module is imported: a duplicate name, an unknown
    framework, a ``fits`` that is not a ``DataFit`` or a ``preprocess`` on a non-Keras model raises.
    """
    where = f"register_model({name!r})"
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{where}: the name must be an identifier-like string")
    if name in _REGISTRY:
        raise ValueError(f"{where}: model {name!r} is already registered ({_REGISTRY[name].description})")
    if framework not in FRAMEWORKS:
        raise ValueError(f"{where}: unknown framework {framework!r} (known: {', '.join(FRAMEWORKS)})")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"{where}: a description is required")
    if not isinstance(fits, DataFit):
        raise ValueError(f"{where}: fits must be a DataFit, got {type(fits).__name__}")
    if preprocess is not None and (framework != "keras" or not callable(preprocess)):
        raise ValueError(f"{where}: preprocess is a function of the spec, for Keras models only")

    def decorator(build: Builder) -> Builder:
        if not callable(build):
            raise TypeError(f"{where}: decorates a builder function spec -> model, got {type(build).__name__}")
        if name in _REGISTRY:
            raise ValueError(f"{where}: model {name!r} is already registered ({_REGISTRY[name].description})")
        _REGISTRY[name] = ModelEntry(name, framework, description, fits, build, preprocess)
        return build

    return decorator


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def check_fits(spec: ModelSpec, source: str | os.PathLike = "data") -> None:
    """Raise a one-line ``ConfigError`` naming ``source`` when the spec's model does not fit its data.

    E.g. ``digits.h5: model mnist_cnn needs 28 x 28 images, got 8 x 8 (try --model image_cnn)``; the
    suggestion is :func:`default_for` the data's shape, when that model fits it.
    """
    found = get(spec.name).fits.mismatch(spec.input_shape, spec.n_classes, spec.params)
    if found is None:
        return
    needed, given = found
    hint = ""
    suggestion = default_for(spec.input_shape)
    if suggestion != spec.name and suggestion in _REGISTRY:
        if get(suggestion).fits.mismatch(spec.input_shape, spec.n_classes, {}) is None:
            hint = f" (try --model {suggestion})"
    raise ConfigError(f"{os.fspath(source)}: model {spec.name} needs {needed}, got {given}{hint}")


def default_for(input_shape) -> str:
    """The default model for images of ``input_shape`` ``(views, H, W)``.

    ``compact`` for multi-view images it fits (wire-plane events), ``mnist_cnn`` for 1 x 28 x 28 digits,
    and the generic ``image_cnn`` for anything else.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and shape[0] > 1 and "compact" in _REGISTRY:
        if get("compact").fits.mismatch(shape) is None:
            return "compact"
    if shape == (1, 28, 28):
        return "mnist_cnn"
    return "image_cnn"


def initial_weights(spec: ModelSpec, seed: int, *, private: bool = False) -> Weights:
    """The agreed initial weights: a function of (spec, seed) alone (and of whether the experiment is
    private, which swaps BatchNorm for GroupNorm: :func:`~cohep.frameworks.privacy.dp_compatible`)."""
    check_fits(spec)
    return get(spec.name).initial_weights(spec, seed, private=private)


def build_learner(
    spec: ModelSpec,
    train,
    vote,
    test,
    config: TrainConfig,
    *,
    seed: int,
    initial: Weights | None = None,
    privacy: Budget | None = None,
) -> TrainableLearner:
    """A learner over the spec's model with these private data sets (checked to fit first); with a
    ``privacy`` budget its proposals train with DP-SGD."""
    check_fits(spec)
    return get(spec.name).make_learner(spec, train, vote, test, config, seed=seed, initial=initial, privacy=privacy)
