"""``cohep import``: events other pipelines wrote, brought to the pixel pitch, charge scale and window
the models were trained on.

A model trained on cohep events expects cohep's conventions: 6 mm x 4 us pixels, kilo-electrons, the
vertex at row 0.3 H and column 0.5 W. Another simulation chain or detector writes other pitches,
other charge units and other windows; scored as they are its events look foreign to the model. The
importer reads three kinds of source (docs/import.md has the exact layouts):

* ``npz``: a NumPy archive (arrays named by ``images`` / ``labels``, axes by ``axes``);
* ``hdf5``: any HDF5 file (dataset paths ``images`` / ``labels``, axes by ``axes``), read in batches;
* ``pixelmap``: a directory of CVN-style pixel maps: one zlib-compressed array per event
  (``<stem>.gz``) and one small text file (``<stem>.info``) whose line ``label_line`` holds its label.
* ``root``: a ROOT TTree read through uproot (no ROOT needed): branch ``images`` holding each event's
  pixel map as a fixed-size array (``float[3][500][500]``, axes by ``axes``, default ``NVWT``) or as a
  jagged one (``std::vector<float>``: a flat map of ``map_shape`` in ``axes`` order, default ``VWT``),
  branch ``labels`` an integer per event; ``tree`` names the TTree (default: the file's only one; an
  RNTuple, the TTree's successor, is read the same way).

and then, per event, in this order:

1. **charge factor** (``charge_factor``): source units -> ke-;
2. **vertex estimate** (``vertex = "charge"``), see :func:`estimate_vertex`;
3. **resampling** (``wire_pitch_mm``, ``time_per_pixel_us``, ``drift_mm_us``): every source pixel is
   an interval in mm; each target pixel receives the charge of the source pixels it overlaps, in
   proportion to the overlap (:func:`rebin_matrix`), so charge is conserved and any ratio of pitches
   works, finer or coarser; the ``size`` window is placed so the vertex estimate lands where cohep's
   events have it (with ``vertex = "centroid"``, the charge's centre at the window's centre, as
   cohep's ``window_centre = "charge"`` for large events; with ``vertex = "none"``, centre on centre);
4. **calibration** (``calibrate = "mip"`` or ``"mip-plane"``): the minimum-ionising peak of
   track-like pixels (:func:`mip_peak`) of the first ``calibration_events`` resampled events is
   measured per plane and the charge scaled so that it lands on cohep's (:data:`MIP_REFERENCE`); one
   factor for all planes (the geometric mean of the planes' ratios) or one per plane.

Every option is a field of :class:`ImportSettings` (validated, errors name ``import.<field>``); a
problem in the source is one :class:`~cohep.core.errors.DataError` line naming the file. The output is
written under a temporary name and renamed at the end, and records what was done in its attributes
(``import`` JSON, ``calibration_factor``, ``mip_peak_source``).
"""
from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from cohep.core.errors import ConfigError, DataError
from cohep.core.settings import Section, setting
from cohep.datasets.events import (
    CLASS_NAMES,
    VIEW_NAMES,
    EventWriter,
    _short,
    check_class_names,
    label_indices,
    read_npz,
)

#: cohep's pixel (``cohep simulate``, MicroBooNE preset): 2 wires of 3 mm, 8 ticks of 0.5 us
TARGET_WIRE_PITCH_MM = 6.0
TARGET_TIME_US = 4.0
#: cohep's drift velocity (mm/us) at 87.5 K and 500 V/cm (``drift_velocity_mm_us`` of its files)
COHEP_DRIFT_MM_US = 1.5903
#: the MIP peak of track-like pixels (ke-) per plane U, V, Y, by :func:`mip_peak` on the first 1,000
#: events of ``events-12k.h5`` (``cohep simulate``, MicroBooNE preset, seed 2026; about 135,000 pixels
#: per plane). Over five blocks of 200 events it spans 37.5-40.9 (U), 37.9-39.9 (V): a broad plateau,
#: the induction wires cross most tracks at an angle; and 31.0-31.6 (Y): a sharp peak.
MIP_REFERENCE = (38.9, 39.2, 31.3)
#: where :func:`estimate_vertex` puts cohep's own events (median over those 1,000 events; the true
#: vertex is at row 60, column 100), as fractions of H (rows = wires, per plane U, V, Y) and W
#: (columns = drift time, all planes): the importer places a source's estimate here, so imported
#: vertices sit where the model saw cohep's
VERTEX_ESTIMATE_ROWS = (58.5 / 200, 56.5 / 200, 61.5 / 200)
VERTEX_ESTIMATE_COLUMN = 100.5 / 200
#: quantile of the significant charge along the wires taken as the vertex row (upstream end)
VERTEX_QUANTILE = 0.05
#: pixels under this fraction of the charge-weighted mean pixel charge are neither significant for
#: the vertex nor candidates for the MIP peak (noise hits, zero-suppression residue)
SIGNIFICANT = 0.1
MIN_MIP_PIXELS = 200


