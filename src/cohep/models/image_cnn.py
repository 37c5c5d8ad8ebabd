"""``image_cnn``: a small generic CNN for a group's own images, whatever their shape, classes or unit.

The zoo's other models are built for one kind of data (28 x 28 digits, 200 x 200 wire planes); this one
adapts to any ``(views, H, W)`` and any class count, so imported images train without writing a model:

* **Input normalisation: a batch norm over the raw input** (per view, no learned scale; a cumulative
  average of the batch statistics for evaluation). It standardises each view with statistics of the
  data itself, so pixels in ADC counts, electrons, 0..255 or 0..1 all enter at unit scale with no
  outside preprocessing and no constant to choose. Unlike per-event scaling it keeps the intensity
  differences between events (total charge measures energy, which often separates the classes), and
  unlike a log it assumes nothing about the sign or tails of the values. The input statistics do not
  change while the model trains, so a cumulative average (``momentum=None``) is exact from the first
  batch instead of lagging behind an exponential one for the first hundred steps, and its variance
  floor is small (``INPUT_EPS``) so small units are not damped. Its statistics are part of the
  weights, so every learner scores a set of weights with the same normalisation.
* A 3 x 3 convolution at full resolution, then **stages** of a 3 x 3 stride-2 and a 3 x 3 stride-1
  convolution (batch norm, ReLU), padded, so any side down to 1 pixel works; channels double per
  stage up to ``4 * width``. By default there are just enough stages to bring the shorter side to 4
  or less (at least two): 8 x 8 -> 2 x 2, 28 x 28 -> 4 x 4, so the last features see the whole image.
* **Adaptive** global average and max pooling (extent and brightest feature, for any map size), then
  dropout and a linear classifier.

About 0.3 M parameters for images up to 16 pixels a side, ~0.3 M more per extra stage. Meant for small
images; for 200 x 200 wire-plane events the ``compact`` model is 10x cheaper.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from cohep.core.errors import ConfigError
from cohep.models.fit import DataFit
from cohep.models.registry import register_model

_KNOWN_PARAMS = ("width", "stages", "dropout")
#: the input batch norm's variance floor: batch norm's usual 1e-5 would damp inputs whose standard
#: deviation is below ~0.01 (pixels in volts or GeV); 1e-8 leaves any spread above 1e-3 untouched
INPUT_EPS = 1e-8


def default_stages(height: int, width: int) -> int:
    """Stride-2 stages that take the shorter side to 4 pixels or less (at least 2)."""
    return max(2, math.ceil(math.log2(max(1, min(height, width)) / 4)))


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ImageCNN(nn.Module):
    """Input batch norm, a full-resolution conv, stride-2 stages, global avg + max pooling, linear head."""

    def __init__(self, n_classes: int, in_channels: int, *, stages: int, width: int = 32, dropout: float = 0.2):
        super().__init__()
        for name, value in (("width", width), ("stages", stages)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.params.{name} must be a positive integer, got {value!r}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"model.params.dropout must be in [0, 1), got {dropout!r}")
        self.normalise = nn.BatchNorm2d(in_channels, eps=INPUT_EPS, affine=False, momentum=None)
        layers = _conv_bn_relu(in_channels, width, 1)
        channels = width
        for stage in range(stages):
            out = min(width * 2 ** (stage + 1), 4 * width)
            layers += _conv_bn_relu(channels, out, 2) + _conv_bn_relu(out, out, 1)
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * channels, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(self.normalise(x.float()))
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


@register_model(
    "image_cnn",
    framework="torch",
    description="small generic CNN for any image size, view count and class count (normalises any unit)",
    fits=DataFit(),
)
def build_image_cnn(spec) -> ImageCNN:
    """``spec.params``: ``width`` (32), ``stages`` (from the image size), ``dropout`` (0.2)."""
    params = dict(spec.params)
    unknown = sorted(set(params) - set(_KNOWN_PARAMS))
    if unknown:
        raise ConfigError(f"model image_cnn: unknown params {', '.join(unknown)} (known: {', '.join(_KNOWN_PARAMS)})")
    views, h, w = (int(s) for s in spec.input_shape)
    params.setdefault("stages", default_stages(h, w))
    return ImageCNN(spec.n_classes, views, **params)
