"""Neutrino-argon interactions: flux, interaction mode, final-state particles.

A GENIE-like event generator reduced to what shapes a LArTPC image:

* **Flux** (:class:`FluxConfig`): the reference paper's Gaussian (2.5 +- 0.5 GeV) by default, or a
  fixed energy, a uniform band or a histogram; optionally weighted by the total cross section.
* **Mode** (QE / MEC / RES / DIS / COH) drawn from energy-dependent fractions for CC and NC on argon
  (:data:`cohep.lartpc.constants.CC_MODE_FRACTIONS`).
* **Nuclear model**: relativistic Fermi gas (k_F = 242 / 259 MeV/c for p / n), removal energy
  29.5 MeV, Pauli blocking of the quasi-elastic nucleon.
* **Kinematics**: exact 2 -> 2 kinematics in the neutrino-nucleon centre-of-mass frame with Q^2
  drawn from a dipole form (axial masses 0.99 / 1.12 GeV); Delta(1232) Breit-Wigner plus a higher-
  resonance band, decays with isospin branching (Delta+ -> p pi0 : n pi+ = 2 : 1, ...); DIS from
  valence-like x and flat y, AGKY charged multiplicity <n_ch> = a + b ln W^2 with KNO fluctuations
  and phase-space hadron momenta; 2p2h (MEC) on n-p / n-n pairs; coherent pi on the whole nucleus.
* **Final-state interactions**: effective hA-like fates (absorption, charge exchange, inelastic,
  pion production; nucleon knock-out) applied once per hadron leaving the nucleus.

Every random number comes from the ``numpy.random.Generator`` passed in, so an event depends only
on its seed.  Energies and momenta in MeV, Q^2 in MeV^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from cohep.core.errors import ConfigError
from cohep.core.settings import Section
from cohep.lartpc import constants as C
from cohep.lartpc.flux_tables import BEAMS

#: Class labels (index = label); the HDF5 format and the classifier use the same order.
CLASS_NAMES = ("NC", "numu_CC", "nue_CC")
LABEL_NC, LABEL_NUMU_CC, LABEL_NUE_CC = 0, 1, 2
MODE_QE, MODE_MEC, MODE_RES, MODE_DIS, MODE_COH = range(5)
MODE_NAMES = C.MODE_NAMES

_MASS_OF_PDG = {
    11: C.ELECTRON_MASS, -11: C.ELECTRON_MASS, 13: C.MUON_MASS, -13: C.MUON_MASS, 12: 0.0, 14: 0.0,
    -12: 0.0, -14: 0.0,
    211: C.PION_CHARGED_MASS, -211: C.PION_CHARGED_MASS, 111: C.PION_ZERO_MASS,
    2212: C.PROTON_MASS, 2112: C.NEUTRON_MASS, 22: 0.0,
}
_CHARGE_OF_PDG = {211: 1, -211: -1, 111: 0, 2212: 1, 2112: 0}


def mass_of(pdg: int) -> float:
    """Rest mass (MeV) of a particle known to the generator, by PDG code."""
    return _MASS_OF_PDG[pdg]


# ---------------------------------------------------------------------------------------------
# Flux
# ---------------------------------------------------------------------------------------------
#: Analytic spectra, then ``paper`` (the reference paper's 2.5 +- 0.5 GeV Gaussian by name, whatever
#: the other fields say) and the beam presets of :mod:`.flux_tables` (sampled by :mod:`.flux`).
FLUX_KINDS = ("gaussian", "monochromatic", "uniform", "histogram", "paper") + tuple(BEAMS)
#: The reference paper's spectrum: a Gaussian of 2.5 +- 0.5 GeV truncated to [0.2, 10] GeV.
PAPER_FLUX = {"mean_gev": 2.5, "sigma_gev": 0.5, "min_gev": 0.2, "max_gev": 10.0}


@dataclass(frozen=True)
class FluxConfig(Section):
    """Neutrino energy spectrum (GeV at this edge; MeV inside).

    ``kind``: ``gaussian`` (``mean_gev``, ``sigma_gev``, truncated to [``min_gev``, ``max_gev``]),
    ``monochromatic`` (``mean_gev``), ``uniform`` (``min_gev`` - ``max_gev``), ``histogram``
    (bin ``edges_gev`` and ``weights``, flat within a bin), ``paper`` (the reference paper's
    Gaussian, 2.5 +- 0.5 GeV, by name), or a beam preset: ``dune`` (LBNF neutrino mode at the DUNE
    far detector), ``bnb`` (Booster beam at MicroBooNE), ``numi`` (NuMI at MicroBooNE) - per-flavour
    tables with wrong-sign content, sampled as flux x cross section by :mod:`cohep.lartpc.flux`.
    """

    section: ClassVar[str] = "flux"

    kind: str = "gaussian"
    mean_gev: float = 2.5
    sigma_gev: float = 0.5
    min_gev: float = 0.2
    max_gev: float = 10.0
    edges_gev: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    def check(self) -> None:
        where = self.section
        if self.kind not in FLUX_KINDS:
            raise ConfigError(f"{where}.kind must be one of {', '.join(FLUX_KINDS)}, got {self.kind!r}")
        if not 0.0 < self.min_gev < self.max_gev:
            raise ConfigError(f"{where}: need 0 < min_gev < max_gev, got {self.min_gev} and {self.max_gev}")
        if self.kind in ("gaussian", "monochromatic") and not self.min_gev <= self.mean_gev <= self.max_gev:
            raise ConfigError(f"{where}.mean_gev must lie in [min_gev, max_gev], got {self.mean_gev}")
        if self.kind == "gaussian" and not self.sigma_gev > 0:
            raise ConfigError(f"{where}.sigma_gev must be > 0, got {self.sigma_gev}")
        if self.kind == "histogram":
            e, w = np.asarray(self.edges_gev, float), np.asarray(self.weights, float)
            if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0) or e[0] <= 0:
                raise ConfigError(f"{where}.edges_gev must be increasing positive bin edges")
            if len(w) != len(e) - 1 or np.any(w < 0) or w.sum() <= 0:
                raise ConfigError(f"{where}.weights needs one non-negative weight per bin ({len(e) - 1}), not all zero")

    @property
    def is_beam(self) -> bool:
        """Whether this is a beam preset (sampled per flavour by :mod:`cohep.lartpc.flux`)."""
        return self.kind in BEAMS

    def sample(self, rng: np.random.Generator) -> float:
        """One neutrino energy in MeV (analytic kinds; a beam preset's energy depends on the class)."""
        if self.is_beam:
            raise ValueError(f"flux {self.kind!r} is a beam preset: sample it with cohep.lartpc.flux.sample_neutrino")
        if self.kind == "paper":
            return FluxConfig(kind="gaussian", mean_gev=PAPER_FLUX["mean_gev"], sigma_gev=PAPER_FLUX["sigma_gev"],
                              min_gev=PAPER_FLUX["min_gev"], max_gev=PAPER_FLUX["max_gev"]).sample(rng)
        if self.kind == "monochromatic":
            return 1000.0 * self.mean_gev
        if self.kind == "uniform":
            return 1000.0 * (self.min_gev + (self.max_gev - self.min_gev) * rng.random())
        if self.kind == "histogram":
            w = np.asarray(self.weights, float)
            k = int(np.searchsorted(np.cumsum(w) / w.sum(), rng.random(), side="right"))
            k = min(k, len(w) - 1)
            lo, hi = self.edges_gev[k], self.edges_gev[k + 1]
            return 1000.0 * (lo + (hi - lo) * rng.random())
        for _ in range(1000):
            e = self.mean_gev + self.sigma_gev * rng.standard_normal()
            if self.min_gev <= e <= self.max_gev:
                return 1000.0 * e
        return 1000.0 * self.mean_gev

    @property
    def max_mev(self) -> float:
        if self.is_beam:
            return 1000.0 * BEAMS[self.kind].edges_gev[-1]
        if self.kind == "paper":
            return 1000.0 * PAPER_FLUX["max_gev"]
        if self.kind == "monochromatic":
            return 1000.0 * self.mean_gev
        if self.kind == "histogram":
            return 1000.0 * self.edges_gev[-1]
        return 1000.0 * self.max_gev


def cc_cross_section(energy: float) -> float:
    """nu_mu CC total cross section per argon nucleus, 1e-38 cm^2 (GENIE argon table, interpolated)."""
    return float(np.interp(energy, C.CC_XSEC_ENERGY, C.CC_XSEC_1E38))


def sample_energy(rng: np.random.Generator, flux: FluxConfig, *, xsec_weighting: bool = False) -> float:
    """Neutrino energy (MeV) of an interacting neutrino: the flux, times sigma(E) if asked."""
    if not xsec_weighting:
        return flux.sample(rng)
    ceiling = cc_cross_section(flux.max_mev)
    for _ in range(10000):
        e = flux.sample(rng)
        if rng.random() * ceiling <= cc_cross_section(e):
            return e
    return e


def mode_fractions(energy: float, cc: bool) -> np.ndarray:
    """Fractions of QE, MEC, RES, DIS, COH at neutrino energy ``energy`` (MeV)."""
    table = np.asarray(C.CC_MODE_FRACTIONS if cc else C.NC_MODE_FRACTIONS)
    f = np.array([np.interp(energy, C.MODE_FRACTION_ENERGY, table[:, k]) for k in range(5)])
    return f / f.sum()


# ---------------------------------------------------------------------------------------------
# Four-vector helpers (tuples E, px, py, pz)
# ---------------------------------------------------------------------------------------------
def _boost(p, bx, by, bz):
    """Boost 4-vector p from the frame moving with velocity (bx, by, bz) to the lab."""
    b2 = bx * bx + by * by + bz * bz
    if b2 < 1e-24:
        return p
    g = 1.0 / math.sqrt(1.0 - b2)
    bp = bx * p[1] + by * p[2] + bz * p[3]
    g2 = (g - 1.0) / b2
    k = g2 * bp + g * p[0]
    return (g * (p[0] + bp), p[1] + k * bx, p[2] + k * by, p[3] + k * bz)


def _minv(p):
    return math.sqrt(max(p[0] * p[0] - p[1] * p[1] - p[2] * p[2] - p[3] * p[3], 0.0))


def _add(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def _sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3])