@dataclass(frozen=True)
class ImportSettings(Section):
    """``cohep import`` options (``import.<field>`` in errors)."""

    section: ClassVar[str] = "import"

    format: Literal["auto", "npz", "hdf5", "pixelmap", "root"] = setting(
        "auto", help="auto | npz | hdf5 | pixelmap | root (auto: a directory is pixel maps, .npz, .h5/.hdf5, .root).")
    images: str = setting("images", help="NPZ key, HDF5 dataset path or ROOT branch of the images.")
    labels: str = setting("labels", help="NPZ key, HDF5 dataset path or ROOT branch of the labels.")
    tree: str | None = setting(None, help="ROOT: the TTree holding the branches (default: the file's only TTree).")
    #: axis letters of the stored array: N event, V view/plane, W wire, T time tick (V optional);
    #: None: npz as before (views first or last), hdf5 "NVWT", pixel maps "VWT"
    axes: str | None = setting(None, help="Axis order, letters N V W T (e.g. NVWT, NWTV; pixel maps: VWT).")
    #: pixel maps: the array shape after decompression, in ``axes`` order without N
    map_shape: tuple[int, ...] | None = setting(None, help="Pixel maps: shape of one map, e.g. 3,500,500.")
    map_dtype: Literal["uint8", "uint16", "float32"] = setting("uint8", help="Pixel maps: stored type (little-endian).")
    map_suffix: str = setting(".gz", help="Pixel maps: file name suffix of a map.")
    info_suffix: str = setting(".info", help="Pixel maps: file name suffix of a map's label file.")
    label_line: int = setting(0, ge=0, help="Pixel maps: line of the .info file holding the label (0: first).")
    #: source label -> class name (or index), e.g. CVN interaction codes; unmapped labels are errors
    label_map: dict = setting(factory=dict, help="Source label -> class, e.g. 0=numu_CC,1=nue_CC,2=NC.")
    class_names: tuple[str, ...] | None = setting(None, help="Class names, one per class (default: NC, numu_CC, nue_CC "
        "for 3 classes or wire planes, else class_0, class_1, ...).")
    flip: str = setting("", help="Axes to reverse (letters W, T) so wires run downstream and time forward.")
    wire_pitch_mm: float | None = setting(None, gt=0, help="Source pixel pitch along the wires, mm.")
    time_per_pixel_us: float | None = setting(None, gt=0, help="Source time per pixel, microseconds.")
    drift_mm_us: float = setting(COHEP_DRIFT_MM_US, gt=0, help="Source drift velocity, mm/us.")
    size: tuple[int, int] | None = setting(None, help="Output window H,W (e.g. 200,200); default: as resampled.")
    vertex: Literal["charge", "centroid", "none"] = setting(
        "charge", help="Window placement: charge (vertex estimate) | centroid (the charge's centre at the window's "
                       "centre, as cohep's window_centre = \"charge\") | none (centre).")
    charge_unit: str = setting("as imported", help="Name of the source's charge unit (recorded).")
    charge_factor: float | None = setting(None, gt=0, help="Source charge unit -> ke- factor.")
    calibrate: Literal["none", "mip", "mip-plane"] = setting("none", help="none | mip | mip-plane: scale to cohep's MIP peak.")
    calibration_events: int = setting(500, ge=1, help="Events measured for the MIP calibration.")
    limit: int | None = setting(None, ge=1, help="Import only the first N events.")

    def check(self) -> None:
        if self.axes is not None:
            letters = self.axes.upper()
            if len(set(letters)) != len(letters) or not set("WT") <= set(letters) or not set(letters) <= set("NVWT"):
                raise ConfigError(f"import.axes must hold W and T, optionally N and V, each once, got {self.axes!r}")
        if self.map_shape is not None and (len(self.map_shape) not in (2, 3) or min(self.map_shape) < 1):
            raise ConfigError(f"import.map_shape must be 2 or 3 positive sizes, got {list(self.map_shape)}")
        if set(self.flip.upper()) - set("WT"):
            raise ConfigError(f"import.flip may hold only W and T, got {self.flip!r}")
        if self.size is not None and min(self.size) < 1:
            raise ConfigError(f"import.size must be two positive sizes, got {list(self.size)}")
        if self.charge_factor is not None and self.calibrate != "none":
            raise ConfigError("import.charge_factor and import.calibrate exclude each other: give one")
        if not self.map_suffix or not self.info_suffix or self.map_suffix == self.info_suffix:
            raise ConfigError("import.map_suffix and import.info_suffix must be two different, non-empty suffixes")
        for key, value in self.label_map.items():
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise ConfigError(f"import.label_map.{key} must be a class name or index, got {value!r}")

    @property
    def resamples(self) -> bool:
        return self.wire_pitch_mm is not None or self.time_per_pixel_us is not None


@dataclass
class ImportSummary:
    """What an import did (printed by the CLI, stored in the file's ``import`` attribute)."""

    path: Path
    source: str
    format: str
    events: int
    class_counts: dict[str, int]
    source_shape: list[int]
    shape: list[int]
    scale_wire: float  #: source pixel / target pixel along the wires (1: not resampled)
    scale_time: float
    vertex: str
    calibration: str
    calibration_factor: list[float]  #: per plane, source unit -> ke-
    mip_peak_source: list[float] = field(default_factory=list)  #: per plane, source unit (after resampling)

    def lines(self) -> list[str]:
        out = [f"wrote {self.path}: {self.events} events from {self.source} ({self.format})",
               "classes: " + ", ".join(f"{k} {v}" for k, v in self.class_counts.items()),
               (f"shape {'x'.join(map(str, self.source_shape))} -> {'x'.join(map(str, self.shape))}; pixel "
                f"scale wire {self.scale_wire:.4g}, time {self.scale_time:.4g}; window: {self.vertex}")]
        if self.calibration.startswith("mip"):
            peaks = ", ".join(f"{p:.4g}" for p in self.mip_peak_source)
            out.append(f"calibration {self.calibration}: MIP peak per plane {peaks} (source units) -> "
                       f"reference {', '.join(f'{r:g}' for r in MIP_REFERENCE[:len(self.mip_peak_source)])} ke-; "
                       f"factor {', '.join(f'{f:.4g}' for f in self.calibration_factor)}")
        else:
            out.append(f"calibration {self.calibration}: factor {', '.join(f'{f:.4g}' for f in self.calibration_factor)}")
        return out


