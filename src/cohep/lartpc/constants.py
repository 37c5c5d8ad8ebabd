"""Physical constants and reference parameters of the LArTPC simulator, each with its source.

Units inside the simulator: energies in MeV, lengths in cm, times in ns (momenta in MeV/c, masses
in MeV/c^2).  Conversions happen only at the edges (configuration files and HDF5 truth carry the
unit in their names or attributes).

Sources are cited by short name:

* **PDG** - R.L. Workman et al. (Particle Data Group), Review of Particle Physics, PTEP 2022 083C01
  and the 2024 update; the "Atomic and nuclear properties" tables for liquid argon (Ar, Z = 18).
* **PSTAR / ESTAR** - NIST stopping-power and range tables (protons / electrons in argon).
* **GENIE** - C. Andreopoulos et al., NIM A 614 (2010) 87 and the GENIE v3 physics manual
  (configuration G18_10a_02_11a); numbers read from its argon tables are marked ``[approximate]``.
* **ArgoNeuT** - R. Acciarri et al., JINST 8 (2013) P08005 (modified Box recombination).
* **Walkowiak** - W. Walkowiak, NIM A 449 (2000) 288, with the ICARUS fit as coded in LArSoft
  ``DetectorPropertiesStandard::DriftVelocity`` (electron drift velocity in LAr).
* **Wire-Cell** - the Wire-Cell Toolkit ``params.jsonnet`` defaults (diffusion, lifetime).
* **MicroBooNE** - JINST 12 (2017) P02017 (detector); JINST 12 (2017) P08003 = arXiv:1705.07341 and
  arXiv:1802.08709 (noise, signal processing).
* **ProtoDUNE-SP** - B. Abi et al., JINST 15 (2020) P12004 (detector performance).
* **Urban** - L. Urban's parametrisation of the pair-production cross section as used by Geant4
  ``G4BetheHeitlerModel`` (valid 1.5 MeV - 100 GeV).

Values recalled rather than read from the cited table are marked ``[approximate]`` in the comment
(they set the look of an event, not a validation number).
"""
from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Fundamental constants and particle masses (PDG 2024)
# --------------------------------------------------------------------------------------------
ELECTRON_MASS = 0.51099895  # MeV, PDG
MUON_MASS = 105.6583755  # MeV, PDG
PION_CHARGED_MASS = 139.57039  # MeV, PDG
PION_ZERO_MASS = 134.9768  # MeV, PDG
PROTON_MASS = 938.27208816  # MeV, PDG
NEUTRON_MASS = 939.56542052  # MeV, PDG
NUCLEON_MASS = 0.5 * (PROTON_MASS + NEUTRON_MASS)  # MeV, average used in DIS kinematics
DELTA_MASS = 1232.0  # MeV, PDG Breit-Wigner mass of Delta(1232) (1230-1234)
DELTA_WIDTH = 117.0  # MeV, PDG Breit-Wigner full width of Delta(1232) (114-120)
ARGON40_MASS = 37224.7  # MeV, nuclear mass of 40Ar (AME2020 atomic mass 39.9623831 u - 18 m_e)
CLASSICAL_ELECTRON_RADIUS = 2.8179403262e-13  # cm, PDG (CODATA 2018)
AVOGADRO = 6.02214076e23  # 1/mol, PDG (exact, SI 2019)
BETHE_K = 0.307075  # MeV cm^2 / mol, PDG eq. 34.5: K = 4 pi N_A r_e^2 m_e c^2
SPEED_OF_LIGHT = 29.9792458  # cm/ns

