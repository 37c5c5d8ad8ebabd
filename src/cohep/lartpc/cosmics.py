"""Cosmic-ray muons overlaid on a neutrino event: the main background of a surface LArTPC.

Why: a detector at the surface (MicroBooNE, ProtoDUNE-SP) records, in every readout window, the
muons that crossed it while the charge drifted; a model that never saw them has not learnt to
ignore them.  Model (PDG 2024, "Cosmic rays", sec. 30.3; numbers in :mod:`.constants`):

* **Rate**: ``cosmic_flux_cm2_min`` muons per cm^2 and minute through a horizontal surface (1 at
  sea level).  The muons whose charge reaches the image are those crossing the horizontal plane
  at mid-height inside the area A = (active drift length) x (z span of the window's collection
  wires) during the window's time span T, so their number is Poisson(flux x A x T).  Muons that
  enter the volume outside that strip but cross the window at a slant are left out (a small
  under-count for steep windows; they have the same look).
* **Direction**: intensity ~ cos^2(zenith), times cos(zenith) for the flux through a horizontal
  plane, so cos(zenith) = U^(1/4); azimuth uniform; always downward.
* **Energy**: exponential with the PDG mean at the ground (4 GeV); a muon whose CSDA range ends
  inside the volume stops there (no decay electron: a stopping cosmic is rare in a 1 m window).
* **Track**: a straight minimum-ionising track (dE/dx = ``constants.MIP_DEDX``) in 3 mm steps
  across the whole active volume, with no scattering (a 4 GeV muon bends by a few mm per metre).
* **Time**: the charge of its mid-plane point arrives at a uniform time in the window, i.e. the
  track is shifted along the drift axis by v x t0.  Attenuation and diffusion then use the
  apparent drift distance, not the physical one (a small error on the look of a cosmic).

Everything is drawn from the event's generator, and only when the flux is positive, so a detector
without cosmics draws exactly the random numbers it drew before cosmics existed.
"""
from __future__ import annotations

import math

import numpy as np

from cohep.lartpc import constants as C
from cohep.lartpc.detector import DetectorConfig, ImageWindow, Readout
from cohep.lartpc.transport import DEP_COLS, material_tables

#: Step along a cosmic track (cm): the transport's default maximum step.
STEP_CM = 0.3
#: Track index written into the deposits of cosmic muons (neutrino tracks count from 0).
COSMIC_TRACK = -1.0


def window_area_time(readout: Readout, win: ImageWindow) -> tuple[float, float]:
    """(area in cm^2, time span in s) that the count of cosmics in ``win`` is proportional to."""
    cfg = readout.config
    drift = cfg.active_x_cm[1] - cfg.active_x_cm[0]
    p = int(np.argmax(np.abs(readout.cos)))  # the plane whose wires run most nearly vertical
    z_span = win.height * win.wires_per_pixel * readout.pitch[p] / abs(readout.cos[p])
    t_span = win.width * win.ticks_per_pixel * readout.tick * 1e-9
    return drift * z_span, t_span


def expected_count(readout: Readout, win: ImageWindow) -> float:
    """Mean number of cosmic muons in the window: flux x area x time."""
    area, t_span = window_area_time(readout, win)
    return readout.config.cosmic_flux_cm2_min / 60.0 * area * t_span


def _z_range(readout: Readout, win: ImageWindow) -> tuple[float, float]:
    p = int(np.argmax(np.abs(readout.cos)))
    lo = win.first_wire[p] * readout.pitch[p]
    hi = (win.first_wire[p] + win.height * win.wires_per_pixel) * readout.pitch[p]
    y_mid = 0.5 * sum(readout.config.active_y_cm)
    # w = z cos - y sin  ->  z = (w + y sin) / cos at mid-height
    c, s = readout.cos[p], readout.sin[p]
    z = sorted(((lo + y_mid * s) / c, (hi + y_mid * s) / c))
    return z[0], z[1]


def _clip(box, origin, direction) -> tuple[float, float]:
    """Parameter interval [s_in, s_out] of the line origin + s direction inside the box."""
    s_in, s_out = -math.inf, math.inf
    for k in range(3):
        lo, hi = box[k]
        o, d = origin[k], direction[k]
        if abs(d) < 1e-12:
            if o < lo or o > hi:
                return 0.0, 0.0
            continue
        a, b = (lo - o) / d, (hi - o) / d
        s_in, s_out = max(s_in, min(a, b)), min(s_out, max(a, b))
    return s_in, max(s_in, s_out)


def overlay(rng: np.random.Generator, readout: Readout, win: ImageWindow) -> tuple[np.ndarray, int]:
    """Deposits (rows x, y, z, dE, dx, track = -1; x already shifted by the arrival time) of the
    cosmic muons of one event, and their number."""
    cfg: DetectorConfig = readout.config
    mean = expected_count(readout, win)
    n = int(rng.poisson(mean)) if mean > 0 else 0
    if n == 0:
        return np.zeros((0, DEP_COLS)), 0
    tables = material_tables(cfg.density_g_cm3)
    box = (cfg.active_x_cm, cfg.active_y_cm, cfg.active_z_cm)
    z_lo, z_hi = _z_range(readout, win)
    y_mid = 0.5 * sum(cfg.active_y_cm)
    t_lo = win.first_tick * readout.tick
    t_hi = (win.first_tick + win.width * win.ticks_per_pixel) * readout.tick
    dedx = C.MIP_DEDX * cfg.density_g_cm3 / C.LAR_DENSITY
    out = []
    for _ in range(n):
        x_c = cfg.active_x_cm[0] + (cfg.active_x_cm[1] - cfg.active_x_cm[0]) * rng.random()
        z_c = z_lo + (z_hi - z_lo) * rng.random()
        cos_z = rng.random() ** (1.0 / (C.COSMIC_ZENITH_EXPONENT + 2.0))
        sin_z = math.sqrt(max(0.0, 1.0 - cos_z * cos_z))
        phi = 2.0 * math.pi * rng.random()
        energy = rng.exponential(cfg.cosmic_mean_energy_mev)
        t_arrive = t_lo + (t_hi - t_lo) * rng.random()
        u = np.array([sin_z * math.cos(phi), -cos_z, sin_z * math.sin(phi)])
        origin = np.array([x_c, y_mid, z_c])
        s_in, s_out = _clip(box, origin, u)
        s_out = min(s_out, s_in + tables.csda_range("mu", max(energy, 1.0)))
        n_steps = int((s_out - s_in) / STEP_CM)
        if n_steps < 1:
            continue
        s = s_in + STEP_CM * (np.arange(n_steps) + 0.5)
        dep = np.empty((n_steps, DEP_COLS))
        dep[:, 0:3] = origin + s[:, None] * u
        # the mid-plane point's charge arrives at t_arrive: shift the track along the drift axis
        dep[:, 0] += readout.velocity * t_arrive - (x_c - readout.x_anode)
        dep[:, 3] = dedx * STEP_CM
        dep[:, 4] = STEP_CM
        dep[:, 5] = COSMIC_TRACK
        out.append(dep)
    deps = np.concatenate(out) if out else np.zeros((0, DEP_COLS))
    return deps, n
