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
* ``cosmics`` (mean tracks per event): a Poisson number of straight through-going tracks is drawn
  into each event, as cosmic-ray muons cross a surface detector's window during the beam readout
  (MicroBooNE: about one in a 200 x 200 window, docs/physics.md). Each crosses the window edge to
  edge; its drift-time span is shared by the views (they share the time axis) and its wire span is
  drawn per view. Each pixel on it gets the event's own track-pixel charge (the per-event scale of
  :func:`cohep.frameworks.normalise.event_scale`, so no unit is assumed) times the track length in the
  pixel, smeared like ``noise``. A model trained without cosmics reads them as part of the event.
* ``view_dropout`` (probability): each view of an event is blanked with this probability (an event
  that would lose every view keeps them all). The views differ most between detectors in the
  induction planes: MicroBooNE's wires at +-60 degrees with deconvolved (unipolar) charge against
  ProtoDUNE-SP's and DUNE's +-35.7 degrees with raw bipolar signals, while the collection plane is
  vertical and unipolar in all three. A model that must also classify from fewer views cannot lean
  on one induction plane's look (docs/physics.md).

They are applied in that order (geometry first, then charge, then the readout, then the overlay, then
the view dropout) to the ``[N, V, H, W]``
batch (``H`` wires, ``W`` drift time) in the one training loop (:mod:`cohep.frameworks.base`), before
the framework's own preprocessing, so torch and Keras models, central training and every
collaborative proposal get the same augmentation. It is on by default for wire-plane events (batches
of at least ``min_views`` = 2 views) with the values that transferred best from cohep's events to
another detector (docs/benchmarks/augment_transfer.md); one-view images (MNIST) are left alone and
``enabled = false`` turns it off. Vote and test sets are never augmented: scores
judge the data as it is. The draws come from a generator seeded from the proposal's (or the central
epoch's) seed, so a run is reproducible; labels and shapes never change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from cohep.datasets.events import VERTEX_FRACTION
from cohep.core.settings import Section, setting


@dataclass(frozen=True)
class AugmentConfig(Section):
    """``[train.augment]``: per-event variations of the training batches (each off at 0)."""

    section: ClassVar[str] = "augment"

    #: the defaults transfer best (bench/augment_transfer.py, docs/benchmarks/augment_transfer.md); the pitch
    #: range +-40 % (it was +-20 %) spans uB's 3 mm against DUNE's 4.7 mm and held best across beams and
    #: detectors (docs/benchmarks/beams.md and docs/physics.md: three training seeds each)
    vertex_shift: int = setting(8, ge=0, le=100, help="Largest vertex shift in pixels (0: off).")
    charge_scale: float = setting(0.3, ge=0, le=2, help="Log-normal sigma of a per-event gain (0: off).")
    pitch_scale: float = setting(0.4, ge=0, le=0.5, help="Pitch and time-per-pixel rescale range, +- fraction (0: off).")
    dead_wires: float = setting(0.02, ge=0, lt=1, help="Probability that a wire (image row) is dead (0: off).")
    noise: float = setting(0.1, ge=0, le=1, help="Relative charge smearing of non-zero pixels (0: off).")
    cosmics: float = setting(0.0, ge=0, le=10, help="Mean number of cosmic-muon tracks overlaid per event (0: off).")
    view_dropout: float = setting(0.0, ge=0, lt=1, help="Probability that a view of an event is blanked (0: off).")
    enabled: bool = setting(True, help="false: no augmentation at all.")
    #: batches with fewer views are left alone: MNIST digits and a group's own one-view images are
    #: not wire-plane events, and a vertex or a wire means nothing there
    min_views: int = setting(2, ge=1, help="Augment only batches with at least this many views.")

    #: the switches, each off at 0
    SWITCHES: ClassVar[tuple[str, ...]] = ("vertex_shift", "charge_scale", "pitch_scale", "dead_wires", "noise",
                                           "cosmics", "view_dropout")

    @property
    def active(self) -> bool:
        return self.enabled and any(getattr(self, name) for name in self.SWITCHES)

    def describe(self) -> str:
        """The switches that are on, with their values ("off" if none is): what a command says it trains with."""
        on = [f"{name} {getattr(self, name):g}" for name in self.SWITCHES if getattr(self, name)]
        return ", ".join(on) if self.active else "off"

    def applies_to(self, x: torch.Tensor) -> bool:
        """Whether a training batch ``[N, V, H, W]`` gets augmented: active, and enough views."""
        return self.active and x.dim() == 4 and x.shape[1] >= self.min_views


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
    if cfg.cosmics:
        _overlay_tracks(out, cfg, generator)
    if cfg.view_dropout:
        kept = torch.rand(n, v, generator=generator) >= cfg.view_dropout
        kept[~kept.any(dim=1)] = True  # never a blank event
        out.mul_(kept.to(out.device, out.dtype)[..., None, None])
    return out


def _overlay_tracks(out: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> None:
    """In place: Poisson(``cfg.cosmics``) straight edge-to-edge tracks per event (module docstring)."""
    from cohep.frameworks.normalise import event_scale

    n, v, h, w = out.shape
    counts = torch.poisson(torch.full((n,), float(cfg.cosmics)), generator=generator).long()
    m = int(counts.sum())
    if m == 0:
        return
    event = torch.repeat_interleave(torch.arange(n), counts)
    # drift time: entry and exit columns shared by the views; wires: entry and exit rows per view
    c0, c1 = (torch.rand(m, generator=generator, dtype=torch.float64) * w for _ in range(2))
    r0, r1 = (torch.rand(m, v, generator=generator, dtype=torch.float64) * h for _ in range(2))
    steep = torch.rand(m, generator=generator) < 0.5  # half cross top to bottom (wires), half left to right
    r0 = torch.where(steep[:, None], torch.zeros_like(r0), r0)
    r1 = torch.where(steep[:, None], torch.full_like(r1, float(h)), r1)
    c0 = torch.where(steep, c0, torch.zeros_like(c0))
    c1 = torch.where(steep, c1, torch.full_like(c1, float(w)))
    steps = 2 * max(h, w)  # half-pixel steps: every pixel the line crosses is visited
    t = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    dr, dc = r1 - r0, (c1 - c0)[:, None]  # [m, v]
    rows = (r0[..., None] + dr[..., None] * t).floor().long().clamp_(0, h - 1)  # [m, v, steps]
    cols = (c0[:, None, None] + dc[..., None] * t).floor().long().clamp_(0, w - 1).expand_as(rows)
    step_len = (torch.sqrt(dr * dr + dc * dc) / steps).to(torch.float32)  # pixels of track per step
    scale = event_scale(out.clamp_min(0.0)).cpu()
    charge = scale[event][:, None] * step_len  # [m, v]
    if cfg.noise:
        charge = charge * (1.0 + cfg.noise * torch.randn(m, v, generator=generator)).clamp_min(0.0)
    views = torch.arange(v)[None, :, None]
    index = ((event[:, None, None] * v + views) * h + rows) * w + cols
    values = charge[..., None].expand(-1, -1, steps)
    out.view(-1).index_add_(0, index.reshape(-1).to(out.device), values.reshape(-1).to(out.device, out.dtype))
