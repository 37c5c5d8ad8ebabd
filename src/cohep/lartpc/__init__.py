"""A fast LArTPC neutrino-event simulator: NC / numu CC / nue CC images in three wire-plane views.

>>> from cohep.lartpc import simulate, SimulationConfig, DetectorConfig
>>> simulate(1000, "events.h5", seed=1, workers=2)                         # doctest: +SKIP
>>> cfg = SimulationConfig(detector=DetectorConfig.protodune())
>>> simulate(100, "pdsp.h5", seed=2, config=cfg)                           # doctest: +SKIP

Modules: :mod:`.constants` (every number with its source), :mod:`.generator` (interactions, final
states, flux), :mod:`.transport` (tracks, showers, hadronic interactions, decays -> deposits),
:mod:`.detector` (recombination, drift, diffusion, wire planes, presets), :mod:`.imaging` (noise,
threshold, stored units), :mod:`.cosmics` (cosmic-muon overlay), :mod:`.realism` (dead and noisy
channels, bipolar induction, ADC counts, the vertex estimate), ``simulate`` (configuration and the parallel
driver; the package-level name ``simulate`` is the driver function, import the module as
``cohep.lartpc.simulate``).
Units inside: MeV, cm, ns.
"""
from cohep.lartpc.detector import DETECTORS, DetectorConfig, Readout, drift_velocity, recombination
from cohep.lartpc.generator import CLASS_NAMES, MODE_NAMES, FluxConfig, Interaction, generate_interaction
from cohep.lartpc.simulate import (
    EventSimulator,
    SimulatedEvent,
    SimulationConfig,
    assign_labels,
    default_config,
    load_config,
    simulate,
)
from cohep.lartpc import constants
from cohep.lartpc import cosmics
from cohep.lartpc import detector
from cohep.lartpc import generator
from cohep.lartpc import imaging
from cohep.lartpc import realism
from cohep.lartpc import transport
from cohep.lartpc.transport import TransportResult, TransportSettings, material_tables

__all__ = [
    "CLASS_NAMES",
    "DETECTORS",
    "DetectorConfig",
    "EventSimulator",
    "FluxConfig",
    "Interaction",
    "MODE_NAMES",
    "Readout",
    "SimulatedEvent",
    "SimulationConfig",
    "TransportResult",
    "TransportSettings",
    "assign_labels",
    "default_config",
    "drift_velocity",
    "generate_interaction",
    "load_config",
    "material_tables",
    "recombination",
    "simulate",
]
