"""Validation of the LArTPC simulator physics against PDG / NIST reference numbers."""
from __future__ import annotations

import numpy as np
import pytest

from cohep.lartpc import constants as C
from cohep.lartpc import generator as G
from cohep.lartpc import transport as T
from cohep.lartpc.detector import DetectorConfig, Readout, drift_velocity, recombination
from cohep.lartpc.simulate import EventSimulator, SimulationConfig

NO_HADRONIC = T.TransportSettings(hadronic=False, decays=False)


def _shoot(code, kinetic, n, seed, settings=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(T.transport(np.array([code]), np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0]]),
                               np.array([float(kinetic)]), rng, settings=settings))
    return out


# -- ranges and dE/dx -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "species, kinetic, pdg_range",
    [("mu", 100.0, 30.4), ("mu", 1000.0, 441.0), ("p", 100.0, 7.82), ("p", 300.0, 51.2)],
)
def test_csda_range_table_matches_pdg(species, kinetic, pdg_range):
    r = T.material_tables().csda_range(species, kinetic)
    assert r == pytest.approx(pdg_range, rel=0.05)


@pytest.mark.parametrize(
    "code, kinetic, pdg_range, n",
    [(T.MU_MINUS, 100.0, 30.4, 60), (T.MU_MINUS, 1000.0, 441.0, 15), (T.PROTON, 100.0, 7.82, 60), (T.PROTON, 300.0, 51.2, 40)],
)
def test_transported_path_length_matches_csda(code, kinetic, pdg_range, n):
    """Stepping with straggling, delta rays and MCS keeps the mean path at the CSDA range."""
    results = _shoot(code, kinetic, n, seed=11, settings=NO_HADRONIC)
    lengths = np.array([r.tracks[0, T.TR_LEN] for r in results])
    assert lengths.mean() == pytest.approx(pdg_range, rel=0.05)
    # all the kinetic energy ends up deposited (by the track and its delta rays)
    assert np.mean([r.visible_energy for r in results]) == pytest.approx(kinetic, rel=1e-6)


def test_mip_dedx():
    tab = T.material_tables()
    assert tab.dedx[0].min() == pytest.approx(2.105, rel=0.05)
    # where the minimum sits: muon T about 250-300 MeV (beta gamma about 3.5)
    t_min = tab.energy[np.argmin(np.where(tab.energy > 10, tab.dedx[0], np.inf))]
    assert 200.0 < t_min < 400.0
    # a transported 300 MeV muon deposits about 1 MIP per cm on average over its first 20 cm
    res = _shoot(T.MU_MINUS, 300.0, 40, seed=3, settings=NO_HADRONIC)
    per_cm = [r.deposits[r.deposits[:, 2] < 20.0, 3].sum() / 20.0 for r in res]
    assert np.mean(per_cm) == pytest.approx(C.MIP_DEDX, rel=0.07)


def test_landau_fluctuations_are_skewed():
    """Per-step losses of a MIP have a most probable value below the mean (Landau tail)."""
    res = _shoot(T.MU_MINUS, 1000.0, 5, seed=5, settings=T.TransportSettings(hadronic=False, delta_rays=False))
    d = np.concatenate([r.deposits[r.deposits[:, 4] > 0.29] for r in res])
    dedx = d[:, 3] / d[:, 4]
    assert np.median(dedx) < np.mean(dedx)
    assert 1.4 < np.median(dedx) < 2.3


# -- electromagnetic showers ------------------------------------------------------------------
def test_radiation_length_and_moliere_radius_constants():
    assert C.radiation_length() == pytest.approx(14.0, rel=0.01)
    assert C.MOLIERE_RADIUS == pytest.approx(9.0, rel=0.02)
    assert C.CONVERSION_LENGTH_CM == pytest.approx(18.0, rel=0.01)


