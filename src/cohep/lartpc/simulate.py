"""The simulation driver: configuration, one event end to end, and parallel streaming to HDF5.

``simulate(n, "events.h5", seed=1, workers=2)`` writes ``n`` events in the format of
:mod:`cohep.datasets.events`.  Event ``i`` draws every random number from its own generator,
``numpy.random.SeedSequence(seed, spawn_key=(1, i))``, and the class of each event is fixed up
front from ``(seed, n)``, so the file content is the same for any number of workers; the workers
compute and compress chunks of events, the parent writes them in event order, keeping only a few
chunks in flight (memory does not grow with ``n``).  The workers are a local pool, or a Dask cluster
(``client=`` / ``scheduler=``: the same tasks, the same bytes); ``shard=(i, N)`` writes one event
range for a batch array, and :mod:`cohep.lartpc.shards` merges the shards into the one-run file.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Literal
from pathlib import Path

import numpy as np

from cohep.core.errors import CohepError, ConfigError
from cohep.core.settings import Section, from_mapping, read_toml, setting
from cohep.lartpc import constants as C
from cohep.lartpc import cosmics
from cohep.lartpc import realism
from cohep.lartpc.detector import DetectorConfig, ImageWindow, Readout
from cohep.lartpc.flux import default_flux, sample_neutrino
from cohep.lartpc.generator import CLASS_NAMES, FluxConfig, Interaction, generate_interaction
from cohep.lartpc.imaging import ELECTRONS_PER_UNIT, IMAGE_UNIT, digitise, store
from cohep.lartpc.transport import (CODE_OF_PDG, FATE_LEFT, TR_FATE, TR_KE_END, TR_PID, TransportResult,
                                    TransportSettings, material_tables, transport)

#: Stages timed per event (CPU seconds of the worker's thread, summed over events: on a shared machine
#: wall-clock time per stage would count the other jobs' share of the cores; the benchmark reports them).
STAGES = ("generate", "transport", "detector", "imaging", "compress")
#: Truth stored per event: name -> (dtype, unit).
TRUTH_FIELDS = {
    "nu_energy": ("<f4", "MeV"),
    "nu_pdg": ("<i4", ""),
    "is_cc": ("<i1", ""),
    "mode": ("<i1", "index into attrs mode_names"),
    "target_pdg": ("<i4", ""),
    "q2": ("<f4", "GeV^2"),
    "w": ("<f4", "MeV"),
    "y": ("<f4", ""),
    "lepton_pdg": ("<i4", ""),
    "lepton_energy": ("<f4", "MeV"),
    "lepton_cos_theta": ("<f4", ""),
    "vertex_x": ("<f4", "cm"),
    "vertex_y": ("<f4", "cm"),
    "vertex_z": ("<f4", "cm"),
    "n_protons": ("<i2", ""),
    "n_neutrons": ("<i2", ""),
    "n_pions": ("<i2", "charged pions"),
    "n_pi0": ("<i2", ""),
    "visible_energy": ("<f4", "MeV"),
}
#: Truth stored only when the effect that defines it is on (files without it keep their bytes).
COSMIC_TRUTH = {"n_cosmics": ("<i2", "cosmic muons overlaid")}
VERTEX_TRUTH = {
    "vertex_row": ("<i2", "pixel row of the true vertex on the last plane"),
    "vertex_col": ("<i2", "pixel column of the true vertex"),
}
WINDOW_TRUTH = {
    "window_truncation": ("<f4", "estimated share of the event's visible energy outside the image"),
}
#: SimulationConfig fields left out of to_dict at their default (see DetectorConfig.to_dict).
REALISM_FIELDS = ("vertex_row_shift", "vertex_col_shift", "window_centre")
#: Events processed per task: fixed, so that the work split never depends on the worker count.
CHUNK_EVENTS = 16


@dataclass(frozen=True)
class SimulationConfig(Section):
    """Everything that defines a simulated data set besides its size and seed.

    ``class_fractions``: share of NC, numu CC, nue CC (default balanced; the counts are exact).
    ``min_visible_energy_mev``: an event depositing less inside the image region is regenerated
    (a minimal activity trigger; 0 keeps empty NC events).  ``xsec_weighting``: draw energies from
    flux x sigma_CC(E) instead of the flux.
    """

    section: ClassVar[str] = ""  # file level: a simulation TOML names its fields bare

    flux: FluxConfig = field(default_factory=FluxConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig.microboone)
    transport: TransportSettings = field(default_factory=TransportSettings)
    class_fractions: tuple[float, float, float] = (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0)
    image_height: int = setting(200, ge=8, le=4096)
    image_width: int = setting(200, ge=8, le=4096)
    #: Where the vertex sits in the image (row, column) as fractions: rows are wires, the beam
    #: (+z) runs towards larger wire numbers in every view, so the vertex sits upstream (0.3).
    vertex_row_fraction: float = setting(0.3, ge=0, lt=1)
    vertex_col_fraction: float = setting(0.5, ge=0, lt=1)
    #: The vertex moves by a uniform integer number of pixels in [-shift, shift] (rows, columns)
    #: per event, so it can sit anywhere in that region of the window (0: always the same pixel).
    vertex_row_shift: int = setting(0, ge=0)
    vertex_col_shift: int = setting(0, ge=0)
    #: "true": the window is placed around the true vertex; "reconstructed": around the vertex
    #: :func:`cohep.lartpc.realism.estimate_vertex` finds in a larger image (as on real data);
    #: "charge": centred on the event's charge (for events larger than the window: the centre of
    #: :func:`cohep.datasets.importer.charge_centre`, found in a canvas twice the window's size, at
    #: the window's centre, as ``cohep import --vertex centroid`` does), the share of the event cut
    #: off recorded per event (truth ``window_truncation``).
    window_centre: Literal["true", "reconstructed", "charge"] = "true"
    min_visible_energy_mev: float = setting(10.0, ge=0)
    xsec_weighting: bool = False
    fsi: bool = True
    image_dtype: Literal["float16", "float32"] = "float16"

    def check(self) -> None:
        fr = self.class_fractions
        if any(f < 0 for f in fr) or sum(fr) <= 0:
            raise ConfigError(f"class_fractions must be three non-negative numbers (NC, numu CC, nue CC), got {fr!r}")
        if abs(sum(fr) - 1.0) > 1e-6:
            raise ConfigError(f"class_fractions must sum to 1, got {sum(fr):.6g}")

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["detector"] = self.detector.to_dict()
        defaults = {f.name: f.default for f in fields(self)}
        for name in REALISM_FIELDS:
            if out[name] == defaults[name]:
                del out[name]
        return out

    @property
    def moves_vertex(self) -> bool:
        return bool(self.vertex_row_shift or self.vertex_col_shift or self.window_centre != "true")

    @property
    def truth_fields(self) -> dict:
        """The truth stored per event for this configuration."""
        out = dict(TRUTH_FIELDS)
        if self.detector.cosmic_flux_cm2_min > 0:
            out.update(COSMIC_TRUTH)
        if self.moves_vertex:
            out.update(VERTEX_TRUTH)
        if self.window_centre == "charge":
            out.update(WINDOW_TRUTH)
        return out

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_height, self.image_width)

    @classmethod
    def from_dict(cls, data: dict, *, detector: str | None = None) -> "SimulationConfig":
        """From a mapping (a parsed TOML file); ``detector`` (a preset name) overrides the file's."""
        if not isinstance(data, dict):
            raise ConfigError("configuration must be a table of fields")
        data = dict(data)
        det = data.pop("detector", None)
        if det is not None and not isinstance(det, dict):
            raise ConfigError(f"detector: expected a table, got {det!r}")
        det = dict(det or {})
        if detector is not None:
            det["preset"] = detector
        if det:
            data["detector"] = DetectorConfig.from_dict(det)
        flux = data.get("flux")
        if isinstance(flux, str):  # flux = "dune" (or "paper", "bnb", ...) names a preset
            data["flux"] = {"kind": flux}
        elif flux is None and det:  # a detector preset brings its beam (dune_fd: the DUNE flux)
            data["flux"] = default_flux(str(det.get("preset", "microboone")))
        return from_mapping(cls, data)