def _rotate(ux, uy, uz, cost, phi):
    sint = math.sqrt(max(0.0, 1.0 - cost * cost))
    if abs(uz) < 0.99:
        n = math.hypot(ux, uy)
        e1 = (uy / n, -ux / n, 0.0)
    else:
        n = math.hypot(uy, uz)
        e1 = (0.0, uz / n, -uy / n)
    e2 = (uy * e1[2] - uz * e1[1], uz * e1[0] - ux * e1[2], ux * e1[1] - uy * e1[0])
    cp, sp = math.cos(phi), math.sin(phi)
    v = [cost * u + sint * (cp * a + sp * b) for u, a, b in zip((ux, uy, uz), e1, e2)]
    n = math.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)
    return v[0] / n, v[1] / n, v[2] / n


def _isotropic(rng):
    cost = 2.0 * rng.random() - 1.0
    phi = 2.0 * math.pi * rng.random()
    s = math.sqrt(max(0.0, 1.0 - cost * cost))
    return s * math.cos(phi), s * math.sin(phi), cost


def _two_body(rng, parent, m1, m2):
    """Isotropic two-body decay of 4-vector ``parent`` (lab) into masses m1, m2 (lab 4-vectors)."""
    w = _minv(parent)
    q2 = (w * w - (m1 + m2) ** 2) * (w * w - (m1 - m2) ** 2)
    q = math.sqrt(max(q2, 0.0)) / (2.0 * w)
    ux, uy, uz = _isotropic(rng)
    a = (math.sqrt(m1 * m1 + q * q), q * ux, q * uy, q * uz)
    b = (math.sqrt(m2 * m2 + q * q), -q * ux, -q * uy, -q * uz)
    bx, by, bz = parent[1] / parent[0], parent[2] / parent[0], parent[3] / parent[0]
    return _boost(a, bx, by, bz), _boost(b, bx, by, bz)


