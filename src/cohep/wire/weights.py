"""Weights on the wire: safetensors bytes, their canonical sha256 digest, and the checks every blob
from another member needs (malformed bytes, a digest other than announced, names/shapes/dtypes).

Safetensors holds only raw arrays and a JSON header, so decoding untrusted bytes can never execute
code (unlike pickle). Encoding is canonical: the same weights always give the same bytes, hence the
same digest, whichever learner or framework produced them.

Decoding is our own parser, not the safetensors library's: blobs come from other members, who may
be dishonest or broken, so every malformed blob must end as one ``IntegrityError`` with a one-line
reason (never a RecursionError, KeyError or an allocation the size of a lie in the header), and the
header is bounded before it is parsed.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from safetensors.numpy import save as _st_save

from cohep.core.errors import IntegrityError

#: Ordered mapping parameter name -> array. Order matters: it is the model's own order.
Weights = Mapping[str, np.ndarray]

#: One metadata key only: safetensors keeps metadata in a hash map, so several keys would be
#: written in arbitrary order and the bytes (hence the digest) would not be canonical.
_META_KEY = "cohep"
_FORMAT = "cohep-weights-1"

#: The JSON header is parsed whole, so it is bounded first: 1 MiB holds thousands of tensors.
MAX_HEADER_BYTES = 1 << 20
#: A canonical header nests 3 levels ({ -> tensor { -> shape [) and its metadata 2: deeper is hostile.
MAX_JSON_DEPTH = 16
#: numpy's own limit is 64 dimensions; no layer has more than a handful.
MAX_RANK = 32

#: safetensors dtype -> numpy dtype (little-endian, as the format stores them). Only types numpy
#: represents exactly: a bf16 or fp8 tensor would need a lossy or framework-specific conversion.
DTYPES: dict[str, np.dtype] = {
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"), "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}
#: Known safetensors dtypes we refuse, by the name a user knows them under.
_REFUSED = {
    "BF16": "bfloat16", "F8_E4M3": "float8_e4m3", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0",
    "F4": "float4", "F6_E2M3": "float6_e2m3", "F6_E3M2": "float6_e3m2", "C64": "complex64",
}
_TENSOR_FIELDS = {"dtype", "shape", "data_offsets"}
_BRACKETS = re.compile(r"[\[\]{}]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
#: Value checks run over slices of this many elements: bounded temporaries whatever the tensor size.
CHUNK_ELEMENTS = 1 << 20
#: The largest example count a proposer may declare (``[round] weighting = "examples"``): far above
#: any data set, far below where a float64 share would lose integer precision.
MAX_EXAMPLES = 10**12


class Declared(dict):
    """Weights as a blob decoded them, with what the proposer declared beside them: ``examples``, the
    number of training examples behind the update (None: not declared). A dict, so whatever takes
    weights takes these; the declaration is inside the blob, so the on-chain digest covers it.

    The count rides on this one object only: any copy (``dict(w)``, a learner's copy) drops it. So it
    is read once, where a decoded blob enters the protocol (:func:`declared_examples`, into
    ``cohep.protocol.combine.Proposal``), and travels beside the weights from there."""

    def __init__(self, weights: Mapping[str, np.ndarray] | None = None, examples: int | None = None):
        super().__init__(weights or {})
        self._examples = examples

    @property
    def examples(self) -> int | None:
        return self._examples


def declared_examples(weights: Weights) -> int | None:
    """The example count a decoded blob declared (None: none declared, or weights that never travelled)."""
    return weights.examples if isinstance(weights, Declared) else None


def show(name: str, limit: int = 80) -> str:
    """A name as it can go into a one-line reason: plain if harmless, else escaped and cut."""
    if name and name.isprintable() and len(name) <= limit and name.strip() == name:
        return name
    text = repr(name[:limit])
    return text + ("..." if len(name) > limit else "")


def encode(weights: Weights, examples: int | None = None) -> bytes:
    """Serialise to safetensors; the model's parameter order travels in the header metadata, and with
    it the training examples the proposer declares behind the update (``examples``, optional)."""
    if examples is not None and not _examples_ok(examples):
        raise ValueError(f"examples must be an integer within 1..{MAX_EXAMPLES:,}, got {examples!r}")
    arrays = {name: np.asarray(value, order="C") for name, value in weights.items()}  # keeps 0-d shapes
    metadata = {_META_KEY: _order_metadata(list(arrays), examples)}
    return _st_save(arrays, metadata=metadata)


def _examples_ok(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_EXAMPLES


def _order_metadata(order: list[str], examples: int | None = None) -> str:
    meta: dict[str, Any] = {"format": _FORMAT, "order": order}
    if examples is not None:
        meta["examples"] = examples
    return json.dumps(meta, separators=(",", ":"))


class _Malformed(Exception):
    """Internal: one reason; ``decode`` turns it into IntegrityError with the common prefix."""


def _check_depth(text: str, what: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before json.loads recurses into it."""
    depth = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _Malformed(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        else:
            depth -= 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Malformed(f"header names {show(key)} twice")
        seen[key] = value
    return seen


def _refuse_constant(token: str):
    raise _Malformed(f"header holds the non-JSON number {token}")


def _loads(text: str, what: str) -> Any:
    """json.loads, bounded in depth, refusing duplicate keys and NaN/Infinity literals."""
    _check_depth(text, what)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except RecursionError:  # the depth scan should have caught it; never let it escape
        raise _Malformed(f"{what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
        raise _Malformed(f"{what} is not valid JSON ({str(exc).splitlines()[0]})") from None


def _int_list(value: Any, length: int | None = None) -> bool:
    return (isinstance(value, list) and (length is None or len(value) == length)
            and all(type(v) is int and v >= 0 for v in value))


#: One tensor as the header places it: (name, dtype, shape, begin, end), offsets into the data.
_Entry = tuple[str, np.dtype, tuple[int, ...], int, int]


def _parse_header(blob: bytes | bytearray | memoryview) -> tuple[int, list[_Entry], list[str], int | None]:
    """Validate the header; returns (data start, [(name, dtype, shape, begin, end)], order, examples)."""
    size = len(blob)
    if size < 8:
        raise _Malformed(f"blob is {size} bytes, too short for a safetensors header")
    n = int.from_bytes(blob[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise _Malformed(f"header length {n:,} is over the {MAX_HEADER_BYTES / 2**20:g} MiB limit")
    if n > size - 8:
        raise _Malformed(f"header length {n:,} runs past the end of the {size:,}-byte blob")
    raw = bytes(blob[8 : 8 + n])
    if not raw.startswith(b"{"):
        raise _Malformed("header does not start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("header is not UTF-8") from None
    header = _loads(text, "header")
    if not isinstance(header, dict):
        raise _Malformed("header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    data_len = size - 8 - n
    entries: list[_Entry] = []
    for name, info in header.items():
        shown = show(name)
        if not isinstance(info, dict) or set(info) != _TENSOR_FIELDS:
            raise _Malformed(f"{shown}: entry must hold exactly dtype, shape and data_offsets")
        label = info["dtype"]
        if not isinstance(label, str) or label not in DTYPES:
            refused = _REFUSED.get(label, show(label) if isinstance(label, str) else repr(label)[:40])
            raise _Malformed(f"{shown}: dtype {refused} is not accepted")
        dtype = DTYPES[label]
        shape, offsets = info["shape"], info["data_offsets"]
        if not _int_list(shape) or len(shape) > MAX_RANK:
            raise _Malformed(f"{shown}: shape must be a list of at most {MAX_RANK} non-negative integers")
        if not _int_list(offsets, 2) or offsets[0] > offsets[1]:
            raise _Malformed(f"{shown}: data_offsets must be two non-negative integers [begin, end], begin <= end")
        begin, end = offsets
        if end > data_len:
            raise _Malformed(f"{shown}: data offsets [{begin}, {end}] run past the {data_len:,}-byte data")
        count = 1
        for dim in shape:
            count *= dim
        if count * dtype.itemsize != end - begin:
            raise _Malformed(f"{shown}: shape {shape} of {label} needs {count * dtype.itemsize:,} bytes, "
                             f"its data offsets span {end - begin:,}")
        entries.append((name, dtype, tuple(shape), begin, end))
    _check_layout(entries, data_len)
    order, examples = _check_metadata(metadata, [e[0] for e in entries])
    return 8 + n, entries, order, examples


def _check_layout(entries: list[_Entry], data_len: int) -> None:
    """Tensors must tile the data exactly: no overlap (one byte, two meanings), no gap, no tail."""
    position, previous = 0, ""  # begin < position needs a previous tensor, so "" is never shown
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin < position:
            raise _Malformed(f"tensors {show(previous)} and {show(name)} overlap in the data")
        if begin > position:
            raise _Malformed(f"the data has {begin - position:,} unused bytes before {show(name)}")
        position, previous = end, name
    if position != data_len:
        raise _Malformed(f"the data has {data_len - position:,} bytes after the last tensor")


def _check_metadata(metadata: Any, names: list[str]) -> tuple[list[str], int | None]:
    """The cohep metadata, exactly as encode writes it: the model's parameter order and the declared
    example count (if any)."""
    if metadata is None:
        raise _Malformed("no cohep metadata (the parameter order)")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _Malformed("metadata is not a map of strings")
    if set(metadata) != {_META_KEY}:
        others = sorted(set(metadata) - {_META_KEY})
        if others:
            raise _Malformed(f"non-canonical metadata: unexpected key {show(others[0])}")
        raise _Malformed("no cohep metadata (the parameter order)")
    text = metadata[_META_KEY]
    meta = _loads(text, "cohep metadata")
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or not isinstance(meta.get("order"), list):
        raise _Malformed(f"non-canonical metadata: not a {_FORMAT} parameter order")
    examples = meta.get("examples")
    if "examples" in meta and not _examples_ok(examples):
        raise _Malformed(f"declared examples must be an integer within 1..{MAX_EXAMPLES:,}")
    order = meta["order"]
    if not all(isinstance(o, str) for o in order):
        raise _Malformed("non-canonical metadata: the order holds non-strings")
    listed: set[str] = set()
    for o in order:
        if o in listed:
            raise _Malformed(f"non-canonical metadata: the order lists {show(o)} twice")
        listed.add(o)
    held = set(names)
    if listed != held:
        missing = [n for n in names if n not in listed]
        which = f"leaves out {show(missing[0])}" if missing else \
            f"lists {show(next(o for o in order if o not in held))}, which the blob does not hold"
        raise _Malformed(f"non-canonical metadata: the order {which}")
    if text != _order_metadata(order, examples):
        raise _Malformed("non-canonical metadata: not written the way encode writes it")
    return order, examples


def count_chunked(array: np.ndarray, bad: Callable[[np.ndarray], np.ndarray]) -> int:
    """How many elements ``bad`` flags, in slices so temporaries stay O(chunk) for any tensor."""
    flat = array.reshape(-1)
    step = CHUNK_ELEMENTS
    return sum(int(np.count_nonzero(bad(flat[i : i + step]))) for i in range(0, flat.size, step))


def _bool_bytes_ok(array: np.ndarray) -> bool:
    return count_chunked(array.reshape(-1).view(np.uint8), lambda part: part > 1) == 0


def decode(blob: bytes | bytearray | memoryview) -> Declared:
    """Parse a cohep weights blob (canonical safetensors) into ordered weights, with the example count
    the proposer declared (``Declared.examples``).

    Any malformed blob raises IntegrityError("malformed weights blob: <one-line reason>"). From a
    writable buffer (bytearray) the arrays are views into it, so a fetched blob is not copied again;
    from bytes (read-only) each tensor is copied, so the arrays are always writable.
    """
    try:
        start, entries, order, examples = _parse_header(blob)
        writable = not memoryview(blob).readonly
        arrays = {}
        for name, dtype, shape, begin, end in entries:
            if begin == end:
                arrays[name] = np.zeros(shape, dtype)
                continue
            array = np.frombuffer(blob, dtype=dtype, count=(end - begin) // dtype.itemsize,
                                  offset=start + begin).reshape(shape)
            if not writable or not array.flags.aligned:
                array = array.copy()
            if dtype.kind == "b" and not _bool_bytes_ok(array):
                raise _Malformed(f"{show(name)}: bool tensor holds bytes other than 0 and 1")
            arrays[name] = array
        return Declared({name: arrays[name] for name in order}, examples)
    except _Malformed as exc:
        raise IntegrityError(f"malformed weights blob: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, MemoryError) as exc:
        # A case the checks above missed: still a reason, never a crash; tests fuzz for this marker.
        raise IntegrityError(f"malformed weights blob: unexpected {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None


def digest_bytes(blob: bytes) -> bytes:
    """32-byte sha256 of the encoded bytes: what the contract records."""
    return hashlib.sha256(blob).digest()


def digest(weights: Weights) -> bytes:
    """Canonical digest of weights (sha256 of their canonical encoding)."""
    return digest_bytes(encode(weights))


def announced(digest: object) -> bytes:
    """``digest`` as 32 bytes, else IntegrityError: an announced digest is untrusted input too."""
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
        raise IntegrityError("the announced digest is not 32 bytes")
    return bytes(digest)


def check_digest(actual: bytes, digest: object) -> None:
    """IntegrityError unless bytes that hash to ``actual`` are the blob announced as ``digest``."""
    expected = announced(digest)
    if actual != expected:
        raise IntegrityError(f"digest mismatch: the blob hashes to {actual.hex()[:16]}..., "
                             f"{expected.hex()[:16]}... was announced")


def equal(a: Weights, b: Weights) -> bool:
    """Bit-exact equality of two weight mappings, order included."""
    if list(a) != list(b):
        return False
    return all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def _listing(noun: str, names: list[str]) -> str:
    shown = ", ".join(show(n) for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{noun}{'s' if len(names) > 1 else ''} {shown}{more}"


def mismatch(candidate: Mapping[str, Any], reference: Mapping[str, Any]) -> str | None:
    """Why ``candidate`` cannot stand in for ``reference`` (names, shapes, dtypes), or None if it can.

    A reference is the model spec's own initial weights (or anything with ``shape`` and ``dtype``
    per name, such as a model's variables): anything else would fail, or worse, load silently wrong.
    Names are escaped and cut (``show``) so the reason stays one line whatever a member sent.
    """
    missing = [n for n in reference if n not in candidate]
    extra = [n for n in candidate if n not in reference]
    if missing or extra:
        parts = ([_listing("missing tensor", missing)] if missing else []) + \
                ([_listing("unexpected tensor", extra)] if extra else [])
        return "; ".join(parts)
    for name, ref in reference.items():
        value = candidate[name]
        if tuple(value.shape) != tuple(ref.shape):
            return f"{show(name)} has shape {list(value.shape)}, the model expects {list(ref.shape)}"
        if np.dtype(value.dtype) != np.dtype(str(ref.dtype)):
            return f"{show(name)} has dtype {value.dtype}, the model expects {ref.dtype}"
    return None