def parse_sizes(text: str | None, name: str) -> list[int] | None:
    """``"3,500,500"`` -> ``[3, 500, 500]`` (None passes); one line naming ``import.<name>`` otherwise."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise ConfigError(f"import.{name} must be comma-separated integers, got {text!r}") from None


def parse_label_map(text: str | None) -> dict | None:
    """``"0=numu_CC,1=nue_CC"`` -> ``{"0": "numu_CC", "1": "nue_CC"}`` (None passes)."""
    if text is None:
        return None
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"import.label_map must be SOURCE=CLASS pairs separated by commas, got {part!r}")
        out[key.strip()] = value.strip()
    return out


# -- geometry --------------------------------------------------------------------------------------
def rebin_matrix(n_in: int, n_out: int, pitch_in: float, pitch_out: float, anchor_in: float,
                 anchor_out: float) -> np.ndarray:
    """``M [n_out, n_in]``: the share of source pixel i's charge that target pixel j receives.

    Source pixel ``i`` spans ``[(i - anchor_in), (i + 1 - anchor_in)) * pitch_in`` mm, target pixel ``j``
    spans ``[(j - anchor_out), (j + 1 - anchor_out)) * pitch_out`` mm (the anchors, in pixels, are the
    same physical point); ``M[j, i]`` is their overlap over the source pixel's length. Columns sum to
    1 where the source pixel lies inside the target window: charge is conserved.
    """
    lo_in = (np.arange(n_in) - anchor_in) * pitch_in
    lo_out = (np.arange(n_out) - anchor_out) * pitch_out
    overlap = (np.minimum(lo_out[:, None] + pitch_out, lo_in[None, :] + pitch_in)
               - np.maximum(lo_out[:, None], lo_in[None, :]))
    return np.clip(overlap, 0.0, None) / pitch_in


def significant(image: np.ndarray) -> np.ndarray:
    """The pixels at or above :data:`SIGNIFICANT` of the charge-weighted mean (others 0)."""
    z = np.clip(image, 0.0, None)
    total = z.sum()
    if total <= 0:
        return z
    weighted = float((z * z).sum() / total)
    return np.where(z >= SIGNIFICANT * weighted, z, 0.0)


def charge_centre(image: np.ndarray) -> tuple[list[float], float]:
    """The centre of an event's charge ``[V, W, T]``: per plane the median row of its significant
    charge, and the charge-weighted median column over all planes (continuous pixel units). A window
    centred here holds the most of a large event's activity; cohep's ``window_centre = "charge"`` and
    the import's ``vertex = "centroid"`` both place it at the window's centre."""
    planes = [significant(p) for p in image]
    rows = [_quantile(p.sum(axis=1), 0.5) for p in planes]
    column = _quantile(sum(p.sum(axis=0) for p in planes), 0.5)
    return rows, column


def _quantile(profile: np.ndarray, q: float) -> float:
    c = np.cumsum(profile)
    if c[-1] <= 0:
        return len(profile) / 2.0
    return float(np.searchsorted(c, q * c[-1])) + 0.5


def estimate_vertex(image: np.ndarray) -> tuple[list[float], float]:
    """A charge-weighted vertex estimate of one event ``[V, W, T]``: per plane a row, one column.

    Only significant pixels count (:func:`significant`, per plane). The row (wire) of each plane is
    the :data:`VERTEX_QUANTILE` quantile of its charge along the wires (the upstream end of the
    activity: wires must run downstream, see ``flip``); the column (drift time) is the charge-weighted
    median over all planes. In continuous pixel units (a pixel's centre is ``i + 0.5``). On cohep's
    events the estimate's median sits at :data:`VERTEX_ESTIMATE_ROWS` / :data:`VERTEX_ESTIMATE_COLUMN`,
    with a median absolute deviation of 8, 9, 6 pixels (U, V, Y rows) and 9 pixels (column).
    """
    planes = [significant(p) for p in image]
    rows = [_quantile(p.sum(axis=1), VERTEX_QUANTILE) for p in planes]
    column = _quantile(sum(p.sum(axis=0) for p in planes), 0.5)
    return rows, column


# -- calibration -------------------------------------------------------------------------------------
def track_like(plane: np.ndarray) -> np.ndarray:
    """The charges of a plane's track-like pixels: significant, with 1 to 3 significant neighbours
    (of 8): a pixel on a line has one or two, a shower core or a blob more, a noise hit none."""
    keep = significant(plane) > 0
    padded = np.pad(keep, 1).astype(np.int8)
    h, w = keep.shape
    neighbours = sum(padded[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
                     for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc)
    return plane[keep & (neighbours >= 1) & (neighbours <= 3)]


def mip_peak(values: np.ndarray) -> float:
    """A robust peak of per-pixel charges: a mean shift in log charge. Starting from the median log
    charge, the estimate moves to the mean of the log charges within +-0.3 (a factor 1.35) of it until
    it settles, so the tails (delta rays, Bragg peaks, charge shared with a neighbouring pixel) do not
    pull it. A mean, not a median: integer-valued maps (ADC counts) would snap a median to one level."""
    logs = np.log(values[values > 0].astype(np.float64))
    if len(logs) == 0:
        return math.nan
    peak = float(np.median(logs))
    for _ in range(50):
        near = logs[np.abs(logs - peak) <= 0.3]
        if len(near) == 0:
            break
        moved = float(near.mean())
        if abs(moved - peak) < 1e-6:
            break
        peak = moved
    return float(math.exp(peak))


# -- what the imported images are -------------------------------------------------------------------
def wire_planes(attrs) -> bool:
    """Whether an event file's images are LArTPC wire planes, so that ``[train.augment]`` (a vertex, a
    wire, a pitch) means something for them: the simulator's files and imports of wire planes are;
    imports of other images are not. ``cohep import`` records its answer (``wire_planes``); for older
    imports it is read from what they record: a resampled pitch, a charge calibration, pixel maps,
    or the neutrino class names."""
    if "wire_planes" in attrs:
        return bool(attrs["wire_planes"])
    if attrs.get("generator") != "cohep import":
        return True
    pitch = np.asarray(attrs.get("pixel_pitch_mm", []), dtype=np.float64)
    return bool(np.isfinite(pitch).any() or attrs.get("calibration", "none") not in ("none", "")
                or '"pixelmap"' in str(attrs.get("config", "")) or _neutrino(attrs.get("class_names") or []))


def _neutrino(names) -> bool:
    return bool(names) and set(names) <= set(CLASS_NAMES)


def _detector_facts(settings: "ImportSettings") -> bool:
    """Whether the import is told a detector's facts (a pitch, a time per pixel, a charge calibration)."""
    return settings.resamples or settings.calibrate != "none" or settings.charge_factor is not None


