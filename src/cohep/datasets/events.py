"""The HDF5 event format: simulated or imported wire-plane images with labels and truth.

Layout (the one format every data set enters through, docs/architecture.md)::

    /images          float16 | float32 [N, C, H, W]  views U, V, Y; one event per chunk, gzip level 1
    /labels          int64 [N]                        index into attrs["class_names"]
    /truth/<field>   [N]                              generator truth (unit in the dataset attribute "unit")
    attrs: class_names, view_names, pixel_pitch_mm, tick_us, generator, version, config (JSON),
           seed, created, image_unit

Writing is atomic (a temporary name renamed on a clean exit) and, for a fixed content, byte for
byte reproducible: no object timestamps, chunks written in order, ``created`` taken from
``SOURCE_DATE_EPOCH`` when set (a simulated file has no other time in it: empty otherwise).
Reading validates the file and raises
:class:`cohep.core.errors.DataError` naming the file and the problem.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import zlib
from pathlib import Path
from collections.abc import Iterable, Sequence

import numpy as np

from cohep.core.errors import DataError
from cohep.core.files import atomic_path

CLASS_NAMES = ("NC", "numu_CC", "nue_CC")
VIEW_NAMES = ("U", "V", "Y")
#: where the window puts the interaction vertex: (row, column) as fractions of (H, W), rows are wires
#: and columns drift time (``lartpc.detector.Readout.window``; ``cohep import`` centres the same way)
VERTEX_FRACTION = (0.3, 0.5)
FORMAT_VERSION = 1
#: gzip level used for every image chunk (level 1: fast, and zero-suppressed images compress well).
GZIP_LEVEL = 1
_REQUIRED_ATTRS = ("class_names", "view_names", "pixel_pitch_mm", "tick_us", "generator", "version",
                   "config", "seed", "created")


def _h5py():
    import h5py

    return h5py


def source_date_stamp() -> str:
    """``SOURCE_DATE_EPOCH`` as an ISO time, or "" when it is not set: the ``created`` of a file whose
    content must not depend on when it was written (a simulation, made in shards on many machines)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), tz=_dt.UTC).isoformat()
    return ""


def _created_stamp() -> str:
    return source_date_stamp() or _dt.datetime.now(tz=_dt.UTC).replace(microsecond=0).isoformat()


def encode_chunk(image: np.ndarray, dtype: str | np.dtype = "float16") -> bytes:
    """One event image [C, H, W] as the bytes of an HDF5 chunk under the gzip filter.

    Used by workers so that compression runs in parallel; :class:`EventWriter` stores the bytes
    with ``write_direct_chunk``.  Readers need nothing but the standard deflate filter.  (No
    shuffle filter: on zero-suppressed images it makes chunks larger and slower to compress.)
    """
    arr = np.ascontiguousarray(image, dtype=np.dtype(dtype).newbyteorder("<"))
    return zlib.compress(arr.tobytes(), GZIP_LEVEL)


