"""Transport of final-state particles through liquid argon, producing energy deposits.

Every particle from the neutrino vertex is followed in small steps (at most ``max_step_cm``) and
leaves *deposits*: rows of ``(x, y, z, dE, dx, track)`` in cm / MeV, with ``track`` the index of the
particle in the track table.  All of it runs in Numba (``@cached_njit``: cached where it can be) with the event's own
``numpy.random.Generator``, so an event is reproducible from its seed alone.

Physics content
---------------
* **Charged tracks** (mu, pi+-, p, e+-): mean energy loss from the CSDA range tables built here from
  the Bethe formula with the Sternheimer density effect (PDG eq. 34.5; muons, pions, protons) and
  the Rohrlich-Carlson collision stopping power (ICRU 37; electrons).  Straggling: Landau
  (sampled exactly as a stable law, Chambers-Mallows-Stuck) truncated at the delta-ray cut and
  shifted to keep the mean, Gaussian (Bohr) when the step is thick.  Delta rays above
  ``delta_cut_mev`` are produced explicitly (1/T^2 spectrum, PDG kinematics).  Multiple Coulomb
  scattering: Highland (PDG eq. 34.15) at every step.
* **Hadronic interactions** in flight for pi+- and protons (interaction lengths from the measured
  pi-Ar and p-Ar cross sections in :mod:`.constants`), with elastic kinks, quasi-elastic knock-out,
  absorption into 2-3 nucleons, charge exchange (pi0) and pion production; neutrons travel unseen
  and knock out protons.
* **Decays at rest**: pi+ -> mu+ nu (4.12 MeV mu+), mu+ -> e+ (Michel spectrum), mu- captured with
  probability 0.756 in argon or decaying, pi- absorbed into a nuclear star of a few nucleons.
* **Electromagnetic cascades**, particle by particle down to 1 MeV: bremsstrahlung (complete-
  screening spectrum, PDG eq. 34.29; hard photons above ``brems_cut_mev`` explicit), pair
  production (Urban's cross-section parametrisation from Geant4 and the Bethe-Heitler energy
  sharing) with the mean free path 9/7 X0 at high energy, Compton scattering (Klein-Nishina,
  Geant4 sampling), e+ annihilation at rest.  Photon gaps, a 1-MIP start for an electron and a
  2-MIP start for a converted photon, branching and Compton "blips" all follow from this.

Simplifications (documented in ``docs/simulator.md``): no magnetic field, no decays in flight
(c tau of pi+- is 7.8 m), no radiative losses of muons (under 0.1 % at a few GeV in argon), no
nuclear de-excitation photons except in neutron and proton inelastic scatters, delta-ray and
bremsstrahlung angles from leading-order kinematics.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
from cohep.lartpc.jit import cached_njit

from cohep.core.errors import ConfigError
from cohep.core.settings import Section
from cohep.lartpc import constants as C

# ---------------------------------------------------------------------------------------------
# Particle codes used inside the transport (index into the arrays below)
# ---------------------------------------------------------------------------------------------
E_MINUS, E_PLUS, GAMMA, MU_MINUS, MU_PLUS, PI_PLUS, PI_MINUS, PI_ZERO, PROTON, NEUTRON = range(10)
PDG_OF_CODE = (11, -11, 22, 13, -13, 211, -211, 111, 2212, 2112)
CODE_OF_PDG = {pdg: code for code, pdg in enumerate(PDG_OF_CODE)}
CODE_NAMES = ("e-", "e+", "gamma", "mu-", "mu+", "pi+", "pi-", "pi0", "p", "n")
MASS = np.array(
    [
        C.ELECTRON_MASS, C.ELECTRON_MASS, 0.0, C.MUON_MASS, C.MUON_MASS, C.PION_CHARGED_MASS,
        C.PION_CHARGED_MASS, C.PION_ZERO_MASS, C.PROTON_MASS, C.NEUTRON_MASS,
    ]
)
#: Row of the stopping-power / range tables for each code (-1: neutral).
SPECIES = np.array([3, 3, -1, 0, 0, 1, 1, -1, 2, -1], dtype=np.int64)

# Track-table columns.
TR_PID, TR_PARENT, TR_X, TR_Y, TR_Z, TR_UX, TR_UY, TR_UZ, TR_KE = 0, 1, 2, 3, 4, 5, 6, 7, 8
TR_XE, TR_YE, TR_ZE, TR_LEN, TR_FATE = 9, 10, 11, 12, 13
#: Path length (cm) at the track's first in-flight hadronic interaction, -1 if none (pi+-, p): what
#: a test needs to measure the interaction rate against the tabulated cross sections.
TR_HAD1 = 14
#: Kinetic energy (MeV) when the track ended: what a track that left the region carried out of it.
TR_KE_END = 15
TR_COLS = 16
#: How a track ended (column TR_FATE).
FATE_STOPPED, FATE_LEFT, FATE_INTERACTED, FATE_DECAYED = 0.0, 1.0, 2.0, 3.0
#: Deposit columns: x, y, z (cm), dE (MeV), dx (cm), track index.
DEP_COLS = 6

# Parameter-vector indices (see TransportSettings.vector()).
P_MAX_STEP, P_MIN_STEP, P_RANGE_FRAC, P_MSC, P_HAD, P_DECAY, P_FLUCT, P_DELTA = 0, 1, 2, 3, 4, 5, 6, 7
P_E_CUT, P_G_CUT, P_KCUT, P_DELTA_CUT, P_N_CUT, P_X0, P_XI, P_MU_CAPTURE = 8, 9, 10, 11, 12, 13, 14, 15
P_PI_ELASTIC, P_ESEP = 16, 17
N_PARAMS = 18

ME = C.ELECTRON_MASS
MPI = C.PION_CHARGED_MASS
MPI0 = C.PION_ZERO_MASS

# Energy grid shared by every table: 1 keV - 100 GeV, log spaced.
GRID_N = 1201
GRID_LNT0 = math.log(1.0e-3)
GRID_DLNT = math.log(1.0e8) / (GRID_N - 1)


# ---------------------------------------------------------------------------------------------
# Tables (NumPy, built once per density)
# ---------------------------------------------------------------------------------------------
def _density_effect(bg: np.ndarray) -> np.ndarray:
    """Sternheimer density-effect correction delta(beta gamma) for liquid argon (PDG table)."""
    x = np.log10(np.maximum(bg, 1e-12))
    two_ln10 = 2.0 * math.log(10.0)
    delta = np.where(
        x >= C.STERNHEIMER_X1,
        two_ln10 * x - C.STERNHEIMER_C,
        two_ln10 * x - C.STERNHEIMER_C + C.STERNHEIMER_A * np.clip(C.STERNHEIMER_X1 - x, 0, None) ** C.STERNHEIMER_K,
    )
    delta = np.where(x < C.STERNHEIMER_X0, C.STERNHEIMER_DELTA0 * 10.0 ** (2.0 * (x - C.STERNHEIMER_X0)), delta)
    return delta


def bethe_dedx(kinetic: np.ndarray | float, mass: float, density: float = C.LAR_DENSITY) -> np.ndarray:
    """Mean stopping power -dE/dx (MeV/cm) of a singly charged heavy particle in LAr (PDG eq. 34.5).

    Below beta*gamma = 0.05, where the Bethe formula fails, the stopping power is continued as
    proportional to the velocity (sqrt(T)), which only affects the last few micrometres of range.
    """
    t = np.asarray(kinetic, dtype=float)
    bg_cut = 0.05
    t_cut = mass * (math.sqrt(1.0 + bg_cut**2) - 1.0)
    tt = np.maximum(t, t_cut)
    gamma = 1.0 + tt / mass
    beta2 = 1.0 - 1.0 / gamma**2
    bg2 = gamma**2 - 1.0
    r = ME / mass
    wmax = 2.0 * ME * bg2 / (1.0 + 2.0 * gamma * r + r * r)
    arg = 2.0 * ME * bg2 * wmax / C.LAR_MEAN_EXCITATION**2
    bracket = 0.5 * np.log(arg) - beta2 - 0.5 * _density_effect(np.sqrt(bg2))
    s = BETHE_COEF(density) / beta2 * bracket
    return np.where(t < t_cut, s * np.sqrt(np.maximum(t, 1e-30) / t_cut), s)


def BETHE_COEF(density: float) -> float:  # noqa: N802 - a physical constant, spelled like one
    """K Z/A rho in MeV/cm (PDG eq. 34.5 prefactor for liquid argon)."""
    return C.BETHE_K * C.ARGON_Z / C.ARGON_A * density


def electron_dedx(kinetic: np.ndarray | float, density: float = C.LAR_DENSITY) -> np.ndarray:
    """Collision stopping power (MeV/cm) of electrons in LAr: Rohrlich-Carlson formula (ICRU 37).

    -dE/dx = (K/2)(Z/A) rho / beta^2 [ln(tau^2 (tau+2) / (2 (I/m)^2)) + F(tau) - delta],
    F(tau) = 1 - beta^2 + (tau^2/8 - (2 tau + 1) ln 2) / (tau + 1)^2, tau = T / m_e.
    Continued as sqrt(T) below 10 keV.
    """
    t = np.asarray(kinetic, dtype=float)
    t_cut = 0.01
    tt = np.maximum(t, t_cut)
    tau = tt / ME
    gamma = tau + 1.0
    beta2 = 1.0 - 1.0 / gamma**2
    f = 1.0 - beta2 + (tau**2 / 8.0 - (2.0 * tau + 1.0) * math.log(2.0)) / gamma**2
    bracket = np.log(tau**2 * (tau + 2.0) / (2.0 * (C.LAR_MEAN_EXCITATION / ME) ** 2)) + f
    bracket = bracket - _density_effect(np.sqrt(gamma**2 - 1.0))
    s = 0.5 * BETHE_COEF(density) / beta2 * bracket
    return np.where(t < t_cut, s * np.sqrt(np.maximum(t, 1e-30) / t_cut), s)


def klein_nishina(energy: np.ndarray | float) -> np.ndarray:
    """Klein-Nishina total Compton cross section per electron (cm^2)."""
    k = np.asarray(energy, dtype=float) / ME
    k = np.maximum(k, 1e-6)
    l2k = np.log1p(2.0 * k)
    term = (1.0 + k) / k**2 * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - l2k / k) + l2k / (2.0 * k)
    term = term - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2
    return 2.0 * math.pi * C.CLASSICAL_ELECTRON_RADIUS**2 * term


def pair_cross_section(energy: np.ndarray | float, z: float = C.ARGON_Z) -> np.ndarray:
    """Pair-production cross section per atom (cm^2): Urban's parametrisation (Geant4
    G4BetheHeitlerModel), nuclear + electron field, 1.5 MeV - 100 GeV; quadratic to threshold."""
    e = np.asarray(energy, dtype=float)
    a = (8.7842e2, -1.9625e3, 1.2949e3, -2.0028e2, 1.2575e1, -2.8333e-1)
    b = (-1.0342e1, 1.7692e1, -8.2381, 1.3063, -9.0815e-2, 2.3586e-3)
    c = (-4.5263e2, 1.1161e3, -8.6749e2, 2.1773e2, -2.0467e1, 6.5372e-1)
    e_limit = 1.5
    x = np.log(np.maximum(e, e_limit) / ME)
    powers = [x**i for i in range(6)]
    f1 = sum(ai * p for ai, p in zip(a, powers))
    f2 = sum(bi * p for bi, p in zip(b, powers))
    f3 = sum(ci * p for ci, p in zip(c, powers))
    sigma = (z + 1.0) * (f1 * z + f2 * z * z + f3) * 1e-30  # microbarn -> cm^2
    below = (np.clip(e, 2 * ME, e_limit) - 2.0 * ME) / (e_limit - 2.0 * ME)
    sigma = np.where(e < e_limit, sigma * below**2, sigma)
    return np.where(e <= 2.0 * ME, 0.0, np.maximum(sigma, 0.0))


@dataclass(frozen=True)
class MaterialTables:
    """Lookup tables on the shared log energy grid (1 keV - 100 GeV, 1201 points).

    ``ln_range[s]``: log CSDA range (cm) for species s = mu, pi, p, e; ``dedx[s]``: stopping power
    (MeV/cm); ``inv_lambda[0|1]``: inverse hadronic interaction length (1/cm) of pions and nucleons;
    ``mu_pair`` / ``mu_compton``: photon attenuation coefficients (1/cm).
    """

    density: float
    energy: np.ndarray
    dedx: np.ndarray
    ln_range: np.ndarray
    inv_lambda: np.ndarray
    mu_pair: np.ndarray
    mu_compton: np.ndarray

    def csda_range(self, species: str, kinetic: float) -> float:
        """CSDA range in cm of 'mu', 'pi', 'p' or 'e' with kinetic energy in MeV."""
        row = {"mu": 0, "pi": 1, "p": 2, "e": 3}[species]
        return float(np.exp(np.interp(math.log(kinetic), np.log(self.energy), self.ln_range[row])))


@functools.lru_cache(maxsize=4)
def material_tables(density: float = C.LAR_DENSITY) -> MaterialTables:
    """Build (once per density) the stopping-power, range, hadronic and photon tables."""
    energy = np.exp(GRID_LNT0 + GRID_DLNT * np.arange(GRID_N))
    dedx = np.empty((4, GRID_N))
    dedx[0] = bethe_dedx(energy, C.MUON_MASS, density)
    dedx[1] = bethe_dedx(energy, C.PION_CHARGED_MASS, density)
    dedx[2] = bethe_dedx(energy, C.PROTON_MASS, density)
    dedx[3] = electron_dedx(energy, density)
    # CSDA range: R(T) = int_0^T dT / S, trapezoid in ln T, S ~ sqrt(T) below the first node.
    ln_range = np.empty((4, GRID_N))
    for s in range(4):
        integrand = energy / dedx[s]
        r = np.empty(GRID_N)
        r[0] = 2.0 * energy[0] / dedx[s, 0]
        r[1:] = r[0] + np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * GRID_DLNT)
        ln_range[s] = np.log(r)
    atoms = density * C.AVOGADRO / C.ARGON_A  # 1/cm^3
    electrons = atoms * C.ARGON_Z
    lnt = np.log(energy)
    inv_lambda = np.empty((2, GRID_N))
    inv_lambda[0] = atoms * 1e-24 * np.interp(lnt, np.log(C.PION_AR_XS_ENERGY), C.PION_AR_XS_BARN)
    inv_lambda[1] = atoms * 1e-24 * np.interp(lnt, np.log(C.NUCLEON_AR_XS_ENERGY), C.NUCLEON_AR_XS_BARN)
    mu_pair = atoms * pair_cross_section(energy)
    mu_compton = electrons * klein_nishina(energy)
    for arr in (dedx, ln_range, inv_lambda, mu_pair, mu_compton):
        arr.setflags(write=False)
    return MaterialTables(density, energy, dedx, ln_range, inv_lambda, mu_pair, mu_compton)


@dataclass(frozen=True)
class TransportSettings(Section):
    """Step sizes, production cuts and physics switches of the transport (MeV, cm)."""

    section: ClassVar[str] = "transport"

    max_step_cm: float = 0.3  # half a default pixel (6 mm), a tenth of a Moliere radius
    min_step_cm: float = 0.02
    range_fraction: float = 0.2  # step <= 20 % of the residual range near the end of a track
    multiple_scattering: bool = True
    hadronic: bool = True
    decays: bool = True
    fluctuations: bool = True
    delta_rays: bool = True
    electron_cut_mev: float = 1.0  # e+- below this deposit locally (CSDA range 0.4 cm)
    photon_cut_mev: float = 0.1  # photons below this are absorbed (photo-effect) locally
    brems_cut_mev: float = 1.0  # bremsstrahlung photons above this are produced explicitly
    delta_cut_mev: float = 5.0  # delta rays above this are produced explicitly
    neutron_cut_mev: float = 10.0  # neutrons below this are dropped (no visible energy)

    def check(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and v < 0:
                raise ConfigError(f"transport.{f.name} must be >= 0, got {v!r}")
        if not 0 < self.min_step_cm <= self.max_step_cm:
            raise ConfigError("transport: need 0 < min_step_cm <= max_step_cm")

    def vector(self, density: float = C.LAR_DENSITY) -> np.ndarray:
        p = np.zeros(N_PARAMS)
        p[P_MAX_STEP] = self.max_step_cm
        p[P_MIN_STEP] = self.min_step_cm
        p[P_RANGE_FRAC] = self.range_fraction
        p[P_MSC] = float(self.multiple_scattering)
        p[P_HAD] = float(self.hadronic)
        p[P_DECAY] = float(self.decays)
        p[P_FLUCT] = float(self.fluctuations)
        p[P_DELTA] = float(self.delta_rays)
        p[P_E_CUT] = self.electron_cut_mev
        p[P_G_CUT] = self.photon_cut_mev
        p[P_KCUT] = self.brems_cut_mev
        p[P_DELTA_CUT] = self.delta_cut_mev
        p[P_N_CUT] = self.neutron_cut_mev
        p[P_X0] = C.radiation_length(density)
        p[P_XI] = 0.5 * BETHE_COEF(density)  # xi per cm for beta = 1
        p[P_MU_CAPTURE] = C.MUON_MINUS_CAPTURE_PROBABILITY
        p[P_PI_ELASTIC] = C.PION_AR_ELASTIC_FRACTION
        p[P_ESEP] = C.NUCLEON_SEPARATION_ENERGY
        return p


def unbounded_region() -> np.ndarray:
    """A region vector with no limits (for tests and stand-alone studies)."""
    big = 1e30
    reg = np.array([-big, big, -big, big, -big, big] + [1.0, 0.0, -big, big] * 3)
    return reg


# ---------------------------------------------------------------------------------------------
# Numba kernels: small helpers
# ---------------------------------------------------------------------------------------------
@cached_njit
def _in_region(reg, x, y, z):
    if x < reg[0] or x > reg[1] or y < reg[2] or y > reg[3] or z < reg[4] or z > reg[5]:
        return False
    for p in range(3):
        w = reg[6 + 4 * p] * z - reg[7 + 4 * p] * y
        if w >= reg[8 + 4 * p] and w <= reg[9 + 4 * p]:
            return True
    return False


@cached_njit
def _grid_pos(t):
    f = (math.log(t) - GRID_LNT0) / GRID_DLNT
    if f < 0.0:
        return 0, 0.0
    k = int(f)
    if k >= GRID_N - 1:
        return GRID_N - 2, 1.0
    return k, f - k


@cached_njit
def _lookup(row, t):
    k, w = _grid_pos(t)
    return row[k] * (1.0 - w) + row[k + 1] * w


@cached_njit
def _range(ln_range, s, t):
    if t <= 1.0e-3:  # below the grid S ~ sqrt(T), so R ~ sqrt(T)
        return math.exp(ln_range[s, 0]) * math.sqrt(t / 1.0e-3) if t > 0 else 0.0
    return math.exp(_lookup(ln_range[s], t))


@cached_njit
def _energy_of_range(ln_range, s, r):
    """Inverse of _range: kinetic energy with CSDA range r (binary search in ln R)."""
    if r <= 0.0:
        return 0.0
    lr = math.log(r)
    row = ln_range[s]
    if lr <= row[0]:
        return 1.0e-3 * (r / math.exp(row[0])) ** 2
    lo, hi = 0, GRID_N - 1
    if lr >= row[hi]:
        return math.exp(GRID_LNT0 + GRID_DLNT * hi)
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if row[mid] <= lr:
            lo = mid
        else:
            hi = mid
    w = (lr - row[lo]) / (row[hi] - row[lo])
    return math.exp(GRID_LNT0 + GRID_DLNT * (lo + w))


@cached_njit
def _rotate(ux, uy, uz, cost, phi):
    """Direction at polar angle acos(cost), azimuth phi about (ux, uy, uz)."""
    sint = math.sqrt(max(0.0, 1.0 - cost * cost))
    if abs(uz) < 0.99:
        # e1 = normalize(u x z), e2 = u x e1
        n = math.sqrt(ux * ux + uy * uy)
        e1x, e1y, e1z = uy / n, -ux / n, 0.0
    else:
        n = math.sqrt(uy * uy + uz * uz)
        e1x, e1y, e1z = 0.0, uz / n, -uy / n
    e2x = uy * e1z - uz * e1y
    e2y = uz * e1x - ux * e1z
    e2z = ux * e1y - uy * e1x
    cp, sp = math.cos(phi), math.sin(phi)
    vx = cost * ux + sint * (cp * e1x + sp * e2x)
    vy = cost * uy + sint * (cp * e1y + sp * e2y)
    vz = cost * uz + sint * (cp * e1z + sp * e2z)
    n = math.sqrt(vx * vx + vy * vy + vz * vz)
    return vx / n, vy / n, vz / n


@cached_njit
def _isotropic(rng):
    cost = 2.0 * rng.random() - 1.0
    phi = 2.0 * math.pi * rng.random()
    sint = math.sqrt(max(0.0, 1.0 - cost * cost))
    return sint * math.cos(phi), sint * math.sin(phi), cost


@cached_njit
def _landau(rng, lam_max):
    """Standard Landau variate (stable law alpha = 1, beta = 1, scale pi/2; CMS algorithm),
    truncated at lam_max by rejection."""
    half_pi = 0.5 * math.pi
    while True:
        v = math.pi * (rng.random() - 0.5)
        if v <= -half_pi + 1e-12:
            continue
        w = rng.exponential(1.0)
        x = ((half_pi + v) * math.tan(v) - math.log(half_pi * w * math.cos(v) / (half_pi + v))) / half_pi
        lam = half_pi * x + math.log(half_pi)
        if lam <= lam_max:
            return lam


@cached_njit
def _straggle(rng, mean, xi, tmax, beta2):
    """Mean-preserving energy-loss fluctuation for a step with mean restricted loss ``mean``."""
    if xi <= 0.0 or mean <= 0.0:
        return max(mean, 0.0)
    lam_max = tmax / xi
    if lam_max < 20.0:
        sig = math.sqrt(max(xi * tmax * (1.0 - 0.5 * beta2), 0.0))
        de = mean + sig * rng.standard_normal()
    else:
        ll = math.log(lam_max)
        # mean of the Landau law truncated at lam_max: ln L + gamma_E - 1 - 1.18 ln L / L (fit)
        de = mean + xi * (_landau(rng, lam_max) - (ll - 0.4228 - 1.18 * ll / lam_max))
    return max(de, 0.0)


@cached_njit
def _highland(p, beta, ds, x0):
    """Plane-projected rms scattering angle (rad), PDG eq. 34.15, unit charge."""
    t = ds / x0
    if t <= 0.0:
        return 0.0
    corr = 1.0 + 0.038 * math.log(t / (beta * beta))
    if corr < 0.3:
        corr = 0.3
    return 13.6 / (beta * p) * math.sqrt(t) * corr


@cached_njit
def _scatter(rng, ux, uy, uz, theta0):
    if theta0 <= 0.0:
        return ux, uy, uz
    theta = theta0 * math.sqrt(-2.0 * math.log(1.0 - rng.random()))
    if theta > math.pi:
        theta = math.pi * rng.random()
    return _rotate(ux, uy, uz, math.cos(theta), 2.0 * math.pi * rng.random())


# ---------------------------------------------------------------------------------------------
# Numba kernels: bookkeeping (growable arrays)
# ---------------------------------------------------------------------------------------------
@cached_njit
def _add_dep(dep, cnt, x, y, z, de, dx, tid):
    n = cnt[2]
    if n >= dep.shape[0]:
        new = np.empty((2 * dep.shape[0], DEP_COLS))
        new[:n] = dep[:n]
        dep = new
    dep[n, 0] = x
    dep[n, 1] = y
    dep[n, 2] = z
    dep[n, 3] = de
    dep[n, 4] = dx
    dep[n, 5] = tid
    cnt[2] = n + 1
    return dep


@cached_njit
def _push(tr, stack, cnt, pid, parent, x, y, z, ux, uy, uz, t):
    n = cnt[0]
    if n >= tr.shape[0]:
        new = np.empty((2 * tr.shape[0], TR_COLS))
        new[:n] = tr[:n]
        tr = new
    tr[n, TR_PID] = pid
    tr[n, TR_PARENT] = parent
    tr[n, TR_X] = x
    tr[n, TR_Y] = y
    tr[n, TR_Z] = z
    tr[n, TR_UX] = ux
    tr[n, TR_UY] = uy
    tr[n, TR_UZ] = uz
    tr[n, TR_KE] = t
    tr[n, TR_XE] = x
    tr[n, TR_YE] = y
    tr[n, TR_ZE] = z
    tr[n, TR_LEN] = 0.0
    tr[n, TR_FATE] = -1.0
    tr[n, TR_HAD1] = -1.0
    tr[n, TR_KE_END] = 0.0
    cnt[0] = n + 1
    s = cnt[1]
    if s >= stack.shape[0]:
        news = np.empty(2 * stack.shape[0], np.int64)
        news[:s] = stack[:s]
        stack = news
    stack[s] = n
    cnt[1] = s + 1
    return tr, stack


@cached_njit
def _emit_nucleons(rng, tr, stack, cnt, parent, n, etot, p_proton, x, y, z):
    """Share ``etot`` (MeV kinetic) among ``n`` nucleons emitted isotropically (proton with
    probability p_proton), as the fragments of an absorbed hadron."""
    if etot <= 0.0 or n <= 0:
        return tr, stack
    # uniform split of etot (sorted uniforms = flat Dirichlet)
    cuts = np.empty(max(n - 1, 1))
    for i in range(n - 1):
        cuts[i] = rng.random()
    cuts[: n - 1].sort()
    prev = 0.0
    for i in range(n):
        nxt = cuts[i] if i < n - 1 else 1.0
        t = etot * (nxt - prev)
        prev = nxt
        pid = PROTON if rng.random() < p_proton else NEUTRON
        ux, uy, uz = _isotropic(rng)
        if t > 0.5:
            tr, stack = _push(tr, stack, cnt, pid, parent, x, y, z, ux, uy, uz, t)
    return tr, stack


@cached_njit
def _finish(tr, tid, x, y, z, length, fate, ke_end):
    tr[tid, TR_XE] = x
    tr[tid, TR_YE] = y
    tr[tid, TR_ZE] = z
    tr[tid, TR_LEN] = length
    tr[tid, TR_FATE] = fate
    tr[tid, TR_KE_END] = ke_end


@cached_njit
def _deltas(rng, tr, stack, cnt, P, tid, pid, t, m, xi, tmax, x0, y0, z0, ux, uy, uz, ds):
    """Sample explicit delta rays above the cut along a step; returns their total energy."""
    tcut = P[P_DELTA_CUT]
    etot = 0.0
    if P[P_DELTA] <= 0.0 or tmax <= tcut:
        return tr, stack, etot
    nmean = xi * (1.0 / tcut - 1.0 / tmax)
    nd = rng.poisson(nmean)
    e_inc = t + m
    p_inc = math.sqrt(t * (t + 2.0 * m))
    for _ in range(nd):
        td = 1.0 / (1.0 / tcut - rng.random() * (1.0 / tcut - 1.0 / tmax))
        if etot + td > 0.9 * t:
            break
        pd = math.sqrt(td * (td + 2.0 * ME))
        if pid == E_MINUS or pid == E_PLUS:
            cost = math.sqrt(td * (t + 2.0 * ME) / (t * (td + 2.0 * ME)))
        else:
            cost = td / pd * (e_inc + ME) / p_inc
        if cost > 1.0:
            cost = 1.0
        vx, vy, vz = _rotate(ux, uy, uz, cost, 2.0 * math.pi * rng.random())
        f = rng.random() * ds
        tr, stack = _push(tr, stack, cnt, E_MINUS, tid, x0 + ux * f, y0 + uy * f, z0 + uz * f, vx, vy, vz, td)
        etot += td
    return tr, stack, etot


# ---------------------------------------------------------------------------------------------
# Numba kernels: particle transport
# ---------------------------------------------------------------------------------------------
@cached_njit
def _at_rest(rng, tr, stack, cnt, P, tid, pid, x, y, z):
    """Decay or capture of a stopped mu+-, pi+-; returns True when something happened."""
    if P[P_DECAY] <= 0.0:
        return tr, stack, False
    if pid == PI_PLUS:
        ux, uy, uz = _isotropic(rng)
        tr, stack = _push(tr, stack, cnt, MU_PLUS, tid, x, y, z, ux, uy, uz, C.PION_DECAY_MUON_KE)
        return tr, stack, True
    if pid == PI_MINUS:
        # nuclear capture: the rest energy minus binding goes to 2-4 nucleons, mostly neutrons
        n = 2 + int(3.0 * rng.random())
        tr, stack = _emit_nucleons(rng, tr, stack, cnt, tid, n, MPI - n * P[P_ESEP], C.PION_CAPTURE_PROTON_SHARE, x, y, z)
        return tr, stack, True
    if pid == MU_MINUS and rng.random() < P[P_MU_CAPTURE]:
        return tr, stack, True  # capture: a neutron and neutrinos, nothing visible
    if pid == MU_MINUS or pid == MU_PLUS:
        # Michel spectrum dN/dx = x^2 (3 - 2x) (PDG), isotropic
        while True:
            xm = rng.random()
            if rng.random() <= xm * xm * (3.0 - 2.0 * xm):
                break
        e = xm * C.MICHEL_ENDPOINT
        ux, uy, uz = _isotropic(rng)
        code = E_MINUS if pid == MU_MINUS else E_PLUS
        if e > ME:
            tr, stack = _push(tr, stack, cnt, code, tid, x, y, z, ux, uy, uz, e - ME)
        return tr, stack, True
    return tr, stack, False


@cached_njit
def _hadronic(rng, tr, stack, cnt, P, tid, pid, t, x, y, z, ux, uy, uz):
    """In-flight hadronic interaction of pi+-, p at (x, y, z).

    Returns (tr, stack, alive, t, ux, uy, uz): whether the projectile continues, and its state.
    """
    esep = P[P_ESEP]
    r = rng.random()
    if pid == PI_PLUS or pid == PI_MINUS:
        if r < P[P_PI_ELASTIC]:
            # coherent elastic on argon: diffractive kink, theta ~ 1/(p R), R = 4.1 fm
            p = math.sqrt(t * (t + 2.0 * MPI))
            theta = min(197.327 / (4.1 * p) * math.sqrt(-math.log(1.0 - rng.random())), math.pi)
            ux, uy, uz = _rotate(ux, uy, uz, math.cos(theta), 2.0 * math.pi * rng.random())
            return tr, stack, True, t, ux, uy, uz
        # inelastic channels, shares depending on energy [approximate, LADS / ProtoDUNE-SP / BERT]
        lo, hi, knee = C.PION_INFLIGHT_ABS_LOW, C.PION_INFLIGHT_ABS_HIGH, C.PION_INFLIGHT_ABS_KNEE
        f_abs = lo if t < knee else max(hi, lo - (lo - hi) * (t - knee) / (1000.0 - knee))
        f_cex = C.PION_INFLIGHT_CEX
        p0, pmax = C.PION_INFLIGHT_PROD_START, C.PION_INFLIGHT_PROD_MAX
        f_prod = 0.0 if t < p0 else min(pmax, pmax * (t - p0) / 1000.0)
        t_multi = C.PION_INFLIGHT_MULTI_START
        if t > t_multi:  # multi-GeV: most inelastic collisions make pions
            f_prod = min(C.PION_INFLIGHT_MULTI_MAX, f_prod + (C.PION_INFLIGHT_MULTI_MAX - pmax) * (t - t_multi) / 4000.0)
        u = rng.random()
        if u < f_abs:
            n = 2 + int(2.0 * rng.random())
            pp = 0.6 if pid == PI_PLUS else 0.35
            tr, stack = _emit_nucleons(rng, tr, stack, cnt, tid, n, t + MPI - n * esep, pp, x, y, z)
            return tr, stack, False, 0.0, ux, uy, uz
        if u < f_abs + f_cex:
            t2 = t * (0.6 + 0.35 * rng.random())
            vx, vy, vz = _rotate(ux, uy, uz, 0.5 + 0.5 * rng.random(), 2.0 * math.pi * rng.random())
            tr, stack = _push(tr, stack, cnt, PI_ZERO, tid, x, y, z, vx, vy, vz, t2 + MPI - MPI0)
            tn = t - t2 - esep
            if tn > 1.0:
                wx, wy, wz = _isotropic(rng)
                code = NEUTRON if pid == PI_PLUS else PROTON
                tr, stack = _push(tr, stack, cnt, code, tid, x, y, z, wx, wy, wz, tn)
            return tr, stack, False, 0.0, ux, uy, uz
        if u < f_abs + f_cex + f_prod and t > t_multi:
            # several secondaries: the leading pion keeps 30-70 % of what is left after their masses
            n_sec = 1 + rng.poisson(C.PION_INFLIGHT_MULTI_SLOPE * math.log(t / t_multi))
            while n_sec > 1 and t - n_sec * MPI - esep < 50.0 * n_sec:
                n_sec -= 1
            avail = t - n_sec * MPI - esep
            t1 = avail * (0.3 + 0.4 * rng.random())
            rest = avail - t1
            share = np.empty(n_sec)
            for i in range(n_sec):
                share[i] = rng.exponential(1.0)
            share /= share.sum()
            for i in range(n_sec):
                v = rng.random()
                code = PI_PLUS if v < 1.0 / 3.0 else (PI_MINUS if v < 2.0 / 3.0 else PI_ZERO)
                ts = rest * share[i] + (MPI - MPI0 if code == PI_ZERO else 0.0)
                vx, vy, vz = _rotate(ux, uy, uz, 0.2 + 0.8 * rng.random(), 2.0 * math.pi * rng.random())
                tr, stack = _push(tr, stack, cnt, code, tid, x, y, z, vx, vy, vz, max(ts, 1.0))
            ux, uy, uz = _rotate(ux, uy, uz, 0.7 + 0.3 * rng.random(), 2.0 * math.pi * rng.random())
            return tr, stack, True, t1, ux, uy, uz
        if u < f_abs + f_cex + f_prod:
            avail = t - MPI - esep
            t1 = avail * (0.3 + 0.4 * rng.random())
            t2 = avail - t1
            v = rng.random()
            code = PI_PLUS if v < 1.0 / 3.0 else (PI_MINUS if v < 2.0 / 3.0 else PI_ZERO)
            vx, vy, vz = _rotate(ux, uy, uz, 2.0 * rng.random() - 1.0, 2.0 * math.pi * rng.random())
            tr, stack = _push(tr, stack, cnt, code, tid, x, y, z, vx, vy, vz, max(t2, 1.0))
            ux, uy, uz = _rotate(ux, uy, uz, 0.3 + 0.7 * rng.random(), 2.0 * math.pi * rng.random())
            return tr, stack, True, t1, ux, uy, uz
        # quasi-elastic scatter on a nucleon: the pion continues softer, a nucleon is knocked out
        t2 = t * (0.35 + 0.55 * rng.random())
        tn = t - t2 - esep
        ux, uy, uz = _rotate(ux, uy, uz, -0.3 + 1.3 * rng.random(), 2.0 * math.pi * rng.random())
        if tn > 1.0:
            wx, wy, wz = _isotropic(rng)
            code = PROTON if rng.random() < 0.6 else NEUTRON
            tr, stack = _push(tr, stack, cnt, code, tid, x, y, z, wx, wy, wz, tn)
        return tr, stack, True, t2, ux, uy, uz
    # nucleons (proton here; neutrons use the same channels in _track_neutron)
    if r < C.NUCLEON_INFLIGHT_KNOCKOUT:
        t2 = t * (0.3 + 0.6 * rng.random())
        tn = t - t2 - esep
        ux, uy, uz = _rotate(ux, uy, uz, 0.2 + 0.8 * rng.random(), 2.0 * math.pi * rng.random())
        if tn > 1.0:
            wx, wy, wz = _isotropic(rng)
            code = PROTON if rng.random() < 0.5 else NEUTRON
            tr, stack = _push(tr, stack, cnt, code, tid, x, y, z, wx, wy, wz, tn)
        return tr, stack, True, t2, ux, uy, uz
    n = 2 + int(2.0 * rng.random())
    tr, stack = _emit_nucleons(rng, tr, stack, cnt, tid, n, t - n * esep, 0.45, x, y, z)
    return tr, stack, False, 0.0, ux, uy, uz


@cached_njit
def _track_charged(rng, tr, stack, dep, cnt, P, reg, ln_range, inv_lambda, tid):
    """Muons, charged pions and protons: continuous loss, straggling, delta rays, MCS,
    hadronic interactions, decays / captures at rest."""
    pid = int(tr[tid, TR_PID])
    s = SPECIES[pid]
    m = MASS[pid]
    x, y, z = tr[tid, TR_X], tr[tid, TR_Y], tr[tid, TR_Z]
    ux, uy, uz = tr[tid, TR_UX], tr[tid, TR_UY], tr[tid, TR_UZ]
    t = tr[tid, TR_KE]
    had = P[P_HAD] > 0.0 and (pid == PI_PLUS or pid == PI_MINUS or pid == PROTON)
    xs_row = 0 if pid != PROTON else 1
    nlam = rng.exponential(1.0)
    t_stop = m * (math.sqrt(1.0 + 0.05 * 0.05) - 1.0)
    length = 0.0
    fate = FATE_STOPPED
    while True:
        if not _in_region(reg, x, y, z):
            fate = FATE_LEFT
            break
        if t <= t_stop:
            if t > 0.0:
                dep = _add_dep(dep, cnt, x, y, z, t, max(_range(ln_range, s, t), 1e-3), tid)
            t = 0.0
            break
        r = _range(ln_range, s, t)
        ds = min(P[P_MAX_STEP], max(P[P_RANGE_FRAC] * r, P[P_MIN_STEP]))
        final = ds >= r
        if final:
            ds = r
        interact = False
        inv = 0.0
        if had:
            inv = _lookup(inv_lambda[xs_row], t)
            if inv > 0.0 and nlam < ds * inv:
                ds = nlam / inv
                interact = True
                final = False
            nlam -= ds * inv
        t_end = 0.0 if final else _energy_of_range(ln_range, s, r - ds)
        mean = t - t_end
        e = t + m
        p = math.sqrt(t * (t + 2.0 * m))
        beta2 = (p / e) ** 2
        gam = e / m
        bg2 = gam * gam - 1.0
        rr = ME / m
        tmax = 2.0 * ME * bg2 / (1.0 + 2.0 * gam * rr + rr * rr)
        xi = P[P_XI] * ds / beta2
        edelta = 0.0
        if P[P_DELTA] > 0.0 and tmax > P[P_DELTA_CUT]:
            mean = max(mean - xi * math.log(tmax / P[P_DELTA_CUT]), 0.0)
            tr, stack, edelta = _deltas(rng, tr, stack, cnt, P, tid, pid, t, m, xi, tmax, x, y, z, ux, uy, uz, ds)
            tmax_eff = P[P_DELTA_CUT]
        else:
            tmax_eff = tmax
        if final:
            de = t - edelta  # the last step deposits what is left
        elif P[P_FLUCT] > 0.0:
            de = _straggle(rng, mean, xi, tmax_eff, beta2)
        else:
            de = mean
        if de > t - edelta:
            de = t - edelta
        if de < 0.0:
            de = 0.0
        h = 0.5 * ds
        dep = _add_dep(dep, cnt, x + ux * h, y + uy * h, z + uz * h, de, ds, tid)
        x += ux * ds
        y += uy * ds
        z += uz * ds
        length += ds
        t -= de + edelta
        if final or t <= 0.0:
            t = 0.0
            break
        if interact:
            if tr[tid, TR_HAD1] < 0.0:
                tr[tid, TR_HAD1] = length
            tr, stack, alive, t, ux, uy, uz = _hadronic(rng, tr, stack, cnt, P, tid, pid, t, x, y, z, ux, uy, uz)
            if not alive:
                fate = FATE_INTERACTED
                break
            nlam = rng.exponential(1.0)
            continue
        if P[P_MSC] > 0.0:
            pn = math.sqrt(t * (t + 2.0 * m))
            ux, uy, uz = _scatter(rng, ux, uy, uz, _highland(pn, pn / (t + m), ds, P[P_X0]))
    if fate == FATE_STOPPED:
        tr, stack, decayed = _at_rest(rng, tr, stack, cnt, P, tid, pid, x, y, z)
        if decayed:
            fate = FATE_DECAYED
    _finish(tr, tid, x, y, z, length, fate, t)
    return tr, stack, dep


@cached_njit
def _track_electron(rng, tr, stack, dep, cnt, P, reg, ln_range, tid):
    """Electrons and positrons: collision loss with straggling and Moller delta rays, soft and
    hard bremsstrahlung, MCS; e+ annihilate at rest into two 511 keV photons."""
    pid = int(tr[tid, TR_PID])
    x, y, z = tr[tid, TR_X], tr[tid, TR_Y], tr[tid, TR_Z]
    ux, uy, uz = tr[tid, TR_UX], tr[tid, TR_UY], tr[tid, TR_UZ]
    t = tr[tid, TR_KE]
    x0 = P[P_X0]
    kcut = P[P_KCUT]
    nbrem = rng.exponential(1.0)
    length = 0.0
    fate = FATE_STOPPED
    while True:
        if not _in_region(reg, x, y, z):
            fate = FATE_LEFT
            break
        if t <= P[P_E_CUT]:
            if t > 0.0:
                dep = _add_dep(dep, cnt, x, y, z, t, max(_range(ln_range, 3, t), 1e-3), tid)
            t = 0.0
            break
        e = t + ME
        r = _range(ln_range, 3, t)
        ds = min(P[P_MAX_STEP], max(P[P_RANGE_FRAC] * r, P[P_MIN_STEP]))
        # bremsstrahlung: hard photons (k > kcut) explicit, soft part continuous
        rate = 0.0
        soft_per_cm = e / x0
        if t > kcut:
            yc = kcut / e
            rate = (4.0 / 3.0 * math.log(1.0 / yc) - 4.0 / 3.0 * (1.0 - yc) + 0.5 * (1.0 - yc * yc)) / x0
            soft_per_cm = e / x0 * (4.0 / 3.0 * yc - 2.0 / 3.0 * yc * yc + yc * yc * yc / 3.0)
        brem = False
        if rate > 0.0 and nbrem < ds * rate:
            ds = nbrem / rate
            brem = True
        final = ds >= r
        if final:
            ds = r
            brem = False
        nbrem -= ds * rate
        t_end = 0.0 if final else _energy_of_range(ln_range, 3, r - ds)
        mean = t - t_end
        p = math.sqrt(t * (t + 2.0 * ME))
        beta2 = (p / e) ** 2
        xi = P[P_XI] * ds / beta2
        tmax = 0.5 * t if pid == E_MINUS else t
        edelta = 0.0
        if P[P_DELTA] > 0.0 and tmax > P[P_DELTA_CUT]:
            mean = max(mean - xi * math.log(tmax / P[P_DELTA_CUT]), 0.0)
            tr, stack, edelta = _deltas(rng, tr, stack, cnt, P, tid, pid, t, ME, xi, tmax, x, y, z, ux, uy, uz, ds)
            tmax_eff = P[P_DELTA_CUT]
        else:
            tmax_eff = tmax
        if final:
            de = t - edelta
        else:
            de = _straggle(rng, mean, xi, tmax_eff, beta2) if P[P_FLUCT] > 0.0 else mean
            de += soft_per_cm * ds
        if de > t - edelta:
            de = t - edelta
        if de < 0.0:
            de = 0.0
        h = 0.5 * ds
        dep = _add_dep(dep, cnt, x + ux * h, y + uy * h, z + uz * h, de, ds, tid)
        x += ux * ds
        y += uy * ds
        z += uz * ds
        length += ds
        t -= de + edelta
        if final or t <= 0.0:
            t = 0.0
            break
        if brem and t > kcut:
            e = t + ME
            yc = kcut / e
            # complete-screening spectrum (4/3 - 4/3 y + y^2) / y on [yc, 1]: log-uniform proposal
            while True:
                yy = yc * math.exp(-math.log(yc) * rng.random())
                if rng.random() * 4.0 / 3.0 <= 4.0 / 3.0 - 4.0 / 3.0 * yy + yy * yy:
                    break
            k = yy * e
            if k > t - 1e-3:
                k = t - 1e-3
            if k > kcut:
                theta = ME / e * math.sqrt(-2.0 * math.log(1.0 - rng.random()))
                vx, vy, vz = _rotate(ux, uy, uz, math.cos(theta), 2.0 * math.pi * rng.random())
                tr, stack = _push(tr, stack, cnt, GAMMA, tid, x, y, z, vx, vy, vz, k)
                t -= k
            nbrem = rng.exponential(1.0)
        if P[P_MSC] > 0.0:
            pn = math.sqrt(t * (t + 2.0 * ME))
            ux, uy, uz = _scatter(rng, ux, uy, uz, _highland(pn, pn / (t + ME), ds, x0))
    if pid == E_PLUS and fate == FATE_STOPPED:
        ax, ay, az = _isotropic(rng)
        tr, stack = _push(tr, stack, cnt, GAMMA, tid, x, y, z, ax, ay, az, ME)
        tr, stack = _push(tr, stack, cnt, GAMMA, tid, x, y, z, -ax, -ay, -az, ME)
        fate = FATE_DECAYED
    _finish(tr, tid, x, y, z, length, fate, t)
    return tr, stack, dep


@cached_njit
def _track_photon(rng, tr, stack, dep, cnt, P, reg, mu_pair, mu_compton, tid):
    """Photons: exponential flight to a pair conversion or Compton scatter; absorbed below cut."""
    x, y, z = tr[tid, TR_X], tr[tid, TR_Y], tr[tid, TR_Z]
    ux, uy, uz = tr[tid, TR_UX], tr[tid, TR_UY], tr[tid, TR_UZ]
    e = tr[tid, TR_KE]
    length = 0.0
    fate = FATE_INTERACTED
    while True:
        if e <= P[P_G_CUT]:
            if e > 0.0:
                dep = _add_dep(dep, cnt, x, y, z, e, 1e-2, tid)
            fate = FATE_STOPPED
            break
        mp = _lookup(mu_pair, e)
        mc = _lookup(mu_compton, e)
        mu = mp + mc
        d = rng.exponential(1.0) / mu
        x += ux * d
        y += uy * d
        z += uz * d
        length += d
        if not _in_region(reg, x, y, z):
            fate = FATE_LEFT
            break
        if rng.random() * mu < mp:
            # pair production; energy sharing from Bethe-Heitler 1 - 4/3 x (1 - x)
            xmin = ME / e
            while True:
                xx = xmin + (1.0 - 2.0 * xmin) * rng.random()
                if rng.random() <= 1.0 - 4.0 / 3.0 * xx * (1.0 - xx):
                    break
            ee = xx * e
            ep = e - ee
            phi = 2.0 * math.pi * rng.random()
            u = -math.log(max(rng.random() * rng.random(), 1e-300)) / 0.625
            th_e = min(u * ME / ee, math.pi)
            th_p = min(u * ME / ep, math.pi)
            vx, vy, vz = _rotate(ux, uy, uz, math.cos(th_e), phi)
            tr, stack = _push(tr, stack, cnt, E_MINUS, tid, x, y, z, vx, vy, vz, max(ee - ME, 0.0))
            vx, vy, vz = _rotate(ux, uy, uz, math.cos(th_p), phi + math.pi)
            tr, stack = _push(tr, stack, cnt, E_PLUS, tid, x, y, z, vx, vy, vz, max(ep - ME, 0.0))
            fate = FATE_INTERACTED
            break
        # Compton scattering (Klein-Nishina; sampling as in Geant4 G4KleinNishinaCompton)
        k = e / ME
        eps0 = 1.0 / (1.0 + 2.0 * k)
        eps0sq = eps0 * eps0
        a1 = -math.log(eps0)
        a2 = a1 + 0.5 * (1.0 - eps0sq)
        while True:
            if a1 > a2 * rng.random():
                eps = math.exp(-a1 * rng.random())
                epssq = eps * eps
            else:
                epssq = eps0sq + (1.0 - eps0sq) * rng.random()
                eps = math.sqrt(epssq)
            onecost = (1.0 - eps) / (eps * k)
            sint2 = onecost * (2.0 - onecost)
            if 1.0 - eps * sint2 / (1.0 + epssq) >= rng.random():
                break
        e2 = eps * e
        vx, vy, vz = _rotate(ux, uy, uz, 1.0 - onecost, 2.0 * math.pi * rng.random())
        te = e - e2
        px, py, pz = e * ux - e2 * vx, e * uy - e2 * vy, e * uz - e2 * vz
        pn = math.sqrt(px * px + py * py + pz * pz)
        if te > P[P_E_CUT] and pn > 0.0:
            tr, stack = _push(tr, stack, cnt, E_MINUS, tid, x, y, z, px / pn, py / pn, pz / pn, te)
        elif te > 0.0:
            dep = _add_dep(dep, cnt, x, y, z, te, 1e-2, tid)
        e = e2
        ux, uy, uz = vx, vy, vz
    _finish(tr, tid, x, y, z, length, fate, e)
    return tr, stack, dep


@cached_njit
def _decay_pi0(rng, tr, stack, cnt, tid):
    """pi0 -> gamma gamma (98.8 %, PDG), isotropic in the rest frame, boosted to the lab."""
    x, y, z = tr[tid, TR_X], tr[tid, TR_Y], tr[tid, TR_Z]
    ux, uy, uz = tr[tid, TR_UX], tr[tid, TR_UY], tr[tid, TR_UZ]
    t = tr[tid, TR_KE]
    e = t + MPI0
    gam = e / MPI0
    beta = math.sqrt(max(0.0, 1.0 - 1.0 / (gam * gam)))
    cst = 2.0 * rng.random() - 1.0
    phi = 2.0 * math.pi * rng.random()
    h = 0.5 * MPI0
    snt = math.sqrt(max(0.0, 1.0 - cst * cst))
    for sign in (1.0, -1.0):
        c = sign * cst
        e_lab = gam * h * (1.0 + beta * c)
        p_par = gam * h * (c + beta)
        p_perp = h * snt
        cost = p_par / math.sqrt(p_par * p_par + p_perp * p_perp)
        vx, vy, vz = _rotate(ux, uy, uz, cost, phi if sign > 0 else phi + math.pi)
        tr, stack = _push(tr, stack, cnt, GAMMA, tid, x, y, z, vx, vy, vz, e_lab)
    _finish(tr, tid, x, y, z, 0.0, FATE_DECAYED, 0.0)
    return tr, stack


@cached_njit
def _track_neutron(rng, tr, stack, cnt, P, reg, inv_lambda, tid):
    """Neutrons fly unseen to an inelastic scatter that knocks out a proton (or a neutron) and may
    leave a de-excitation photon; dropped below the neutron cut."""
    x, y, z = tr[tid, TR_X], tr[tid, TR_Y], tr[tid, TR_Z]
    ux, uy, uz = tr[tid, TR_UX], tr[tid, TR_UY], tr[tid, TR_UZ]
    t = tr[tid, TR_KE]
    length = 0.0
    fate = FATE_STOPPED
    esep = P[P_ESEP]
    while P[P_HAD] > 0.0 and t > P[P_N_CUT]:
        inv = _lookup(inv_lambda[1], t)
        d = rng.exponential(1.0) / inv
        x += ux * d
        y += uy * d
        z += uz * d
        length += d
        if not _in_region(reg, x, y, z):
            fate = FATE_LEFT
            break
        r = rng.random()
        t2 = t * (0.3 + 0.6 * rng.random())
        tn = t - t2 - esep
        if tn > 1.0:
            wx, wy, wz = _isotropic(rng)
            code = PROTON if r < C.NEUTRON_KNOCKOUT_PROTON else NEUTRON
            tr, stack = _push(tr, stack, cnt, code, tid, x, y, z, wx, wy, wz, tn)
        if rng.random() < C.NEUTRON_GAMMA_PROBABILITY:
            eg = 1.0 + 4.0 * rng.random()  # 40Ar* de-excitation, 1-5 MeV [approximate]
            gx, gy, gz = _isotropic(rng)
            tr, stack = _push(tr, stack, cnt, GAMMA, tid, x, y, z, gx, gy, gz, eg)
            t2 -= eg
        t = t2
        ux, uy, uz = _rotate(ux, uy, uz, 0.2 + 0.8 * rng.random(), 2.0 * math.pi * rng.random())
    _finish(tr, tid, x, y, z, length, fate, t)
    return tr, stack


@cached_njit
def _transport(pid0, pos0, dir0, ke0, rng, P, reg, ln_range, inv_lambda, mu_pair, mu_compton, cap):
    n0 = pid0.shape[0]
    tr = np.empty((max(64, 4 * n0 + cap // 8), TR_COLS))
    stack = np.empty(max(64, 2 * n0 + cap // 16), np.int64)
    dep = np.empty((max(256, cap), DEP_COLS))
    cnt = np.zeros(3, np.int64)  # tracks, stack depth, deposits
    for i in range(n0):  # primary i gets track index i
        tr, stack = _push(
            tr, stack, cnt, pid0[i], -1.0, pos0[i, 0], pos0[i, 1], pos0[i, 2],
            dir0[i, 0], dir0[i, 1], dir0[i, 2], ke0[i],
        )
    while cnt[1] > 0:
        cnt[1] -= 1
        tid = stack[cnt[1]]
        pid = int(tr[tid, TR_PID])
        if pid == GAMMA:
            tr, stack, dep = _track_photon(rng, tr, stack, dep, cnt, P, reg, mu_pair, mu_compton, tid)
        elif pid == E_MINUS or pid == E_PLUS:
            tr, stack, dep = _track_electron(rng, tr, stack, dep, cnt, P, reg, ln_range, tid)
        elif pid == PI_ZERO:
            tr, stack = _decay_pi0(rng, tr, stack, cnt, tid)
        elif pid == NEUTRON:
            tr, stack = _track_neutron(rng, tr, stack, cnt, P, reg, inv_lambda, tid)
        else:
            tr, stack, dep = _track_charged(rng, tr, stack, dep, cnt, P, reg, ln_range, inv_lambda, tid)
    return dep[: cnt[2]], tr[: cnt[0]]


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransportResult:
    """Energy deposits and the track table of one event.

    ``deposits``: float64 [n, 6] = x, y, z (cm), dE (MeV), dx (cm), track index.
    ``tracks``: float64 [m, 16], columns ``TR_*`` (code, parent, start, direction, kinetic energy,
    end point, path length, fate, path length at the first hadronic interaction, kinetic energy at
    the end).  Primaries come first, in the order given.
    """

    deposits: np.ndarray
    tracks: np.ndarray

    @property
    def visible_energy(self) -> float:
        """Total deposited energy (MeV)."""
        return float(self.deposits[:, 3].sum())


def transport(
    codes: np.ndarray,
    positions: np.ndarray,
    directions: np.ndarray,
    kinetic: np.ndarray,
    rng: np.random.Generator,
    *,
    settings: TransportSettings | None = None,
    density: float = C.LAR_DENSITY,
    region: np.ndarray | None = None,
) -> TransportResult:
    """Transport particles (transport codes, cm, unit vectors, MeV) and return their deposits.

    ``region`` is the vector built by :func:`cohep.lartpc.detector.transport_region`; particles
    leaving it are dropped (default: unbounded).
    """
    settings = settings or TransportSettings()
    tables = material_tables(density)
    codes = np.ascontiguousarray(codes, dtype=np.float64)
    positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    directions = np.ascontiguousarray(directions, dtype=np.float64).reshape(-1, 3)
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    directions = directions / np.where(norms > 0, norms, 1.0)
    kinetic = np.ascontiguousarray(kinetic, dtype=np.float64)
    reg = unbounded_region() if region is None else np.ascontiguousarray(region, dtype=np.float64)
    cap = int(2048 + 4.0 * float(kinetic.sum()))
    dep, tr = _transport(
        codes, positions, directions, kinetic, rng, settings.vector(density), reg,
        tables.ln_range, tables.inv_lambda, tables.mu_pair, tables.mu_compton, cap,
    )
    return TransportResult(dep, tr)