def _imports_wire_planes(settings: "ImportSettings", fmt: str, names: list[str]) -> bool:
    """An import is of wire planes when it is told detector facts, reads pixel maps (CVN's format) or
    names neutrino classes; a generic image set is none of these."""
    return fmt == "pixelmap" or _detector_facts(settings) or _neutrino(names)


def default_class_names(found: int, *, neutrino: bool = False) -> list[str]:
    """Names for ``found`` classes none were given for: NC / numu_CC / nue_CC for three or for wire
    planes (a sample may lack a flavour), else ``class_0``, ``class_1``... (a two-class image set is not
    two flavours and an empty third)."""
    if neutrino or found == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class_{i}" for i in range(found)]


def fit_class_names(src, names: list[str] | None, labels: np.ndarray, *, neutrino: bool = False) -> list[str]:
    """The class names for integer class indices ``labels``: those given (by the user or the file) must
    be one per class found (labels 0..K-1; the neutrino names may miss a flavour); none given,
    :func:`default_class_names`."""
    found = int(labels.max()) + 1 if len(labels) else 0
    if names is None:
        names = default_class_names(found, neutrino=neutrino)
    elif len(names) != found and not (list(names) == list(CLASS_NAMES) and found <= len(names)):
        raise DataError(f"{src}: {len(names)} class names ({', '.join(names)}) for {found} classes in the labels "
                        f"(0..{found - 1}); give {found} names with --class-names")
    return check_class_names(src, names)


def _names_to_check(given: list[str] | None, raw, neutrino: bool) -> list[str] | None:
    """The names to read labels ``raw`` against: those given, else (numbers) enough generic ones for
    the largest label (the count is checked after by :func:`fit_class_names`); None: the default."""
    if given is not None or neutrino or raw is None or raw.dtype.kind not in "iuf" or not raw.size:
        return given
    top = float(np.nanmax(raw)) if np.isfinite(raw).any() else 0.0
    return default_class_names(int(top) + 1) if 1 <= top < 10_000 else None


def _npz_given_names(path: Path, settings: "ImportSettings") -> tuple[list[str] | None, np.ndarray | None]:
    """The class names given (``--class-names``, else the file's ``class_names``) and the raw labels
    (None when missing: read_npz says so)."""
    from cohep.datasets.events import _load_npz

    with _load_npz(path) as data:
        keys = set(getattr(data, "files", []))
        try:
            raw = data[settings.labels] if settings.labels in keys else None
            file_names = data["class_names"] if "class_names" in keys else None
        except ValueError:  # object arrays: read_npz says so
            return None, None
    if settings.class_names is not None:
        return list(settings.class_names), raw
    if file_names is not None and file_names.ndim == 1 and file_names.dtype.kind in "US":
        return [str(s) for s in file_names.tolist()], raw
    return None, raw


# -- sources ---------------------------------------------------------------------------------------
@dataclass
class _Source:
    """Events as ``[V, W, T]`` float32 arrays with int labels, in order."""

    name: str
    n: int
    class_names: list[str]
    view_shape: tuple[int, int, int]
    events: Iterator[tuple[np.ndarray, int]]
    #: the stored values are exact in float16 (float16, or integers up to 2048): kept as float16 when
    #: nothing is resampled or scaled
    exact16: bool = False
    #: the stored values are integers (ADC counts): dithered for the MIP measurement, see import_events
    integer: bool = False


def _kind(path: Path, settings: ImportSettings) -> str:
    if settings.format != "auto":
        return settings.format
    if path.is_dir():
        return "pixelmap"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".h5", ".hdf5", ".hdf"):
        return "hdf5"
    if suffix == ".root":
        return "root"
    raise DataError(f"{path}: cannot tell the format from the name; give --format npz, hdf5, pixelmap or root")


def _to_vwt(array: np.ndarray, axes: str, where: str) -> np.ndarray:
    """One event's array laid out as ``axes`` (no N) -> ``[V, W, T]``."""
    letters = axes.upper().replace("N", "")
    if array.ndim != len(letters):
        raise DataError(f"{where}: an event has {array.ndim} axes, axes {axes!r} describes {len(letters)}")
    if "V" not in letters:
        array, letters = array[None], "V" + letters
    return np.transpose(array, [letters.index(c) for c in "VWT"])