@pytest.mark.slow
def test_photon_conversion_distance():
    """High-energy photons first interact after an exponential distance of mean 9/7 X0 = 18 cm."""
    res = _shoot(T.GAMMA, 2000.0, 1500, seed=7)
    d = np.array([r.tracks[0, T.TR_LEN] for r in res])
    assert d.mean() == pytest.approx(18.0, rel=0.10)
    # exponential: the median is ln 2 of the mean
    assert np.median(d) / d.mean() == pytest.approx(np.log(2.0), rel=0.12)
    # the first deposit is at the conversion point, a gap away from the photon's origin
    first = np.array([np.linalg.norm(r.deposits[:, :3], axis=1).min() for r in res])
    assert np.median(first) > 5.0


def _start_dedx(results, photon):
    vals = []
    for r in results:
        d = r.deposits
        z0 = r.tracks[0, T.TR_ZE] if photon else 0.0
        sel = (d[:, 2] >= z0) & (d[:, 2] < z0 + 2.0)
        vals.append(d[sel, 3].sum() / 2.0)
    return np.median(vals)


def test_shower_start_one_vs_two_mip():
    """An electron shower starts as one MIP track, a converted photon's as an e+e- pair (2 MIP)."""
    e = _start_dedx(_shoot(T.E_MINUS, 1000.0, 150, seed=21), photon=False) / C.MIP_DEDX
    g = _start_dedx(_shoot(T.GAMMA, 1000.0, 150, seed=22), photon=True) / C.MIP_DEDX
    assert 0.8 < e < 1.35
    assert 1.6 < g < 2.7
    assert 1.6 < g / e < 2.4


def test_shower_shape():
    """1 GeV electron: mean depth and lateral containment near the PDG expectations."""
    res = _shoot(T.E_MINUS, 1000.0, 60, seed=31)
    depth, contained = [], []
    for r in res:
        d = r.deposits
        w = d[:, 3]
        depth.append((w * d[:, 2]).sum() / w.sum())
        contained.append(w[np.hypot(d[:, 0], d[:, 1]) < C.MOLIERE_RADIUS].sum() / w.sum())
    # Gamma profile: t_max = ln(E/Ec) - 0.5 (PDG eq. 34.36), b ~ 0.5 -> <t> = t_max + 1/b
    expected = (np.log(1000.0 / C.CRITICAL_ENERGY) - 0.5 + 2.0) * C.radiation_length()
    assert np.mean(depth) == pytest.approx(expected, rel=0.15)
    # about 90 % of the energy within one Moliere radius
    assert 0.78 < np.mean(contained) < 0.95
    # energy is conserved in an unbounded volume
    assert np.mean([r.visible_energy for r in res]) == pytest.approx(1000.0, rel=1e-6)


def test_electron_showers_branch():
    """Showers are cascades: many secondaries, separated photon-induced pieces, Compton blips."""
    res = _shoot(T.E_MINUS, 1000.0, 20, seed=41)
    for r in res:
        codes = r.tracks[:, T.TR_PID].astype(int)
        assert (codes == T.GAMMA).sum() > 20
        primary = r.deposits[r.deposits[:, 5] == 0, 3].sum()
        assert primary < 0.6 * r.visible_energy


# -- hadrons, decays ---------------------------------------------------------------------------
def test_pions_interact_hadronically():
    """Charged pions of a few hundred MeV mostly interact before stopping (lambda ~ 40-60 cm)."""
    res = _shoot(T.PI_PLUS, 300.0, 200, seed=51)
    fates = np.array([r.tracks[0, T.TR_FATE] for r in res])
    lengths = np.array([r.tracks[0, T.TR_LEN] for r in res])
    interacted = (fates == T.FATE_INTERACTED).mean()
    assert 0.3 < interacted < 0.9
    # but many still leave long MIP-like tracks, the pion-muon confusion of NC events
    assert (lengths > 40.0).mean() > 0.2


def test_decays_at_rest():
    # pi+ -> mu+ -> e+: a Michel positron up to 52.8 MeV
    res = _shoot(T.PI_PLUS, 50.0, 30, seed=61, settings=T.TransportSettings(hadronic=False))
    for r in res:
        codes = r.tracks[:, T.TR_PID].astype(int)
        assert T.MU_PLUS in codes and T.E_PLUS in codes
        e_plus = r.tracks[codes == T.E_PLUS, T.TR_KE]
        assert e_plus.max() < C.MICHEL_ENDPOINT
    # mu-: mostly captured in argon
    res = _shoot(T.MU_MINUS, 50.0, 400, seed=62)
    electrons = [r.tracks[r.tracks[:, T.TR_PID] == T.E_MINUS] for r in res]
    michel = np.mean([len(e) > 0 and e[:, T.TR_KE].max() > 5.0 for e in electrons])
    assert michel == pytest.approx(1.0 - C.MUON_MINUS_CAPTURE_PROBABILITY, abs=0.08)