def _n_body(rng, parent, masses):
    """Phase-space-like n-body decay (GENBOD intermediate masses from sorted uniforms, unweighted)."""
    n = len(masses)
    if n == 1:
        return [parent]
    w = _minv(parent)
    kin = w - sum(masses)
    r = sorted(rng.random() for _ in range(n - 2))
    # invariant masses of the first i+1 particles, i = 0..n-1
    sub = [masses[0]] + [sum(masses[: i + 1]) + r[i - 1] * kin for i in range(1, n - 1)] + [w]
    out = [None] * n
    cur = parent
    for i in range(n - 1, 0, -1):
        rest, last = _two_body(rng, cur, sub[i - 1], masses[i])
        out[i] = last
        cur = rest
    out[0] = cur
    return out


def _fermi_momentum(rng, kf):
    """Momentum uniform in the Fermi sphere of radius kf (MeV/c)."""
    p = kf * rng.random() ** (1.0 / 3.0)
    ux, uy, uz = _isotropic(rng)
    return p * ux, p * uy, p * uz


def _dipole_q2(rng, lo, hi, mass, power=4.0):
    """Q^2 in [lo, hi] with density (1 + Q^2/M^2)^-power (inverse CDF)."""
    lo = max(lo, 0.0)
    if hi <= lo:
        return lo
    m2 = mass * mass
    a = (1.0 + lo / m2) ** (1.0 - power)
    b = (1.0 + hi / m2) ** (1.0 - power)
    u = a + (b - a) * rng.random()
    return m2 * (u ** (1.0 / (1.0 - power)) - 1.0)