def _label_lookup(settings: ImportSettings, names: list[str], where: str):
    """source label (str) -> class index, through ``label_map`` when given."""
    index = {name: i for i, name in enumerate(names)}

    def to_class(value, origin: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < len(names):
                return value
            raise DataError(f"{origin}: class index {value} outside [0, {len(names)}) for classes {names}")
        text = str(value).strip()
        if text in index:
            return index[text]
        try:
            number = int(text)
        except ValueError:
            raise DataError(f"{origin}: label {text!r} is not one of {names} nor a class index") from None
        return to_class(number, origin)

    mapped = {str(k).strip(): to_class(v, f"import.label_map.{k}") for k, v in settings.label_map.items()}

    def lookup(label, origin: str) -> int:
        key = label.decode() if isinstance(label, bytes) else str(label)
        key = key.strip()
        if mapped:
            if key not in mapped:
                raise DataError(f"{origin}: label {key!r} is not in import.label_map ({', '.join(mapped)})")
            return mapped[key]
        return to_class(key, origin)

    return lookup


def _npz_source(path: Path, settings: ImportSettings) -> _Source:
    if settings.label_map:  # the map names the classes
        names = check_class_names(path, settings.class_names)
        images, labels = _npz_arrays(path, settings, names)
    else:
        given, raw = _npz_given_names(path, settings)
        neutrino = _detector_facts(settings)
        names = check_class_names(path, _names_to_check(given, raw, neutrino))
        if settings.axes is None:  # the plain import: read_npz's shape rules
            images, labels, names, _ = read_npz(path, class_names=names, images_key=settings.images,
                                                labels_key=settings.labels)
        else:
            images, labels = _npz_arrays(path, settings, names)
        if raw is not None and raw.dtype.kind in "iuf":  # (names label themselves)
            names = fit_class_names(path, given, labels, neutrino=neutrino)
    n = len(images) if settings.limit is None else min(len(images), settings.limit)
    exact16 = images.dtype == np.float16 or (images.dtype.kind in "iub" and np.abs(images).max(initial=0) <= 2048)
    return _Source(str(path), n, names, tuple(images.shape[1:]),
                   ((np.asarray(images[i], dtype=np.float32), int(labels[i])) for i in range(n)), exact16,
                   images.dtype.kind in "iub")


def _npz_arrays(path: Path, settings: ImportSettings, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """NPZ images as ``[N, V, W, T]`` laid out by ``axes`` (or read_npz's rules), labels through ``label_map``."""
    from cohep.datasets.events import IMPORT_SHAPES, _load_npz, to_nvhw

    with _load_npz(path) as data:
        for key in (settings.images, settings.labels):
            if key not in data.files:
                raise DataError(f"{path}: missing field '{key}' (found: {', '.join(sorted(data.files)) or 'nothing'})")
        try:
            images, raw = data[settings.images], data[settings.labels]
        except ValueError as exc:
            raise DataError(f"{path}: field holds Python objects, not numbers ({_short(exc)})") from None
    if images.dtype.kind not in "fiub":
        raise DataError(f"{path}: field '{settings.images}' must be numeric, got dtype {images.dtype}")
    if settings.axes is not None:
        if "N" not in settings.axes.upper():
            raise DataError(f"{path}: an NPZ holds many events: import.axes must contain N, got {settings.axes!r}")
        nvhw = settings.axes.upper().replace("W", "H").replace("T", "W")  # to_nvhw's letters: H rows, W columns
    elif images.ndim == 3:
        nvhw = "NHW"
    elif images.ndim == 4 and images.shape[1] in (1, 3):
        nvhw = "NVHW"
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        nvhw = "NHWV"
    else:
        raise DataError(f"{path}: field '{settings.images}' has shape {images.shape}; accepted: {IMPORT_SHAPES}")
    images = to_nvhw(path, images, nvhw, settings.images)
    if len(images) < 1:
        raise DataError(f"{path}: field '{settings.images}' holds no events")
    if raw.ndim != 1 or len(raw) != len(images):
        raise DataError(f"{path}: field '{settings.labels}' must have shape ({len(images)},), got {raw.shape}")
    if settings.label_map:
        lookup = _label_lookup(settings, names, str(path))
        labels = np.array([lookup(v, f"{path}: event {i}") for i, v in enumerate(raw.tolist())], dtype=np.int64)
    else:
        labels = label_indices(path, raw, len(images), names, settings.labels)
    return images, labels


def _hdf5_source(path: Path, settings: ImportSettings) -> _Source:
    import h5py

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({_short(exc)})") from None
    try:
        for key in (settings.images, settings.labels):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise DataError(f"{path}: no dataset '{key}' (give --images / --labels)")
        images, raw = f[settings.images], f[settings.labels][()]
        axes = (settings.axes or "NVWT").upper()
        if "N" not in axes or images.ndim != len(axes):
            raise DataError(f"{path}: dataset '{settings.images}' has shape {images.shape}, which axes "
                            f"{axes!r} (with N) does not describe")
        if images.dtype.kind not in "fiu":
            raise DataError(f"{path}: dataset '{settings.images}' must be numeric, got {images.dtype}")
        n_axis = axes.index("N")
        n = images.shape[n_axis]
        if n < 1:
            raise DataError(f"{path}: dataset '{settings.images}' holds no events")
        given = list(settings.class_names) if settings.class_names is not None else None
        if given is None and "class_names" in f.attrs:
            given = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(f.attrs["class_names"])]
        names, labels = _labels_of(path, settings, raw, n, given, "dataset")
        event_axes = axes.replace("N", "")
        shape = [s for i, s in enumerate(images.shape) if i != n_axis]
        view_shape = _to_vwt(np.empty(shape, dtype=np.uint8), event_axes, str(path)).shape
    except BaseException:
        f.close()
        raise
    count = n if settings.limit is None else min(n, settings.limit)

    def events():
        try:
            for a in range(0, count, 64):
                b = min(count, a + 64)
                index = [slice(None)] * images.ndim
                index[n_axis] = slice(a, b)
                try:
                    block = np.moveaxis(np.asarray(images[tuple(index)], dtype=np.float32), n_axis, 0)
                except OSError as exc:
                    raise DataError(f"{path}: cannot read events {a}..{b - 1} ({_short(exc)})") from None
                for k in range(b - a):
                    yield _to_vwt(block[k], event_axes, str(path)), int(labels[a + k])
        finally:
            f.close()

    return _Source(str(path), count, names, view_shape, events(), images.dtype == np.float16,
                   images.dtype.kind in "iu")


def _labels_of(path: Path, settings: ImportSettings, raw: np.ndarray, n: int, given: list[str] | None,
               what: str) -> tuple[list[str], np.ndarray]:
    """Class names and class indices of the raw labels of an HDF5 dataset or a ROOT branch."""
    neutrino = _detector_facts(settings)
    names = check_class_names(path, given if settings.label_map else _names_to_check(given, raw, neutrino))
    if settings.label_map:
        lookup = _label_lookup(settings, names, str(path))
        if raw.ndim != 1 or len(raw) != n:
            raise DataError(f"{path}: {what} '{settings.labels}' must have shape ({n},), got {raw.shape}")
        return names, np.array([lookup(v, f"{path}: event {i}") for i, v in enumerate(raw.tolist())], dtype=np.int64)
    labels = label_indices(path, raw, n, names, settings.labels)
    if raw.dtype.kind in "iuf":  # names label themselves
        names = fit_class_names(path, given, labels, neutrino=neutrino)
    return names, labels


#: events read from a ROOT file per request
ROOT_STEP = 64
#: what holds the branches: a TTree (or TNtuple), or its successor RNTuple (uproot's default when writing)
TREE_CLASSES = ("TTree", "TNtuple", "ROOT::RNTuple")


def _root_tree(path: Path, settings: ImportSettings):
    import uproot

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        f = uproot.open(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable ROOT file ({_short(exc)})") from None
    trees = [k.split(";")[0] for k, c in f.classnames().items() if c.startswith(TREE_CLASSES)]
    trees = list(dict.fromkeys(trees))
    name = settings.tree
    if name is None:
        if len(trees) != 1:
            raise DataError(f"{path}: {len(trees)} TTrees ({', '.join(trees) or 'none'}); name one with --tree")
        name = trees[0]
    if name not in trees:
        raise DataError(f"{path}: no TTree '{name}' (it has: {', '.join(trees) or 'none'})")
    tree = f[name]
    for branch in (settings.images, settings.labels):
        if branch not in tree.keys():
            raise DataError(f"{path}: TTree '{name}' has no branch '{branch}' (it has: {', '.join(tree.keys())}; "
                            "give --images / --labels)")
    return f, tree


def _root_source(path: Path, settings: ImportSettings) -> _Source:
    import awkward as ak

    f, tree = _root_tree(path, settings)
    try:
        n = int(tree.num_entries)
        if n < 1:
            raise DataError(f"{path}: TTree '{tree.name}' holds no events")
        raw = np.asarray(tree[settings.labels].array(library="np"))
        if raw.dtype == object:
            raise DataError(f"{path}: branch '{settings.labels}' must hold one label per event")
        names, labels = _labels_of(path, settings, raw, n, list(settings.class_names) if settings.class_names else None,
                                   "branch")
        first = tree[settings.images].array(library="ak", entry_start=0, entry_stop=1)
        jagged = not isinstance(ak.type(first).content, ak.types.RegularType) and first.ndim == 2
        if jagged:
            if settings.map_shape is None:
                raise DataError(f"{path}: branch '{settings.images}' is jagged (a flat map per event): give "
                                "--map-shape (e.g. 3,500,500)")
            shape = tuple(settings.map_shape)
            axes = (settings.axes or ("VWT" if len(shape) == 3 else "WT")).upper()
            if "N" in axes or len(axes) != len(shape):
                raise DataError(f"{path}: import.axes {axes!r} must describe one map of shape {list(shape)} (no N)")
        else:
            shape = tuple(int(v) for v in np.asarray(ak.to_numpy(first)).shape[1:])
            axes = (settings.axes or ("NVWT" if len(shape) == 3 else "NWT")).upper().replace("N", "")
            if len(axes) != len(shape):
                raise DataError(f"{path}: branch '{settings.images}' holds events of shape {list(shape)}, which axes "
                                f"{axes!r} does not describe")
        view_shape = _to_vwt(np.empty(shape, dtype=np.uint8), axes, str(path)).shape
        kind = np.asarray(ak.to_numpy(ak.flatten(first, axis=None))).dtype
    except BaseException:
        f.close()
        raise
    count = n if settings.limit is None else min(n, settings.limit)
    size = int(np.prod(shape))

    def events():
        try:
            for a in range(0, count, ROOT_STEP):
                b = min(count, a + ROOT_STEP)
                try:
                    block = tree[settings.images].array(library="ak", entry_start=a, entry_stop=b)
                except (OSError, ValueError) as exc:
                    raise DataError(f"{path}: cannot read events {a}..{b - 1} ({_short(exc)})") from None
                for k in range(b - a):
                    flat = np.asarray(ak.to_numpy(ak.flatten(block[k], axis=None)), dtype=np.float32)
                    if flat.size != size:
                        raise DataError(f"{path}: event {a + k} holds {flat.size} pixels, a map of shape {list(shape)} "
                                        f"is {size}")
                    yield _to_vwt(flat.reshape(shape), axes, f"{path}: event {a + k}"), int(labels[a + k])
        finally:
            f.close()

    return _Source(str(path), count, names, view_shape, events(), kind == np.float16 or (kind.kind in "iu" and
                   kind.itemsize == 1), kind.kind in "iu")


def _pixelmap_source(path: Path, settings: ImportSettings) -> _Source:
    if not path.is_dir():
        raise DataError(f"{path}: not a directory of pixel maps")
    if settings.map_shape is None:
        raise DataError(f"{path}: pixel maps need import.map_shape (e.g. --map-shape 3,500,500)")
    axes = (settings.axes or ("VWT" if len(settings.map_shape) == 3 else "WT")).upper()
    if "N" in axes or len(axes) != len(settings.map_shape):
        raise DataError(f"{path}: import.axes {axes!r} must describe one map of shape {list(settings.map_shape)} (no N)")
    maps = sorted(p for p in path.iterdir() if p.name.endswith(settings.map_suffix) and p.is_file())
    if not maps:
        raise DataError(f"{path}: no pixel maps (*{settings.map_suffix})")
    if settings.limit is not None:
        maps = maps[: settings.limit]
    names = check_class_names(path, settings.class_names)
    lookup = _label_lookup(settings, names, str(path))
    dtype = np.dtype(settings.map_dtype).newbyteorder("<")
    expected = int(np.prod(settings.map_shape)) * dtype.itemsize
    labels = []
    for m in maps:  # every label first: a bad label file fails before anything is written
        info = m.with_name(m.name[: -len(settings.map_suffix)] + settings.info_suffix)
        try:
            lines = info.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(f"{info}: missing label file for {m.name}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{info}: cannot read ({_short(exc)})") from None
        if len(lines) <= settings.label_line or not lines[settings.label_line].strip():
            raise DataError(f"{info}: no label on line {settings.label_line + 1}")
        labels.append(lookup(lines[settings.label_line].split()[0], str(info)))
    view_shape = _to_vwt(np.empty(settings.map_shape, dtype=np.uint8), axes, str(path)).shape

    def events():
        for m, label in zip(maps, labels):
            try:
                inflater = zlib.decompressobj(wbits=47)  # zlib or gzip header
                raw = inflater.decompress(m.read_bytes(), expected + 1)
            except (OSError, zlib.error) as exc:
                raise DataError(f"{m}: not a zlib-compressed pixel map ({_short(exc)})") from None
            if len(raw) != expected or inflater.unconsumed_tail:
                raise DataError(f"{m}: holds {len(raw)}{'+' if inflater.unconsumed_tail else ''} bytes, a "
                                f"{settings.map_dtype} map of shape {list(settings.map_shape)} is {expected}")
            array = np.frombuffer(raw, dtype=dtype).reshape(settings.map_shape).astype(np.float32)
            yield _to_vwt(array, axes, str(m)), label

    return _Source(str(path), len(maps), names, view_shape, events(), settings.map_dtype == "uint8",
                   settings.map_dtype != "float32")


def open_source(path: str | os.PathLike, settings: ImportSettings) -> _Source:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    kind = _kind(p, settings)
    if kind == "npz":
        return _npz_source(p, settings)
    if kind == "hdf5":
        return _hdf5_source(p, settings)
    if kind == "root":
        return _root_source(p, settings)
    return _pixelmap_source(p, settings)


# -- the transform ----------------------------------------------------------------------------------
class _Transform:
    """Flip, charge factor, vertex, resampling and window for one source's events."""

    def __init__(self, settings: ImportSettings, view_shape: tuple[int, int, int]):
        self.s = settings
        v, w, t = view_shape
        self.scale_wire = (settings.wire_pitch_mm or TARGET_WIRE_PITCH_MM) / TARGET_WIRE_PITCH_MM
        source_time_mm = (settings.time_per_pixel_us or TARGET_TIME_US) * settings.drift_mm_us
        target_time_mm = TARGET_TIME_US * COHEP_DRIFT_MM_US if settings.time_per_pixel_us else source_time_mm
        self.pitch_wire = (settings.wire_pitch_mm or TARGET_WIRE_PITCH_MM, TARGET_WIRE_PITCH_MM)
        self.pitch_time = (source_time_mm, target_time_mm)
        self.scale_time = source_time_mm / target_time_mm
        resampled = (max(1, round(w * self.scale_wire)), max(1, round(t * self.scale_time)))
        self.shape = (v, *(settings.size or resampled))
        self.window = settings.size is not None
        self.identity = not settings.resamples and not self.window

    def __call__(self, image: np.ndarray, where: str) -> np.ndarray:
        if not np.all(np.isfinite(image)):
            raise DataError(f"{where}: NaN or infinite values")
        if "W" in self.s.flip.upper():
            image = image[:, ::-1, :]
        if "T" in self.s.flip.upper():
            image = image[:, :, ::-1]
        image = np.clip(image, 0.0, None)
        if self.s.charge_factor is not None:
            image = image * np.float32(self.s.charge_factor)
        if self.identity:
            return np.ascontiguousarray(image, dtype=np.float32)
        v, h, w = self.shape
        _, n_w, n_t = image.shape
        if self.window and self.s.vertex == "charge":
            rows, column = estimate_vertex(image)
            out_rows = [VERTEX_ESTIMATE_ROWS[i % 3] * h for i in range(v)]
            out_column = VERTEX_ESTIMATE_COLUMN * w
        elif self.window and self.s.vertex == "centroid":
            rows, column = charge_centre(image)
            out_rows, out_column = [h / 2.0] * v, w / 2.0
        elif self.window:  # centre on centre
            rows, column = [n_w / 2.0] * v, n_t / 2.0
            out_rows, out_column = [h / 2.0] * v, w / 2.0
        else:  # resampled, aligned at the first pixel
            rows, column, out_rows, out_column = [0.0] * v, 0.0, [0.0] * v, 0.0
        time = rebin_matrix(n_t, w, *self.pitch_time, column, out_column).astype(np.float32)
        out = np.empty((v, h, w), dtype=np.float32)
        for p in range(v):
            wire = rebin_matrix(n_w, h, *self.pitch_wire, rows[p], out_rows[p]).astype(np.float32)
            out[p] = wire @ image[p] @ time.T
        return out


def import_events(src: str | os.PathLike, out: str | os.PathLike, settings: ImportSettings = ImportSettings(),
                  *, batch: int = 64) -> ImportSummary:
    """Import ``src`` into the HDF5 event file ``out`` (atomically); returns what was done."""
    if not isinstance(settings, ImportSettings):
        raise TypeError(f"settings must be ImportSettings, got {type(settings).__name__}")
    source = open_source(src, settings)
    transform = _Transform(settings, source.view_shape)
    v = transform.shape[0]
    if settings.calibrate != "none" and v > len(MIP_REFERENCE):
        raise DataError(f"{src}: MIP calibration knows {len(MIP_REFERENCE)} planes (U, V, Y), the source has {v}")
    events = source.events
    head: list[tuple[np.ndarray, int]] = []
    factors = [float(settings.charge_factor or 1.0)] * v
    peaks: list[float] = []
    if settings.calibrate != "none":
        pixels: list[list[np.ndarray]] = [[] for _ in range(v)]
        dither = np.random.default_rng(0)
        for i, (image, label) in zip(range(settings.calibration_events), events):
            where = f"{source.name}: event {i}"
            done = transform(image, where)
            head.append((done, label))
            if source.integer:
                # integer counts would bias the peak by a few % (the selection and the mean shift see
                # steps, not a density): measure on a copy with every count spread over +-1/2
                image = image + (image != 0) * dither.uniform(-0.5, 0.5, image.shape).astype(np.float32)
                done = transform(image, where)
            for p in range(v):
                pixels[p].append(track_like(done[p]))
        for p in range(v):
            values = np.concatenate(pixels[p]) if pixels[p] else np.zeros(0, np.float32)
            if len(values) < MIN_MIP_PIXELS:
                raise DataError(f"{src}: plane {p}: {len(values)} track-like pixels in the first {len(head)} events, "
                                f"too few to calibrate (need {MIN_MIP_PIXELS}); give --charge-factor instead")
            peaks.append(mip_peak(values))
        ratios = [MIP_REFERENCE[p] / peaks[p] for p in range(v)]
        factors = ratios if settings.calibrate == "mip-plane" else [float(np.exp(np.mean(np.log(ratios))))] * v
    # a given charge factor is applied in the transform (before the vertex estimate); a measured one here
    scale = np.asarray(factors if settings.calibrate != "none" else [1.0] * v, dtype=np.float32)[:, None, None]

    counts = np.zeros(len(source.class_names), dtype=np.int64)
    unit = "ke-" if (settings.charge_factor is not None or settings.calibrate != "none") else settings.charge_unit
    summary_info = {"source": Path(source.name).name, "format": _kind(Path(src), settings),
                    "settings": _jsonable(asdict(settings))}
    views = list(VIEW_NAMES) if v == 3 else [f"view{i}" for i in range(v)]
    pitch = [TARGET_WIRE_PITCH_MM if settings.wire_pitch_mm else math.nan,
             TARGET_TIME_US * COHEP_DRIFT_MM_US if settings.time_per_pixel_us else math.nan]
    attrs = {
        "class_names": source.class_names,
        "view_names": views,
        "generator": "cohep import",
        "wire_planes": int(_imports_wire_planes(settings, summary_info["format"], source.class_names)),
        "image_unit": unit,
        "pixel_pitch_mm": np.array(pitch, dtype=np.float64),
        "calibration": settings.calibrate if settings.calibrate != "none" else
        ("factor" if settings.charge_factor is not None else "none"),
        "calibration_factor": np.array(factors, dtype=np.float64),
        "mip_peak_source": np.array(peaks or [math.nan] * v, dtype=np.float64),
        "config": summary_info,
    }

    def finished():
        for done, label in head:
            yield done * scale, label
        for i, (image, label) in enumerate(events, start=len(head)):
            yield transform(image, f"{source.name}: event {i}") * scale, label

    plain = transform.identity and settings.charge_factor is None and settings.calibrate == "none"
    dtype = "float16" if plain and source.exact16 else "float32"
    with EventWriter(out, n_events=source.n, image_shape=transform.shape, dtype=dtype, attrs=attrs,
                     truth_fields={}) as writer:
        buf_x, buf_y = [], []
        for image, label in finished():
            buf_x.append(image)
            buf_y.append(label)
            counts[label] += 1
            if len(buf_x) == batch:
                writer.write(np.stack(buf_x), np.asarray(buf_y, dtype=np.int64))
                buf_x, buf_y = [], []
        if buf_x:
            writer.write(np.stack(buf_x), np.asarray(buf_y, dtype=np.int64))
    return ImportSummary(
        path=Path(out), source=source.name, format=summary_info["format"], events=source.n,
        class_counts={name: int(c) for name, c in zip(source.class_names, counts)},
        source_shape=list(source.view_shape), shape=list(transform.shape),
        scale_wire=transform.scale_wire, scale_time=transform.scale_time,
        vertex=("charge-weighted vertex estimate" if settings.vertex == "charge"
                else "charge centre at the window centre" if settings.vertex == "centroid" else "centred")
        if transform.window else "as the source",
        calibration=attrs["calibration"], calibration_factor=factors, mip_peak_source=peaks,
    )


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
