"""How a neutrino model turns stored charge into network input: ``log1p`` of a fixed or a per-event scale.

Two modes, a model param (``model.params.normalise``) of the compact model and the Keras applications:

* ``"log1p"``: ``log1p(max(x, 0) / input_scale)``, ``input_scale`` one charge unit of the file (1 ke-
  for ``cohep simulate`` output). The absolute charge scale stays visible to the network: a detector
  with another gain or unit shifts every input by a constant, which a model trained on one detector
  has never seen.
* ``"event"``: each event is first divided by its own charge scale ``s`` (below), then multiplied by
  :data:`EVENT_REFERENCE` (the median ``s`` of cohep's simulated events, so both modes give nearly the
  same inputs on cohep data) and ``log1p`` taken. The input no longer depends on the gain, the charge
  unit or a calibration factor at all: ``x`` and ``k x`` give identical inputs for any ``k > 0``.

The per-event scale ``s`` is the mean of the pixels above a tenth of the event's charge-weighted mean
pixel charge ``sum(x^2) / sum(x)``. The charge-weighted mean is dominated by track and shower pixels,
so the cut removes noise hits and the residue of zero suppression whatever the source's threshold,
and ``s`` is close to the typical charge of a track pixel: on 500 events of ``events-12k.h5`` its
median is 51 ke- (5-95 %: 35-83 ke-), 49 / 45 / 61 ke- for NC / numu CC / nue CC events, against 85
(53-156) ke- and 80 / 74 / 111 ke- for the charge-weighted mean itself.

Negative pixels (the second lobe of a raw bipolar induction signal; a deconvolved or unipolar readout
has none) enter by ``model.params.bipolar``: ``"drop"`` (the default: ``max(x, 0)``, as above) keeps
only the first lobe, ``"fold"`` takes ``|x|``, so both lobes count as charge. A track on a bipolar
induction plane then reads as a track two lobes wide instead of a half-erased one, which is closer
to the unipolar (deconvolved) induction planes of a detector such as MicroBooNE; for unipolar data the
two are identical.

``floor`` (``model.params.floor``, default 0: off) drops every pixel under ``floor * s`` before the log,
in both modes. Detectors differ most in their faint hits: 100 MicroBooNE-surface events (noisy channels,
300 e noise) hold a median 250 isolated one- or two-pixel clusters on the collection plane, 100 DUNE FD
events 74 (docs/benchmarks/beams.md); under a tenth of a track pixel's charge they are noise, not
physics, and a floor makes both detectors' images look alike in them.
"""
from __future__ import annotations

from typing import Literal

import torch

from cohep.core.errors import ConfigError

Normalise = Literal["log1p", "event"]
MODES = ("log1p", "event")
#: cohep's median per-event scale ``s`` (ke-): the ``"event"`` mode maps each event's ``s`` here
EVENT_REFERENCE = 50.0
#: pixels under this fraction of the charge-weighted mean do not enter ``s``
EVENT_CUT = 0.1


BIPOLAR = ("drop", "fold")


def check_bipolar(value) -> str:
    """``value`` if it names how negative pixels enter, else one line naming ``model.params.bipolar``."""
    if value not in BIPOLAR:
        raise ConfigError(f"model.params.bipolar must be one of {', '.join(BIPOLAR)}, got {value!r}")
    return value


def check_mode(mode) -> str:
    """``mode`` if it names a normalisation, else one line naming ``model.params.normalise``."""
    if mode not in MODES:
        raise ConfigError(f"model.params.normalise must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def event_scale(z: torch.Tensor) -> torch.Tensor:
    """Per-event charge scale ``s`` ``[N]`` of non-negative images ``[N, ...]`` (0 for an empty event)."""
    flat = z.flatten(1)
    total = flat.sum(1)
    weighted = (flat * flat).sum(1) / total.clamp_min(torch.finfo(flat.dtype).tiny)
    keep = flat > (EVENT_CUT * weighted)[:, None]
    return (flat * keep).sum(1) / keep.sum(1).clamp_min(1)


def check_floor(value) -> float:
    """``value`` if it is a fraction in [0, 1), else one line naming ``model.params.floor``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"model.params.floor must be a number in [0, 1), got {value!r}")
    return float(value)


def normalise(x: torch.Tensor, mode: str = "log1p", input_scale: float = 1.0, bipolar: str = "drop",
              floor: float = 0.0) -> torch.Tensor:
    """The network input for charge images ``x`` ``[N, ...]``, as a new float tensor."""
    z = x.float().abs() if bipolar == "fold" else torch.relu(x.float())
    s = event_scale(z) if mode == "event" or floor else None
    if floor:
        z.mul_(z >= (floor * s).view(-1, *([1] * (z.dim() - 1))))
    if mode == "event":
        assert s is not None
        factor = torch.where(s > 0, EVENT_REFERENCE / s.clamp_min(torch.finfo(z.dtype).tiny), torch.zeros_like(s))
        z.mul_(factor.view(-1, *([1] * (z.dim() - 1))))
    elif input_scale != 1.0:
        z.div_(input_scale)
    return z.log1p_()
