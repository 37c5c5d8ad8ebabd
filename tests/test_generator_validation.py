"""The generator's validation table (docs/physics.md, "Generator validation, 0.2-20 GeV"): one test per row.

Each test generates the stated sample, computes the row's cohep value and holds it within the row's
tolerance of the reference value (source named in the docstring and in the table).  Samples are
seeded, so a test fails only when the physics moves, and sized so that the statistical error is a
fraction of the tolerance.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from cohep.lartpc import constants as C
from cohep.lartpc import flux as F
from cohep.lartpc import generator as G
from cohep.lartpc import transport as T

AVOGADRO_PER_CM3 = C.LAR_DENSITY * C.AVOGADRO / C.ARGON_A  # argon atoms per cm^3


def _events(seed: int, label: int, energy, n: int, **kw):
    rng = np.random.default_rng(seed)
    draw = (lambda: energy) if not callable(energy) else (lambda: energy(rng))
    return [G.generate_interaction(rng, label, draw(), **kw) for _ in range(n)]


def _paper(rng):
    return G.FluxConfig().sample(rng)


def _mode_share(events, mode):
    return float(np.mean([ev.mode == mode for ev in events]))


# -- cross sections --------------------------------------------------------------------------
def test_row01_numu_cc_sigma_over_e_at_20_gev():
    """PDG: sigma_CC / E = 0.677e-38 cm^2/GeV per nucleon (isoscalar, nu_mu); +-5 %."""
    assert float(F.cross_section(14, True, 20.0)) / 20.0 == pytest.approx(0.677, rel=0.05)


def test_row02_numubar_cc_sigma_over_e_at_20_gev():
    """PDG: sigma_CC / E = 0.334e-38 cm^2/GeV per nucleon (isoscalar, anti-nu_mu); +-5 %."""
    assert float(F.cross_section(-14, True, 20.0)) / 20.0 == pytest.approx(0.334, rel=0.05)


# -- interaction modes -----------------------------------------------------------------------
def test_row03_cc_qe_share_at_10_gev():
    """QE plateau (NOMAD 0.92e-38 cm^2 per neutron x 22/40) over sigma_CC (PDG 0.72 x 10 GeV):
    7.0 %; +-2 points at 4000 events."""
    share = _mode_share(_events(31, 1, 10000.0, 4000), G.MODE_QE)
    assert share == pytest.approx(0.070, abs=0.02)


def test_row04_cc_qe_share_at_20_gev():
    """Same method at 20 GeV: 0.506 / (0.70 x 20) = 3.6 %; +-1.5 points at 4000 events."""
    share = _mode_share(_events(32, 1, 20000.0, 4000), G.MODE_QE)
    assert share == pytest.approx(0.036, abs=0.015)


@pytest.fixture(scope="module")
def cc_paper():
    """numu CC events on the paper's 2.5 +- 0.5 GeV flux (the 1-4 GeV rows)."""
    return _events(33, 1, _paper, 4000)


def test_row05_cc_qe_share_1_to_4_gev(cc_paper):
    """GENIE DUNE sample, 1-4 GeV (PHYSICS.md): QE 15 %; +-7 points (cohep's QE is high by 5)."""
    assert _mode_share(cc_paper, G.MODE_QE) == pytest.approx(0.15, abs=0.07)


def test_row06_cc_res_share_1_to_4_gev(cc_paper):
    """GENIE DUNE sample, 1-4 GeV: RES 38 %; +-6 points."""
    assert _mode_share(cc_paper, G.MODE_RES) == pytest.approx(0.38, abs=0.06)


def test_row07_cc_dis_share_1_to_4_gev(cc_paper):
    """GENIE DUNE sample, 1-4 GeV: DIS 39 %; +-6 points."""
    assert _mode_share(cc_paper, G.MODE_DIS) == pytest.approx(0.39, abs=0.06)


