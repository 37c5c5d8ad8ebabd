"""Per-event scores: what an analysis cuts on elsewhere, one row per scored event.

``cohep evaluate --scores FILE`` writes, for every event of the data file in order: its index
(``event``), the true label (``label``) and the predicted class (``predicted``, the arg-max, or the
working point of ``--balance``, recorded in the metadata as ``working_point``), one
column of class probabilities per class (``score_<class>``, softmax outputs summing to 1) and every
truth field the event file carries (``nu_energy``, ``mode``, ``lepton_energy``..., names as in the
file; a truth field whose name is one of the columns above is written as ``truth_<name>``).

Two containers, chosen by the suffix:

* ``.parquet``: Apache Parquet through pyarrow, readable by pandas, polars and
  any Arrow reader; units are field metadata (``unit``), and the schema metadata ``cohep`` holds a JSON object with
  the class names, the model, the weights' sha256 and the data file;
* ``.h5`` / ``.hdf5``: the same columns as HDF5 datasets (units as their ``unit`` attribute, the JSON
  object as the file attribute ``cohep``), for analyses that read HDF5 already.

:func:`read` gives back an :class:`EventScores` from either, so the figures can be redrawn without
the model.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cohep.core.errors import DataError
from cohep.core.files import atomic_path

FORMAT = "cohep-scores-1"
PARQUET = (".parquet", ".pq")
HDF5 = (".h5", ".hdf5")
#: the columns every scores file has, besides one ``score_<class>`` per class
FIXED = ("event", "label", "predicted")


@dataclass
class EventScores:
    """Class probabilities, labels and truth of scored events, in the data file's order."""

    class_names: list[str]
    scores: np.ndarray  #: [N, C] float32 class probabilities
    labels: np.ndarray  #: [N] int64 true class index
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  #: model, weights_sha256, data: what produced the scores
    events: np.ndarray | None = None  #: [N] event index in the data file (default 0..N-1)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n, c = len(self.labels), len(self.class_names)
        if self.scores.shape != (n, c):
            raise DataError(f"scores have shape {list(self.scores.shape)}, expected [{n}, {c}]")
        for name, values in self.truth.items():
            if np.shape(values) != (n,):
                raise DataError(f"truth field {name!r} has {np.shape(values)} values, expected ({n},)")
        self.events = np.arange(n, dtype=np.int64) if self.events is None else np.asarray(self.events, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def predicted(self) -> np.ndarray:
        """The arg-max, or the working point recorded in ``info`` (``cohep evaluate --balance``), so that a
        file read back decides its events as the evaluation did."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        point = self.info.get("working_point")
        if isinstance(point, dict):
            from cohep.central.working_point import decide, logits_of

            return decide(logits_of(self.scores), float(point["offset"]), int(point["a"]), int(point["b"]))
        return self.scores.argmax(1).astype(np.int64)

    def score_columns(self) -> list[str]:
        return [f"score_{c}" for c in self.class_names]

    def columns(self) -> dict[str, np.ndarray]:
        """Every column by name, in the file's order."""
        cols: dict[str, np.ndarray] = {"event": self.events, "label": self.labels, "predicted": self.predicted}
        for i, name in enumerate(self.score_columns()):
            cols[name] = self.scores[:, i]
        for name, values in self.truth.items():
            cols[_truth_column(name, cols)] = np.asarray(values)
        return cols

    def metadata(self) -> dict:
        return {"format": FORMAT, "class_names": list(self.class_names), "units": dict(self.units),
                "truth": list(self.truth), **self.info}

    # -- files -----------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (Parquet or HDF5 by suffix) atomically; returns the path."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in PARQUET + HDF5:
            raise DataError(f"{p}: a scores file ends in {', '.join(PARQUET + HDF5)}")
        with atomic_path(p) as tmp:
            (_write_parquet if suffix in PARQUET else _write_hdf5)(self, tmp)
        return p

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.columns())


def _truth_column(name: str, taken) -> str:
    return f"truth_{name}" if name in FIXED or name.startswith("score_") or name in taken else name


def _write_parquet(s: EventScores, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = s.columns()
    truth_cols = {_truth_column(name, FIXED): name for name in s.truth}
    fields = []
    for name, values in cols.items():
        unit = s.units.get(truth_cols.get(name, ""), "")
        fields.append(pa.field(name, pa.from_numpy_dtype(values.dtype), metadata={"unit": unit} if unit else None))
    schema = pa.schema(fields, metadata={"cohep": json.dumps(s.metadata(), sort_keys=True, default=str)})
    table = pa.table({k: pa.array(v) for k, v in cols.items()}, schema=schema)
    pq.write_table(table, path)


def _write_hdf5(s: EventScores, path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["cohep"] = json.dumps(s.metadata(), sort_keys=True, default=str)
        truth_cols = {_truth_column(name, FIXED): name for name in s.truth}
        for name, values in s.columns().items():
            ds = f.create_dataset(name, data=values)
            unit = s.units.get(truth_cols.get(name, ""), "")
            if unit:
                ds.attrs["unit"] = unit


def read(path: str | os.PathLike) -> EventScores:
    """A scores file written by :meth:`EventScores.write`; anything else is one line naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"scores file {p} does not exist")
    try:
        meta, cols = (_read_parquet if p.suffix.lower() in PARQUET else _read_hdf5)(p)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{p}: not a readable scores file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{p}: not a cohep scores file (format {meta.get('format')!r}, expected {FORMAT})")
    names = list(meta["class_names"])
    missing = [c for c in (*FIXED, *(f"score_{c}" for c in names)) if c not in cols]
    if missing:
        raise DataError(f"{p}: missing columns {', '.join(missing)}")
    truth = {name: cols[_truth_column(name, FIXED)] for name in meta.get("truth", [])}
    info = {k: v for k, v in meta.items() if k not in ("format", "class_names", "units", "truth")}
    return EventScores(names, np.stack([cols[f"score_{c}"] for c in names], axis=1) if names else np.zeros((0, 0)),
                       cols["label"], truth, dict(meta.get("units", {})), info, events=cols["event"])


def _read_parquet(p: Path) -> tuple[dict, dict[str, np.ndarray]]:
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    raw = (table.schema.metadata or {}).get(b"cohep")
    meta = json.loads(raw) if raw else {}
    return meta, {name: table.column(name).to_numpy() for name in table.column_names}


def _read_hdf5(p: Path) -> tuple[dict, dict[str, np.ndarray]]:
    import h5py

    with h5py.File(p, "r") as f:
        raw = f.attrs.get("cohep")
        meta = json.loads(raw) if raw is not None else {}
        return meta, {name: f[name][...] for name in f if isinstance(f[name], h5py.Dataset)}