MUON_LIFETIME = 2196.9811  # ns, PDG (free muon)
#: mu- lifetime in argon: 537 ns (T. Suzuki, D.F. Measday, J.P. Roalsvig, PRC 35 (1987) 2212)
#: [approximate]; capture fraction = 1 - tau_Ar / tau_free = 0.756.
MUON_MINUS_CAPTURE_PROBABILITY = 1.0 - 537.0 / MUON_LIFETIME
#: pi+ -> mu+ nu at rest: T_mu = ((m_pi - m_mu)^2) / (2 m_pi) = 4.12 MeV (two-body kinematics).
PION_DECAY_MUON_KE = (PION_CHARGED_MASS - MUON_MASS) ** 2 / (2.0 * PION_CHARGED_MASS)
#: Michel spectrum end point m_mu / 2 (PDG, neglecting m_e).
MICHEL_ENDPOINT = 0.5 * MUON_MASS

# --------------------------------------------------------------------------------------------
# Liquid argon (PDG atomic and nuclear properties of liquid argon)
# --------------------------------------------------------------------------------------------
ARGON_Z = 18  # PDG
ARGON_A = 39.948  # g/mol, PDG
LAR_DENSITY = 1.396  # g/cm^3, PDG (at the normal boiling point, 87 K)
LAR_MEAN_EXCITATION = 188.0e-6  # MeV (I = 188 eV), PDG; newer evaluations 197-203 eV (arXiv:2212.06286)
#: Sternheimer density-effect parameters for liquid argon, PDG table (C-bar, x0, x1, a, k, delta0).
STERNHEIMER_C = 5.2146
STERNHEIMER_X0 = 0.2000
STERNHEIMER_X1 = 3.0000
STERNHEIMER_A = 0.19559
STERNHEIMER_K = 3.0000
STERNHEIMER_DELTA0 = 0.0
RADIATION_LENGTH_G = 19.55  # g/cm^2, PDG -> X0 = 14.0 cm at 1.396 g/cm^3
MOLIERE_RADIUS = 9.04  # cm, PDG (used for validation and the documentation, not in the cascade)
CRITICAL_ENERGY = 32.84  # MeV, PDG (e-, Rossi definition); 610/(Z+1.24) gives 31.7
#: Nuclear interaction length 117.2 g/cm^2 (PDG) -> 84.0 cm; collision length 71.6 g/cm^2 -> 51.3 cm.
NUCLEAR_INTERACTION_LENGTH_G = 117.2
MIP_DEDX = 2.105  # MeV/cm, PDG muon table for LAr: minimum 1.508 MeV cm^2/g x 1.396 g/cm^3


def radiation_length(density: float = LAR_DENSITY) -> float:
    """X0 in cm for liquid argon of the given density (g/cm^3): 14.0 cm at 1.396."""
    return RADIATION_LENGTH_G / density


# --------------------------------------------------------------------------------------------
# Hadron-argon cross sections used for in-flight interactions of pi+-, p, n in the argon.
# (kinetic energy in MeV, cross section in barn).  Pions: total hadronic cross section
# (elastic + inelastic) after the LArIAT pi- Ar measurement (Phys. Rev. D 106 (2022) 052009) and
# ProtoDUNE-SP pi+ Ar inclusive results (350-950 MeV), with the Delta(1232) peak near T = 200 MeV
# [approximate, read off the published figures].  Nucleons: reaction (inelastic) cross section,
# about 0.45-0.55 b from 100 MeV to 1 GeV, rising to sigma_inel = A / (N_A lambda_I) = 0.566 b at
# high energy (PDG lambda_I) [approximate below 1 GeV].
# --------------------------------------------------------------------------------------------
#: Above 1 GeV (the beam presets reach 20 GeV) the pion total falls towards the high-energy
#: pi-nucleus value: absorption sigma_abs(pi A) = 28.5 mb A^0.75 at 60-200 GeV (Carroll et al., PLB
#: 80 (1979) 319, fit as quoted in the PDG) = 0.45 b for argon, plus the elastic share below
#: [approximate: 0.70 b total at 20 GeV, 0.53 b of it non-elastic].
PION_AR_XS_ENERGY = (10.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 700.0, 1000.0, 2000.0, 5000.0,
                     10000.0, 20000.0)