def _scatter(rng, e_nu, target, m_lep, w, q2_of_range):
    """nu (along +z) + target 4-vector -> lepton (mass m_lep) + hadronic system (mass w).

    ``q2_of_range(lo, hi)`` picks Q^2 within the kinematic limits.  Returns (lepton, hadron, Q^2)
    as lab 4-vectors, or None when the final state is not reachable.
    """
    tot = (e_nu + target[0], target[1], target[2], e_nu + target[3])
    s = tot[0] ** 2 - tot[1] ** 2 - tot[2] ** 2 - tot[3] ** 2
    if s <= 0.0:
        return None
    rs = math.sqrt(s)
    if rs <= m_lep + w + 1e-6:
        return None
    bx, by, bz = tot[1] / tot[0], tot[2] / tot[0], tot[3] / tot[0]
    nu_cm = _boost((e_nu, 0.0, 0.0, e_nu), -bx, -by, -bz)
    en = nu_cm[0]
    el = (s + m_lep * m_lep - w * w) / (2.0 * rs)
    pl = math.sqrt(max(el * el - m_lep * m_lep, 0.0))
    q2min = 2.0 * (en * el - en * pl) - m_lep * m_lep
    q2max = 2.0 * (en * el + en * pl) - m_lep * m_lep
    q2 = q2_of_range(q2min, q2max)
    if q2 is None or not q2min - 1e-6 <= q2 <= q2max + 1e-6:
        return None
    cost = (2.0 * en * el - m_lep * m_lep - q2) / (2.0 * en * pl) if pl > 0 else 1.0
    cost = min(1.0, max(-1.0, cost))
    ux, uy, uz = nu_cm[1] / en, nu_cm[2] / en, nu_cm[3] / en
    vx, vy, vz = _rotate(ux, uy, uz, cost, 2.0 * math.pi * rng.random())
    lep = _boost((el, pl * vx, pl * vy, pl * vz), bx, by, bz)
    had = _sub(tot, lep)
    return lep, had, q2


# ---------------------------------------------------------------------------------------------
# Interaction record
# ---------------------------------------------------------------------------------------------
@dataclass
class Interaction:
    """Truth of one neutrino interaction (MeV, MeV/c; the lepton's 4-momentum separately)."""

    label: int
    nu_pdg: int
    is_cc: bool
    mode: int
    nu_energy: float
    target_pdg: int
    q2: float
    w: float
    lepton_pdg: int
    lepton: tuple[float, float, float, float]
    #: Visible final state after FSI: [pdg, E, px, py, pz] (the lepton first for CC).
    particles: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    @property
    def lepton_energy(self) -> float:
        return self.lepton[0]

    @property
    def inelasticity(self) -> float:
        return 1.0 - self.lepton[0] / self.nu_energy

    def count(self, *pdgs: int) -> int:
        return sum(1 for p in self.particles if p[0] in pdgs)


def _particle(pdg, p4):
    return (pdg, p4[0], p4[1], p4[2], p4[3])


def _kinetic(p):
    return p[1] - _MASS_OF_PDG[p[0]]


# ---------------------------------------------------------------------------------------------
# Hadronic systems
# ---------------------------------------------------------------------------------------------
def _choose_charges(rng, q_had, n_pions, *, one_pion_isospin=True):
    """Baryon PDG and pion PDGs for a hadronic system of total charge q_had."""
    if n_pions == 1 and one_pion_isospin:
        if q_had >= 2:
            return 2212, [211]
        if q_had <= -1:
            return 2112, [-211]
        if rng.random() < C.DELTA_NEUTRAL_PION_BRANCHING:
            return (2212 if q_had == 1 else 2112), [111]
        return (2112, [211]) if q_had == 1 else (2212, [-211])
    for _ in range(200):
        baryon = 2212 if rng.random() < 0.5 else 2112
        pions = [(211, -211, 111)[int(3.0 * rng.random())] for _ in range(n_pions)]
        if _CHARGE_OF_PDG[baryon] + sum(_CHARGE_OF_PDG[p] for p in pions) == q_had:
            return baryon, pions
    # deterministic fallback: a proton when the charge needs it, pions fixed up one by one
    baryon = 2212 if q_had >= 1 else 2112
    need = q_had - _CHARGE_OF_PDG[baryon]
    pions = []
    for _ in range(n_pions):
        if need > 0:
            pions.append(211)
            need -= 1
        elif need < 0:
            pions.append(-211)
            need += 1
        else:
            pions.append(111)
    return baryon, pions


def _hadronise(rng, had4, baryon, pions):
    masses = [_MASS_OF_PDG[baryon]] + [_MASS_OF_PDG[p] for p in pions]
    p4s = _n_body(rng, had4, masses)
    return [_particle(pdg, p4) for pdg, p4 in zip([baryon] + pions, p4s)]


# ---------------------------------------------------------------------------------------------
# Final-state interactions (effective, hA-like)
# ---------------------------------------------------------------------------------------------
def _from_kinetic(pdg, t, ux, uy, uz):
    m = _MASS_OF_PDG[pdg]
    p = math.sqrt(max(t * (t + 2.0 * m), 0.0))
    return (pdg, t + m, p * ux, p * uy, p * uz)


def _direction(p):
    n = math.sqrt(p[2] ** 2 + p[3] ** 2 + p[4] ** 2)
    if n <= 0.0:
        return 0.0, 0.0, 1.0
    return p[2] / n, p[3] / n, p[4] / n


