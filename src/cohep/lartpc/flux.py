"""Flux presets: which neutrino (flavour, energy) interacts, for an event of a given class.

Why: the class of each event is fixed up front (balanced NC / numu CC / nue CC by default); what a
beam decides is the spectrum *of interacting neutrinos* of that class and its wrong-sign share.  For
a beam preset (:data:`cohep.lartpc.flux_tables.BEAMS`) an event of class

* numu CC is a nu_mu or anti-nu_mu CC interaction, the flavour drawn with weight
  integral(phi_f sigma_CC,f), the energy from phi_f(E) sigma_CC,f(E);
* nue CC likewise from nu_e and anti-nu_e;
* NC from all four flavours with sigma_NC.

sigma(E) per argon nucleon is tabulated in :mod:`.constants` (``*_XS_OVER_E``, PDG and GENIE
values).  The analytic kinds of :class:`~cohep.lartpc.generator.FluxConfig` (the paper's Gaussian,
monochromatic, uniform, histogram) keep their old behaviour draw for draw: a neutrino (never an
anti-neutrino) of the class's flavour at an energy from the flux (times sigma_CC with
``xsec_weighting``).
"""
from __future__ import annotations

import functools

import numpy as np

from cohep.lartpc import constants as C
from cohep.lartpc.flux_tables import BEAMS, BeamTable
from cohep.lartpc.generator import LABEL_NC, LABEL_NUE_CC, LABEL_NUMU_CC, FluxConfig, sample_energy

#: Flavours a beam preset tabulates (PDG codes).
FLAVOURS = (14, -14, 12, -12)
#: Which flavours make each class: numu CC, nue CC, NC.
CLASS_FLAVOURS = {LABEL_NUMU_CC: (14, -14), LABEL_NUE_CC: (12, -12), LABEL_NC: FLAVOURS}
#: The flux a detector preset takes when a configuration names none (TOML, CLI, default_config).
DEFAULT_FLUX = {"dune_fd": "dune"}
#: Sub-bins per table bin when sampling phi x sigma (sigma varies within a coarse bin).
SUB_BINS = 16


def cross_section(pdg: int, cc: bool, energy_gev: np.ndarray | float) -> np.ndarray:
    """Total cross section per argon nucleon, 1e-38 cm^2, of flavour ``pdg`` at ``energy_gev``."""
    e = np.asarray(energy_gev, dtype=float)
    nodes = C.XS_ENERGY_GEV
    anti = pdg < 0
    over_e = np.interp(e, nodes, C.NUMUBAR_CC_XS_OVER_E if anti else C.NUMU_CC_XS_OVER_E)
    if abs(pdg) == 12:
        over_e = over_e * np.interp(e, nodes, C.NUE_TO_NUMU_CC)
    if not cc:  # NC is flavour blind: the nu_mu (or anti-nu_mu) CC value times R
        over_e = np.interp(e, nodes, C.NUMUBAR_CC_XS_OVER_E if anti else C.NUMU_CC_XS_OVER_E)
        over_e = over_e * np.interp(e, nodes, C.NC_TO_CC_NUBAR if anti else C.NC_TO_CC_NU)
    return over_e * e


def beam(name: str) -> BeamTable:
    return BEAMS[name]


def flux_integral(table: BeamTable, pdg: int) -> float:
    """Integral of the table's flux of ``pdg`` over its edges (the table's unit x GeV)."""
    widths = np.diff(np.asarray(table.edges_gev, float))
    return float(np.dot(widths, np.asarray(table.flux[pdg], float)))


@functools.lru_cache(maxsize=64)
def _rate_grid(name: str, pdg: int, cc: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Fine bin edges (GeV), the CDF of phi x sigma over them, and the integral of phi x sigma."""
    table = BEAMS[name]
    edges = np.asarray(table.edges_gev, float)
    phi = np.asarray(table.flux[pdg], float)
    fine = np.concatenate([np.linspace(a, b, SUB_BINS + 1)[:-1] for a, b in zip(edges[:-1], edges[1:])] + [edges[-1:]])
    mid = 0.5 * (fine[1:] + fine[:-1])
    phi_fine = np.repeat(phi, SUB_BINS)
    rate = phi_fine * cross_section(pdg, cc, mid) * np.diff(fine)
    total = float(rate.sum())
    cdf = np.cumsum(rate) / total if total > 0 else np.linspace(0.0, 1.0, len(rate))
    for arr in (fine, cdf):
        arr.setflags(write=False)
    return fine, cdf, total


def interaction_rate(name: str, pdg: int, cc: bool) -> float:
    """Integral of phi(E) sigma(E) (table unit x 1e-38 cm^2) for one flavour and current."""
    return _rate_grid(name, pdg, cc)[2]


@functools.lru_cache(maxsize=32)
def flavour_shares(name: str, label: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Flavours of class ``label`` and their interaction shares in beam ``name``."""
    pdgs = CLASS_FLAVOURS[label]
    cc = label != LABEL_NC
    w = np.array([interaction_rate(name, p, cc) for p in pdgs])
    w = w / w.sum()
    w.setflags(write=False)
    return pdgs, w


def sample_beam(rng: np.random.Generator, name: str, label: int) -> tuple[float, int]:
    """(energy in MeV, flavour PDG code) of an interacting neutrino of class ``label``."""
    pdgs, shares = flavour_shares(name, label)
    k = min(int(np.searchsorted(np.cumsum(shares), rng.random(), side="right")), len(pdgs) - 1)
    pdg = pdgs[k]
    fine, cdf, _ = _rate_grid(name, pdg, label != LABEL_NC)
    j = min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)
    e = fine[j] + (fine[j + 1] - fine[j]) * rng.random()
    return 1000.0 * float(e), int(pdg)


def sample_neutrino(rng: np.random.Generator, flux: FluxConfig, label: int, *,
                    xsec_weighting: bool = False) -> tuple[float, int | None]:
    """(energy in MeV, flavour PDG code or None) of the neutrino of an event of class ``label``.

    None means the class's neutrino (nu_mu for NC and numu CC, nu_e for nue CC), as the analytic
    fluxes always gave; beam presets return the sampled flavour, anti-neutrinos included.
    """
    if flux.kind in BEAMS:
        return sample_beam(rng, flux.kind, int(label))
    return sample_energy(rng, flux, xsec_weighting=xsec_weighting), None


def default_flux(detector: str) -> FluxConfig:
    """The flux a detector preset takes by default: ``dune`` for ``dune_fd``, the paper's Gaussian else."""
    return FluxConfig(kind=DEFAULT_FLUX[detector]) if detector in DEFAULT_FLUX else FluxConfig()
