"""Saved models: weights on disk with the spec they belong to and the digest they were saved under.

Two producers write them: central training (``cohep train``) writes a *checkpoint* here, a run
writes its final weights into its run directory (:mod:`cohep.outputs.rundir`). Both are read back as a
:class:`SavedModel`, whose weights are checked against the recorded sha256 before anyone uses them.

A checkpoint is a folder holding ``best.safetensors`` (the best epoch's weights, canonical
safetensors) and ``checkpoint.json``: the format tag, the model spec and its digest, the weights'
sha256, the epoch, its metrics, the class names, the training settings, the seed and the data.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cohep.core.errors import DataError, IntegrityError
from cohep.core.files import atomic_write_bytes, read_json, write_json
from cohep.frameworks.learner import Weights
from cohep.models.registry import ModelSpec

FORMAT = "cohep-checkpoint-1"
METADATA = "checkpoint.json"
WEIGHTS = "best.safetensors"


@dataclass
class SavedModel:
    """What to build (``spec``) and which weights to load (``weights_path``, expected ``digest``)."""

    kind: str  #: "checkpoint" or "run"
    path: Path  #: the metadata file: checkpoint.json or a run's manifest.json
    weights_path: Path
    spec: ModelSpec
    digest: str | None  #: sha256 hex of the weights file as recorded; None: nothing recorded
    info: dict = field(default_factory=dict)

    def load_weights(self) -> Weights:
        """The weights, after checking their sha256 against the recorded digest."""
        from cohep.wire.weights import decode

        try:
            blob = self.weights_path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read weights {self.weights_path}: {exc.strerror or exc}") from None
        actual = hashlib.sha256(blob).hexdigest()
        if self.digest and actual != self.digest:
            raise IntegrityError(
                f"{self.weights_path}: sha256 {actual} does not match {self.digest} recorded in {self.path.name}"
            )
        self.digest = actual
        return decode(blob)


def write(out_dir: str | Path, blob: bytes, *, spec: ModelSpec, **info: Any) -> str:
    """Write a checkpoint (weights first, then the metadata naming their digest); returns the sha256."""
    out = Path(out_dir)
    sha = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(out / WEIGHTS, blob)
    write_json(out / METADATA, {
        "format": FORMAT,
        "model": spec.to_dict(),
        "model_digest": spec.digest().hex(),
        "weights": WEIGHTS,
        "sha256": sha,
        **info,
    })
    return sha


def read(path: str | Path) -> SavedModel:
    """A checkpoint from its folder or its ``checkpoint.json``; malformed metadata is one line."""
    p = Path(path)
    if p.is_dir():
        p = p / METADATA
    data = read_json(p)
    if data.get("format") != FORMAT:
        raise DataError(f"{p}: unknown checkpoint format {data.get('format')!r} (expected {FORMAT})")
    spec = _spec(data, p)
    weights = data.get("weights", WEIGHTS)
    if not isinstance(weights, str) or Path(weights).name != weights:
        raise DataError(f"{p}: \"weights\" must name a file beside it, got {weights!r}")
    return SavedModel("checkpoint", p, p.parent / weights, spec, data.get("sha256"), data)


def _spec(data: dict, where: Path) -> ModelSpec:
    if not isinstance(data.get("model"), dict):
        raise DataError(f"{where} has no model spec (\"model\")")
    return ModelSpec.from_dict(data["model"], str(where))


def resolve(source: str | Path) -> SavedModel:
    """A checkpoint (folder, checkpoint.json or its weights file) or a run directory (or its files)."""
    from cohep.outputs import rundir

    p = Path(source)
    if not p.exists():
        raise DataError(f"model source {p} does not exist")
    if p.is_dir():
        if (p / METADATA).exists():
            return read(p / METADATA)
        if (p / rundir.MANIFEST).exists():
            return rundir.read_model(p)
        raise DataError(f"{p} holds neither {METADATA} (a `cohep train` checkpoint) nor {rundir.MANIFEST} (a run)")
    if p.suffix == ".safetensors":
        for meta in (METADATA, rundir.MANIFEST):
            if (p.parent / meta).exists():
                saved = resolve(p.parent)
                if saved.weights_path.resolve() != p.resolve():
                    # an explicitly named weights file other than the recorded one: no recorded digest
                    saved.weights_path, saved.digest = p, None
                return saved
        raise DataError(f"{p}: no {METADATA} or {rundir.MANIFEST} beside it says which model it belongs to")
    if p.name == rundir.MANIFEST:
        return rundir.read_model(p.parent)
    return read(p)
