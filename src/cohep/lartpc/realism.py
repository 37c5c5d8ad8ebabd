"""Readout effects that make a simulated image look like a real detector's, and the vertex estimate.

Why: a model trained on ideal images (every channel alive, unipolar charge in ke-, the vertex at
one pixel) learns those conventions and fails on real data or another simulation chain.  Each
effect here is off by default, draws no random number when off, and has its source in
:mod:`.constants`:

* **Dead and noisy channels** (``dead_channel_fraction``, ``noisy_channel_fraction`` per plane):
  whether a wire is dead or noisy is a fixed function of (``channel_map_seed``, plane, wire
  number), like a detector's channel map, so the same wires fail in every event.  A dead wire
  reads zero: a pixel row of ``wires_per_pixel`` wires keeps the share of its live wires (a
  1-wire row of a dead wire is empty).  A noisy wire adds incoherent Gaussian noise of
  ``noisy_channel_factor`` x the pixel noise to every pixel of its row, then the row is
  zero-suppressed again at the plane's threshold (MicroBooNE and ProtoDUNE-SP noise papers).
* **Bipolar induction** (``bipolar_induction``): the induction planes (all but the last) record
  the current induced by the passing charge: a positive lobe while it approaches and a negative
  one after it passed, equal in area.  At pixel resolution (a pixel spans 2-4 us, about one
  lobe) the signal at column c is q(c + 1) - q(c - 1): a track along the drift direction cancels
  except at its ends, as raw induction data do.
* **ADC scale** (``adc_per_ke``): stored values are rounded ADC counts, gain x ke-.
* **Reconstructed window centre**: :func:`estimate_vertex` finds the vertex from the image alone,
  used when ``window_centre = "reconstructed"`` (see :mod:`.simulate`).
"""
from __future__ import annotations

import numpy as np

from cohep.lartpc.detector import DetectorConfig, ImageWindow
from cohep.lartpc.jit import cached_njit