def test_pi0_decays_to_two_photons():
    res = _shoot(T.PI_ZERO, 200.0, 50, seed=71)
    for r in res:
        codes = r.tracks[:, T.TR_PID].astype(int)
        photons = np.flatnonzero((codes == T.GAMMA) & (r.tracks[:, T.TR_PARENT] == 0))
        assert len(photons) == 2
        assert r.tracks[photons, T.TR_KE].sum() == pytest.approx(200.0 + C.PION_ZERO_MASS, rel=1e-9)


# -- detector ---------------------------------------------------------------------------------
def test_recombination_box_model():
    assert float(recombination(2.105, 0.5)) == pytest.approx(0.70, abs=0.015)
    assert float(recombination(4.2, 0.5)) == pytest.approx(0.62, abs=0.015)


def test_drift_velocity():
    assert drift_velocity(0.5, 87.5) == pytest.approx(1.6, rel=0.03)
    assert drift_velocity(0.273, 89.0) == pytest.approx(1.10, rel=0.05)
    assert DetectorConfig.microboone().ticks_per_pixel_effective == 8


@pytest.mark.parametrize("detector", [DetectorConfig.microboone(), DetectorConfig.protodune()])
def test_charge_conservation_through_drift_and_projection(detector):
    """Electrons in the images (before noise) = deposited charge x recombination x lifetime."""
    ro = Readout.from_config(detector)
    rng = np.random.default_rng(5)
    vertex = (120.0, 20.0 if detector.name == "microboone" else 300.0, 300.0)
    win = ro.window(vertex, 200, 200)
    # deposits in a 30 cm box around the vertex, well inside every view's window
    n = 4000
    dep = np.zeros((n, 6))
    dep[:, 0] = vertex[0] + rng.uniform(-30, 30, n)
    dep[:, 1] = vertex[1] + rng.uniform(-15, 15, n)
    dep[:, 2] = vertex[2] + rng.uniform(0, 30, n)
    dep[:, 3] = rng.exponential(0.6, n)
    dep[:, 4] = 0.3
    img = ro.charge_images(dep, win)
    expected = ro.collected_charge(dep).sum()
    for p in range(3):
        assert img[p].sum() == pytest.approx(expected, rel=0.01)
    # and without recombination / lifetime the total is dE / W
    no_loss = Readout.from_config(detector.__class__(**{**detector.to_dict(), "electron_lifetime_ms": 1e12}))
    q = no_loss.collected_charge(dep)
    dedx = dep[:, 3] / dep[:, 4]
    r = recombination(dedx, detector.drift_field_kv_cm, detector.density_g_cm3)
    assert q.sum() == pytest.approx((dep[:, 3] * r).sum() / C.W_ION, rel=1e-6)


def test_diffusion_spreads_charge_with_drift():
    ro = Readout.from_config(DetectorConfig.microboone(diffusion_long_cm2_s=200.0, diffusion_trans_cm2_s=200.0))
    dep = np.array([[50.0, 0.0, 300.0, 1.0, 0.3, 0.0], [240.0, 0.0, 300.0, 1.0, 0.3, 0.0]])
    widths = []
    for row in dep:
        win = ro.window(tuple(row[:3]), 64, 64)
        img = ro.charge_images(row[None, :], win)[2]
        widths.append((img > 1e-3 * img.max()).sum())
    assert widths[1] > widths[0]


# -- generator --------------------------------------------------------------------------------
def test_mode_fractions_change_with_energy():
    lo, hi = G.mode_fractions(1000.0, True), G.mode_fractions(4000.0, True)
    assert lo[G.MODE_QE] > hi[G.MODE_QE]
    assert lo[G.MODE_DIS] < hi[G.MODE_DIS]
    assert lo.sum() == pytest.approx(1.0) and hi.sum() == pytest.approx(1.0)