def load_config(path: str | os.PathLike, *, detector: str | None = None) -> SimulationConfig:
    """Read a TOML simulation configuration; errors name the file and the field."""
    p = Path(path)
    data = read_toml(p)
    try:
        return SimulationConfig.from_dict(data, detector=detector)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def default_config(detector: str = "microboone") -> SimulationConfig:
    """The defaults for a detector preset, with the flux it brings (dune_fd: the DUNE beam)."""
    return SimulationConfig(detector=DetectorConfig.preset(detector), flux=default_flux(detector))


# ---------------------------------------------------------------------------------------------
# One event
# ---------------------------------------------------------------------------------------------
@dataclass
class SimulatedEvent:
    """Everything about one simulated event (for studies; the file keeps image and truth)."""

    index: int
    label: int
    interaction: Interaction
    vertex: tuple[float, float, float]
    window: ImageWindow
    transport: TransportResult
    charge: np.ndarray  # electrons at the wires [3, H, W], before noise
    image: np.ndarray  # stored image [3, H, W] (ke-, after noise and threshold)
    truth: dict
    attempts: int = 1


def event_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of event ``index`` in a data set made with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1, int(index))))


def assign_labels(n_events: int, fractions, seed: int) -> np.ndarray:
    """Exact class counts (largest remainder) in a seeded random order."""
    fr = np.asarray(fractions, float)
    fr = fr / fr.sum()
    raw = fr * n_events
    counts = np.floor(raw).astype(np.int64)
    rest = n_events - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    labels = np.repeat(np.arange(len(fr), dtype=np.int64), counts)
    np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,))).shuffle(labels)
    return labels


