"""The reference paper's models, exactly as Keras applications: ResNet-50 V2 and DenseNet-169.

``keras.applications.ResNet50V2`` / ``DenseNet169`` with ``weights=None`` (random initialisation),
``include_top=True``, a softmax classifier over the spec's classes and the spec's input shape turned
channels-last (the paper: 200 x 200 x 3, 3 classes). Keras is imported only when a model is built, so
importing cohep never imports Keras.

The applications carry no input preprocessing when ``weights=None``; the Keras adapter feeds them
``log1p(max(x, 0) / input_scale)`` (the same normalisation as the compact model, see
:func:`normalise_input`) transposed to ``[N, H, W, C]``. Both need images of at least 32 x 32.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigError

DEFAULT_INPUT_SCALE = 1.0  #: as the compact model: one charge unit (1 ke- for simulated files)
MIN_SIDE = 32

#: registry name -> keras.applications constructor name
APPLICATIONS = {"resnet50v2": "ResNet50V2", "densenet169": "DenseNet169"}


def keras_input_shape(spec) -> tuple[int, int, int]:
    """cohep's (C, H, W) input shape as Keras' channels-last (H, W, C), validated."""
    if len(spec.input_shape) != 3:
        raise ConfigError(f"model {spec.name} needs input_shape (channels, H, W), got {list(spec.input_shape)}")
    c, h, w = (int(s) for s in spec.input_shape)
    if min(h, w) < MIN_SIDE:
        raise ConfigError(f"model {spec.name} needs images of at least {MIN_SIDE} x {MIN_SIDE}, got {h} x {w}")
    return (h, w, c)


def build_application(spec):
    """Build the Keras application named by ``spec.name`` (random weights from the Keras seed)."""
    import keras  # lazy: only Keras models pay for the import

    unknown = sorted(set(spec.params) - {"input_scale"})
    if unknown:
        raise ConfigError(f"model {spec.name}: unknown params {', '.join(unknown)} (known: input_scale)")
    try:
        constructor = getattr(keras.applications, APPLICATIONS[spec.name])
    except KeyError:
        raise ConfigError(f"{spec.name!r} is not a Keras application (known: {', '.join(APPLICATIONS)})") from None
    return constructor(
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

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        x = torch.log1p(x.float().clamp_min(0) / scale)
        return x.permute(0, 2, 3, 1).contiguous()

    return preprocess