def _share(rng, etot, n):
    cuts = sorted(rng.random() for _ in range(n - 1))
    edges = [0.0] + cuts + [1.0]
    return [etot * (edges[i + 1] - edges[i]) for i in range(n)]


def apply_fsi(rng: np.random.Generator, hadrons: list) -> list:
    """Intranuclear fates of hadrons leaving the argon nucleus (absorption, charge exchange,
    inelastic scattering with nucleon knock-out, pion production; nucleon knock-out)."""
    esep = C.NUCLEON_SEPARATION_ENERGY
    out = []
    for h in hadrons:
        pdg = h[0]
        t = _kinetic(h)
        ux, uy, uz = _direction(h)
        r = rng.random()
        if pdg in (211, -211, 111):
            p_abs, p_cex = C.FSI_PION_ABSORPTION, C.FSI_PION_CHARGE_EXCHANGE
            p_inel = C.FSI_PION_INELASTIC
            p_prod = C.FSI_PION_PRODUCTION if t > 500.0 else 0.0
            if r < p_abs:
                # absorbed on a quasi-deuteron: two nucleons share T + m_pi - 2 E_sep
                pair = {211: (2212, 2212), -211: (2112, 2112), 111: (2212, 2112)}[pdg]
                etot = t + _MASS_OF_PDG[pdg] - 2.0 * esep
                if etot > 0:
                    for npdg, tn in zip(pair, _share(rng, etot, 2)):
                        out.append(_from_kinetic(npdg, tn, *_isotropic(rng)))
                continue
            r -= p_abs
            if r < p_cex:
                new = 111 if pdg != 111 else (211 if rng.random() < 0.5 else -211)
                t2 = max(t * (0.75 + 0.2 * rng.random()) + _MASS_OF_PDG[pdg] - _MASS_OF_PDG[new], 1.0)
                out.append(_from_kinetic(new, t2, *_rotate(ux, uy, uz, 0.6 + 0.4 * rng.random(), 2 * math.pi * rng.random())))
                continue
            r -= p_cex
            if r < p_inel:
                t2 = t * (0.3 + 0.5 * rng.random())
                out.append(_from_kinetic(pdg, t2, *_rotate(ux, uy, uz, 2.0 * rng.random() - 1.0, 2 * math.pi * rng.random())))
                tn = t - t2 - esep
                if tn > 0:
                    npdg = 2212 if rng.random() < 0.5 else 2112
                    out.append(_from_kinetic(npdg, tn, *_rotate(ux, uy, uz, rng.random(), 2 * math.pi * rng.random())))
                continue
            r -= p_inel
            if r < p_prod:
                avail = t - C.PION_CHARGED_MASS - esep
                t1 = avail * (0.3 + 0.4 * rng.random())
                out.append(_from_kinetic(pdg, t1, *_rotate(ux, uy, uz, 0.5 + 0.5 * rng.random(), 2 * math.pi * rng.random())))
                extra = (211, -211, 111)[int(3.0 * rng.random())]
                out.append(_from_kinetic(extra, avail - t1, *_rotate(ux, uy, uz, rng.random(), 2 * math.pi * rng.random())))
                continue
            out.append(h)
        elif pdg in (2212, 2112):
            if r < C.FSI_NUCLEON_KNOCKOUT and t > 2.0 * esep:
                t2 = t * (0.3 + 0.5 * rng.random())
                out.append(_from_kinetic(pdg, t2, *_rotate(ux, uy, uz, 0.3 + 0.7 * rng.random(), 2 * math.pi * rng.random())))
                npdg = 2212 if rng.random() < 0.5 else 2112
                out.append(_from_kinetic(npdg, t - t2 - esep, *_rotate(ux, uy, uz, rng.random(), 2 * math.pi * rng.random())))
                continue
            r -= C.FSI_NUCLEON_KNOCKOUT
            if r < C.FSI_NUCLEON_MULTI and t > 3.0 * esep:
                n = 2 + int(2.0 * rng.random())
                for tn in _share(rng, t - n * esep, n):
                    npdg = 2212 if rng.random() < 0.45 else 2112
                    out.append(_from_kinetic(npdg, tn,
                                             *_rotate(ux, uy, uz, 2.0 * rng.random() - 1.0, 2 * math.pi * rng.random())))
                continue
            out.append(h)
        else:
            out.append(h)
    return out


# ---------------------------------------------------------------------------------------------
# Interaction modes
# ---------------------------------------------------------------------------------------------
def _bound_nucleon(rng, pdg):
    kf = C.FERMI_MOMENTUM_PROTON if pdg == 2212 else C.FERMI_MOMENTUM_NEUTRON
    px, py, pz = _fermi_momentum(rng, kf)
    m = _MASS_OF_PDG[pdg]
    e = math.sqrt(m * m + px * px + py * py + pz * pz) - C.REMOVAL_ENERGY
    return (e, px, py, pz)