PION_AR_XS_BARN = (0.25, 0.60, 0.85, 1.05, 1.15, 1.10, 0.98, 0.92, 0.90, 0.90, 0.85, 0.77, 0.72, 0.70)
#: Share of the pion total cross section that is elastic on the whole nucleus (a kink, no energy loss).
PION_AR_ELASTIC_FRACTION = 0.25  # [approximate] LArIAT / Geant4 BERT split near the Delta peak
NUCLEON_AR_XS_ENERGY = (5.0, 20.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 3000.0, 10000.0)
NUCLEON_AR_XS_BARN = (0.05, 0.60, 0.62, 0.52, 0.46, 0.45, 0.48, 0.55, 0.566, 0.566)

#: In-flight inelastic pi+- Ar channels (shares of the non-elastic part) [approximate, after the
#: ProtoDUNE-SP exclusive pi+ Ar absorption / charge-exchange results (350-950 MeV), LADS below
#: 300 MeV and the Geant4 Bertini cascade]: absorption ABS_LOW below ABS_KNEE MeV falling linearly
#: to ABS_HIGH at 1 GeV; charge exchange CEX; pion production rising linearly from 0 at PROD_START
#: MeV to PROD_MAX 1 GeV higher; the rest is quasi-elastic knock-out (the pion keeps 35-90 % of T).
PION_INFLIGHT_ABS_LOW = 0.40
PION_INFLIGHT_ABS_HIGH = 0.15
PION_INFLIGHT_ABS_KNEE = 250.0
PION_INFLIGHT_CEX = 0.12
PION_INFLIGHT_PROD_START = 600.0
PION_INFLIGHT_PROD_MAX = 0.25
#: Above PION_INFLIGHT_MULTI_START MeV an inelastic pi-Ar collision makes several pions, as the
#: projectile's energy allows: the production share rises linearly to PION_INFLIGHT_MULTI_MAX at
#: 5 GeV, the leading pion keeps 30-70 % of T, and 1 + Poisson(PION_INFLIGHT_MULTI_SLOPE ln(T / 1 GeV))
#: secondaries share the rest (a ln s rise of the multiplicity; Geant4 FTFP / Bertini give 2-4
#: charged secondaries at 5-10 GeV in argon) [approximate].
PION_INFLIGHT_MULTI_START = 1000.0
PION_INFLIGHT_MULTI_MAX = 0.6
PION_INFLIGHT_MULTI_SLOPE = 1.0
#: In-flight proton (and neutron) inelastic scatters: share with a leading nucleon keeping 30-90 %
#: of T and one knocked-out nucleon; the rest break up into 2-3 nucleons [approximate, Bertini].
NUCLEON_INFLIGHT_KNOCKOUT = 0.6
#: Neutron scatters knock out a proton (rather than a neutron) with this probability, and leave a
#: 40Ar* de-excitation photon of 1-5 MeV with probability NEUTRON_GAMMA_PROBABILITY [approximate].
NEUTRON_KNOCKOUT_PROTON = 0.6
NEUTRON_GAMMA_PROBABILITY = 0.5
#: pi- captured at rest: 2-4 nucleons share m_pi minus their separation energies, mostly neutrons
#: (proton share) [approximate; pi- absorption stars in argon are neutron rich].
PION_CAPTURE_PROTON_SHARE = 0.3

# --------------------------------------------------------------------------------------------
# Neutrino-argon interactions (GENIE-like)
# --------------------------------------------------------------------------------------------
#: Fermi momenta of the argon relativistic Fermi gas (GENIE configuration): protons, neutrons (MeV/c).
FERMI_MOMENTUM_PROTON = 242.0
FERMI_MOMENTUM_NEUTRON = 259.0
#: Nucleon removal energy in argon (GENIE configuration).
REMOVAL_ENERGY = 29.5  # MeV
#: Nucleon separation energy used when a hadron knocks a nucleon out in final-state / in-flight
#: interactions (about the 40Ar one-nucleon separation energies, 8-12 MeV) [approximate].
NUCLEON_SEPARATION_ENERGY = 10.0  # MeV
#: Axial masses (GENIE defaults): CCQE (Llewellyn-Smith) and Rein-Sehgal resonance production (MeV).
AXIAL_MASS_QE = 990.0
AXIAL_MASS_RES = 1120.0
#: Argon composition.
ARGON_PROTONS = 18
ARGON_NEUTRONS = 22