# -- hadronic invariant mass and multiplicities ----------------------------------------------
def test_row08_res_w_peaks_at_the_delta():
    """PDG: Delta(1232); the mode of W for CC RES events at 1 GeV within +-30 MeV (20 MeV bins)."""
    w = np.array([ev.w for ev in _events(34, 1, 1000.0, 3000) if ev.mode == G.MODE_RES])
    counts, edges = np.histogram(w, bins=np.arange(1080.0, 1700.0, 20.0))
    assert 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1]) == pytest.approx(1232.0, abs=30.0)


def _dis_charged(seed: int, target: int, w_lo: float, w_hi: float, n: int = 6000):
    """Mean charged-hadron multiplicity of CC DIS (no FSI) on ``target`` with W in [w_lo, w_hi] MeV."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        res = G._deep_inelastic(rng, 12000.0, True, C.MUON_MASS)
        if res is None or res[4] != target or not w_lo <= res[3] < w_hi:
            continue
        out.append(sum(1 for h in res[1] if h[0] in (211, -211, 2212)))
    assert len(out) > 150
    return float(np.mean(out))


def _agky(target: int, w_gev: float) -> float:
    a = C.AGKY_A_PROTON if target == 2212 else C.AGKY_A_NEUTRON
    return a + C.AGKY_B * math.log(w_gev**2)


def test_row09_charged_multiplicity_nu_p_w_2_5():
    """AGKY (Yang et al., EPJ C 63 (2009) 1, fit to BEBC nu p / nu n data): <n_ch> = 0.40 + 1.42 ln W^2
    = 3.00 at W = 2.5 GeV; +-10 %."""
    assert _dis_charged(35, 2212, 2250.0, 2750.0) == pytest.approx(_agky(2212, 2.5), rel=0.10)


def test_row10_charged_multiplicity_nu_p_w_4():
    """AGKY nu p at W = 4 GeV: 4.34; +-10 %."""
    assert _dis_charged(36, 2212, 3750.0, 4250.0, n=12000) == pytest.approx(_agky(2212, 4.0), rel=0.10)


def test_row11_charged_multiplicity_nu_n_w_3():
    """AGKY nu n: <n_ch> = -0.20 + 1.42 ln W^2 = 2.92 at W = 3 GeV; +-10 %."""
    assert _dis_charged(37, 2112, 2750.0, 3250.0) == pytest.approx(_agky(2112, 3.0), rel=0.10)


def _dis_y(seed: int, pdg: int, label: int = 1) -> float:
    ys = [ev.inelasticity for ev in _events(seed, label, 20000.0, 3000, nu_pdg=pdg, fsi=False)
          if ev.mode == G.MODE_DIS]
    return float(np.mean(ys))


def test_row12_mean_y_numu_cc_dis_20_gev():
    """Quark-parton model with q-bar/q = 0.17 (which gives PDG's sigma-bar/sigma = 0.49): <y> = 0.49
    for nu DIS; +-0.04."""
    assert _dis_y(38, 14) == pytest.approx(0.49, abs=0.04)


def test_row13_mean_y_numubar_cc_dis_20_gev():
    """Same model for anti-nu DIS: <y> = 0.33; +-0.05 (the W > 1.4 GeV DIS cut lifts cohep's)."""
    assert _dis_y(39, -14) == pytest.approx(0.33, abs=0.05)


@pytest.fixture(scope="module")
def nc_paper():
    return _events(40, 0, _paper, 3000)


def test_row14_nc_events_with_a_pi0_1_to_4_gev(nc_paper):
    """GENIE DUNE sample, 1-4 GeV (PHYSICS.md): 43 % of NC events have a pi0; +-8 points."""
    assert np.mean([ev.count(111) > 0 for ev in nc_paper]) == pytest.approx(0.43, abs=0.08)


def test_row15_nc_charged_pions_1_to_4_gev(nc_paper):
    """GENIE DUNE sample, 1-4 GeV: NC <n_pi+-> = 0.54; +-0.12."""
    assert np.mean([ev.count(211, -211) for ev in nc_paper]) == pytest.approx(0.54, abs=0.12)


def test_row16_cc_neutral_pions_1_to_4_gev(cc_paper):
    """GENIE DUNE sample, 1-4 GeV: numu CC <n_pi0> = 0.23; +-0.08."""
    assert np.mean([ev.count(111) for ev in cc_paper]) == pytest.approx(0.23, abs=0.08)


def test_row17_cc_charged_pions_1_to_4_gev(cc_paper):
    """GENIE DUNE sample, 1-4 GeV: numu CC <n_pi+-> = 0.52; +-0.12."""
    assert np.mean([ev.count(211, -211) for ev in cc_paper]) == pytest.approx(0.52, abs=0.12)


def test_row18_nc_hadronic_energy_fraction_20_gev():
    """NC DIS at 20 GeV: the hadronic system carries <y> of E_nu; quark-parton model with the PDG
    electroweak couplings (g_L^2 = 0.300, g_R^2 = 0.030 summed over u, d) gives 0.49; +-0.04."""
    assert _dis_y(41, 14, label=0) == pytest.approx(0.49, abs=0.04)


# -- hadron transport in argon ---------------------------------------------------------------
def test_row19_pion_argon_inelastic_cross_section_20_gev():
    """Carroll et al. (PLB 80 (1979) 319): sigma_abs(pi A) = 28.5 mb A^0.75 = 0.45 b for argon at
    60-200 GeV; the table's non-elastic part at 20 GeV within +-20 %."""
    tab = T.material_tables()
    inv = np.interp(math.log(20000.0), np.log(tab.energy), tab.inv_lambda[0])
    sigma_b = inv / AVOGADRO_PER_CM3 * 1e24 * (1.0 - C.PION_AR_ELASTIC_FRACTION)
    assert sigma_b == pytest.approx(0.0285 * 40.0**0.75, rel=0.20)


def test_row20_nucleon_interaction_length_10_gev():
    """PDG: nuclear interaction length of LAr 117.2 g/cm^2 = 84.0 cm; +-3 %."""
    tab = T.material_tables()
    inv = np.interp(math.log(10000.0), np.log(tab.energy), tab.inv_lambda[1])
    assert 1.0 / inv == pytest.approx(117.2 / C.LAR_DENSITY, rel=0.03)


def test_row21_high_energy_nc_pions_interact_at_the_tabulated_rate():
    """The charged pions of 10 GeV NC events, transported through argon: the number of first in-flight
    hadronic interactions equals the integral of n sigma(T(l)) over each pion's path up to it
    (T(l) from the CSDA range, sigma from the table), within 10 % (and 4 sigma Poisson)."""
    rng = np.random.default_rng(42)
    tab = T.material_tables()
    ln_e = np.log(tab.energy)
    ln_r = tab.ln_range[1]
    pions = []
    while len(pions) < 300:
        ev = G.generate_interaction(rng, 0, 10000.0)
        for pdg, e, px, py, pz in ev.particles:
            if pdg in (211, -211) and e - C.PION_CHARGED_MASS > 300.0:
                pions.append((T.CODE_OF_PDG[pdg], e - C.PION_CHARGED_MASS, (px, py, pz)))
    observed, expected = 0, 0.0
    for code, t0, p in pions:
        res = T.transport(np.array([code]), np.zeros((1, 3)), np.array([p]), np.array([t0]), rng)
        track = res.tracks[0]
        had1 = track[T.TR_HAD1]
        path = had1 if had1 >= 0 else track[T.TR_LEN]
        observed += int(had1 >= 0)
        r0 = math.exp(np.interp(math.log(t0), ln_e, ln_r))
        ls = np.linspace(0.0, min(path, r0), 200)
        t_l = np.exp(np.interp(np.log(np.maximum(r0 - ls, 1e-6)), ln_r, ln_e))
        inv = np.interp(np.log(t_l), ln_e, tab.inv_lambda[0])
        expected += float(np.sum(0.5 * (inv[1:] + inv[:-1]) * np.diff(ls)))
    assert observed > 100
    assert abs(observed - expected) < max(0.10 * expected, 4.0 * math.sqrt(expected))
