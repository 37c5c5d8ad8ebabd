"""Detector response: recombination, drift, electron lifetime, diffusion and wire-plane projection.

The readout is described by :class:`DetectorConfig` (presets in ``DETECTORS``: the paper's
``microboone`` and ``protodune``, and the realistic ``microboone_surface``, ``protodune_sp`` and
``dune_fd`` with cosmics, dead and noisy channels and ADC units, see :mod:`.realism`).  Units at this edge
carry their name (``_mm``, ``_us``, ``_kv_cm``...); inside, cm and ns.

Model
-----
* **Ionisation and recombination**: N_e = dE / W (W = 23.6 eV) times the modified Box survival
  R = ln(alpha + xi) / xi, xi = beta (dE/dx) / (rho E_drift), ArgoNeuT alpha = 0.93, beta = 0.212.
* **Drift** along -x to the anode plane at ``active_x_cm[0]`` with the Walkowiak / ICARUS drift
  velocity for the field and temperature (1.6 mm/us at 500 V/cm); attenuation exp(-t / tau).
* **Diffusion**: Gaussian clouds, sigma_T = sqrt(2 D_T t) across the wires and sigma_L = sqrt(2 D_L t)
  along time; the charge is split between pixels with exact Gaussian integrals (conserved).
* **Wire planes**: wire coordinate w = z cos(theta) - y sin(theta) for a plane whose wires make the
  angle theta with the vertical (U +60, V -60, Y 0 degrees in MicroBooNE).  Induction planes are
  treated like the collection plane after 2D deconvolution (the charge images Wire-Cell signal
  processing produces); noise is per plane.
* **Pixels**: ``wires_per_pixel`` wires by ``ticks_per_pixel`` ticks, the latter chosen (when not
  given) so that a pixel is as near square as possible: 2 wires x 8 ticks = 6.0 x 6.4 mm in
  MicroBooNE at 500 V/cm.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from cohep.lartpc.jit import cached_njit

from cohep.core.errors import ConfigError
from cohep.core.settings import Section, from_mapping
from cohep.lartpc import constants as C

DETECTORS = ("microboone", "protodune", "microboone_surface", "protodune_sp", "dune_fd")
#: Realism fields: left out of ``to_dict`` while at their (off) default, so files made without them
#: keep the bytes they had before the fields existed.
REALISM_FIELDS = ("cosmic_flux_cm2_min", "cosmic_mean_energy_mev", "dead_channel_fraction",
                  "noisy_channel_fraction", "noisy_channel_factor", "channel_map_seed", "adc_per_ke",
                  "bipolar_induction")


def drift_velocity(field_kv_cm: float, temperature_k: float = 87.5) -> float:
    """Electron drift velocity in LAr (mm/us) for a field in kV/cm and a temperature in K.

    Linear at low field, ICARUS fit up to 0.619 kV/cm, Walkowiak (NIM A 449 (2000) 288) above
    0.699 kV/cm, blended in between - the parametrisation LArSoft uses.  1.60 mm/us at 0.5 kV/cm.
    """
    e = min(max(float(field_kv_cm), 1e-6), 4.0)
    t = float(temperature_k)
    tshift = t - 87.203
    x_fit = 0.0938163 - 0.0052563 * tshift - 0.0001470 * tshift**2
    u_fit = 5.18406 + 0.01448 * tshift - 0.003497 * tshift**2 - 0.000516 * tshift**3

    def fit(par):
        p1, p2, p3, p4, p5, p6, t0 = par
        return (p1 * (t - t0) + 1.0) * (p3 * e * math.log(1.0 + p4 / e) + p5 * e**p6) + p2 * (t - t0)

    if e < x_fit:
        v = e * u_fit
    elif e < 0.619:
        v = fit(C.DRIFT_ICARUS)
    elif e < 0.699:
        v = 12.5 * (e - 0.619) * fit(C.DRIFT_WALKOWIAK) + 12.5 * (0.699 - e) * fit(C.DRIFT_ICARUS)
    else:
        v = fit(C.DRIFT_WALKOWIAK)
    return v  # the fit is in mm/us (LArSoft divides by 10 to return cm/us)


def recombination(dedx: np.ndarray | float, field_kv_cm: float = 0.5, density: float = C.LAR_DENSITY,
                  alpha: float = C.BOX_ALPHA, beta: float = C.BOX_BETA) -> np.ndarray:
    """Fraction of ionisation electrons escaping recombination (modified Box model, ArgoNeuT).

    0.70 for a MIP (2.1 MeV/cm) at 500 V/cm; clipped to [0, 1].
    """
    xi = beta * np.asarray(dedx, dtype=float) / (density * field_kv_cm)
    xi = np.maximum(xi, 1e-9)
    return np.clip(np.log(alpha + xi) / xi, 0.0, 1.0)


@dataclass(frozen=True)
class DetectorConfig(Section):
    """A single-phase LArTPC readout: argon, drift, wire planes, electronics, pixelisation."""

    section: ClassVar[str] = "detector"

    name: str = "microboone"
    density_g_cm3: float = C.LAR_DENSITY
    temperature_k: float = 87.5
    drift_field_kv_cm: float = 0.5
    #: None: from the field and temperature (Walkowiak / ICARUS parametrisation).
    drift_velocity_mm_us: float | None = None
    electron_lifetime_ms: float = C.ELECTRON_LIFETIME_MS
    diffusion_long_cm2_s: float = C.DIFFUSION_LONGITUDINAL
    diffusion_trans_cm2_s: float = C.DIFFUSION_TRANSVERSE
    w_ion_ev: float = C.W_ION * 1e6
    box_alpha: float = C.BOX_ALPHA
    box_beta: float = C.BOX_BETA
    plane_names: tuple[str, ...] = ("U", "V", "Y")
    #: Wire angle from the vertical (degrees), U, V, Y.
    plane_angles_deg: tuple[float, ...] = (60.0, -60.0, 0.0)
    wire_pitch_mm: tuple[float, ...] = (3.0, 3.0, 3.0)
    tick_us: float = C.TICK_US
    #: Equivalent noise charge per wire for a shaped pulse, electrons (one per plane).
    noise_enc: tuple[float, ...] = (C.MICROBOONE_NOISE_ENC,) * 3
    pulse_width_us: float = C.PULSE_WIDTH_US
    #: Zero suppression: pixels below threshold_sigma x pixel noise are set to 0.
    threshold_sigma: float = 3.0
    wires_per_pixel: int = 2
    #: None: chosen so that a pixel is near square.
    ticks_per_pixel: int | None = None
    #: Active volume (cm): x is the drift coordinate, the anode at active_x_cm[0].
    active_x_cm: tuple[float, float] = (0.0, 256.35)
    active_y_cm: tuple[float, float] = (-116.5, 116.5)
    active_z_cm: tuple[float, float] = (0.0, 1036.8)
    #: Vertices are drawn uniformly this far inside the active volume.
    fiducial_margin_cm: float = 20.0
    #: Electronics gain of each plane relative to its calibration (U, V, Y): the stored charge, signal
    #: and noise alike, is multiplied by it. 0.7 is a plane read out 30 % low (a mis-calibrated
    #: channel gain); 1 leaves the image untouched.
    plane_gain: tuple[float, ...] = (1.0, 1.0, 1.0)
    #: Planes whose readout is dead (indices into plane_names): their image is all zeros.
    dead_planes: tuple[int, ...] = ()
    #: Cosmic-ray muons through a horizontal surface, cm^-2 min^-1 (0: none; 1 at sea level, PDG).
    cosmic_flux_cm2_min: float = 0.0
    cosmic_mean_energy_mev: float = C.COSMIC_MEAN_ENERGY_MEV
    #: Share of dead wires per plane (their pixel rows read zero) and of noisy wires (extra
    #: incoherent noise of noisy_channel_factor x the pixel noise); which wires is fixed by
    #: channel_map_seed, like a detector's channel map.
    dead_channel_fraction: tuple[float, ...] = (0.0, 0.0, 0.0)
    noisy_channel_fraction: tuple[float, ...] = (0.0, 0.0, 0.0)
    noisy_channel_factor: float = C.NOISY_CHANNEL_FACTOR
    channel_map_seed: int = 0
    #: ADC counts per ke- (0: store ke- as floats; else integer ADC counts, image_unit "ADC").
    adc_per_ke: float = 0.0
    #: Induction planes (all but the last) as raw bipolar signals instead of deconvolved charge.
    bipolar_induction: bool = False

    # -- presets -------------------------------------------------------------------------------
    @classmethod
    def microboone(cls, **overrides) -> "DetectorConfig":
        """MicroBooNE-like: 3 mm pitch on U (+60), V (-60), Y (0); 2.56 x 2.33 x 10.37 m active
        volume (JINST 12 (2017) P02017); 300 e ENC; 500 V/cm as in the reference paper (the
        detector itself runs at 273 V/cm: set ``drift_field_kv_cm = 0.273``)."""
        return replace(cls(), **overrides)

    @classmethod
    def protodune(cls, **overrides) -> "DetectorConfig":
        """ProtoDUNE-SP-like drift volume: 4.669 mm (U, V) and 4.792 mm (collection) pitch,
        induction wires at +-35.7 degrees, 3.6 m drift at 500 V/cm (JINST 15 (2020) P12004)."""
        base = cls(
            name="protodune",
            plane_angles_deg=(35.7, -35.7, 0.0),
            wire_pitch_mm=(4.669, 4.669, 4.792),
            noise_enc=(C.PROTODUNE_NOISE_ENC,) * 3,
            wires_per_pixel=1,
            active_x_cm=(0.0, 358.0),
            active_y_cm=(0.0, 607.5),
            active_z_cm=(0.0, 695.0),
            electron_lifetime_ms=10.0,
        )
        return replace(base, **overrides)

    @classmethod
    def microboone_surface(cls, **overrides) -> DetectorConfig:
        """MicroBooNE as it runs: at the surface (cosmic muons at the sea-level flux), 273 V/cm,
        about 10 % unusable channels, ADC counts (JINST 12 (2017) P02017, arXiv:1705.07341)."""
        base = cls(
            name="microboone_surface",
            drift_field_kv_cm=C.MICROBOONE_DRIFT_FIELD_KV_CM,
            cosmic_flux_cm2_min=C.COSMIC_FLUX_SURFACE_CM2_MIN,
            dead_channel_fraction=(C.MICROBOONE_DEAD_FRACTION,) * 3,
            noisy_channel_fraction=(C.MICROBOONE_NOISY_FRACTION,) * 3,
            channel_map_seed=1,
            adc_per_ke=C.MICROBOONE_ADC_PER_KE,
        )
        return replace(base, **overrides)

    @classmethod
    def protodune_sp(cls, **overrides) -> DetectorConfig:
        """ProtoDUNE-SP as it ran at CERN (JINST 15 (2020) P12004): the protodune geometry, 550 /
        650 e ENC on induction / collection, 20 ms lifetime, 0.3 % dead and 1 % noisy channels,
        cosmic muons (surface hall), ADC counts, bipolar raw induction signals."""
        base = cls.protodune(
            name="protodune_sp",
            noise_enc=(C.PROTODUNE_NOISE_ENC_INDUCTION,) * 2 + (C.PROTODUNE_NOISE_ENC_COLLECTION,),
            electron_lifetime_ms=C.PROTODUNE_LIFETIME_MS,
            cosmic_flux_cm2_min=C.COSMIC_FLUX_SURFACE_CM2_MIN,
            dead_channel_fraction=(C.PROTODUNE_DEAD_FRACTION,) * 3,
            noisy_channel_fraction=(C.PROTODUNE_NOISY_FRACTION,) * 3,
            channel_map_seed=2,
            adc_per_ke=C.PROTODUNE_ADC_PER_KE,
            bipolar_induction=True,
        )
        return replace(base, **overrides)

    @classmethod
    def dune_fd(cls, **overrides) -> DetectorConfig:
        """DUNE far-detector horizontal-drift module (FD TDR Vol. IV, arXiv:2002.03008): 4.669 /
        4.790 mm pitch, +-35.7 deg, 3.5 m drift at 500 V/cm, 12 m x 58 m, 10 ms lifetime, 1 % dead
        channels (the requirement), underground (no cosmics), ADC counts, bipolar induction."""
        base = cls(
            name="dune_fd",
            plane_angles_deg=(C.DUNE_FD_ANGLE_DEG, -C.DUNE_FD_ANGLE_DEG, 0.0),
            wire_pitch_mm=C.DUNE_FD_PITCH_MM,
            noise_enc=(C.PROTODUNE_NOISE_ENC_INDUCTION,) * 2 + (C.PROTODUNE_NOISE_ENC_COLLECTION,),
            wires_per_pixel=1,
            active_x_cm=(0.0, C.DUNE_FD_DRIFT_CM),
            active_y_cm=(0.0, C.DUNE_FD_HEIGHT_CM),
            active_z_cm=(0.0, C.DUNE_FD_LENGTH_CM),
            electron_lifetime_ms=C.DUNE_FD_LIFETIME_MS,
            dead_channel_fraction=(C.DUNE_FD_DEAD_FRACTION,) * 3,
            channel_map_seed=3,
            adc_per_ke=C.PROTODUNE_ADC_PER_KE,
            bipolar_induction=True,
        )
        return replace(base, **overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> "DetectorConfig":
        if name not in DETECTORS:
            raise ConfigError(f"unknown detector {name!r}: choose one of {', '.join(DETECTORS)}")
        return getattr(cls, name)(**overrides)

    # -- (de)serialisation ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, where: str = "detector") -> "DetectorConfig":
        """Build from a mapping (TOML table); ``preset`` picks the base, other keys override it."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table, got {data!r}")
        data = dict(data)
        preset = data.pop("preset", "microboone")
        if preset not in DETECTORS:
            raise ConfigError(f"{where}.preset: unknown detector {preset!r} (choose {', '.join(DETECTORS)})")
        return from_mapping(cls, data, base=cls.preset(preset), where=where)

    def to_dict(self) -> dict:
        """All fields, except realism fields at their default (files keep their old bytes)."""
        out = super().to_dict()
        for f in dataclasses.fields(self):
            if f.name in REALISM_FIELDS and out[f.name] == f.default:
                del out[f.name]
        return out

    @property
    def has_realism(self) -> bool:
        """Whether any readout effect of :mod:`.realism` is on (else the fast old path runs)."""
        return (self.cosmic_flux_cm2_min > 0 or any(self.dead_channel_fraction)
                or any(self.noisy_channel_fraction) or self.adc_per_ke > 0 or self.bipolar_induction)

    def check(self) -> None:
        where = self.section
        n = len(self.plane_names)
        if n != 3:
            raise ConfigError(f"{where}.plane_names: three planes are required, got {n}")
        for name in ("plane_angles_deg", "wire_pitch_mm", "noise_enc", "dead_channel_fraction",
                     "noisy_channel_fraction"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"{where}.{name} needs {n} values (one per plane)")
        positive = ("density_g_cm3", "temperature_k", "drift_field_kv_cm", "electron_lifetime_ms", "w_ion_ev",
                    "tick_us", "pulse_width_us")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{where}.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("diffusion_long_cm2_s", "diffusion_trans_cm2_s", "threshold_sigma", "fiducial_margin_cm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name} must be >= 0, got {getattr(self, name)!r}")
        if any(p <= 0 for p in self.wire_pitch_mm):
            raise ConfigError(f"{where}.wire_pitch_mm must be > 0")
        if any(e < 0 for e in self.noise_enc):
            raise ConfigError(f"{where}.noise_enc must be >= 0")
        for name in ("dead_channel_fraction", "noisy_channel_fraction"):
            if any(not 0 <= f <= 1 for f in getattr(self, name)):
                raise ConfigError(f"{where}.{name} must be fractions in [0, 1], got {list(getattr(self, name))}")
        for name in ("cosmic_flux_cm2_min", "adc_per_ke", "noisy_channel_factor", "channel_map_seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.cosmic_mean_energy_mev > 0:
            raise ConfigError(f"{where}.cosmic_mean_energy_mev must be > 0")
        if len(self.plane_gain) != n or any(not g > 0 for g in self.plane_gain):
            raise ConfigError(f"{where}.plane_gain needs {n} values > 0 (one per plane), got {list(self.plane_gain)}")
        if len(set(self.dead_planes)) != len(self.dead_planes) or any(not 0 <= d < n for d in self.dead_planes):
            raise ConfigError(f"{where}.dead_planes must list distinct plane indices 0..{n - 1}, got {list(self.dead_planes)}")
        if self.drift_velocity_mm_us is not None and not self.drift_velocity_mm_us > 0:
            raise ConfigError(f"{where}.drift_velocity_mm_us must be > 0")
        if not (isinstance(self.wires_per_pixel, int) and self.wires_per_pixel >= 1):
            raise ConfigError(f"{where}.wires_per_pixel must be an integer >= 1")
        if self.ticks_per_pixel is not None and not (isinstance(self.ticks_per_pixel, int) and self.ticks_per_pixel >= 1):
            raise ConfigError(f"{where}.ticks_per_pixel must be an integer >= 1")
        for name in ("active_x_cm", "active_y_cm", "active_z_cm"):
            lo, hi = getattr(self, name)
            if not hi - lo > 2 * self.fiducial_margin_cm:
                raise ConfigError(f"{where}.{name} must be wider than twice fiducial_margin_cm")

    # -- derived quantities --------------------------------------------------------------------
    @property
    def velocity_mm_us(self) -> float:
        if self.drift_velocity_mm_us is not None:
            return float(self.drift_velocity_mm_us)
        return drift_velocity(self.drift_field_kv_cm, self.temperature_k)

    @property
    def ticks_per_pixel_effective(self) -> int:
        if self.ticks_per_pixel is not None:
            return int(self.ticks_per_pixel)
        width = self.wires_per_pixel * max(self.wire_pitch_mm)
        return max(1, int(math.floor(width / (self.velocity_mm_us * self.tick_us) + 0.5)))

    @property
    def pixel_size_mm(self) -> tuple[float, float]:
        """(across wires, along drift) size of a pixel on the collection plane, mm."""
        return (
            self.wires_per_pixel * self.wire_pitch_mm[-1],
            self.ticks_per_pixel_effective * self.tick_us * self.velocity_mm_us,
        )

    def read_out(self, image: np.ndarray) -> np.ndarray:
        """Apply the planes' electronics to a digitised ``[planes, H, W]`` image: gain, dead planes.

        In place where possible; a calibrated detector (all gains 1, no dead plane) returns the
        image untouched, so its files do not change by a bit.
        """
        if all(g == 1.0 for g in self.plane_gain) and not self.dead_planes:
            return image
        out = image.astype(np.float32)
        out *= np.asarray(self.plane_gain, dtype=np.float32)[:, None, None]
        for d in self.dead_planes:
            out[d] = 0.0
        return out.astype(image.dtype)

    def pixel_noise(self) -> np.ndarray:
        """Noise per pixel (electrons): ENC x sqrt(wires per pixel x pulses per pixel time)."""
        pulses = max(1.0, self.ticks_per_pixel_effective * self.tick_us / self.pulse_width_us)
        return np.asarray(self.noise_enc, float) * math.sqrt(self.wires_per_pixel * pulses)

    def sample_vertex(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """A vertex drawn uniformly in the fiducial volume (cm)."""
        m = self.fiducial_margin_cm
        out = []
        for lo, hi in (self.active_x_cm, self.active_y_cm, self.active_z_cm):
            out.append(lo + m + (hi - lo - 2 * m) * rng.random())
        return out[0], out[1], out[2]


# ---------------------------------------------------------------------------------------------
# Readout geometry of one event: the image window around the vertex
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageWindow:
    """Where the H x W image of each plane sits: rows start at wire ``first_wire[p]`` (wire k
    covers w / pitch in [k, k + 1)), columns at tick ``first_tick``; ``wires_per_pixel`` x
    ``ticks_per_pixel`` readout samples per pixel."""

    height: int
    width: int
    first_wire: tuple[int, int, int]
    first_tick: int
    wires_per_pixel: int
    ticks_per_pixel: int


@dataclass(frozen=True)
class Readout:
    """Numeric form of a :class:`DetectorConfig` for the kernels (cm, ns)."""

    config: DetectorConfig
    cos: np.ndarray
    sin: np.ndarray
    pitch: np.ndarray  # cm
    velocity: float  # cm/ns
    tick: float  # ns
    lifetime: float  # ns
    d_long: float  # cm^2/ns
    d_trans: float  # cm^2/ns
    box_xi_per_dedx: float  # beta / (rho E)  in cm/MeV
    w_ion: float  # MeV
    x_anode: float

    @classmethod
    def from_config(cls, cfg: DetectorConfig) -> "Readout":
        ang = np.radians(np.asarray(cfg.plane_angles_deg, float))
        return cls(
            config=cfg,
            cos=np.cos(ang),
            sin=np.sin(ang),
            pitch=np.asarray(cfg.wire_pitch_mm, float) / 10.0,
            velocity=cfg.velocity_mm_us / 10.0 / 1000.0,
            tick=cfg.tick_us * 1000.0,
            lifetime=cfg.electron_lifetime_ms * 1.0e6,
            d_long=cfg.diffusion_long_cm2_s * 1e-9,
            d_trans=cfg.diffusion_trans_cm2_s * 1e-9,
            box_xi_per_dedx=cfg.box_beta / (cfg.density_g_cm3 * cfg.drift_field_kv_cm),
            w_ion=cfg.w_ion_ev * 1e-6,
            x_anode=float(cfg.active_x_cm[0]),
        )

    def wire_coordinate(self, y: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        """w = z cos(theta) - y sin(theta) per plane (cm), shape (3, ...)."""
        y, z = np.asarray(y, float), np.asarray(z, float)
        return self.cos.reshape((3,) + (1,) * z.ndim) * z - self.sin.reshape((3,) + (1,) * y.ndim) * y

    def window(self, vertex, height: int, width: int, vertex_fraction=(0.3, 0.5), shift=(0, 0)) -> ImageWindow:
        """The image window with the vertex at (row, column) fraction ``vertex_fraction``, moved
        by ``shift`` (rows, columns) pixels."""
        cfg = self.config
        nw, nt = cfg.wires_per_pixel, cfg.ticks_per_pixel_effective
        xv, yv, zv = vertex
        w = self.wire_coordinate(yv, zv)
        row_v = int(vertex_fraction[0] * height) + int(shift[0])
        col_v = int(vertex_fraction[1] * width) + int(shift[1])
        first_wire = tuple(int(math.floor(w[p] / self.pitch[p])) - row_v * nw for p in range(3))
        tick_v = int(math.floor((xv - self.x_anode) / self.velocity / self.tick))
        return ImageWindow(height, width, first_wire, tick_v - col_v * nt, nw, nt)

    def region(self, win: ImageWindow, margin: float = 5.0) -> np.ndarray:
        """Transport region (see :func:`cohep.lartpc.transport.transport`): the active volume cut
        to the drift range of the window, and the union of the three planes' wire strips."""
        cfg = self.config
        t_lo = win.first_tick * self.tick
        t_hi = (win.first_tick + win.width * win.ticks_per_pixel) * self.tick
        x_lo = max(cfg.active_x_cm[0], self.x_anode + t_lo * self.velocity - margin)
        x_hi = min(cfg.active_x_cm[1], self.x_anode + t_hi * self.velocity + margin)
        reg = [x_lo, x_hi, cfg.active_y_cm[0], cfg.active_y_cm[1], cfg.active_z_cm[0], cfg.active_z_cm[1]]
        for p in range(3):
            lo = win.first_wire[p] * self.pitch[p]
            hi = (win.first_wire[p] + win.height * win.wires_per_pixel) * self.pitch[p]
            reg += [self.cos[p], self.sin[p], lo - margin, hi + margin]
        return np.asarray(reg, dtype=np.float64)

    def kernel_params(self, win: ImageWindow) -> np.ndarray:
        """Flat parameter vector for :func:`_project`."""
        p = [self.x_anode, self.velocity, self.tick, self.lifetime, self.d_long, self.d_trans,
             self.box_xi_per_dedx, self.config.box_alpha, self.w_ion, float(win.first_tick),
             float(win.ticks_per_pixel), float(win.wires_per_pixel)]
        for k in range(3):
            p += [self.cos[k], self.sin[k], self.pitch[k], float(win.first_wire[k])]
        return np.asarray(p, dtype=np.float64)

    def charge_images(self, deposits: np.ndarray, win: ImageWindow, out: np.ndarray | None = None) -> np.ndarray:
        """Project deposits (rows x, y, z, dE, dx, ...) into float32 charge images [3, H, W] in
        electrons at the wires (after recombination, lifetime and diffusion; before noise)."""
        if out is None:
            out = np.zeros((3, win.height, win.width), dtype=np.float32)
        if len(deposits):
            _project(np.ascontiguousarray(deposits, dtype=np.float64), self.kernel_params(win), out)
        return out

    def collected_charge(self, deposits: np.ndarray) -> np.ndarray:
        """Electrons reaching the wires per deposit (recombination x lifetime), no projection."""
        d = np.asarray(deposits, float)
        dedx = d[:, 3] / np.maximum(d[:, 4], 0.01)
        xi = np.maximum(self.box_xi_per_dedx * dedx, 1e-9)
        r = np.clip(np.log(self.config.box_alpha + xi) / xi, 0.0, 1.0)
        t = np.maximum(d[:, 0] - self.x_anode, 0.0) / self.velocity
        return d[:, 3] * r / self.w_ion * np.exp(-t / self.lifetime)


#: Standard normal CDF tabulated on [-6, 6] (step 1/400) for the charge-sharing integrals.
_PHI_STEP = 1.0 / 400.0
_PHI_X = np.arange(-6.0, 6.0 + 0.5 * _PHI_STEP, _PHI_STEP)
_PHI = np.array([0.5 * math.erfc(-x / math.sqrt(2.0)) for x in _PHI_X])


@cached_njit
def _phi(z):
    f = (z + 6.0) * 400.0
    if f <= 0.0:
        return 0.0
    k = int(f)
    if k >= _PHI.shape[0] - 1:
        return 1.0
    w = f - k
    return _PHI[k] * (1.0 - w) + _PHI[k + 1] * w


@cached_njit
def _fractions(center, sigma, n, out_idx, out_w):
    """Share of a Gaussian(center, sigma) in unit bins [k, k+1), k in [0, n); returns count."""
    if sigma < 1e-3:
        k = int(math.floor(center))
        if k < 0 or k >= n:
            return 0
        out_idx[0] = k
        out_w[0] = 1.0
        return 1
    lo = int(math.floor(center - 4.0 * sigma))
    hi = int(math.floor(center + 4.0 * sigma))
    if hi < 0 or lo >= n:
        return 0
    inv = 1.0 / sigma
    m = 0
    prev = _phi((lo - center) * inv)
    for k in range(lo, hi + 1):
        cur = _phi((k + 1 - center) * inv)
        if 0 <= k < n and m < out_idx.shape[0]:
            out_idx[m] = k
            out_w[m] = cur - prev
            m += 1
        prev = cur
    return m


@cached_njit
def _project(dep, prm, out):
    x_anode, v, tick, tau, dl, dt = prm[0], prm[1], prm[2], prm[3], prm[4], prm[5]
    box_xi, alpha, w_ion = prm[6], prm[7], prm[8]
    t0, nt, nw = prm[9], prm[10], prm[11]
    height, width = out.shape[1], out.shape[2]
    ci = np.empty(64, np.int64)
    cw = np.empty(64)
    ri = np.empty(64, np.int64)
    rw = np.empty(64)
    for i in range(dep.shape[0]):
        de = dep[i, 3]
        if de <= 0.0:
            continue
        d = dep[i, 0] - x_anode
        if d < 0.0:
            continue
        t = d / v
        xi = box_xi * de / max(dep[i, 4], 0.01)
        if xi < 1e-9:
            xi = 1e-9
        r = math.log(alpha + xi) / xi
        if r <= 0.0:
            continue
        if r > 1.0:
            r = 1.0
        q = de * r / w_ion * math.exp(-t / tau)
        sig_t = math.sqrt(2.0 * dl * t) / (v * tick * nt)
        col = (t / tick - t0) / nt
        nc = _fractions(col, sig_t, width, ci, cw)
        if nc == 0:
            continue
        sig_w = math.sqrt(2.0 * dt * t)
        for p in range(3):
            c, s, pitch, w0 = prm[12 + 4 * p], prm[13 + 4 * p], prm[14 + 4 * p], prm[15 + 4 * p]
            w = c * dep[i, 2] - s * dep[i, 1]
            row = (w / pitch - w0) / nw
            nr = _fractions(row, sig_w / (pitch * nw), height, ri, rw)
            for a in range(nr):
                qa = q * rw[a]
                for b in range(nc):
                    out[p, ri[a], ci[b]] += qa * cw[b]