#: Interaction modes: index -> name.  QE means CC quasi-elastic or NC elastic.
MODE_NAMES = ("QE", "MEC", "RES", "DIS", "COH")
#: Neutrino energy nodes (MeV) for the mode fractions below (linear interpolation, flat outside).
MODE_FRACTION_ENERGY = (250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0, 10000.0, 15000.0, 20000.0)
#: nu_mu / nu_e CC on argon, fractions per mode at each energy node.  Shape from GENIE v3 argon
#: exclusive cross sections (Formaggio & Zeller, RMP 84 (2012) 1307 for the nucleon-level trend)
#: [approximate]; averaged over the default flux (2.5 +- 0.5 GeV) they give QE 21%, MEC 7%, RES 35%,
#: DIS 36%, COH 1%, close to the 1-4 GeV GENIE sample in PHYSICS.md (QE 15, RES 38, DIS 39, other 8).
#: The nodes at 0.25 GeV and 8-20 GeV (added for the beam fluxes) follow the same method; above
#: 6 GeV the QE share is the quasi-elastic plateau (NOMAD: 0.92e-38 cm^2 per neutron, Lyubushkin et
#: al., EPJ C 63 (2009) 355; 22 of 40 argon nucleons) over the total sigma_CC (PDG sigma/E, below),
#: and DIS fills the rest as W rises [approximate]; checked in docs/physics.md (validation table).
CC_MODE_FRACTIONS = (
    (0.70, 0.14, 0.15, 0.00, 0.01),
    (0.55, 0.12, 0.28, 0.04, 0.01),
    (0.40, 0.11, 0.36, 0.12, 0.01),
    (0.22, 0.08, 0.38, 0.31, 0.01),
    (0.16, 0.06, 0.34, 0.43, 0.01),
    (0.13, 0.05, 0.30, 0.51, 0.01),
    (0.10, 0.04, 0.24, 0.61, 0.01),
    (0.080, 0.032, 0.19, 0.688, 0.01),
    (0.066, 0.027, 0.16, 0.737, 0.01),
    (0.046, 0.019, 0.115, 0.810, 0.01),
    (0.035, 0.014, 0.09, 0.851, 0.01),
)
#: NC on argon (elastic, MEC, RES, DIS, COH pi0) [approximate, same source and method; NC elastic
#: is a smaller share of NC than CCQE of CC, which gives the NC pion multiplicities of PHYSICS.md].
NC_MODE_FRACTIONS = (
    (0.60, 0.10, 0.28, 0.00, 0.02),
    (0.42, 0.08, 0.42, 0.06, 0.02),
    (0.28, 0.07, 0.48, 0.15, 0.02),
    (0.16, 0.05, 0.42, 0.35, 0.02),
    (0.12, 0.04, 0.36, 0.46, 0.02),
    (0.10, 0.03, 0.31, 0.54, 0.02),
    (0.08, 0.02, 0.25, 0.63, 0.02),
    (0.066, 0.016, 0.19, 0.708, 0.02),
    (0.056, 0.013, 0.16, 0.751, 0.02),
    (0.040, 0.009, 0.115, 0.816, 0.02),
    (0.031, 0.007, 0.09, 0.852, 0.02),
)
#: nu_mu CC total cross section per argon nucleus (GENIE 2.10 argon tables, PHYSICS.md):
#: energy (MeV) -> sigma (1e-38 cm^2).  Used only when events are weighted by cross section.
CC_XSEC_ENERGY = (0.0, 500.0, 1100.0, 2400.0, 4100.0, 10000.0)
CC_XSEC_1E38 = (0.0, 14.0, 41.5, 78.4, 126.8, 300.0)
#: NC / CC total cross-section ratio about 1/3 over 0.9-4 GeV (GENIE argon tables, PHYSICS.md).
NC_TO_CC_RATIO = 1.0 / 3.0

