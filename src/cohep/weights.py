"""Weights on the wire: safetensors bytes and their canonical sha256 digest.

Safetensors holds only raw arrays and a JSON header, so decoding untrusted bytes can never execute
code (unlike pickle). Encoding is canonical: the same weights always give the same bytes, hence the
same digest, whichever learner or framework produced them.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from .errors import IntegrityError
from .learner import Weights

#: One metadata key only: safetensors keeps metadata in a hash map, so several keys would be
#: written in arbitrary order and the bytes (hence the digest) would not be canonical.
_META_KEY = "cohep"
_FORMAT = "cohep-weights-1"


def encode(weights: Weights) -> bytes:
    """Serialise to safetensors; the model's parameter order travels in the header metadata."""
    arrays = {name: np.asarray(value, order="C") for name, value in weights.items()}  # keeps 0-d shapes
    metadata = {_META_KEY: json.dumps({"format": _FORMAT, "order": list(arrays)}, separators=(",", ":"))}
    return _st_save(arrays, metadata=metadata)


def decode(blob: bytes) -> dict[str, np.ndarray]:
    """Parse safetensors bytes back into ordered weights; malformed bytes raise IntegrityError."""
    try:
        arrays = _st_load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get(_META_KEY, "{}"))
        order = meta.get("order", []) if isinstance(meta, dict) else []
    except (SafetensorError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"weights blob is not valid safetensors: {exc}") from None
    if sorted(order) != sorted(arrays):
        order = sorted(arrays)
    return {name: arrays[name] for name in order}


def digest_bytes(blob: bytes) -> bytes:
    """32-byte sha256 of the encoded bytes: what the contract records."""
    return hashlib.sha256(blob).digest()


def digest(weights: Weights) -> bytes:
    """Canonical digest of weights (sha256 of their canonical encoding)."""
    return digest_bytes(encode(weights))


def verify(blob: bytes, expected: bytes) -> None:
    """Raise IntegrityError unless ``blob`` hashes to ``expected``."""
    actual = digest_bytes(blob)
    if actual != expected:
        raise IntegrityError(
            f"weights digest mismatch: expected {expected.hex()}, got {actual.hex()}"
        )


def equal(a: Weights, b: Weights) -> bool:
    """Bit-exact equality of two weight mappings, order included."""
    if list(a) != list(b):
        return False
    return all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def mismatch(candidate: Weights, reference: Weights) -> str | None:
    """Why ``candidate`` cannot stand in for ``reference`` (names, shapes, dtypes), or None if it can.

    A reference is the model spec's own initial weights (or anything with ``shape`` and ``dtype``
    per name, such as a model's variables): anything else would fail, or worse, load silently wrong.
    """
    missing = [n for n in reference if n not in candidate]
    extra = [n for n in candidate if n not in reference]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
        return "; ".join(parts)
    for name, ref in reference.items():
        value = candidate[name]
        if tuple(value.shape) != tuple(ref.shape):
            return f"{name} has shape {list(value.shape)}, the model expects {list(ref.shape)}"
        if np.dtype(value.dtype) != np.dtype(str(ref.dtype)):
            return f"{name} has dtype {value.dtype}, the model expects {ref.dtype}"
    return None
