"""Checks on another member's proposal: every malformed blob is one ProposalRejected with its reason.

Blobs are crafted by hand (``craft``) so each test breaks exactly one thing; ``test_craft_is_valid``
shows a crafted blob without the defect passes, so each rejection is caused by its defect alone.
"""
import hashlib
import json
import re

import numpy as np
import pytest

from cohep.core.errors import IntegrityError
from cohep.wire import weights as wts
from cohep.wire.checks import (
    ProposalRejected,
    check_blob,
    check_stream,
    default_max_bytes,
    over_cap,
    size_text,
)

CAP = 4 << 20


def model():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(size=8).astype(np.float32),
        "fc.weight": rng.normal(size=(2, 8)).astype(np.float32),
        "fc.bias": rng.normal(size=2).astype(np.float32),
        "bn.num_batches_tracked": np.array(3, dtype=np.int64),
    }


def sha(blob: bytes) -> bytes:
    return hashlib.sha256(blob).digest()


def meta(*order, fmt="cohep-weights-1"):
    return {"cohep": json.dumps({"format": fmt, "order": list(order)}, separators=(",", ":"))}


def craft(header, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors blob from a header (dict, str or bytes) and data; ``length`` overrides the prefix."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    raw = header.encode() if isinstance(header, str) else header
    return (len(raw) if length is None else length).to_bytes(8, "little") + raw + data


def one(name="x", dtype="F32", shape=(2,), offsets=(0, 8), data=b"\0" * 8, metadata=None):
    """A one-tensor blob; each argument can be broken on its own."""
    header = {"__metadata__": metadata if metadata is not None else meta(name),
              name: {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}
    return craft(header, data)


def rejected(blob: bytes, reference=None, *, max_bytes=CAP, digest=None) -> str:
    with pytest.raises(ProposalRejected) as info:
        check_blob(blob, sha(blob) if digest is None else digest, reference, max_bytes=max_bytes)
    reason = info.value.reason
    assert reason == str(info.value) and "\n" not in reason and len(reason) <= 300
    return reason


def test_craft_is_valid():
    data = np.array([1.5, -2.0], dtype="<f4").tobytes()
    out = check_blob(one(data=data), sha(one(data=data)), {"x": np.zeros(2, np.float32)}, max_bytes=CAP)
    assert list(out) == ["x"] and out["x"].tolist() == [1.5, -2.0]


def test_canonical_blob_passes_and_keeps_order():
    w = model()
    blob = wts.encode(w)
    out = check_blob(blob, sha(blob), w, max_bytes=default_max_bytes(w))
    assert wts.equal(out, w) and list(out) == list(w)
    assert all(a.flags.writeable for a in out.values())


def test_proposal_rejected_is_an_integrity_error():
    assert issubclass(ProposalRejected, IntegrityError)
    assert ProposalRejected("a\nb  c").reason == "a b c"
    assert len(ProposalRejected("x" * 1000).reason) == 300


# -- the reference: names, shapes, dtypes ------------------------------------------------------------


def test_wrong_shape():
    w = model()
    bad = dict(w, **{"conv.weight": np.zeros((3, 3), np.float32)})
    assert rejected(wts.encode(bad), w) == "conv.weight has shape [3, 3], the model expects [8, 3, 3, 3]"


def test_wrong_dtype():
    w = model()
    bad = dict(w, **{"fc.bias": w["fc.bias"].astype(np.float64)})
    assert rejected(wts.encode(bad), w) == "fc.bias has dtype float64, the model expects float32"


def test_extra_tensor():
    w = model()
    assert rejected(wts.encode(dict(w, **{"extra.bias": np.zeros(2, np.float32)})), w) == "unexpected tensor extra.bias"


def test_missing_tensor():
    w = model()
    bad = {k: v for k, v in w.items() if k != "fc.bias"}
    assert rejected(wts.encode(bad), w) == "missing tensor fc.bias"


def test_missing_and_extra_tensors_listed():
    w = model()
    bad = {f"other{i}": np.zeros(1, np.float32) for i in range(5)}
    assert rejected(wts.encode(bad), w) == (
        "missing tensors conv.weight, conv.bias, fc.weight and 2 more; "
        "unexpected tensors other0, other1, other2 and 2 more")


@pytest.mark.parametrize("value, count", [(np.nan, 1), (np.inf, 2), (-np.inf, 3)])
def test_non_finite_values(value, count):
    w = model()
    bias = np.zeros(8, np.float32)
    bias[:count] = value
    reason = rejected(wts.encode(dict(w, **{"conv.bias": bias})), w)
    assert reason == f"conv.bias holds {count} non-finite value{'s' if count > 1 else ''} (NaN or inf)"


def test_non_finite_counted_across_chunks(monkeypatch):
    monkeypatch.setattr(wts, "CHUNK_ELEMENTS", 7)  # 216 values in 31 slices
    w = model()
    conv = w["conv.weight"].copy()
    conv.reshape(-1)[[0, 6, 7, 100, 215]] = [np.nan, np.inf, -np.inf, np.nan, np.inf]
    assert rejected(wts.encode(dict(w, **{"conv.weight": conv})), w) == \
        "conv.weight holds 5 non-finite values (NaN or inf)"


def test_float16_nan_and_integers_are_fine():
    ref = {"h": np.zeros(3, np.float16), "i": np.zeros(3, np.int32)}
    good = {"h": np.array([1, 2, 65504], np.float16), "i": np.array([-1, 0, 2**31 - 1], np.int32)}
    blob = wts.encode(good)
    assert wts.equal(check_blob(blob, sha(blob), ref, max_bytes=CAP), good)
    bad = dict(good, h=np.array([1, np.nan, 2], np.float16))
    assert rejected(wts.encode(bad), ref) == "h holds 1 non-finite value (NaN or inf)"


# -- size and digest come first --------------------------------------------------------------------


def test_oversized_blob_refused_before_hashing():
    w = model()
    blob = wts.encode(w)
    assert rejected(blob, w, max_bytes=1000, digest=b"\0" * 32) == f"blob is {size_text(len(blob))}, over the 1 kB cap"
    assert over_cap(912_000_000, 64_000_000) == "blob is 912 MB, over the 64 MB cap"
    assert over_cap(64_000_001, 64_000_000) == "blob is 64,000,001 bytes, over the 64,000,000 bytes cap"


def test_bytes_not_matching_the_digest():
    w = model()
    blob = wts.encode(w)
    other = wts.digest(dict(w, **{"fc.bias": np.ones(2, np.float32)}))
    assert rejected(blob, w, digest=other).startswith("digest mismatch: the blob hashes to ")
    # a flipped data byte with the original digest: digest mismatch, whatever the bytes decode to
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    assert rejected(bytes(tampered), w, digest=sha(blob)).startswith("digest mismatch")
    assert rejected(blob, w, digest=b"\0" * 31) == "the announced digest is not 32 bytes"


def test_default_max_bytes_bounds_the_canonical_size():
    w = model()
    cap = default_max_bytes(w)
    assert len(wts.encode(w)) < cap < 1.05 * sum(v.nbytes for v in w.values()) + 64 * 1024 + 2000
    big = {"w": np.zeros((1000, 1000), np.float32)}
    assert 4_200_000 < default_max_bytes(big) < 4_200_000 + 64 * 1024 + 200
    # twice the model's size is refused by size, before the digest is computed
    doubled = dict(big, w2=np.zeros((1000, 1000), np.float32))
    assert rejected(wts.encode(doubled), big, max_bytes=default_max_bytes(big)).startswith("blob is 8 MB, over the 4.")


# -- malformed safetensors -----------------------------------------------------------------------------


@pytest.mark.parametrize("case, blob, reason", [
    ("empty", b"", "blob is 0 bytes, too short for a safetensors header"),
    ("header length beyond the blob", craft("{}", length=100), "header length 100 runs past the end of the 10-byte blob"),
    ("header too large", craft("{}", length=2**40), "header length 1,099,511,627,776 is over the 1 MiB limit"),
    ("header just over the cap", craft(b"{" + b" " * (1 << 20)), "header length 1,048,577 is over the 1 MiB limit"),
    ("not a JSON object", craft("[1]"), "header does not start with '{'"),
    ("not JSON", craft("{nope"), "header is not valid JSON (Expecting property name enclosed in double quotes"),
    ("not UTF-8", craft(b'{"\xff":1}'), "header is not UTF-8"),
    ("NaN in the header", craft('{"x":NaN}'), "header holds the non-JSON number NaN"),
    ("metadata of 100k [", craft({"__metadata__": {"cohep": "[" * 100_000}}),
     "cohep metadata is nested deeper than 16 levels"),
    ("header nested deep", craft('{"x":' + "[" * 100_000 + "]" * 100_000 + "}"), "header is nested deeper than 16 levels"),
    ("brackets inside strings do not count", craft({"__metadata__": meta(), "[[[[[[[[[[[[[[[[[[[[": 1}),
     "[[[[[[[[[[[[[[[[[[[[: entry must hold exactly dtype, shape and data_offsets"),
    ("huge integer", craft('{"x":{"dtype":"F32","shape":[' + "9" * 5000 + '],"data_offsets":[0,4]}}'),
     "header is not valid JSON (Exceeds the limit"),
    ("bf16", one(dtype="BF16", data=b"\0" * 4, offsets=(0, 4)), "x: dtype bfloat16 is not accepted"),
    ("fp8", one(dtype="F8_E4M3", shape=(8,)), "x: dtype float8_e4m3 is not accepted"),
    ("made-up dtype", one(dtype="Q7"), "x: dtype Q7 is not accepted"),
    ("dtype not a string", one(dtype=4), "x: dtype 4 is not accepted"),
    ("extra field", craft({"__metadata__": meta("x"), "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4],
                                                            "more": 1}}, b"\0" * 4),
     "x: entry must hold exactly dtype, shape and data_offsets"),
    ("negative dim", one(shape=(-2,)), "x: shape must be a list of at most 32 non-negative integers"),
    ("float dim", one(shape=(2.0,)), "x: shape must be a list of at most 32 non-negative integers"),
    ("bool dim", one(shape=(True, 2)), "x: shape must be a list of at most 32 non-negative integers"),
    ("rank 33", one(shape=(1,) * 30 + (2, 1, 1), data=b"\0" * 8), "x: shape must be a list of at most 32"),
    ("offsets reversed", one(offsets=(8, 0)), "x: data_offsets must be two non-negative integers [begin, end]"),
    ("offsets out of range", one(offsets=(0, 16)), "x: data offsets [0, 16] run past the 8-byte data"),
    ("truncated data", one(data=b"\0" * 5), "x: data offsets [0, 8] run past the 5-byte data"),
    ("shape and offsets disagree", one(shape=(3,)), "x: shape [3] of F32 needs 12 bytes, its data offsets span 8"),
    ("huge shape", one(shape=(2**40, 2**40)), "x: shape [1099511627776, 1099511627776] of F32 needs"),
    ("trailing bytes", one(data=b"\0" * 12), "the data has 4 bytes after the last tensor"),
    ("overlap", craft({"__metadata__": meta("a", "b"),
                       "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
     "tensors a and b overlap in the data"),
    ("aliased", craft({"__metadata__": meta("a", "b"),
                       "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
     "tensors a and b overlap in the data"),
    ("gap", craft({"__metadata__": meta("a", "b"),
                   "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                   "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b"\0" * 12),
     "the data has 4 unused bytes before b"),
    ("duplicate name", craft('{"__metadata__":' + json.dumps(meta("x")) + ','
                             '"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                             '"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
     "header names x twice"),
    ("bool byte 2", one(dtype="BOOL", shape=(2,), offsets=(0, 2), data=b"\x01\x02"),
     "x: bool tensor holds bytes other than 0 and 1"),
    ("no metadata", craft({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
     "no cohep metadata (the parameter order)"),
    ("foreign metadata", one(metadata={"format": "pt"}), "non-canonical metadata: unexpected key format"),
    ("extra metadata key", one(metadata=dict(meta("x"), extra="1")), "non-canonical metadata: unexpected key extra"),
    ("metadata not strings", one(metadata={"cohep": 1}), "metadata is not a map of strings"),
    ("wrong format", one(metadata=meta("x", fmt="other")), "non-canonical metadata: not a cohep-weights-1"),
    ("order leaves out", craft({"__metadata__": meta("a"),
                                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
     "non-canonical metadata: the order leaves out b"),
    ("order lists extra", one(metadata=meta("x", "y")),
     "non-canonical metadata: the order lists y, which the blob does not hold"),
    ("order twice", one(metadata=meta("x", "x")), "non-canonical metadata: the order lists x twice"),
    ("order not compact", one(metadata={"cohep": json.dumps({"format": "cohep-weights-1", "order": ["x"]})}),
     "non-canonical metadata: not written the way encode writes it"),
    ("order non-string", one(metadata=meta("x", 3)), "non-canonical metadata: the order holds non-strings"),
    ("name with a newline", one(name="x\ny", dtype="BF16"), "'x\\ny': dtype bfloat16 is not accepted"),
])
def test_malformed_blob(case, blob, reason):
    got = rejected(blob)
    assert got.startswith("malformed weights blob: "), got
    assert got[len("malformed weights blob: "):].startswith(reason), (case, got)
    with pytest.raises(IntegrityError, match=re.escape(reason[:40])):  # the same reason from decode itself
        wts.decode(blob)


def test_decode_of_a_bytearray_shares_memory_and_bytes_are_copied():
    w = model()
    blob = wts.encode(w)
    views = wts.decode(bytearray(blob))
    copies = wts.decode(blob)
    assert wts.equal(views, w) and wts.equal(copies, w)
    assert all(v.base is not None and v.flags.writeable for k, v in views.items() if v.size)
    assert all(v.flags.writeable and v.flags.owndata for v in copies.values())


def test_zero_size_and_scalar_tensors_round_trip():
    w = {"empty": np.zeros((0, 4), np.float64), "scalar": np.array(2.5, np.float32), "b": np.array([True, False])}
    blob = wts.encode(w)
    out = check_blob(blob, sha(blob), w, max_bytes=CAP)
    assert wts.equal(out, w) and out["scalar"].shape == () and out["empty"].shape == (0, 4)


# -- fuzz --------------------------------------------------------------------------------------------

_CRASH_MARKER = re.compile(r"unexpected [A-Z]\w*(Error|Exception)")


def _mutations(blob: bytes, rng: np.random.Generator, n: int):
    header_end = 8 + int.from_bytes(blob[:8], "little")
    for _ in range(n):
        b = bytearray(blob)
        kind = rng.integers(6)
        if kind == 0:  # truncate anywhere
            b = b[: rng.integers(len(b))]
        elif kind == 1:  # flip a few bytes inside the header (where parsing can go wrong)
            for pos in rng.integers(8, header_end, size=rng.integers(1, 6)):
                b[pos] = int(rng.integers(256))
        elif kind == 2:  # flip bytes anywhere
            for pos in rng.integers(0, len(b), size=rng.integers(1, 9)):
                b[pos] ^= 1 << int(rng.integers(8))
        elif kind == 3:  # a random header length
            b[:8] = int(rng.choice([rng.integers(0, len(b) + 8), rng.integers(0, 2**63)])).to_bytes(8, "little")
        elif kind == 4:  # insert or delete a run of bytes
            pos = int(rng.integers(len(b)))
            if rng.integers(2):
                b[pos:pos] = rng.integers(0, 256, size=rng.integers(1, 20), dtype=np.uint8).tobytes()
            else:
                del b[pos : pos + int(rng.integers(1, 20))]
        else:  # swap a JSON-significant character in the header for another
            pos = int(rng.integers(8, header_end))
            b[pos] = ord(rng.choice(list('{}[]",:0123456789 -e.')))
        yield bytes(b)


def test_fuzzed_blobs_only_ever_raise_proposal_rejected():
    """2,000 mutations of a valid blob: each passes every check or is one ProposalRejected reason.

    Each mutant is checked against its own sha256, so it gets past the digest and exercises decode.
    """
    w = model()
    blob = wts.encode(w)
    rng = np.random.default_rng(2024)
    reasons, passed = [], 0
    for mutant in _mutations(blob, rng, 2000):
        try:
            out = check_blob(mutant, sha(mutant), w, max_bytes=CAP)
        except ProposalRejected as exc:
            assert "\n" not in exc.reason and exc.reason and not _CRASH_MARKER.search(exc.reason), exc.reason
            reasons.append(exc.reason)
        else:  # only a change in the values themselves can pass, and then every check held
            passed += 1
            assert wts.mismatch(out, w) is None and all(np.isfinite(v).all() for v in out.values())
    kinds = {re.sub(r"[\d,]+", "N", r.split(":")[0] if r.startswith("digest") else r)[:45] for r in reasons}
    assert len(reasons) > 1500 and passed > 20, (len(reasons), passed)
    assert len(kinds) >= 15, sorted(kinds)  # the mutants reach many different checks


# -- the streaming variant ---------------------------------------------------------------------------


def _chunked(blob: bytes, size: int, pulled: list):
    for i in range(0, len(blob), size):
        pulled.append(i)
        yield blob[i : i + size]


def test_stream_matches_check_blob():
    w = model()
    blob = wts.encode(w)
    pulled = []
    out = check_stream(_chunked(blob, 100, pulled), sha(blob), w, max_bytes=CAP, length=len(blob))
    assert wts.equal(out, w) and len(pulled) == -(-len(blob) // 100)
    out = check_stream(_chunked(blob, 77, []), sha(blob), w, max_bytes=CAP)  # length unknown
    assert wts.equal(out, w)


def test_stream_stops_at_the_cap():
    blob = wts.encode({"w": np.zeros(100_000, np.float32)})
    pulled = []
    with pytest.raises(ProposalRejected, match=r"^blob is over the 10 kB cap \(stopped reading at 10,240 bytes\)$"):
        check_stream(_chunked(blob, 1024, pulled), sha(blob), None, max_bytes=10_000)
    assert len(pulled) == 10  # not one chunk more than needed to pass the cap
    pulled = []
    with pytest.raises(ProposalRejected, match=r"^blob is 400 kB, over the 10 kB cap$"):  # announced length
        check_stream(_chunked(blob, 1024, pulled), sha(blob), None, max_bytes=10_000, length=len(blob))
    assert pulled == []


def test_stream_length_must_hold():
    w = model()
    blob = wts.encode(w)
    with pytest.raises(ProposalRejected, match=f"^unavailable: the transfer ended after {len(blob) - 1:,} of"):
        check_stream(_chunked(blob[:-1], 64, []), sha(blob), w, max_bytes=CAP, length=len(blob))
    with pytest.raises(ProposalRejected, match="^unavailable: more than the 100 bytes announced arrived$"):
        check_stream(_chunked(blob, 64, []), sha(blob), w, max_bytes=CAP, length=100)