#: Total cross sections per argon nucleon for the beam fluxes (:mod:`.flux`), as sigma / E in
#: 1e-38 cm^2 / GeV on a grid of E (GeV), linear interpolation, flat beyond the last node.
#: nu_mu CC: 1.1, 2.4 and 4.1 GeV from the GENIE 2.10 argon tables (PHYSICS.md: 41.5, 78.4, 126.8
#: per nucleus); at 20-50 GeV the PDG value sigma/E = 0.677 for an isoscalar target (PDG review
#: "Neutrino cross-section measurements", world average above 30 GeV) raised 3 % for argon's 22
#: neutrons (d-quark count 62/60); below 1 GeV the quasi-elastic rise and the muon-mass threshold
#: (0.11 GeV) after the GENIE argon spline shape [approximate, +-15 % below 1 GeV].
XS_ENERGY_GEV = (0.1, 0.2, 0.3, 0.5, 0.75, 1.1, 1.5, 2.4, 4.1, 6.0, 10.0, 20.0, 50.0)
NUMU_CC_XS_OVER_E = (0.0, 0.25, 0.45, 0.70, 0.85, 0.943, 0.90, 0.817, 0.773, 0.75, 0.725, 0.70, 0.697)
#: anti-nu_mu CC: PDG 0.334 (isoscalar, above 30 GeV) lowered 3 % for argon's u-quark count
#: (58/60); the ratio to nu_mu falls to about 0.4 at 1-4 GeV (GENIE, MINERvA inclusive ratio
#: measurements) [approximate, +-15 %].
NUMUBAR_CC_XS_OVER_E = (0.0, 0.15, 0.22, 0.28, 0.31, 0.33, 0.34, 0.34, 0.34, 0.335, 0.33, 0.325, 0.324)
#: nu_e / nu_mu CC (and anti-nu_e / anti-nu_mu): 1.01-1.03 at 1-4 GeV (GENIE argon, PHYSICS.md), larger
#: near the muon threshold where only the electron is light [approximate below 1 GeV].
NUE_TO_NUMU_CC = (2.0, 1.6, 1.25, 1.08, 1.05, 1.03, 1.025, 1.02, 1.01, 1.005, 1.0, 1.0, 1.0)
#: NC / CC: 1/3 at 0.9-4 GeV (GENIE argon, PHYSICS.md), 0.31 in DIS at 20+ GeV (the measured
#: Llewellyn-Smith ratio R_nu = 0.31, CCFR / NuTeV); anti-neutrinos R_nubar = 0.38 (same) [approximate
#: below 1 GeV, where NC elastic keeps the ratio near 1/3].
NC_TO_CC_NU = (0.5, 0.4, 0.36, 0.34, 0.333, 0.333, 0.333, 0.333, 0.33, 0.32, 0.315, 0.31, 0.31)
NC_TO_CC_NUBAR = (0.6, 0.5, 0.45, 0.42, 0.40, 0.39, 0.385, 0.38, 0.38, 0.38, 0.38, 0.38, 0.38)

#: Resonance production: share of events in the Delta(1232) peak; the rest fills W = 1.35-1.75 GeV
#: (higher resonances) [approximate, Rein-Sehgal in GENIE is dominated by the Delta below 2 GeV].
RES_DELTA_SHARE = 0.75
#: Probability that a higher resonance decays to N pi pi rather than N pi [approximate, PDG N*
#: branching ratios of N(1520), N(1535), N(1680) are 30-60 % to N pi pi].
RES_HIGHER_TWO_PION = 0.4
#: Isospin (Clebsch-Gordan) weights: CC nu p -> l- Delta++ is 3x nu n -> l- Delta+ (I = 3/2 amplitude).
RES_CC_PROTON_WEIGHT = 3.0
#: Delta+ -> p pi0 : n pi+ = 2/3 : 1/3 and Delta0 -> n pi0 : p pi- = 2/3 : 1/3 (isospin).
DELTA_NEUTRAL_PION_BRANCHING = 2.0 / 3.0