def _uniform(seed: int, plane: int, wires: np.ndarray, salt: int) -> np.ndarray:
    """A fixed uniform number in [0, 1) per (seed, plane, wire, salt): splitmix64 of the key."""
    with np.errstate(over="ignore"):
        x = (np.asarray(wires, np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64((seed * 1_000_003 + plane * 7919 + salt * 104729) & 0xFFFFFFFFFFFFFFFF))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


#: (channel_map_seed, plane, salt) -> (first wire, _uniform of the wires from there): a channel map
#: is a fixed function of the wire number, so each wire's number is computed once per process.
_WIRE_MAPS: dict[tuple[int, int, int], tuple[int, np.ndarray]] = {}


def _wire_uniform(seed: int, plane: int, wires: np.ndarray, salt: int) -> np.ndarray:
    """:func:`_uniform` of these wires, read from a table that grows to the wires asked for."""
    wires = np.asarray(wires, np.int64)
    lo, hi = int(wires.min()), int(wires.max()) + 1
    key = (int(seed), int(plane), int(salt))
    got = _WIRE_MAPS.get(key)
    if got is None or lo < got[0] or hi > got[0] + len(got[1]):
        if got is not None:
            lo, hi = min(lo, got[0]), max(hi, got[0] + len(got[1]))
        lo, hi = lo - 512, hi + 512
        got = (lo, _uniform(seed, plane, np.arange(lo, hi, dtype=np.int64), salt))
        _WIRE_MAPS[key] = got
    return got[1][wires - got[0]]


def dead_wires(det: DetectorConfig, plane: int, wires: np.ndarray) -> np.ndarray:
    """Boolean mask: which of these wire numbers of ``plane`` are dead."""
    return _wire_uniform(det.channel_map_seed, plane, wires, 1) < det.dead_channel_fraction[plane]


def noisy_wires(det: DetectorConfig, plane: int, wires: np.ndarray) -> np.ndarray:
    """Boolean mask: which of these wire numbers of ``plane`` are noisy (and not dead)."""
    noisy = _wire_uniform(det.channel_map_seed, plane, wires, 2) < det.noisy_channel_fraction[plane]
    return noisy & ~dead_wires(det, plane, wires)


def row_wires(win: ImageWindow, plane: int) -> np.ndarray:
    """Wire numbers [H, wires_per_pixel] read into each pixel row of ``plane``."""
    first = win.first_wire[plane] + np.arange(win.height)[:, None] * win.wires_per_pixel
    return first + np.arange(win.wires_per_pixel)[None, :]


def apply_channels(img: np.ndarray, det: DetectorConfig, win: ImageWindow, pixel_noise_ke: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Dead and noisy channels on a float32 image [3, H, W] in ke- (in place; returned)."""
    if not any(det.dead_channel_fraction) and not any(det.noisy_channel_fraction):
        return img
    for p in range(img.shape[0]):
        wires = row_wires(win, p)
        if det.dead_channel_fraction[p] > 0:
            live = 1.0 - dead_wires(det, p, wires).mean(axis=1)
            rows = np.flatnonzero(live < 1.0)  # the other rows would be multiplied by 1
            if len(rows):
                img[p, rows] *= live[rows].astype(np.float32)[:, None]
        if det.noisy_channel_fraction[p] > 0:
            rows = np.flatnonzero(noisy_wires(det, p, wires).any(axis=1))
            if len(rows):
                sigma = det.noisy_channel_factor * pixel_noise_ke[p]
                thr = det.threshold_sigma * pixel_noise_ke[p]
                block = img[p, rows] + rng.normal(0.0, sigma, size=(len(rows), img.shape[2])).astype(np.float32)
                if det.bipolar_induction and p < img.shape[0] - 1:
                    block[np.abs(block) < thr] = 0.0
                else:
                    block[block < thr] = 0.0
                img[p, rows] = block
    return img


@cached_njit
def _bipolar(charge, out):
    """out[p, :, c] = q[p, :, c + 1] - q[p, :, c - 1] for the induction planes (0 beyond the edges),
    in float32 as the array arithmetic it replaces; the last plane copied."""
    n, h, w = charge.shape
    for p in range(n - 1):
        for i in range(h):
            for j in range(w):
                s = np.float32(0.0)
                if j + 1 < w:
                    s = s + charge[p, i, j + 1]
                if j > 0:
                    s = s - charge[p, i, j - 1]
                out[p, i, j] = s
    out[n - 1] = charge[n - 1]


def bipolar(charge: np.ndarray) -> np.ndarray:
    """Induction planes (all but the last) of a charge image [3, H, W] as bipolar signals."""
    if charge.dtype != np.float32 or charge.ndim != 3:  # the array form, for any other input
        out = charge.copy()
        for p in range(charge.shape[0] - 1):
            q = charge[p]
            s = np.zeros_like(q)
            s[:, :-1] += q[:, 1:]
            s[:, 1:] -= q[:, :-1]
            out[p] = s
        return out
    out = np.empty_like(charge)
    _bipolar(np.ascontiguousarray(charge), out)
    return out


def to_adc(img: np.ndarray, adc_per_ke: float) -> np.ndarray:
    """ke- to rounded ADC counts (in place on a float32 image)."""
    img *= np.float32(adc_per_ke)
    np.rint(img, out=img)
    return img


def estimate_vertex(img: np.ndarray, *, upstream_share: float = 0.02, band: int = 5) -> tuple[list[int], int] | None:
    """A simple vertex estimate from a digitised image [3, H, W] (rows = wires, beam towards
    larger rows; columns = drift time, shared by the planes).

    Isolated pixels (no lit neighbour: noise hits) are ignored.  Per plane, the vertex row is where the
    cumulative charge along the rows first reaches ``upstream_share`` of the plane's total (the upstream
    end of the activity); the vertex column is the charge-weighted median column of the collection plane
    (the last) within ``band`` rows downstream of its vertex row.  Absolute values, so bipolar planes count too.  It errs on
    events with a cosmic muon upstream of the vertex or backward-going particles, as a real
    simple vertexer would.  None for an empty image.
    """
    a = np.abs(img.astype(np.float64))
    # isolated pixels (noise hits, blips) carry no direction: keep pixels with a lit neighbour
    lit = a > 0
    nb = np.zeros(lit.shape, np.int8)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                nb += np.roll(np.roll(lit, dr, axis=1), dc, axis=2)
    a = np.where(nb > 0, a, 0.0)
    rows = []
    for p in range(a.shape[0]):
        per_row = a[p].sum(axis=1)
        total = per_row.sum()
        if total <= 0:
            rows.append(None)
            continue
        rows.append(int(np.searchsorted(np.cumsum(per_row), upstream_share * total)))
    if rows[-1] is None:
        return None
    r = rows[-1]
    cols = a[-1, r:r + band].sum(axis=0)
    if cols.sum() <= 0:
        return None
    col = int(np.searchsorted(np.cumsum(cols), 0.5 * cols.sum()))
    return [r if x is None else x for x in rows], col
