"""Flux presets: the tables integrate as stated, sampling follows flux x cross section, configs pick them."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import integrate, stats

from cohep.cli import main
from cohep.core.errors import ConfigError
from cohep.lartpc import flux as F
from cohep.lartpc.flux_tables import BEAMS
from cohep.lartpc.generator import FluxConfig, generate_interaction
from cohep.lartpc.simulate import SimulationConfig, default_config, load_config


@pytest.mark.parametrize("name", sorted(BEAMS))
def test_tables_are_well_formed(name):
    t = BEAMS[name]
    edges = np.asarray(t.edges_gev)
    assert np.all(np.diff(edges) > 0) and edges[0] >= 0.2 and edges[-1] <= 20.0  # the generator's range
    assert set(t.flux) == set(F.FLAVOURS)
    for pdg, values in t.flux.items():
        assert len(values) == len(edges) - 1 and min(values) >= 0 and max(values) > 0, pdg


@pytest.mark.parametrize("name", sorted(BEAMS))
@pytest.mark.parametrize("pdg", F.FLAVOURS)
def test_rate_integrates_the_table_times_the_cross_section(name, pdg):
    """The sampler's integral of phi sigma equals an independent quadrature of the table x sigma."""
    t = BEAMS[name]
    edges = np.asarray(t.edges_gev)
    phi = np.asarray(t.flux[pdg])
    for cc in (True, False):
        quad = sum(p * integrate.quad(lambda e, cc=cc: float(F.cross_section(pdg, cc, e)), a, b, limit=200)[0]
                   for p, a, b in zip(phi, edges[:-1], edges[1:]))
        assert F.interaction_rate(name, pdg, cc) == pytest.approx(quad, rel=2e-3)
    assert F.flux_integral(t, pdg) == pytest.approx(float(np.dot(np.diff(edges), phi)))


def test_bnb_flavour_shares_are_the_miniboone_papers():
    """PRD 79 (2009) 072002: numu 93.6 %, numubar 5.86 %, nue 0.52 %, nuebar 0.05 % of the flux;
    the table is cut at 0.2 GeV, where 41 % of the numubar (and 7 % of the numu) flux lies, so its numu
    share rises to 95.7 % and the nu_e shares stay."""
    t = BEAMS["bnb"]
    total = sum(F.flux_integral(t, p) for p in F.FLAVOURS)
    share = {p: F.flux_integral(t, p) / total for p in F.FLAVOURS}
    assert 0.936 < share[14] < 0.965
    assert share[-14] == pytest.approx(0.0586 * 0.59 / 0.957, rel=0.1)
    assert share[12] == pytest.approx(0.0052, abs=0.001)
    assert share[-12] == pytest.approx(0.0005, abs=0.0002)


def test_dune_numu_flux_peaks_at_2_5_to_3_gev():
    t = BEAMS["dune"]
    centres = 0.5 * (np.asarray(t.edges_gev[1:]) + np.asarray(t.edges_gev[:-1]))
    assert 2.25 <= centres[int(np.argmax(t.flux[14]))] <= 3.0
    assert F.flux_integral(t, -14) / F.flux_integral(t, 14) == pytest.approx(0.08, abs=0.02)


N_SAMPLE = 20000