#: Lower edge of DIS in the hadronic invariant mass (MeV); GENIE's RES/DIS boundary is W = 1.7 GeV
#: with non-resonant multi-pion DIS allowed below it.
DIS_MIN_W = 1400.0
#: AGKY hadronisation (GENIE, after Wittek et al., Z. Phys. C 40 (1988) 231): average charged-hadron
#: multiplicity <n_ch> = a + b ln(W^2 / GeV^2), for nu p and nu n targets; <n_total> = 1.5 <n_ch>.
AGKY_A_PROTON = 0.40
AGKY_A_NEUTRON = -0.20
AGKY_B = 1.42
#: KNO scaling: n / <n> follows a Levy function with c = 7.93 (AGKY); we use a Gamma(c, 1/c) law.
KNO_C = 7.93
#: DIS hadronic systems: probability that the leading baryon is a proton, by the system's charge
#: (a charge +2 system, nu p CC, keeps its proton most often; a charge -1 system, anti-nu n CC,
#: rarely) [approximate, isospin counting of the remnant diquark and the struck quark].
DIS_PROTON_SHARE = {2: 0.8, 1: 0.55, 0: 0.4, -1: 0.2}
#: DIS: mean pi0 count per charged pion, 1/2 by isospin counting (pi0 : pi+- = 1 : 2), which the
#: bubble-chamber nu p / nu d pi0 multiplicities roughly follow [approximate].
DIS_PI0_PER_CHARGED_PION = 0.5

#: 2p2h (MEC): share of CC events on initial n-p pairs (final p p); the rest are n n pairs (final
#: n p) - GENIE Empirical MEC [approximate]; invariant mass of the 2N system above 2 M_N: uniform
#: up to this value (MeV) [approximate, the dip region between QE and Delta].
MEC_NP_FRACTION = 0.8
MEC_MAX_EXCITATION = 350.0

#: Coherent pion production on argon: |t| slope b = R^2 / 3 with R = 1.2 A^(1/3) fm (Rein-Sehgal).
COH_T_SLOPE = (1.2 * 40.0 ** (1.0 / 3.0) / 197.327) ** 2 / 3.0  # (MeV/c)^-2, hbar c = 197.327 MeV fm

#: Coherent pion: pion energy fraction y ~ Beta(2, 3) and Q^2 exponential with this mean (MeV^2)
#: [approximate shape of Rein-Sehgal coherent production at a few GeV].
COH_Y_BETA = (2.0, 3.0)
COH_MEAN_Q2 = 0.08e6
#: DIS Bjorken x ~ Beta(1.5, 4): x q(x) ~ x^0.5 (1 - x)^3, a valence-like shape; y flat (quarks).
DIS_X_BETA = (1.5, 4.0)
#: Antiquark to quark momentum ratio in the nucleon, q-bar / q = 0.17 at Q^2 of a few GeV^2 (CCFR /
#: NuTeV structure functions) [approximate].  In DIS a neutrino meets a quark (dsigma/dy flat) or an
#: antiquark ((1 - y)^2); an anti-neutrino the reverse.  With it the quark-parton model gives
#: <y> = 0.49 (nu) and 0.33 (nu-bar) and sigma(nu-bar)/sigma(nu) = 0.48 (PDG measures 0.49).
DIS_ANTIQUARK_FRACTION = 0.17

#: Effective intranuclear (hA-like) fates of hadrons leaving the nucleus, after GENIE hA2018 for
#: argon at a few hundred MeV [approximate]: pions (absorption, charge exchange, inelastic,
#: pion production above 500 MeV); nucleons (knock-out of a second nucleon, multi-nucleon).
FSI_PION_ABSORPTION = 0.16
FSI_PION_CHARGE_EXCHANGE = 0.07
FSI_PION_INELASTIC = 0.17
FSI_PION_PRODUCTION = 0.03
FSI_NUCLEON_KNOCKOUT = 0.25
FSI_NUCLEON_MULTI = 0.08

