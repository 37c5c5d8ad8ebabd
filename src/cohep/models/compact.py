"""The compact multi-view CNN: cohep's default model for LArTPC wire-plane images.

Input: ``[N, V, H, W]`` charge images (V views, by default U, V, Y at 200 x 200), mostly zero. Design,
chosen for sparse images and CPU training:

1. **Normalisation inside the model** (``normalise``, :mod:`cohep.frameworks.normalise`): by default
   (``"event"``, what transfers best to other detectors) each event is divided by its own charge
   scale and mapped to cohep's typical one first, so gain and unit do not matter; with ``"log1p"``:
   ``log1p(max(x, 0) / input_scale)``, ``input_scale`` = 1 in the
   file's charge unit. ``cohep simulate`` writes kilo-electrons (``image_unit = "ke-"``): pixels above
   threshold hold ~1.3 ke- (noise level) to ~3000 ke-, median ~17, so the inputs span ~0.8 to ~8 with
   a minimum-ionising pixel near 3. Images in other units need no outside preprocessing: well above
   ``input_scale`` the log turns a unit change into a constant offset, which the first batch norm
   absorbs (electrons instead of ke- shift the inputs by log(1000) = 6.9). Negative values (noise
   undershoot) are clipped to 0.
2. **Per-view branches** (grouped convolutions, ``groups = V``): each view keeps its own filters, since
   induction and collection planes look different, yet all views run in one convolution call.
3. **Patchify stem**: a 4 x 4, stride-4 convolution per view (every pixel enters exactly one patch)
   with 8 filters takes 200 x 200 to 50 x 50 at once. A sparse patch holds at most a track segment or
   a shower fragment, which 8 features describe; this early downsampling costs little information and
   divides the work of every later layer by 16. (16 stem filters train 1.6x slower on CPU: the
   50 x 50 activations dominate memory traffic.)
4. Two per-view 3 x 3, **stride-2** conv -> batch norm -> ReLU stages (50 -> 25 -> 13). A 3 x 3 kernel
   at stride 2 still sees every pixel, so thin one-pixel tracks are never skipped, while it costs a
   quarter of a stride-1 convolution followed by pooling (measured 2x faster end to end).
5. **Joint stage**: a 3 x 3, stride-2 convolution over all views' channels together (13 -> 7; the
   drift-time axis is shared by the views, so cross-view patterns at equal time are meaningful).
6. Global average **and** max pooling (extent and total charge of a topology versus its brightest
   feature), then a small MLP head with dropout giving class logits.
7. **Drift-time reflection while training** (``flip_time``, on by default): each training event is
   mirrored along the drift-time axis (the image columns, shared by all views) with probability 1/2.
   Mirroring drift time is the reflection x -> -x through a plane containing the beam, a symmetry of
   the interaction physics (up to the small drift-distance dependence of diffusion and attenuation),
   so it doubles the effective training set at no cost. Measured on 9,600 / 2,400 simulated events
   (8 epochs): best validation accuracy 0.849 with it, 0.833 without, and less overfitting. It uses
   torch's global generator, which the torch adapter seeds per proposal, so runs stay reproducible;
   evaluation mode never flips.

8. **The collection plane alone by default** (``planes``): its look is the same in every LArTPC
   (vertical wires, unipolar charge), where the induction planes' wire angles and signal shape differ
   between detectors and a model that reads them learns one detector's readout. Trained on one
   detector preset and tested on another, the collection-plane model lost at most 3.6 points (mean
   of 3 seeds), the three-plane model up to 9.6; on the paper's 10,000 / 2,000 events it was as
   accurate at home (best epoch 0.837 against 0.828) and trained 2.2x faster (docs/physics.md).
   ``planes = "all"`` reads U, V and Y, or a list names the views. The network is built for the views it reads: the
   others never enter it, not even the per-event scale, and cost nothing.

Another option for other detectors: ``bipolar`` (how a raw bipolar induction signal's negative lobe
enters, :mod:`cohep.frameworks.normalise`), which matters only when the induction planes are read, and
``floor`` (faint hits under a fraction of the event's track-pixel charge dropped, the same module).

Every convolution is followed by batch norm (its running statistics are part of the weights) and
ReLU. The model runs channels-last, which oneDNN executes 1.5-2x faster on CPU.

With the defaults (widths 8, 32, 64 per view, joint 128, hidden 128) it has 128,339 parameters and
about 8 M multiply-adds per 3 x 200 x 200 event (reading all three views: 317,939 and 25 M; ResNet-50
V2: 23.5 M parameters, ~3.3 G); see
``bench/train_throughput.py`` and docs/models.md for measured training throughput.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cohep.core.errors import ConfigError
from cohep.models.fit import DataFit
from cohep.frameworks.normalise import check_bipolar, check_floor, check_mode
from cohep.frameworks.normalise import normalise as normalise_input
from cohep.models.registry import register_model

DEFAULT_INPUT_SCALE = 1.0  #: one charge unit of the file (1 ke- for `cohep simulate` output)
DEFAULT_NORMALISE = "event"  #: or "log1p"; "event" transfers best (docs/benchmarks/augment_transfer.md)
#: the views read unless ``planes`` says otherwise: the collection plane, vertical and unipolar in every
#: LArTPC, transfers between detectors where the induction planes do not, and at the paper's size it was
#: as accurate at home as all three at less than half the training time (docs/physics.md)
DEFAULT_PLANES = "collection"


def views_read(planes, v: int) -> list[int]:
    """The view indices that ``planes`` names for images of ``v`` views.

    ``"collection"``: the last view (cohep's order is U, V, Y, the collection plane last, in simulated,
    preset and imported events alike; a one-view image is its own); ``"all"``; or distinct indices.
    """
    if planes == "collection":
        return [v - 1]
    if planes == "all":
        return list(range(v))
    if (not isinstance(planes, (list, tuple)) or not planes or len(set(planes)) != len(planes)
            or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < v for i in planes)):
        raise ConfigError('model.params.planes must be "collection", "all" or distinct view indices in '
                          f"0..{v - 1}, got {planes!r}")
    return list(planes)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, padding: int, groups: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class CompactMultiViewCNN(nn.Module):
    """Per-view patchify stem and strided conv stages, a joint conv stage, global pooling, MLP head."""

    def __init__(
        self,
        n_classes: int = 3,
        n_views: int = 3,
        *,
        widths: Sequence[int] = (8, 32, 64),
        joint: int = 128,
        hidden: int = 128,
        dropout: float = 0.2,
        patch: int = 4,
        input_scale: float = DEFAULT_INPUT_SCALE,
        flip_time: bool = True,
        normalise: str = DEFAULT_NORMALISE,
        bipolar: str = "drop",
        planes: str | Sequence[int] = DEFAULT_PLANES,
        floor: float = 0.0,
    ):
        super().__init__()
        if len(widths) != 3 or any(int(w) <= 0 for w in widths):
            raise ConfigError(f"model.params.widths must be 3 positive integers, got {list(widths)!r}")
        if not input_scale > 0:
            raise ConfigError(f"model.params.input_scale must be > 0, got {input_scale!r}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"model.params.dropout must be in [0, 1), got {dropout!r}")
        w0, w1, w2 = (int(w) for w in widths)
        v = int(n_views)
        self.mode = check_mode(normalise)
        self.bipolar = check_bipolar(bipolar)
        self.floor = check_floor(floor)
        read = views_read(planes, v)
        #: the views the model reads, in order; ``None`` when it reads all (a collection-plane model: [2]).
        #: The network is built for these alone: a view it does not read costs nothing.
        self.read = None if read == list(range(v)) else read
        n = len(read)
        self.input_scale = float(input_scale)
        self.flip_time = bool(flip_time)
        self.features = nn.Sequential(
            *_conv_bn_relu(n, n * w0, patch, patch, 0, n),  # patchify stem, per view: H/4
            *_conv_bn_relu(n * w0, n * w1, 3, 2, 1, n),  # per view: H/8
            *_conv_bn_relu(n * w1, n * w2, 3, 2, 1, n),  # per view: H/16
            *_conv_bn_relu(n * w2, joint, 3, 2, 1, 1),  # joint stage over all views: H/32
        )
        self.head = nn.Sequential(
            nn.Linear(2 * joint, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )
        # channels-last is 1.5-2x faster for these grouped convolutions on CPU (oneDNN), fine on CUDA.
        self.to(memory_format=torch.channels_last)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The ``normalise`` mode's input (:mod:`cohep.frameworks.normalise`) in one new tensor."""
        if self.read is not None:  # before normalising, so that the per-event scale comes from the planes read
            x = x[:, self.read]
        return normalise_input(x, self.mode, self.input_scale, self.bipolar, self.floor)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Training only: mirror each event along drift time (the last axis) with probability 1/2.

        Flips the chosen events of ``x`` in place (``x`` is the model's own normalised copy).
        """
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        chosen = flip.nonzero().squeeze(1)
        if len(chosen):
            x.index_copy_(0, chosen, torch.index_select(x, 0, chosen).flip(-1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalising commutes with the mirror, so normalise first and mirror the new tensor in place:
        # two passes over the 3 x 200 x 200 input instead of six; the stem takes it as it comes (its
        # channels-last weights make its output channels-last); 1.3x faster training, 2.5x inference
        x = self.normalise(x)
        if self.training and self.flip_time:
            x = self.augment(x)
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


_KNOWN_PARAMS = ("widths", "joint", "hidden", "dropout", "patch", "input_scale", "flip_time", "normalise", "bipolar",
                 "planes", "floor")


def _min_side(params) -> int:
    """The stem divides each side by ``patch``, three stride-2 stages follow: at least 4 patches a side."""
    patch = params.get("patch", 4)
    if isinstance(patch, bool) or not isinstance(patch, int) or patch <= 0:
        raise ConfigError(f"model.params.patch must be a positive integer, got {patch!r}")
    return 4 * patch


@register_model(
    "compact",
    framework="torch",
    description="compact multi-view CNN for sparse wire-plane images "
                "(default; 0.13 M parameters, collection plane, per-event normalised input)",
    fits=DataFit(min_side=_min_side),
)
def build_compact(spec) -> CompactMultiViewCNN:
    """``spec.input_shape`` = (views, H, W), sides >= 4 * patch; ``spec.params`` may override the design."""
    views = int(spec.input_shape[0])
    params = dict(spec.params)
    unknown = sorted(set(params) - set(_KNOWN_PARAMS))
    if unknown:
        raise ConfigError(
            f"model compact: unknown params {', '.join(unknown)} (known: {', '.join(_KNOWN_PARAMS)})"
        )
    return CompactMultiViewCNN(n_classes=spec.n_classes, n_views=views, **params)