def _quasi_elastic(rng, e_nu, cc, m_lep, anti=False):
    if cc:  # nu n -> l- p; anti-nu p -> l+ n
        target, final = (2212, 2112) if anti else (2112, 2212)
    else:
        target = 2212 if rng.random() < C.ARGON_PROTONS / (C.ARGON_PROTONS + C.ARGON_NEUTRONS) else 2112
        final = target
    kf_final = C.FERMI_MOMENTUM_PROTON if final == 2212 else C.FERMI_MOMENTUM_NEUTRON
    res = None
    for _ in range(30):
        tgt = _bound_nucleon(rng, target)
        res = _scatter(rng, e_nu, tgt, m_lep, _MASS_OF_PDG[final],
                       lambda lo, hi: _dipole_q2(rng, lo, hi, C.AXIAL_MASS_QE))
        if res is None:
            continue
        lep, had, q2 = res
        if math.sqrt(had[1] ** 2 + had[2] ** 2 + had[3] ** 2) > kf_final:  # Pauli blocking
            break
    if res is None:
        return None
    lep, had, q2 = res
    return lep, [_particle(final, had)], q2, _MASS_OF_PDG[final], target


def _resonance(rng, e_nu, cc, m_lep, anti=False):
    if cc and anti:  # anti-nu n -> l+ Delta- is 3x anti-nu p -> l+ Delta0 (isospin mirror)
        wn = C.ARGON_NEUTRONS * C.RES_CC_PROTON_WEIGHT
        target = 2212 if rng.random() < C.ARGON_PROTONS / (C.ARGON_PROTONS + wn) else 2112
    elif cc:
        wp = C.ARGON_PROTONS * C.RES_CC_PROTON_WEIGHT
        target = 2212 if rng.random() < wp / (wp + C.ARGON_NEUTRONS) else 2112
    else:
        target = 2212 if rng.random() < C.ARGON_PROTONS / (C.ARGON_PROTONS + C.ARGON_NEUTRONS) else 2112
    q_had = _CHARGE_OF_PDG[target] + ((-1 if anti else 1) if cc else 0)
    w_min = C.NUCLEON_MASS + C.PION_CHARGED_MASS + 2.0
    for _ in range(30):
        tgt = _bound_nucleon(rng, target)
        s = (e_nu + tgt[0]) ** 2 - tgt[1] ** 2 - tgt[2] ** 2 - (e_nu + tgt[3]) ** 2
        w_max = math.sqrt(max(s, 0.0)) - m_lep - 1.0
        if w_max <= w_min:
            continue
        delta = rng.random() < C.RES_DELTA_SHARE
        for _ in range(50):
            if delta:
                w = C.DELTA_MASS + 0.5 * C.DELTA_WIDTH * math.tan(math.pi * (rng.random() - 0.5))
            else:
                w = 1350.0 + 400.0 * rng.random()
            if w_min <= w <= w_max:
                break
        else:
            continue
        res = _scatter(rng, e_nu, tgt, m_lep, w, lambda lo, hi: _dipole_q2(rng, lo, hi, C.AXIAL_MASS_RES))
        if res is None:
            continue
        lep, had, q2 = res
        two_pi = (not delta) and rng.random() < C.RES_HIGHER_TWO_PION and w > C.NUCLEON_MASS + 2 * C.PION_CHARGED_MASS + 5.0
        baryon, pions = _choose_charges(rng, q_had, 2 if two_pi else 1)
        return lep, _hadronise(rng, had, baryon, pions), q2, w, target
    return None


def _dis_y(rng, anti):
    """Inelasticity of a DIS scatter.  An anti-neutrino meets a quark ((1 - y)^2) or an antiquark
    (flat) in the ratio of their momentum fractions (DIS_ANTIQUARK_FRACTION); a neutrino's y stays
    flat (its antiquark share, 5 % of DIS, is left out so that neutrino events keep their draws:
    <y> 0.50 instead of the quark-parton 0.49)."""
    if not anti:
        return rng.random()
    qbar = C.DIS_ANTIQUARK_FRACTION
    if rng.random() < qbar / (qbar + 1.0 / 3.0):
        return rng.random()
    return 1.0 - rng.random() ** (1.0 / 3.0)