# --------------------------------------------------------------------------------------------
# Ionisation, recombination and drift
# --------------------------------------------------------------------------------------------
W_ION = 23.6e-6  # MeV per electron-ion pair (Miyajima et al., Phys. Rev. A 9 (1974) 1438; larnd-sim)
BOX_ALPHA = 0.93  # ArgoNeuT modified Box model
BOX_BETA = 0.212  # (kV/cm)(g/cm^2)/MeV, ArgoNeuT modified Box model
DIFFUSION_LONGITUDINAL = 7.2  # cm^2/s, Wire-Cell default
DIFFUSION_TRANSVERSE = 12.0  # cm^2/s, Wire-Cell default
ELECTRON_LIFETIME_MS = 8.0  # ms, Wire-Cell default (MicroBooNE/ProtoDUNE 3-30 ms)
TICK_US = 0.5  # us, 2 MHz digitisation (MicroBooNE, ProtoDUNE-SP)
#: Drift velocity fit coefficients (LArSoft DetectorPropertiesStandard, after Walkowiak 2000 and
#: the ICARUS measurement); field in kV/cm, temperature in K, result in mm/us.
DRIFT_ICARUS = (-0.04640, 0.01712, 1.88125, 0.99408, 0.01172, 4.20214, 105.749)
DRIFT_WALKOWIAK = (-0.01481, -0.0075, 0.141, 12.4, 1.627, 0.317, 90.371)

#: MicroBooNE electronic noise before signal processing, electrons ENC (arXiv:1802.08709);
#: under 400 electrons on the longest wires (arXiv:1705.07341).
MICROBOONE_NOISE_ENC = 300.0
#: ProtoDUNE-SP noise after coherent-noise removal, electrons ENC (JINST 15 (2020) P12004)
#: [approximate: about 550 e on induction and 650 e on collection wires are quoted].
PROTODUNE_NOISE_ENC = 550.0
#: Shaped pulse width used to convert the per-pulse ENC to a per-pixel noise (2 us peaking time,
#: about 4 us full width; MicroBooNE and ProtoDUNE-SP cold electronics).
PULSE_WIDTH_US = 4.0


def electrons_per_mev(w_ion: float = W_ION) -> float:
    """Ionisation electrons per MeV deposited before recombination: 1/W = 4.237e4 for 23.6 eV."""
    return 1.0 / w_ion


#: Handy derived number: X0 at the default density.
X0_CM = radiation_length()
#: Mean photon pair-conversion length 9/7 X0 (PDG eq. 34.31), 18.0 cm at the default density.
CONVERSION_LENGTH_CM = 9.0 / 7.0 * X0_CM


# --------------------------------------------------------------------------------------------
# Cosmic-ray muons at the surface (PDG 2024, "Cosmic rays" review, sec. 30.3)
# --------------------------------------------------------------------------------------------
#: Integral intensity of muons through a horizontal surface at sea level: "approximately
#: 1 cm^-2 min^-1 for horizontal detectors" (PDG Cosmic rays, sec. 30.3.1).
COSMIC_FLUX_SURFACE_CM2_MIN = 1.0
#: Angular distribution at the surface: I(theta) ~ cos^2(theta) at E_mu ~ 3 GeV (PDG sec. 30.3.1).
COSMIC_ZENITH_EXPONENT = 2.0
#: "The mean energy of muons at the ground is about 4 GeV" (PDG sec. 30.3.1).
COSMIC_MEAN_ENERGY_MEV = 4000.0
#: Muon flux at the 4850 ft level of SURF (DUNE far detector): 5.66e-9 cm^-2 s^-1 (DUNE FD TDR
#: Vol. II, arXiv:2002.03005, sec. 4.1) [approximate] = 3.4e-7 cm^-2 min^-1: off in practice.
COSMIC_FLUX_SURF_4850_CM2_MIN = 5.66e-9 * 60.0

