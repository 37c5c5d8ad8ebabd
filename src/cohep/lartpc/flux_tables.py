"""Beam flux tables of the flux presets, per flavour, each with its source (data only; :mod:`.flux` samples them).

Why a table per beam: a model trained on one energy spectrum (the reference paper's 2.5 +- 0.5 GeV
Gaussian) meets another experiment's events, whose spectra reach 20 GeV and whose wrong-sign and
nu_e content differ.  Each preset is a histogram of the flux per flavour (PDG code), per GeV, on
coarse bins (``edges_gev``); within a bin the flux is flat.  The tables were *rebinned* from the
public flux files named with each table (summing the files' fine bins into these, so a coarse bin
holds the file's integral over it); where a file was not available the table is an approximate
reading of the published figure, marked so.  Energies outside the edges are not simulated: the
share of the flux left out is stated per table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BeamTable:
    """One beam at one detector: bin edges (GeV) and flux per GeV per flavour (PDG code -> values)."""

    name: str
    title: str
    unit: str
    source: str
    edges_gev: tuple[float, ...]
    flux: dict[int, tuple[float, ...]]


#: LBNF / DUNE, neutrino mode (FHC, 120 GeV protons, the optimised engineered three-horn design),
#: unoscillated, at the far detector (1297 km) on axis.  Source: the DUNE TDR flux released with
#: "Experiment Simulation Configurations Approximating DUNE TDR", arXiv:2103.04797 (ancillary file
#: histos_g4lbne_v3r5p4_QGSP_BERT_OptimizedEngineeredNov2017_neutrino_LBNEFD_globes_flux.txt, G4LBNF
#: v3r5p4), read from the copy in the DarkNews generator's data files (flux_dune_neutrino_FD_globes.txt);
#: its 0.25 GeV bins summed into these.  Left out: below 0.25 GeV and above 20 GeV (numu 1.8 %,
#: numubar 8.9 %, nue 4.0 %, nuebar 6.7 % of each flavour's flux).  Flavour shares of the whole file:
#: numu 91.5 %, numubar 7.4 %, nue 0.91 %, nuebar 0.23 %; the numu flux peaks at 2.5-3 GeV (mean 2.9).
DUNE_FD = BeamTable(
    name="dune",
    title="LBNF/DUNE neutrino mode, far detector, on axis (unoscillated)",
    unit="1e-12 nu / m^2 / POT / GeV",
    source="DUNE TDR flux, arXiv:2103.04797 ancillary (G4LBNF v3r5p4, OptimizedEngineeredNov2017), rebinned",
    edges_gev=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0,
               8.0, 10.0, 12.0, 15.0, 20.0),
    flux={
        14: (13.7, 23.2, 30.7, 36.1, 39.1, 39.8, 43.2, 44.7, 44.4, 45.3, 45.6, 39.1, 26.7, 13.8, 5.08, 1.74,
             1.07, 0.838, 0.673, 0.518, 0.383, 0.195),
        -14: (2.1, 2.18, 2.06, 2.25, 2.65, 2.6, 2.45, 2.25, 2.07, 1.86, 1.64, 1.4, 1.25, 1.32, 1.07, 0.755,
              0.502, 0.338, 0.224, 0.144, 0.0957, 0.0535),
        12: (0.258, 0.322, 0.332, 0.337, 0.311, 0.304, 0.265, 0.244, 0.237, 0.234, 0.207, 0.168, 0.162, 0.132,
             0.106, 0.0898, 0.0693, 0.0524, 0.0402, 0.0271, 0.016, 0.00801),
        -12: (0.0463, 0.0443, 0.0436, 0.042, 0.0375, 0.0409, 0.0404, 0.0385, 0.0408, 0.037, 0.0366, 0.0341,
              0.0321, 0.0302, 0.0305, 0.0263, 0.025, 0.0218, 0.0172, 0.0131, 0.00824, 0.00459),
    },
)

#: Booster Neutrino Beam (8 GeV protons, horn in neutrino mode) at MicroBooNE (470 m).  The BNB
#: simulation is MiniBooNE's (A.A. Aguilar-Arevalo et al., "The neutrino flux prediction at
#: MiniBooNE", PRD 79 (2009) 072002); the flux at MicroBooNE's TPC is MicroBooNE's public table
#: (50 MeV bins, nu / cm^2 / POT), read from the DarkNews generator's data files
#: (MicroBooNE_BNB_flux.txt), its bins summed into these.  Left out: below 0.2 GeV (numu 6.6 %,
#: numubar 41 % - the low-energy numubar is from pi- and mu+ decays at rest - nue 10 %, nuebar 16 %);
#: nothing above 7 GeV.  Flavour shares of the whole table: numu 93.6 %, numubar 5.8 %, nue 0.51 %,
#: nuebar 0.05 %, as PRD 79 072002 gives for MiniBooNE (93.6, 5.86, 0.52, 0.05 %); numu mean 0.82 GeV.
BNB_MICROBOONE = BeamTable(
    name="bnb",
    title="Booster Neutrino Beam, neutrino mode, at MicroBooNE",
    unit="1e-12 nu / cm^2 / POT / GeV",
    source="MicroBooNE BNB flux (MiniBooNE beam simulation, PRD 79 (2009) 072002), rebinned",
    edges_gev=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0),
    flux={
        14: (480.0, 549.0, 609.0, 633.0, 625.0, 606.0, 566.0, 516.0, 460.0, 400.0, 310.0, 192.0, 102.0, 47.6, 13.7,
             5.1, 3.06, 1.26, 0.213),
        -14: (41.7, 35.8, 30.9, 25.4, 21.7, 18.8, 15.1, 13.4, 11.4, 9.83, 7.99, 5.57, 3.64, 2.15, 0.801, 0.151,
              0.0204, 0.00182, 2.35e-05),
        12: (3.0, 3.03, 2.87, 2.73, 2.61, 2.29, 2.01, 1.82, 1.7, 1.6, 1.35, 1.06, 0.825, 0.687, 0.431, 0.223,
             0.0751, 0.0126, 0.000556),
        -12: (0.278, 0.271, 0.28, 0.261, 0.225, 0.226, 0.158, 0.155, 0.14, 0.139, 0.119, 0.101, 0.0852, 0.0768,
              0.0499, 0.027, 0.00943, 0.00136, 0.000117),
    },
)

#: NuMI (120 GeV protons, forward horn current) at MicroBooNE, about 8 degrees off the NuMI axis.
#: Source: MicroBooNE's NuMI flux prediction at its detector (MicroBooNE collaboration,
#: arXiv:2110.14023 [reference recalled: check]).  **Approximate**: no flux file was at
#: hand, so this is a coarse reading of the published spectra as remembered (per-bin values good to
#: about +-30 %, flavour shares to +-20 %): a soft numu spectrum from pions decaying near the target
#: seen at a large angle, with a kaon tail to several GeV; a large wrong-sign share (numubar about
#: 36 % of the flux) and nue + nuebar about 5 %, the feature that makes NuMI at MicroBooNE a nu_e
#: sample.  Relative units (numu integral 1.48).  Left out: below 0.2 GeV and above 10 GeV.
NUMI_MICROBOONE = BeamTable(
    name="numi",
    title="NuMI, forward horn current, at MicroBooNE (off axis) [approximate]",
    unit="relative (per GeV)",
    source="MicroBooNE NuMI flux, arXiv:2110.14023, approximate coarse reading (+-30 % per bin)",
    edges_gev=(0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0),
    flux={
        14: (2.2, 2.0, 1.6, 1.1, 0.65, 0.35, 0.2, 0.1, 0.045, 0.015, 0.003),
        -14: (1.6, 1.4, 1.1, 0.7, 0.4, 0.2, 0.1, 0.04, 0.015, 0.005, 0.001),
        12: (0.06, 0.07, 0.07, 0.06, 0.045, 0.03, 0.02, 0.01, 0.005, 0.0015, 0.0003),
        -12: (0.03, 0.03, 0.03, 0.025, 0.018, 0.011, 0.006, 0.003, 0.0012, 0.0004, 0.0001),
    },
)

#: The beam presets by name (FluxConfig.kind).
BEAMS: dict[str, BeamTable] = {t.name: t for t in (DUNE_FD, BNB_MICROBOONE, NUMI_MICROBOONE)}