def _deep_inelastic(rng, e_nu, cc, m_lep, anti=False):
    if cc and anti:  # anti-nu scatters on u quarks: the proton (uud) counts twice
        wp = 2.0 * C.ARGON_PROTONS
        wn = float(C.ARGON_NEUTRONS)
    elif cc:  # nu scatters on d quarks: the neutron (udd) counts twice
        wp = float(C.ARGON_PROTONS)
        wn = 2.0 * C.ARGON_NEUTRONS
    else:
        wp, wn = float(C.ARGON_PROTONS), float(C.ARGON_NEUTRONS)
    target = 2212 if rng.random() < wp / (wp + wn) else 2112
    q_had = _CHARGE_OF_PDG[target] + ((-1 if anti else 1) if cc else 0)
    m = C.NUCLEON_MASS
    for _ in range(100):
        tgt = _bound_nucleon(rng, target)
        x = rng.beta(*C.DIS_X_BETA)  # x q(x) ~ x^0.5 (1 - x)^3, valence-like
        y = _dis_y(rng, anti)
        w2 = m * m + 2.0 * m * e_nu * y * (1.0 - x)
        q2 = 2.0 * m * e_nu * x * y
        w = math.sqrt(w2)
        if w < C.DIS_MIN_W:
            continue
        res = _scatter(rng, e_nu, tgt, m_lep, w, lambda lo, hi, q2=q2: q2 if lo <= q2 <= hi else None)
        if res is None:
            continue
        lep, had, q2 = res
        baryon, pions = _dis_hadrons(rng, q_had, target, w)
        return lep, _hadronise(rng, had, baryon, pions), q2, w, target
    return None


def _dis_hadrons(rng, q_had, target, w):
    """Baryon and pions of a DIS hadronic system of charge ``q_had`` and mass ``w`` (AGKY-like).

    The number of charged hadrons follows <n_ch> = a + b ln W^2 (AGKY, a per target) with KNO
    fluctuations (Gamma law, c = KNO_C), made compatible with the charge (n_ch - q even, enough
    charges of the needed sign); pi0s are Poisson with DIS_PI0_PER_CHARGED_PION times the mean
    charged-pion count (isospin); the baryon is a proton with DIS_PROTON_SHARE[q_had]. Pions that do not fit in
    W are dropped, pi0 first, then pi+ pi- pairs (the charge stays)."""
    a = C.AGKY_A_PROTON if target == 2212 else C.AGKY_A_NEUTRON
    mean_ch = max(a + C.AGKY_B * math.log(w * w / 1.0e6), 1.0)
    n_ch = max(int(round(mean_ch * rng.gamma(C.KNO_C, 1.0 / C.KNO_C))), abs(q_had), 1)
    if (n_ch - q_had) % 2:  # one more or one fewer, so that the mean stays
        n_ch += 1 if (rng.random() < 0.5 or n_ch - 1 < max(abs(q_had), 1)) else -1
    proton = rng.random() < C.DIS_PROTON_SHARE.get(q_had, 0.5)
    q_pi = q_had - (1 if proton else 0)
    n_chpi = n_ch - (1 if proton else 0)
    while n_chpi < abs(q_pi):
        n_chpi += 2
    n_plus = (n_chpi + q_pi) // 2
    n_minus = n_chpi - n_plus
    neutral_mean = C.DIS_PI0_PER_CHARGED_PION * max(mean_ch - C.DIS_PROTON_SHARE.get(q_had, 0.5), 0.5)
    n_zero = int(rng.poisson(neutral_mean))
    room = w - 20.0 - (C.PROTON_MASS if proton else C.NEUTRON_MASS)
    while n_zero and (n_plus + n_minus) * C.PION_CHARGED_MASS + n_zero * C.PION_ZERO_MASS > room:
        n_zero -= 1
    while n_plus and n_minus and (n_plus + n_minus) * C.PION_CHARGED_MASS > room:
        n_plus -= 1
        n_minus -= 1
    if n_plus + n_minus + n_zero == 0:  # at least one pion: a DIS system is not a bare nucleon
        return _choose_charges(rng, q_had, 1, one_pion_isospin=False)
    pions = [211] * n_plus + [-211] * n_minus + [111] * n_zero
    order = rng.permutation(len(pions))
    return (2212 if proton else 2112), [pions[i] for i in order]


def _mec(rng, e_nu, cc, m_lep, anti=False):
    r = rng.random()
    if cc and anti:  # mirror: n-p pairs -> n n, p-p pairs -> n p
        initial, final = ((2212, 2112), (2112, 2112)) if r < C.MEC_NP_FRACTION else ((2212, 2212), (2212, 2112))
    elif cc:
        initial, final = ((2212, 2112), (2212, 2212)) if r < C.MEC_NP_FRACTION else ((2112, 2112), (2212, 2112))
    else:
        initial = (2212, 2112) if r < 0.5 else ((2212, 2212) if r < 0.75 else (2112, 2112))
        final = initial
    for _ in range(30):
        n1, n2 = _bound_nucleon(rng, initial[0]), _bound_nucleon(rng, initial[1])
        tgt = _add(n1, n2)
        mf = _MASS_OF_PDG[final[0]] + _MASS_OF_PDG[final[1]]
        w = mf + C.MEC_MAX_EXCITATION * rng.random()
        res = _scatter(rng, e_nu, tgt, m_lep, w, lambda lo, hi: _dipole_q2(rng, lo, hi, 1000.0))
        if res is None:
            continue
        lep, had, q2 = res
        a, b = _two_body(rng, had, _MASS_OF_PDG[final[0]], _MASS_OF_PDG[final[1]])
        return lep, [_particle(final[0], a), _particle(final[1], b)], q2, w, 0
    return None