class EventSimulator:
    """Simulates events of one data set (config + seed); keeps per-stage timings."""

    def __init__(self, config: SimulationConfig | None = None, seed: int = 0) -> None:
        self.config = config or SimulationConfig()
        self.seed = int(seed)
        det = self.config.detector
        self.readout = Readout.from_config(det)
        self.noise = det.pixel_noise()
        self.timings = dict.fromkeys(STAGES, 0.0)
        self._kept = 1.0  # share of the canvas's collection-plane charge the last crop kept
        material_tables(det.density_g_cm3)

    def _particles(self, inter: Interaction, vertex):
        codes, dirs, kin = [], [], []
        for pdg, e, px, py, pz in inter.particles:
            code = CODE_OF_PDG.get(pdg)
            if code is None:
                continue
            p = math.sqrt(px * px + py * py + pz * pz)
            m = math.sqrt(max(e * e - p * p, 0.0))
            t = e - m
            if t <= 0.0 or p <= 0.0:
                continue
            codes.append(code)
            dirs.append((px / p, py / p, pz / p))
            kin.append(t)
        n = len(codes)
        pos = np.tile(np.asarray(vertex, float), (n, 1))
        return np.asarray(codes, float), pos, np.asarray(dirs, float).reshape(n, 3), np.asarray(kin, float)

    def simulate(self, index: int, label: int) -> SimulatedEvent:
        cfg = self.config
        det = cfg.detector
        rng = event_rng(self.seed, index)
        tm = self.timings
        attempts = 0
        while True:
            attempts += 1
            t0 = time.thread_time()
            energy, nu_pdg = sample_neutrino(rng, cfg.flux, int(label), xsec_weighting=cfg.xsec_weighting)
            inter = generate_interaction(rng, int(label), energy, fsi=cfg.fsi, nu_pdg=nu_pdg)
            vertex = det.sample_vertex(rng)
            shift = self._shift(rng)
            win = self.readout.window(vertex, cfg.image_height, cfg.image_width,
                                      (cfg.vertex_row_fraction, cfg.vertex_col_fraction), shift)
            view = win if cfg.window_centre == "true" else self._canvas(win, 2 if cfg.window_centre == "charge" else 4)
            codes, pos, dirs, kin = self._particles(inter, vertex)
            t1 = time.thread_time()
            result = transport(codes, pos, dirs, kin, rng, settings=cfg.transport,
                               density=det.density_g_cm3, region=self.readout.region(view))
            t2 = time.thread_time()
            tm["generate"] += t1 - t0
            tm["transport"] += t2 - t1
            if result.visible_energy >= cfg.min_visible_energy_mev or attempts >= 50:
                break
        charge = self.readout.charge_images(result.deposits, view)
        t3 = time.thread_time()
        n_cosmics = 0
        if not self.realistic:  # the original path, bit for bit
            image = det.read_out(digitise(charge, self.noise, det.threshold_sigma, rng, dtype=cfg.image_dtype))
        else:
            image, charge, win, n_cosmics = self._realistic(charge, win, view, shift, rng)
        t4 = time.thread_time()
        tm["detector"] += t3 - t2
        tm["imaging"] += t4 - t3
        truth = _truth(inter, vertex, result)
        truth["n_cosmics"] = n_cosmics
        truth["vertex_row"], truth["vertex_col"] = self.vertex_pixel(vertex, win)
        if cfg.window_centre == "charge":
            truth["window_truncation"] = window_truncation(result, self._kept)
        return SimulatedEvent(index, int(label), inter, vertex, win, result, charge, image, truth, attempts)

    @property
    def realistic(self) -> bool:
        return self.config.detector.has_realism or self.config.window_centre != "true"

    def _shift(self, rng: np.random.Generator) -> tuple[int, int]:
        """The vertex shift (rows, columns); draws nothing when the region is a single pixel."""
        r, c = self.config.vertex_row_shift, self.config.vertex_col_shift
        dr = int(rng.integers(-r, r + 1)) if r else 0
        dc = int(rng.integers(-c, c + 1)) if c else 0
        return dr, dc

    def _canvas(self, win: ImageWindow, part: int = 4) -> ImageWindow:
        """The window grown by 1/``part`` of its size on every side (for the vertex or charge search)."""
        mr, mc = win.height // part, win.width // part
        return replace(win, height=win.height + 2 * mr, width=win.width + 2 * mc,
                       first_wire=tuple(w - mr * win.wires_per_pixel for w in win.first_wire),
                       first_tick=win.first_tick - mc * win.ticks_per_pixel)

    def vertex_pixel(self, vertex, win: ImageWindow) -> tuple[int, int]:
        """(row on the last plane, column) of the true vertex in ``win``."""
        ro = self.readout
        w = ro.wire_coordinate(vertex[1], vertex[2])[-1]
        row = (math.floor(w / ro.pitch[-1]) - win.first_wire[-1]) // win.wires_per_pixel
        tick = math.floor((vertex[0] - ro.x_anode) / ro.velocity / ro.tick)
        return int(row), int((tick - win.first_tick) // win.ticks_per_pixel)

    def _realistic(self, charge: np.ndarray, win: ImageWindow, view: ImageWindow, shift, rng: np.random.Generator):
        """Cosmics, bipolar induction, noise, the reconstructed window, channels, gain, ADC."""
        cfg = self.config
        det = cfg.detector
        n_cosmics = 0
        if det.cosmic_flux_cm2_min > 0:
            deps, n_cosmics = cosmics.overlay(rng, self.readout, view)
            if len(deps):
                self.readout.charge_images(deps, view, out=charge)
        signal = realism.bipolar(charge) if det.bipolar_induction else charge
        img = digitise(signal, self.noise, det.threshold_sigma, rng, dtype=np.float32,
                       signed_planes=len(det.plane_names) - 1 if det.bipolar_induction else 0)
        if view is not win:
            img, charge, win = self._recentre(img, charge, win, view, shift)
        realism.apply_channels(img, det, win, self.noise / ELECTRONS_PER_UNIT, rng)
        img = det.read_out(img)
        if det.adc_per_ke > 0:
            img = realism.to_adc(img, det.adc_per_ke)
        return store(img, cfg.image_dtype), charge, win, n_cosmics

    def _recentre(self, img, charge, win: ImageWindow, view: ImageWindow, shift: tuple[int, int]):
        """Crop the canvas so that the estimated vertex sits where the true one would (the
        configured pixel plus this event's shift); the true window when nothing is found."""
        cfg = self.config
        mr, mc = (view.height - win.height) // 2, (view.width - win.width) // 2
        offsets, off_c = [mr] * img.shape[0], mc
        est = None if cfg.window_centre == "charge" else realism.estimate_vertex(img)
        if cfg.window_centre == "charge" and np.any(img > 0):
            from cohep.datasets.importer import charge_centre

            rows_c, col_c = charge_centre(np.clip(img, 0.0, None))
            offsets = [min(max(int(round(r - 0.5 * win.height)), 0), 2 * mr) for r in rows_c]
            off_c = min(max(int(round(col_c - 0.5 * win.width)), 0), 2 * mc)
        if est is not None:
            rows, col = est
            target_r = int(cfg.vertex_row_fraction * win.height) + shift[0]
            target_c = int(cfg.vertex_col_fraction * win.width) + shift[1]
            offsets = [min(max(r - target_r, 0), 2 * mr) for r in rows]
            off_c = min(max(col - target_c, 0), 2 * mc)
        h, w = win.height, win.width
        total = float(charge[-1].sum())
        self._kept = float(charge[-1, offsets[-1]:offsets[-1] + h, off_c:off_c + w].sum()) / total if total > 0 else 1.0
        img = np.stack([img[p, o:o + h, off_c:off_c + w] for p, o in enumerate(offsets)])
        charge = np.stack([charge[p, o:o + h, off_c:off_c + w] for p, o in enumerate(offsets)])
        first_wire = tuple(view.first_wire[p] + o * win.wires_per_pixel for p, o in enumerate(offsets))
        win = replace(win, first_wire=first_wire, first_tick=view.first_tick + off_c * win.ticks_per_pixel)
        return np.ascontiguousarray(img), np.ascontiguousarray(charge), win


def window_truncation(result: TransportResult, kept: float) -> float:
    """Estimated share of an event's visible energy outside its image: 1 - (collection-plane charge
    kept by the crop / charge in the canvas) x (energy deposited in the canvas / that plus the kinetic
    energy that charged particles and photons carried out of it; neutrons left out)."""
    tr = result.tracks
    left = (tr[:, TR_FATE] == FATE_LEFT) & (tr[:, TR_PID] != CODE_OF_PDG[2112])
    e_out = float(tr[left, TR_KE_END].sum())
    e_dep = result.visible_energy
    if e_dep + e_out <= 0:
        return 0.0
    return float(1.0 - kept * e_dep / (e_dep + e_out))


def _truth(inter: Interaction, vertex, result: TransportResult) -> dict:
    lep = inter.lepton
    p = math.sqrt(lep[1] ** 2 + lep[2] ** 2 + lep[3] ** 2)
    return {
        "nu_energy": inter.nu_energy,
        "nu_pdg": inter.nu_pdg,
        "is_cc": int(inter.is_cc),
        "mode": inter.mode,
        "target_pdg": inter.target_pdg,
        "q2": inter.q2 * 1e-6,
        "w": inter.w,
        "y": inter.inelasticity,
        "lepton_pdg": inter.lepton_pdg,
        "lepton_energy": lep[0],
        "lepton_cos_theta": lep[3] / p if p > 0 else 1.0,
        "vertex_x": vertex[0],
        "vertex_y": vertex[1],
        "vertex_z": vertex[2],
        "n_protons": inter.count(2212),
        "n_neutrons": inter.count(2112),
        "n_pions": inter.count(211, -211),
        "n_pi0": inter.count(111),
        "visible_energy": result.visible_energy,
    }


# ---------------------------------------------------------------------------------------------
# Blocks of events (tasks, run in this process, a local pool or on Dask workers)
# ---------------------------------------------------------------------------------------------
_CACHED: tuple[SimulationConfig, int, EventSimulator] | None = None


def _simulator(config: SimulationConfig, seed: int) -> EventSimulator:
    """This process's simulator for (config, seed), built once (a worker runs many blocks of one run;
    each task brings its own copy of the configuration, compared by value: about 0.03 ms)."""
    global _CACHED
    if _CACHED is None or _CACHED[1] != seed or _CACHED[0] != config:
        _CACHED = (config, seed, EventSimulator(config, seed))
    return _CACHED[2]


def _run_chunk(sim: EventSimulator, start: int, labels: np.ndarray):
    from cohep.datasets.events import encode_chunk

    dtype = sim.config.image_dtype
    chunks, truth_rows = [], []
    before = dict(sim.timings)
    for k, label in enumerate(labels):
        ev = sim.simulate(start + k, int(label))
        t0 = time.thread_time()
        chunks.append(encode_chunk(ev.image, dtype))
        sim.timings["compress"] += time.thread_time() - t0
        truth_rows.append(ev.truth)
    truth = {name: np.array([row[name] for row in truth_rows], dtype=dt)
             for name, (dt, _u) in sim.config.truth_fields.items()}
    spent = {k: sim.timings[k] - before[k] for k in STAGES}
    return start, chunks, np.asarray(labels, np.int64), truth, spent


def simulate_block(config: SimulationConfig, seed: int, start: int, labels: np.ndarray):
    """Events ``start .. start + len(labels) - 1`` of the run (config, seed): one task.

    Returns (start, encoded image chunks, labels, truth arrays, seconds per stage). Each event draws
    from :func:`event_rng` (seed, index) alone, so a block is the same wherever and with whatever
    else it runs."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return _run_chunk(_simulator(config, int(seed)), int(start), labels)


def blocks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) cut at the multiples of ``size`` (event indices of the whole run)."""
    edges = [start] + list(range((start // size + 1) * size, stop, size)) + [stop]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def write_blocks(writer, results, start: int, stop: int, on_batch=None) -> None:
    """Write block results covering [start, stop) in order, one ``write_encoded`` call per
    :data:`CHUNK_EVENTS`-aligned batch of the whole run whatever the blocks' sizes, so the file's
    bytes do not depend on how the events were split into tasks or shards (where HDF5 places the
    labels and truth follows the first write). ``on_batch(events, None)`` after each write,
    ``on_batch(0, seconds per stage)`` after each block."""
    nxt, edge = start, min((start // CHUNK_EVENTS + 1) * CHUNK_EVENTS, stop)
    pieces: list[tuple[list, np.ndarray, dict]] = []
    for first, chunks, labs, truth, spent in results:
        if first != nxt:
            raise CohepError(f"internal: block starting at event {first} where event {nxt} was expected")
        pos, k = 0, len(chunks)
        while pos < k:
            take = min(k - pos, edge - (first + pos))
            pieces.append((list(chunks[pos:pos + take]), labs[pos:pos + take],
                           {name: v[pos:pos + take] for name, v in truth.items()}))
            pos += take
            if first + pos == edge:
                batch = [c for p in pieces for c in p[0]]
                writer.write_encoded(batch, np.concatenate([p[1] for p in pieces]),
                                     {name: np.concatenate([p[2][name] for p in pieces]) for name in truth})
                pieces = []
                if on_batch is not None:
                    on_batch(len(batch), None)
                edge = min(edge + CHUNK_EVENTS, stop)
        nxt = first + k
        if on_batch is not None and spent:
            on_batch(0, spent)
    if nxt != stop or pieces:
        raise CohepError(f"internal: events {nxt}..{stop - 1} were not written")


def file_attributes(config: SimulationConfig, seed: int) -> dict:
    """The attributes of a simulated file; ``created`` only from ``SOURCE_DATE_EPOCH`` (else empty):
    the file's bytes are a function of (cohep version, config, seed, events), wherever it was made."""
    from cohep.datasets.events import source_date_stamp

    det = config.detector
    return {
        "class_names": list(CLASS_NAMES),
        "view_names": list(det.plane_names),
        "pixel_pitch_mm": np.asarray(det.pixel_size_mm, float),
        "wire_pitch_mm": np.asarray(det.wire_pitch_mm, float),
        "wires_per_pixel": det.wires_per_pixel,
        "ticks_per_pixel": det.ticks_per_pixel_effective,
        "drift_velocity_mm_us": det.velocity_mm_us,
        "tick_us": det.tick_us,
        "detector": det.name,
        "generator": "cohep.lartpc",
        "config": config.to_dict(),
        "seed": int(seed),
        "image_unit": "ADC" if det.adc_per_ke > 0 else IMAGE_UNIT,
        "electrons_per_unit": ELECTRONS_PER_UNIT / det.adc_per_ke if det.adc_per_ke > 0 else ELECTRONS_PER_UNIT,
        "mode_names": list(C.MODE_NAMES),
        "created": source_date_stamp(),
    }


def _count(value, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CohepError(f"{what}, got {value!r}")
    return int(value)


def simulate(
    n_events: int,
    out_path: str | os.PathLike,
    *,
    seed: int = 0,
    workers: int = 1,
    config: SimulationConfig | None = None,
    progress: bool = True,
    timings: dict | None = None,
    shard: tuple[int, int] | None = None,
    client=None,
    scheduler: str | None = None,
    executor=None,
) -> Path:
    """Simulate ``n_events`` events and write them to ``out_path`` (HDF5, atomically).

    Identical file content for any ``workers``, and on a Dask cluster: ``client`` (a
    ``distributed.Client``), ``scheduler`` (an address, or ``local:K``) or ``executor`` (a
    :class:`cohep.core.executor.Executor`) run the blocks of events as tasks there, the file is
    written here, in event order.  ``shard=(i, N)`` writes only shard ``i`` of ``N`` (0-based; the
    event range :func:`cohep.lartpc.shards.shard_range`), with the run's seed, size and range in the
    file's attributes; :func:`cohep.lartpc.shards.merge` joins the N shards into the file a whole
    run writes.  ``timings``, if given, is filled with seconds per stage (summed over events, i.e.
    CPU time across workers), ``write``, ``wall`` and ``workers``.
    """
    from cohep.core.executor import DaskExecutor, resolve
    from cohep.datasets.events import EventWriter
    from cohep.lartpc.shards import shard_attributes, shard_range

    n_events = _count(n_events, "number of events must be a positive integer", minimum=1)
    seed = _count(seed, "seed must be a non-negative integer", minimum=0)
    workers = _count(workers, "workers must be a non-negative integer (0: all cores)", minimum=0)
    workers = workers or (os.cpu_count() or 1)
    config = config or SimulationConfig()
    start, stop = (0, n_events) if shard is None else shard_range(n_events, *shard)
    labels = assign_labels(n_events, config.class_fractions, seed)
    attrs = file_attributes(config, seed)
    if shard is not None:
        attrs.update(shard_attributes(n_events, *shard))
    target = Path(out_path)
    if target.is_dir():
        raise CohepError(f"cannot write {target}: it is a directory")
    stage_time = dict.fromkeys(STAGES, 0.0)
    t_write = 0.0
    t_start = time.perf_counter()
    from cohep.core.progress import progress as progress_bar

    # a local pool is forked before the HDF5 file is opened, so no worker inherits an open file
    n_chunks = len(blocks(start, stop, CHUNK_EVENTS))
    ex, close = resolve(executor, client=client, scheduler=scheduler, workers=min(workers, n_chunks))
    try:
        # remote workers get blocks of 4 chunks (fewer round trips); the bytes do not depend on it
        size = CHUNK_EVENTS * (4 if isinstance(ex, DaskExecutor) else 1)
        tasks = ((config, seed, a, labels[a:b]) for a, b in blocks(start, stop, size))
        with EventWriter(target, n_events=stop - start, image_shape=config.image_shape, dtype=config.image_dtype,
                         attrs=attrs, truth_fields=config.truth_fields) as writer, progress_bar() as bar:
            task = bar.add_task("simulating", total=stop - start) if progress else None

            def on_batch(k, spent):
                for name, v in (spent or {}).items():
                    stage_time[name] += v
                if task is not None and k:
                    bar.update(task, advance=k)

            class _Timed:  # the parent's HDF5 writes, timed apart from waiting for the tasks
                def write_encoded(self, *a):
                    nonlocal t_write
                    tw = time.thread_time()
                    writer.write_encoded(*a)
                    t_write += time.thread_time() - tw

            write_blocks(_Timed(), ex.map(simulate_block, tasks), start, stop, on_batch)
    finally:
        if close:
            ex.close()
    if timings is not None:
        timings.update(stage_time)
        timings["write"] = t_write
        timings["wall"] = time.perf_counter() - t_start
        timings["workers"] = ex.workers
    return target