# --------------------------------------------------------------------------------------------
# Readout electronics and channel health
# --------------------------------------------------------------------------------------------
ELEMENTARY_CHARGE_FC = 1.602176634e-4  # fC per electron (SI 2019, exact)
#: MicroBooNE cold front end: 14 mV/fC gain, 2 us shaping; 12-bit ADC over a 2 V range
#: (JINST 12 (2017) P02017, sec. 3.1) -> 14 / (2000 / 4096) = 28.7 ADC per fC = 4.59 ADC per ke-
#: [approximate: the ADC range is recalled].
MICROBOONE_ADC_PER_KE = 14.0 / (2000.0 / 4096.0) * ELEMENTARY_CHARGE_FC * 1000.0
#: ProtoDUNE-SP (and the DUNE FD design it prototypes): 14 mV/fC, 12-bit ADC over about 1.6 V
#: (JINST 15 (2020) P12004, sec. 2; DUNE FD TDR Vol. IV, arXiv:2002.03008) -> 5.7 ADC per ke-,
#: i.e. about 175 e- per ADC count [approximate].
PROTODUNE_ADC_PER_KE = 14.0 / (1600.0 / 4096.0) * ELEMENTARY_CHARGE_FC * 1000.0
#: MicroBooNE drift field: 273 V/cm (JINST 12 (2017) P02017).
MICROBOONE_DRIFT_FIELD_KV_CM = 0.273
#: MicroBooNE: about 10 % of the channels unresponsive or too noisy to use in the first data
#: (arXiv:1705.07341, sec. 6) [approximate]; we split it into 8 % dead and 2 % noisy.
MICROBOONE_DEAD_FRACTION = 0.08
MICROBOONE_NOISY_FRACTION = 0.02
#: ProtoDUNE-SP noise after coherent-noise removal: about 550 e (induction) and 650 e (collection)
#: ENC (JINST 15 (2020) P12004, sec. 5) [approximate]; 99.7 % of channels working: 0.3 % dead,
#: about 1 % noisy (same paper) [approximate].
PROTODUNE_NOISE_ENC_INDUCTION = 550.0
PROTODUNE_NOISE_ENC_COLLECTION = 650.0
PROTODUNE_DEAD_FRACTION = 0.003
PROTODUNE_NOISY_FRACTION = 0.01
#: ProtoDUNE-SP electron lifetime above 20 ms over most of the 2018 run (JINST 15 (2020) P12004,
#: sec. 4) [approximate].
PROTODUNE_LIFETIME_MS = 20.0
#: DUNE far-detector horizontal-drift module (DUNE FD TDR Vol. IV, arXiv:2002.03008): APA wires
#: at 4.669 mm (U, V, at +-35.7 deg) and 4.790 mm (X, collection) pitch, 3.5 m drift at 500 V/cm,
#: 2 MHz sampling, 12 m x 58 m APA planes; requirements: electron lifetime > 3 ms (design 10 ms),
#: under 1 % dead channels, ENC under 1000 e (ProtoDUNE-SP level expected).
DUNE_FD_PITCH_MM = (4.669, 4.669, 4.790)
DUNE_FD_ANGLE_DEG = 35.7
DUNE_FD_DRIFT_CM = 350.0
DUNE_FD_HEIGHT_CM = 1200.0
DUNE_FD_LENGTH_CM = 5800.0
DUNE_FD_LIFETIME_MS = 10.0
DUNE_FD_DEAD_FRACTION = 0.01
#: Extra noise of a noisy channel, in units of its nominal per-pixel noise (an "excess noise"
#: channel in the MicroBooNE and ProtoDUNE-SP noise studies shows 2-5x the nominal RMS) [approximate].
NOISY_CHANNEL_FACTOR = 3.0
