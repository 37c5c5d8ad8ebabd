"""Training-time augmentation: what differs between detectors, drawn afresh for every training batch.

A model trained on one simulation sees one vertex position, one gain, one pixel pitch, no dead
channels and one noise level, and learns them as if they were physics. Each switch of the
``[train.augment]`` section varies one of them per event, so the model has to classify without it:

* ``vertex_shift`` (pixels): the event moves by an integer number of pixels, drawn uniformly in
  ``[-vertex_shift, vertex_shift]``: along drift time by the same amount in every view (the views share
  the time axis), along the wires independently per view (a vertex estimate's error differs per plane).
  What leaves the window is lost, what enters is empty.
* ``charge_scale`` (log-normal sigma): every pixel of an event is multiplied by ``exp(sigma * N(0, 1))``:
  an unknown gain or calibration.
* ``pitch_scale`` (fractional range): the wire pitch and the time per pixel each change by a factor
  drawn uniformly in ``[1 - pitch_scale, 1 + pitch_scale]`` (independently): the image shrinks or
  grows by the inverse factors about the vertex position
  (:data:`cohep.datasets.events.VERTEX_FRACTION`), each pixel's charge split bilinearly among its new
  neighbours, so the event's charge is kept (a coarser pitch collects more charge per pixel).
* ``dead_wires`` (fraction): each wire (image row) of each view is dead (all zero) with this
  probability.
* ``noise`` (relative level): every non-zero pixel is multiplied by ``1 + noise * N(0, 1)`` (clipped
  at zero): another charge resolution. Empty pixels stay empty, so zero suppression is kept.

They are applied in that order (geometry first, then charge, then the readout) to the ``[N, V, H, W]``
batch (``H`` wires, ``W`` drift time) in the one training loop (:mod:`cohep.frameworks.base`), before
the framework's own preprocessing, so torch and Keras models, central training and every
collaborative proposal get the same augmentation. Vote and test sets are never augmented: scores
judge the data as it is. The draws come from a generator seeded from the proposal's (or the central
epoch's) seed, so a run is reproducible; labels and shapes never change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..datasets.events import VERTEX_FRACTION
from ..settings import Section, setting


@dataclass(frozen=True)
class AugmentConfig(Section):
    """``[train.augment]``: per-event variations of the training batches (all off at 0)."""

    section: ClassVar[str] = "augment"

    vertex_shift: int = setting(0, ge=0, le=100, help="Largest vertex shift in pixels (0: off).")
    charge_scale: float = setting(0.0, ge=0, le=2, help="Log-normal sigma of a per-event gain (0: off).")
    pitch_scale: float = setting(0.0, ge=0, le=0.5, help="Pitch and time-per-pixel rescale range, +- fraction (0: off).")
    dead_wires: float = setting(0.0, ge=0, lt=1, help="Probability that a wire (image row) is dead (0: off).")
    noise: float = setting(0.0, ge=0, le=1, help="Relative charge smearing of non-zero pixels (0: off).")

    @property
    def active(self) -> bool:
        return bool(self.vertex_shift or self.charge_scale or self.pitch_scale or self.dead_wires or self.noise)


def _positions(index: torch.Tensor, centre: float, factor: torch.Tensor, shift: torch.Tensor):
    """Where pixel ``index`` lands: its centre scaled by ``1 / factor`` about ``centre``, then shifted.

    Returns the lower target pixel and the weight of the upper one (bilinear splatting). Written so
    that ``factor == 1`` with an integer shift lands exactly on a pixel (weight 0).
    """
    c = index.to(torch.float64) + 0.5
    pos = c + (c - centre) * (1.0 / factor - 1.0) + shift - 0.5
    low = torch.floor(pos)
    return low.long(), (pos - low).to(torch.float32)


def _splat(out: torch.Tensor, e, p, r, c, q, cfg: AugmentConfig, generator: torch.Generator) -> None:
    """Pitch rescale and vertex shift: add each non-zero pixel's charge at its new place in ``out``.

    Each pixel moves to its new place and its charge is split bilinearly among the (up to four) pixels
    around it, so charge is conserved exactly (except what leaves the window), a coarser pitch gathers
    more charge per pixel, and an integer shift alone moves pixels exactly. ``pitch_scale <= 0.5``
    keeps the spacing of moved pixels under 2, so a stretched track has no gaps.
    """
    n, v, h, w = out.shape
    f_wire = torch.ones(n, dtype=torch.float64)
    f_time = torch.ones(n, dtype=torch.float64)
    if cfg.pitch_scale:
        f_wire = 1.0 + cfg.pitch_scale * (2.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 1.0)
        f_time = 1.0 + cfg.pitch_scale * (2.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 1.0)
    s = cfg.vertex_shift
    shift_time = torch.randint(-s, s + 1, (n,), generator=generator).to(torch.float64)
    shift_wire = torch.randint(-s, s + 1, (n, v), generator=generator).to(torch.float64)
    e_cpu, p_cpu = e.cpu(), p.cpu()
    r0, a = _positions(r.cpu(), VERTEX_FRACTION[0] * h, f_wire[e_cpu], shift_wire[e_cpu, p_cpu])
    c0, b = _positions(c.cpu(), VERTEX_FRACTION[1] * w, f_time[e_cpu], shift_time[e_cpu])
    r0, a, c0, b = (t.to(out.device) for t in (r0, a, c0, b))
    flat = out.view(-1)
    base = (e * v + p) * h
    for dr, wr in ((0, 1.0 - a), (1, a)):
        for dc, wc in ((0, 1.0 - b), (1, b)):
            rr, cc = r0 + dr, c0 + dc
            weight = wr * wc
            keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w) & (weight > 0)
            flat.index_add_(0, ((base + rr) * w + cc)[keep], (q * weight)[keep])


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """An augmented float copy of the batch ``x`` ``[N, V, H, W]`` (``x`` itself is left as it is).

    Random draws come from ``generator`` (a CPU generator) alone, so the result depends on its state,
    not on the device ``x`` lives on. The work is done on the non-zero pixels (about 2 % of an event)
    and one zero-filled output, not on every pixel.
    """
    if x.dim() != 4:
        raise ValueError(f"augmentation needs [N, views, H, W] batches, got shape {tuple(x.shape)}")
    n, v, h, w = x.shape
    if not cfg.active or x.numel() == 0:
        return x.float().clone()
    flat = x.reshape(-1)
    at = flat.nonzero().squeeze(1)
    q = flat[at].float()
    if cfg.charge_scale:
        gain = torch.exp(cfg.charge_scale * torch.randn(n, generator=generator)).to(x.device)
        q = q * gain[at // (v * h * w)]
    if cfg.noise:
        q = (q * (1.0 + cfg.noise * torch.randn(len(q), generator=generator).to(x.device))).clamp_min_(0.0)
    out = torch.zeros((n, v, h, w), dtype=torch.float32, device=x.device)
    if cfg.vertex_shift or cfg.pitch_scale:
        c = at % w
        r = (at // w) % h
        p = (at // (w * h)) % v
        e = at // (w * h * v)
        _splat(out, e, p, r, c, q, cfg, generator)
    else:
        out.view(-1)[at] = q
    if cfg.dead_wires:
        alive = torch.rand(n, v, h, generator=generator) >= cfg.dead_wires
        out.mul_(alive.to(out.device, out.dtype)[..., None])
    return out