def _coherent(rng, e_nu, cc, m_lep, anti=False):
    pion = (-211 if anti else 211) if cc else 111
    m_pi = _MASS_OF_PDG[pion]
    for _ in range(100):
        y = rng.beta(*C.COH_Y_BETA)
        e_pi = y * e_nu
        e_l = e_nu - e_pi
        if e_pi < m_pi + 10.0 or e_l < m_lep + 1.0:
            continue
        q2 = rng.exponential(C.COH_MEAN_Q2)
        p_l = math.sqrt(e_l * e_l - m_lep * m_lep)
        cost = (2.0 * e_nu * e_l - m_lep * m_lep - q2) / (2.0 * e_nu * p_l)
        if not -1.0 <= cost <= 1.0:
            continue
        lx, ly, lz = _rotate(0.0, 0.0, 1.0, cost, 2.0 * math.pi * rng.random())
        lep = (e_l, p_l * lx, p_l * ly, p_l * lz)
        q = (e_pi, -lep[1], -lep[2], e_nu - lep[3])
        qn = math.sqrt(q[1] ** 2 + q[2] ** 2 + q[3] ** 2)
        p_pi = math.sqrt(e_pi * e_pi - m_pi * m_pi)
        t = rng.exponential(1.0 / C.COH_T_SLOPE)
        theta = min(math.sqrt(t) / p_pi, math.pi)
        vx, vy, vz = _rotate(q[1] / qn, q[2] / qn, q[3] / qn, math.cos(theta), 2.0 * math.pi * rng.random())
        return lep, [(pion, e_pi, p_pi * vx, p_pi * vy, p_pi * vz)], q2, m_pi, 1000180400
    return None


_MODE_FUNCTIONS = (_quasi_elastic, _mec, _resonance, _deep_inelastic, _coherent)


#: Flavours allowed per class (numu CC includes anti-nu_mu CC, as in the experiments' selections).
LABEL_FLAVOURS = {LABEL_NC: (14, -14, 12, -12), LABEL_NUMU_CC: (14, -14), LABEL_NUE_CC: (12, -12)}


def generate_interaction(
    rng: np.random.Generator, label: int, energy: float, *, fsi: bool = True, nu_pdg: int | None = None
) -> Interaction:
    """One interaction of class ``label`` (0 NC, 1 numu CC, 2 nue CC) at neutrino energy ``energy``
    (MeV), the neutrino along +z.  ``nu_pdg``: the neutrino's flavour (default nu_mu, or nu_e for
    nue CC); anti-neutrinos make a positive lepton and the isospin-mirrored hadrons.  Modes not
    reachable at this energy fall back to QE."""
    if label not in (LABEL_NC, LABEL_NUMU_CC, LABEL_NUE_CC):
        raise ValueError(f"label must be 0, 1 or 2, got {label!r}")
    cc = label != LABEL_NC
    if nu_pdg is None:
        nu_pdg = 12 if label == LABEL_NUE_CC else 14
    if nu_pdg not in LABEL_FLAVOURS[label]:
        raise ValueError(f"a {CLASS_NAMES[label]} event cannot have neutrino {nu_pdg!r}")
    anti = nu_pdg < 0
    lep_pdg = (nu_pdg - (1 if nu_pdg > 0 else -1)) if cc else nu_pdg
    m_lep = _MASS_OF_PDG[lep_pdg]
    fr = mode_fractions(energy, cc)
    mode = int(np.searchsorted(np.cumsum(fr), rng.random(), side="right"))
    mode = min(mode, 4)
    res = _MODE_FUNCTIONS[mode](rng, energy, cc, m_lep, anti)
    if res is None and mode != MODE_QE:
        mode = MODE_QE
        res = _quasi_elastic(rng, energy, cc, m_lep, anti)
    if res is None:  # below every threshold: a bare lepton carrying the energy
        p = math.sqrt(max(energy * energy - m_lep * m_lep, 0.0))
        res = ((energy, 0.0, 0.0, p), [], 0.0, 0.0, 0)
    lep, hadrons, q2, w, target = res
    if fsi:
        hadrons = apply_fsi(rng, hadrons)
    particles = ([_particle(lep_pdg, lep)] if cc else []) + hadrons
    return Interaction(
        label=label, nu_pdg=nu_pdg, is_cc=cc, mode=mode, nu_energy=energy, target_pdg=target,
        q2=q2, w=w, lepton_pdg=lep_pdg, lepton=lep, particles=particles,
    )