class EventWriter:
    """Write an event file of ``n_events`` events, batch by batch, atomically.

    >>> with EventWriter("ev.h5", n_events=2, attrs={"generator": "me"}, truth_fields={"e": "f4"}) as w:
    ...     w.write(images, labels, {"e": energies})          # doctest: +SKIP

    ``attrs`` fills the file attributes (missing ones get defaults: class names, view names,
    version, created...); ``config`` may be a dict (stored as JSON).  ``truth_fields`` maps a field
    name to a NumPy dtype, or to ``(dtype, unit)``.
    """

    def __init__(self, path: str | os.PathLike, *, n_events: int, image_shape: Sequence[int] = (3, 200, 200),
                 dtype: str = "float16", attrs: dict | None = None,
                 truth_fields: dict | None = None) -> None:
        if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
            raise DataError(f"{path}: n_events must be a positive integer, got {n_events!r}")
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise DataError(f"{path}: image_shape must be (views, height, width), got {image_shape!r}")
        if np.dtype(dtype) not in (np.dtype("float16"), np.dtype("float32")):
            raise DataError(f"{path}: image dtype must be float16 or float32, got {dtype!r}")
        self.path = Path(path)
        self.n_events = int(n_events)
        self.image_shape = shape
        self.dtype = np.dtype(dtype)
        self.attrs = dict(attrs or {})
        self.truth_fields = {}
        for name, spec in (truth_fields or {}).items():
            dt, unit = (spec if isinstance(spec, tuple) else (spec, ""))
            self.truth_fields[str(name)] = (np.dtype(dt), str(unit))
        self.written = 0
        self._atomic = None
        self._file = None
        self._tmp = None

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> "EventWriter":
        h5py = _h5py()
        self._atomic = atomic_path(self.path)
        tmp = self._tmp = self._atomic.__enter__()
        try:
            self._file = h5py.File(tmp, "w", track_order=False)
            self._create()
        except BaseException as exc:
            self._abort(exc)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self.written != self.n_events:
            err = DataError(f"{self.path}: wrote {self.written} of {self.n_events} events; file not kept")
            self._abort(err)
            raise err
        if exc_type is not None:
            self._abort(exc)
            return False
        try:
            self._file.close()
            self._file = None
            _make_readable(self._tmp)
        except BaseException as err:
            self._abort(err)
            raise
        atomic, self._atomic = self._atomic, None
        try:
            atomic.__exit__(None, None, None)
        except OSError as err:  # the rename failed (e.g. the target is a directory)
            raise DataError(f"{self.path}: cannot write ({err.strerror or err})") from None
        return False

    def _abort(self, exc) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - closing a broken file may fail too
                pass
            self._file = None
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            try:
                atomic.__exit__(type(exc), exc, None)
            except BaseException:  # noqa: BLE001 - atomic_path re-raises the exception it is given
                pass

    # -- layout ---------------------------------------------------------------------------------
    def _create(self) -> None:
        h5py = _h5py()
        f = self._file
        n, (c, h, w) = self.n_events, self.image_shape
        f.create_dataset(
            "images", shape=(n, c, h, w), dtype=self.dtype.newbyteorder("<"), chunks=(1, c, h, w),
            compression="gzip", compression_opts=GZIP_LEVEL, shuffle=False, track_times=False,
        )
        f.create_dataset("labels", shape=(n,), dtype="<i8", track_times=False)
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_obj_track_times(False)
        truth = h5py.Group(h5py.h5g.create(f.id, b"truth", gcpl=gcpl))
        for name, (dt, unit) in self.truth_fields.items():
            ds = truth.create_dataset(name, shape=(n,), dtype=dt.newbyteorder("<") if dt.kind != "b" else dt,
                                      track_times=False)
            if unit:
                ds.attrs["unit"] = unit
        attrs = {
            "class_names": list(CLASS_NAMES),
            "view_names": list(VIEW_NAMES[:c]) if c <= 3 else [f"view{i}" for i in range(c)],
            "pixel_pitch_mm": np.nan,
            "tick_us": np.nan,
            "generator": "cohep",
            "version": _cohep_version(),
            "config": "{}",
            "seed": -1,
            "created": _created_stamp(),
            "format_version": FORMAT_VERSION,
        }
        attrs.update(self.attrs)
        if not isinstance(attrs["config"], str):
            attrs["config"] = json.dumps(attrs["config"], sort_keys=True, default=_json_default)
        for key in sorted(attrs):
            value = attrs[key]
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
                value = np.array([str(v) for v in value], dtype=h5py.string_dtype())
            elif value is None:
                value = ""
            f.attrs[key] = value

    # -- writing --------------------------------------------------------------------------------
    def _check_batch(self, k: int, labels, truth) -> np.ndarray:
        if self._file is None:
            raise DataError(f"{self.path}: writer is not open (use it as a context manager)")
        if self.written + k > self.n_events:
            raise DataError(f"{self.path}: more than the declared {self.n_events} events written")
        labels = np.asarray(labels)
        if labels.shape != (k,) or labels.dtype.kind not in "iu":
            raise DataError(f"{self.path}: labels must be {k} integers, got shape {labels.shape} dtype {labels.dtype}")
        n_cls = len(self._file.attrs["class_names"])
        if k and (labels.min() < 0 or labels.max() >= n_cls):
            raise DataError(f"{self.path}: labels must lie in [0, {n_cls})")
        truth = truth or {}
        for name in truth:
            if name not in self.truth_fields:
                raise DataError(f"{self.path}: truth field {name!r} was not declared")
        for name in self.truth_fields:
            if name not in truth:
                raise DataError(f"{self.path}: truth field {name!r} missing from the batch")
            if np.shape(truth[name]) != (k,):
                raise DataError(f"{self.path}: truth field {name!r} must have {k} values")
        return labels

    def write(self, images: np.ndarray, labels, truth: dict | None = None) -> None:
        """Append a batch: images [k, C, H, W], labels [k] (int), truth {field: [k]}."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise DataError(f"{self.path}: images must be [k, {', '.join(map(str, self.image_shape))}], got {images.shape}")
        if not np.all(np.isfinite(images)):
            raise DataError(f"{self.path}: images contain NaN or infinite values")
        self.write_encoded([encode_chunk(im, self.dtype) for im in images], labels, truth)

    def write_encoded(self, chunks: Sequence[bytes], labels, truth: dict | None = None) -> None:
        """Append a batch of images already encoded with :func:`encode_chunk` (same dtype)."""
        k = len(chunks)
        labels = self._check_batch(k, labels, truth)
        f = self._file
        dset = f["images"]
        i0 = self.written
        for j, chunk in enumerate(chunks):
            dset.id.write_direct_chunk((i0 + j, 0, 0, 0), chunk, filter_mask=0)
        if k:
            f["labels"][i0:i0 + k] = labels.astype("<i8")
            for name, (dt, _unit) in self.truth_fields.items():
                f["truth"][name][i0:i0 + k] = np.asarray((truth or {})[name]).astype(dt)
        self.written += k


def _make_readable(path: Path) -> None:
    """Give a finished temporary file the usual permissions (0666 less the umask): the
    temporary name is created private (0600) and the rename keeps its mode."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _cohep_version() -> str:
    from cohep import __version__

    return __version__


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_decode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
class EventFile:
    """Read-only view of an event file, validated on opening.

    Raises :class:`DataError` (naming the file) when it is missing, not HDF5, truncated, lacks
    ``/images`` or ``/labels``, has inconsistent shapes or labels outside the class list.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = None
        self._file = _open_validated(self.path)
        f = self._file
        self._images = f["images"]
        self.n_events = int(self._images.shape[0])
        self.image_shape = tuple(int(s) for s in self._images.shape[1:])
        self.attrs = {k: _decode(v) for k, v in f.attrs.items()}
        self.class_names = tuple(self.attrs.get("class_names") or CLASS_NAMES)
        try:
            labels = np.asarray(f["labels"][...], dtype=np.int64)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{self.path}: cannot read /labels ({_short(exc)})") from None
        if labels.ndim != 1 or len(labels) != self.n_events:
            self.close()
            raise DataError(f"{self.path}: /labels has shape {labels.shape}, expected ({self.n_events},)")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            self.close()
            raise DataError(f"{self.path}: labels out of range [0, {len(self.class_names)}) "
                            f"(found {labels.min()}..{labels.max()})")
        self.labels = labels
        self._truth = None

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(self.attrs.get("view_names") or VIEW_NAMES[: self.image_shape[0]])

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """All truth fields as arrays (read on first use)."""
        if self._truth is None:
            out = {}
            if "truth" in self._file:
                for name, ds in self._file["truth"].items():
                    try:
                        out[name] = ds[...]
                    except (OSError, ValueError) as exc:
                        raise DataError(f"{self.path}: cannot read /truth/{name} ({_short(exc)})") from None
            self._truth = out
        return self._truth

    def truth_units(self) -> dict[str, str]:
        if "truth" not in self._file:
            return {}
        return {name: _decode(ds.attrs.get("unit", "")) for name, ds in self._file["truth"].items()}

    def images(self, indices) -> np.ndarray:
        """float32 images: [C, H, W] for an integer index, [k, C, H, W] for a sequence or slice."""
        if isinstance(indices, (int, np.integer)):
            i = int(indices)
            if not -self.n_events <= i < self.n_events:
                raise IndexError(f"event {i} out of range for {self.n_events} events")
            return self._read(slice(i % self.n_events, i % self.n_events + 1))[0]
        if isinstance(indices, slice):
            idx = np.arange(self.n_events)[indices]
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -self.n_events or idx.max() >= self.n_events):
            raise IndexError(f"event indices out of range for {self.n_events} events")
        idx = idx % max(self.n_events, 1)
        out = np.empty((len(idx),) + self.image_shape, dtype=np.float32)
        if not len(idx):
            return out
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        # read runs of consecutive indices in one call each
        breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
        start = 0
        for stop in list(breaks) + [len(sorted_idx)]:
            a, b = int(sorted_idx[start]), int(sorted_idx[stop - 1]) + 1
            block = self._read(slice(a, b))
            out[order[start:stop]] = block[sorted_idx[start:stop] - a]
            start = stop
        return out

    def _read(self, sl: slice) -> np.ndarray:
        try:
            return np.asarray(self._images[sl], dtype=np.float32)
        except (OSError, ValueError, RuntimeError) as exc:
            raise DataError(f"{self.path}: cannot read events {sl.start}..{sl.stop - 1} "
                            f"(truncated or corrupt: {_short(exc)})") from None

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    def __enter__(self) -> "EventFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_events

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _open_validated(path: Path):
    h5py = _h5py()
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an HDF5 event file")
    try:
        ok = h5py.is_hdf5(str(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_short(exc)})") from None
    if not ok:
        raise DataError(f"{path}: not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        msg = _short(exc)
        hint = "truncated or corrupt HDF5 file" if "truncat" in msg.lower() or "eof" in msg.lower() else "unreadable HDF5 file"
        raise DataError(f"{path}: {hint} ({msg})") from None
    try:
        for name in ("images", "labels"):
            if name not in f:
                raise DataError(f"{path}: missing /{name} dataset (not a cohep event file)")
            if not isinstance(f[name], h5py.Dataset):
                raise DataError(f"{path}: /{name} is not a dataset")
        images = f["images"]
        if images.ndim != 4:
            raise DataError(f"{path}: /images must be [N, views, height, width], has shape {images.shape}")
        if images.dtype.kind != "f":
            raise DataError(f"{path}: /images must hold floating-point values, has {images.dtype}")
        n = images.shape[0]
        if f["labels"].shape != (n,):
            raise DataError(f"{path}: /labels has shape {f['labels'].shape}, /images holds {n} events")
        if "class_names" in f.attrs:
            names = _decode(f.attrs["class_names"])
            if not isinstance(names, list) or not names:
                raise DataError(f"{path}: attribute class_names must be a non-empty list of names")
        if n:
            try:  # the last chunk is where a truncated copy fails first
                images[n - 1]
            except (OSError, ValueError, RuntimeError) as exc:
                raise DataError(f"{path}: truncated or corrupt /images ({_short(exc)})") from None
    except BaseException:
        f.close()
        raise
    return f


# ---------------------------------------------------------------------------------------------
# torch Dataset
# ---------------------------------------------------------------------------------------------
class _EventDatasetImpl:
    """A ``torch.utils.data.Dataset`` streaming events from an HDF5 file.

    The file is opened lazily in each process (so DataLoader workers each get their own handle);
    items are ``(float32 tensor [C, H, W], int label)``.  ``indices`` selects a subset.
    """

    def __init__(self, path: str | os.PathLike, indices: Iterable[int] | None = None, transform=None) -> None:
        self.path = Path(path)
        with EventFile(self.path) as f:
            n = f.n_events
            all_labels = f.labels
            self.class_names = f.class_names
            self.image_shape = f.image_shape
        if indices is None:
            idx = np.arange(n, dtype=np.int64)
        else:
            idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{self.path}: dataset indices out of range [0, {n})")
        self.indices = idx
        self._labels = all_labels[idx]
        self.transform = transform
        self._h5 = None
        self._pid = None

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __len__(self) -> int:
        return len(self.indices)

    def _images(self):
        pid = os.getpid()
        if self._h5 is None or self._pid != pid:
            self._h5 = _h5py().File(self.path, "r")
            self._pid = pid
        return self._h5["images"]

    def __getitem__(self, i: int):
        import torch

        j = int(self.indices[i])
        try:
            arr = np.asarray(self._images()[j], dtype=np.float32)
        except (OSError, ValueError, RuntimeError) as exc:
            raise DataError(f"{self.path}: cannot read event {j} ({_short(exc)})") from None
        x = torch.from_numpy(arr)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self._labels[i])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        if self._h5 is not None:
            try:
                self._h5.close()
            finally:
                self._h5 = None


_EVENT_DATASET = None


def __getattr__(name: str):
    # EventDataset subclasses torch's Dataset; building it on first use keeps torch out of the
    # import of this module (the simulator and `cohep simulate` do not need it).
    global _EVENT_DATASET
    if name == "EventDataset":
        if _EVENT_DATASET is None:
            try:
                from torch.utils.data import Dataset as base
            except ImportError:  # pragma: no cover - torch is a dependency
                base = object
            _EVENT_DATASET = type("EventDataset", (_EventDatasetImpl, base), {
                "__module__": __name__, "__qualname__": "EventDataset", "__doc__": _EventDatasetImpl.__doc__})
        return _EVENT_DATASET
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# NPZ import
# ---------------------------------------------------------------------------------------------
IMPORT_SHAPES = "[N, 3, H, W] (views first), [N, H, W, 3] (views last) or [N, H, W] (one view)"


def import_npz(npz_path: str | os.PathLike, out_path: str | os.PathLike, *,
               class_names: Sequence[str] | None = None, batch: int = 256) -> Path:
    """Convert a group's own ``.npz`` (keys ``images``, ``labels``, optional ``class_names``) into
    the HDF5 event format, validating it.

    ``images``: {shapes}, finite numbers; ``labels``: N integers in [0, number of classes) or N
    strings from ``class_names``.  Class names come from the argument, else the file, else
    NC / numu_CC / nue_CC.  Errors raise :class:`DataError` naming the file and the field.
    (``cohep import`` with resampling, calibration and other layouts: :mod:`cohep.datasets.importer`.)
    """
    src = Path(npz_path)
    images, labels, names, views = read_npz(src, class_names=class_names)
    fits16 = images.dtype == np.float16 or (images.dtype.kind in "iub" and np.abs(images).max(initial=0) <= 2048)
    dtype = "float16" if fits16 else "float32"
    attrs = {
        "class_names": names,
        "view_names": views,
        "generator": "cohep import",
        "config": {"source": src.name, "shape": list(images.shape), "input_dtype": str(images.dtype)},
        "image_unit": "as imported",
    }
    out = Path(out_path)
    n = images.shape[0]
    with EventWriter(out, n_events=n, image_shape=images.shape[1:], dtype=dtype, attrs=attrs, truth_fields={}) as w:
        for a in range(0, n, batch):
            w.write(np.asarray(images[a:a + batch], dtype=np.float32 if dtype == "float32" else np.float16),
                    labels[a:a + batch])
    return out


def read_npz(src: Path, *, class_names: Sequence[str] | None = None, images_key: str = "images",
             labels_key: str = "labels", axes: str | None = None):
    """The validated arrays of an ``.npz``: images ``[N, V, H, W]`` (source dtype), int64 labels, class
    names and view names. ``axes`` (letters N, V, H, W: e.g. ``"NHWV"``) overrides the shape rules."""
    data = _load_npz(src)
    with data:
        keys = set(getattr(data, "files", []))
        if not keys:
            raise DataError(f"{src}: expected an .npz archive with arrays '{images_key}' and '{labels_key}'")
        for key in (images_key, labels_key):
            if key not in keys:
                raise DataError(f"{src}: missing field '{key}' (found: {', '.join(sorted(keys)) or 'nothing'})")
        try:
            images = data[images_key]
            labels = data[labels_key]
            file_names = data["class_names"] if "class_names" in keys else None
        except ValueError as exc:  # object arrays need pickle: refuse
            raise DataError(f"{src}: field holds Python objects, not numbers ({_short(exc)})") from None
    if class_names is None and file_names is not None:
        if file_names.ndim != 1 or file_names.dtype.kind not in "US":
            raise DataError(f"{src}: field 'class_names' must be a 1-D array of strings")
        class_names = [str(s) for s in file_names.tolist()]
    names = check_class_names(src, class_names)
    if images.dtype.kind not in "fiub":
        raise DataError(f"{src}: field '{images_key}' must be numeric, got dtype {images.dtype}")
    if axes is not None:
        images = to_nvhw(src, images, axes, images_key)
        views = list(VIEW_NAMES) if images.shape[1] == 3 else [f"view{i}" for i in range(images.shape[1])]
    elif images.ndim == 3:
        images = images[:, None]
        views = ["view"]
    elif images.ndim == 4 and images.shape[1] in (1, 3):
        views = list(VIEW_NAMES) if images.shape[1] == 3 else ["view"]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = np.moveaxis(images, -1, 1)
        views = list(VIEW_NAMES) if images.shape[1] == 3 else ["view"]
    else:
        raise DataError(f"{src}: field '{images_key}' has shape {images.shape}; accepted: {IMPORT_SHAPES}")
    n = images.shape[0]
    if n < 1 or min(images.shape[2:]) < 1:
        raise DataError(f"{src}: field '{images_key}' holds no events")
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        raise DataError(f"{src}: field '{images_key}' contains NaN or infinite values")
    return images, label_indices(src, labels, n, names, labels_key), names, views


def _load_npz(src: Path):
    if not src.exists():
        raise DataError(f"{src}: no such file")
    try:
        return np.load(src, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{src}: not a readable .npz file ({_short(exc)})") from None


def check_class_names(src, class_names: Sequence[str] | None) -> list[str]:
    """The class names to use (default NC / numu_CC / nue_CC): at least two, distinct."""
    names = [str(s) for s in (class_names or CLASS_NAMES)]
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"{src}: class_names must be at least two distinct names, got {names}")
    return names


def to_nvhw(src, images: np.ndarray, axes: str, field: str = "images") -> np.ndarray:
    """``images`` laid out as ``axes`` (letters N, V, H, W, each once; V optional) -> ``[N, V, H, W]``."""
    letters = axes.upper()
    if sorted(letters) not in (sorted("NVHW"), sorted("NHW")) or len(letters) != images.ndim:
        raise DataError(f"{src}: field '{field}' has shape {images.shape}, which axes {axes!r} (letters N, V, H, W, "
                        "V optional) does not describe")
    if "V" not in letters:
        images, letters = images[..., None], letters + "V"
    return np.transpose(images, [letters.index(c) for c in "NVHW"])


def label_indices(src, labels: np.ndarray, n: int, names: Sequence[str], field: str = "labels") -> np.ndarray:
    """``labels`` (integers, or names from ``names``) as int64 class indices, checked."""
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataError(f"{src}: field '{field}' must have shape ({n},) to match the images, got {labels.shape}")
    if labels.dtype.kind in "USO":
        lookup = {name: i for i, name in enumerate(names)}
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in labels.tolist()]
        unknown = sorted(set(values) - set(lookup))
        if unknown:
            raise DataError(f"{src}: field '{field}' has names not in class_names {list(names)}: {unknown[:5]}")
        labels = np.array([lookup[v] for v in values], dtype=np.int64)
    elif labels.dtype.kind in "iu":
        labels = labels.astype(np.int64)
    elif labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    else:
        raise DataError(f"{src}: field '{field}' must hold integers or class names, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(f"{src}: field '{field}' must lie in [0, {len(names)}) for classes {list(names)}, "
                        f"found {labels.min()}..{labels.max()}")
    return labels


import_npz.__doc__ = import_npz.__doc__.format(shapes=IMPORT_SHAPES)