def test_delta_isospin_branching():
    """CC resonance production: nu p -> mu- Delta++ -> p pi+ dominates (3:1 over Delta+), and
    Delta+ decays p pi0 : n pi+ = 2 : 1; checked before final-state interactions."""
    rng = np.random.default_rng(9)
    finals = []
    for _ in range(3000):
        res = G._resonance(rng, 2000.0, True, C.MUON_MASS)
        if res is not None and len(res[1]) == 2 and res[3] < 1400.0:
            finals.append(tuple(sorted(p[0] for p in res[1])))
    finals = np.array([str(f) for f in finals])
    p_pip = np.mean(finals == str((211, 2212)))
    p_pi0 = np.mean(finals == str((111, 2212)))
    n_pip = np.mean(finals == str((211, 2112)))
    wp = C.ARGON_PROTONS * C.RES_CC_PROTON_WEIGHT
    share_p = wp / (wp + C.ARGON_NEUTRONS)
    assert p_pip == pytest.approx(share_p, abs=0.04)
    assert p_pi0 / n_pip == pytest.approx(2.0, rel=0.25)


def test_fermi_motion_and_multiplicities():
    rng = np.random.default_rng(10)
    flux = G.FluxConfig()
    nc = [G.generate_interaction(rng, 0, flux.sample(rng)) for _ in range(1500)]
    cc = [G.generate_interaction(rng, 1, flux.sample(rng)) for _ in range(1500)]
    # GENIE 1-4 GeV (PHYSICS.md): NC 43 % with a pi0, <pi0> 0.51; CC <pi0> 0.23, <pi+-> 0.52
    assert np.mean([e.count(111) > 0 for e in nc]) == pytest.approx(0.43, abs=0.08)
    assert np.mean([e.count(111) for e in cc]) == pytest.approx(0.23, abs=0.08)
    assert np.mean([e.count(211, -211) for e in cc]) == pytest.approx(0.52, abs=0.12)
    assert np.mean([e.count(2212) for e in cc]) == pytest.approx(1.42, abs=0.3)
    # quasi-elastic without FSI: the proton recoils with the Fermi-smeared momentum transfer
    qe = [G._quasi_elastic(rng, 1000.0, True, C.MUON_MASS) for _ in range(400)]
    missing_pt = [np.hypot(r[0][1] + r[1][0][2], r[0][2] + r[1][0][3]) for r in qe]
    assert 60.0 < np.mean(missing_pt) < 250.0  # ~ 3/4 k_F for a uniform Fermi sphere


def test_flux_default_is_the_papers_gaussian():
    rng = np.random.default_rng(12)
    e = np.array([G.FluxConfig().sample(rng) for _ in range(4000)])
    assert e.mean() == pytest.approx(2500.0, rel=0.02)
    assert e.std() == pytest.approx(500.0, rel=0.05)


def test_nc_events_contain_the_confusing_topologies():
    """NC events carry long MIP-like charged-pion tracks (muon-like) and pi0 photon showers that
    start away from the vertex (electron-like): the physics that makes the task hard."""
    sim = EventSimulator(SimulationConfig(), seed=77)
    long_pion, pi0_events, gaps = 0, 0, []
    n = 120
    for i in range(n):
        ev = sim.simulate(i, 0)
        tr = ev.transport.tracks
        codes = tr[:, T.TR_PID].astype(int)
        prim = tr[:, T.TR_PARENT] < 0
        pions = prim & np.isin(codes, (T.PI_PLUS, T.PI_MINUS))
        if (tr[pions, T.TR_LEN] > 40.0).any():
            long_pion += 1
        if ev.truth["n_pi0"] > 0:
            pi0_events += 1
            pi0_ids = np.flatnonzero(prim & (codes == T.PI_ZERO))
            photons = np.flatnonzero(np.isin(tr[:, T.TR_PARENT], pi0_ids) & (codes == T.GAMMA))
            gaps.extend(tr[photons, T.TR_LEN])
    assert long_pion / n > 0.08
    assert pi0_events / n > 0.3
    assert np.median(gaps) > 8.0