@pytest.mark.parametrize("name", sorted(BEAMS))
@pytest.mark.parametrize("label", [0, 1, 2])
def test_sampled_energies_follow_flux_times_sigma(name, label):
    """Chi-square of N_SAMPLE sampled energies in the table's bins against phi x sigma (p > 1e-3),
    and the sampled flavour shares against the integrals (4 sigma binomial)."""
    rng = np.random.default_rng(100 + label)
    draws = [F.sample_beam(rng, name, label) for _ in range(N_SAMPLE)]
    e = np.array([d[0] for d in draws]) / 1000.0
    pdg = np.array([d[1] for d in draws])
    t = BEAMS[name]
    edges = np.asarray(t.edges_gev)
    pdgs, shares = F.flavour_shares(name, label)
    for p, s in zip(pdgs, shares):
        assert abs(np.mean(pdg == p) - s) < 4 * np.sqrt(s * (1 - s) / N_SAMPLE) + 1e-4, p
    main_flavour = pdgs[0]
    sel = e[pdg == main_flavour]
    cc = label != 0
    expected = np.array([phi * integrate.quad(lambda x: float(F.cross_section(main_flavour, cc, x)), a, b)[0]
                         for phi, a, b in zip(t.flux[main_flavour], edges[:-1], edges[1:])])
    expected = expected / expected.sum() * len(sel)
    observed = np.histogram(sel, bins=edges)[0]
    keep = expected > 5  # the chi-square approximation needs populated bins; the rest is pooled
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1]
        exp = exp * obs.sum() / exp.sum()
    assert stats.chisquare(obs, exp).pvalue > 1e-3
    assert e.min() >= edges[0] and e.max() <= edges[-1]


def test_antineutrino_events_have_positive_leptons_and_mirrored_hadrons():
    rng = np.random.default_rng(5)
    for _ in range(50):
        ev = generate_interaction(rng, 1, 3000.0, nu_pdg=-14)
        assert ev.lepton_pdg == -13 and ev.particles[0][0] == -13
    qe = [generate_interaction(rng, 1, 1000.0, nu_pdg=-14, fsi=False) for _ in range(400)]
    qe = [ev for ev in qe if ev.mode == 0]
    assert qe and all(ev.target_pdg == 2212 and ev.count(2112) == 1 for ev in qe)  # anti-nu p -> mu+ n
    with pytest.raises(ValueError):
        generate_interaction(rng, 2, 3000.0, nu_pdg=14)


def test_dune_preset_takes_the_dune_flux_and_paper_stays_by_name(tmp_path):
    assert default_config("dune_fd").flux.kind == "dune"
    assert default_config("microboone").flux == FluxConfig()  # the paper's Gaussian, as before
    p = tmp_path / "c.toml"
    p.write_text('[detector]\npreset = "dune_fd"\n')
    assert load_config(p).flux.kind == "dune"
    p.write_text('flux = "paper"\n[detector]\npreset = "dune_fd"\n')
    cfg = load_config(p)
    assert cfg.flux.kind == "paper"
    rng = np.random.default_rng(3)
    e = np.array([cfg.flux.sample(rng) for _ in range(4000)])
    assert e.mean() == pytest.approx(2500.0, rel=0.02) and e.std() == pytest.approx(500.0, rel=0.05)
    assert load_config(p, detector="microboone").flux.kind == "paper"
    assert SimulationConfig.from_dict({"flux": {"kind": "numi"}}).flux.kind == "numi"
    with pytest.raises(ConfigError, match=r"flux\.kind"):
        SimulationConfig.from_dict({"flux": "lbnf"})


def test_cli_unknown_flux_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('flux = "lbnf"\n')
    out = tmp_path / "ev.h5"
    assert main(["simulate", "--events", "2", "--out", str(out), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flux.kind" in err[0] and "dune" in err[0]
    assert not out.exists()


def test_beam_events_in_a_file_record_flavour_and_energy(tmp_path):
    from cohep.datasets.events import EventFile
    from cohep.lartpc.simulate import simulate

    cfg = default_config("dune_fd")
    out = simulate(24, tmp_path / "d.h5", seed=4, workers=1, config=cfg, progress=False)
    with EventFile(out) as f:
        t, labels = f.truth, np.asarray(f.labels)
        config = f.attrs["config"]
        assert (json.loads(config) if isinstance(config, str) else config)["flux"]["kind"] == "dune"
    assert set(np.abs(t["nu_pdg"][labels == 2])) == {12} and set(np.abs(t["nu_pdg"][labels != 2])) <= {12, 14}
    assert np.all(np.abs(t["nu_pdg"][t["is_cc"] == 1]) - np.abs(t["lepton_pdg"][t["is_cc"] == 1]) == 1)
    assert t["nu_energy"].max() <= 20000.0 and t["nu_energy"].min() >= 250.0
