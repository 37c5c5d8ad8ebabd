"""The reference paper's models, exactly as Keras applications: ResNet-50 V2 and DenseNet-169.

``keras.applications.ResNet50V2`` / ``DenseNet169`` with ``weights=None`` (random initialisation),
``include_top=True``, a softmax classifier over the spec's classes and the spec's input shape turned
channels-last (the paper: 200 x 200 x 3, 3 classes). Keras is imported only when a model is built, so
importing cohep never imports Keras.

The applications carry no input preprocessing when ``weights=None``; the Keras adapter feeds them
``log1p(max(x, 0) / input_scale)`` or its per-event form (``normalise``, the same normalisation as
the compact model, :mod:`cohep.frameworks.normalise`) transposed to ``[N, H, W, C]``. Both need images of at least 32 x 32 (five
stride-2 stages).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from cohep.core.errors import ConfigError
from cohep.models.fit import DataFit
from cohep.frameworks.normalise import check_bipolar, check_mode, normalise
from cohep.models.registry import register_model

DEFAULT_INPUT_SCALE = 1.0  #: as the compact model: one charge unit (1 ke- for simulated files)
DEFAULT_NORMALISE = "event"  #: as the compact model (``model.params.normalise``)
MIN_SIDE = 32


def keras_input_shape(spec) -> tuple[int, int, int]:
    """cohep's (C, H, W) input shape as Keras' channels-last (H, W, C)."""
    c, h, w = (int(s) for s in spec.input_shape)
    return (h, w, c)


def _application(constructor_name: str, spec):
    """Build ``keras.applications.<constructor_name>`` for the spec (random weights from the Keras seed)."""
    import keras  # lazy: only Keras models pay for the import

    unknown = sorted(set(spec.params) - {"input_scale", "normalise", "bipolar"})
    if unknown:
        raise ConfigError(f"model {spec.name}: unknown params {', '.join(unknown)} (known: input_scale, normalise, bipolar)")
    check_mode(spec.params.get("normalise", DEFAULT_NORMALISE))
    check_bipolar(spec.params.get("bipolar", "drop"))
    return getattr(keras.applications, constructor_name)(
        include_top=True,
        weights=None,
        input_shape=keras_input_shape(spec),
        classes=int(spec.n_classes),
        classifier_activation="softmax",
    )


def normalise_input(spec) -> Callable[[torch.Tensor], torch.Tensor]:
    """The adapter's preprocessing for a spec: ``[N, C, H, W]`` charge -> ``[N, H, W, C]`` log1p-scaled."""
    scale = float(spec.params.get("input_scale", DEFAULT_INPUT_SCALE))
    if not scale > 0:
        raise ConfigError(f"model.params.input_scale must be > 0, got {scale!r}")
    mode = check_mode(spec.params.get("normalise", DEFAULT_NORMALISE))
    bipolar = check_bipolar(spec.params.get("bipolar", "drop"))

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return normalise(x, mode, scale, bipolar).permute(0, 2, 3, 1).contiguous()

    return preprocess


@register_model(
    "resnet50v2",
    framework="keras",
    description="Keras applications ResNet50V2, weights=None (the paper's model; 23.6 M parameters at 200x200x3)",
    fits=DataFit(min_side=MIN_SIDE),
    preprocess=normalise_input,
)
def build_resnet50v2(spec):
    return _application("ResNet50V2", spec)


@register_model(
    "densenet169",
    framework="keras",
    description="Keras applications DenseNet169, weights=None (the paper's model; 12.6 M parameters at 200x200x3)",
    fits=DataFit(min_side=MIN_SIDE),
    preprocess=normalise_input,
)
def build_densenet169(spec):
    return _application("DenseNet169", spec)
