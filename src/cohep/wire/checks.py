"""Checks on weights another member proposed, in the order a voter runs them before it scores them.

Everything a proposer sends is untrusted: the blob, its size, its tensor names, shapes, dtypes and
values. Each check turns a failure into ``ProposalRejected(reason)``, a one-line reason the voter
records with its reject vote, never a crash and never unbounded memory. The checks run cheapest and
most fundamental first, so a reason names the first thing wrong:

1. size: over ``max_bytes`` is refused before the blob is read whole (a stream stops at the cap);
2. digest: sha256 of the bytes must equal the digest announced on chain (``weights.check_digest``);
3. decode: well-formed canonical safetensors (``weights.decode``);
4. names, shapes and dtypes against the reference, the model spec's own initial weights (``weights.mismatch``);
5. values: every float finite (a NaN or inf would poison every learner that adopts it).

Failures come in three kinds, because a reader of an accepted blob must tell them apart:
``Unavailable`` (``timeout: ...``, ``unavailable: ...``: the bytes did not arrive; another try or
another store may succeed), a bad copy (over the cap, digest mismatch: these bytes are not the blob;
another store may hold the right ones) and ``BadBlob`` (the bytes are the blob the digest names, and
that blob fails a check: no store and no retry can help).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from cohep.core.errors import IntegrityError
from cohep.wire import weights as wts

#: Reasons are recorded next to votes: one line, bounded.
MAX_REASON_CHARS = 300
#: Header allowance in ``default_max_bytes``: the JSON header of a model with a few hundred tensors.
HEADER_SLACK = 64 * 1024


class ProposalRejected(IntegrityError):
    """A proposal failed a check; ``reason`` is the one line a voter records with its reject vote."""

    def __init__(self, reason: str):
        reason = " ".join(str(reason).split())
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 3] + "..."
        super().__init__(reason)
        self.reason = reason


class Unavailable(ProposalRejected):
    """The blob did not arrive (refused, withheld, too slow, cut short): transient, another try or
    another store may succeed. Reasons start ``unavailable:`` or ``timeout:``."""


class BadBlob(ProposalRejected):
    """The bytes hash to the announced digest and still fail a check: the blob itself is bad, so
    every copy of it is (permanent)."""


def size_text(n: int) -> str:
    """Bytes for people: '912 MB', '64 MB', '1.05 kB', '17 bytes'."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{n} bytes"


def over_cap(size: int, max_bytes: int) -> str:
    """'blob is 912 MB, over the 64 MB cap' (exact byte counts where the rounded ones look equal)."""
    a, b = size_text(size), size_text(max_bytes)
    if a == b:
        a, b = f"{size:,} bytes", f"{max_bytes:,} bytes"
    return f"blob is {a}, over the {b} cap"


def _nbytes(ref: Any) -> int:
    count = 1
    for dim in ref.shape:
        count *= int(dim)
    return count * np.dtype(str(ref.dtype)).itemsize


def default_max_bytes(reference: Mapping[str, Any]) -> int:
    """The largest blob worth reading for this model: 1.05 x its tensor bytes plus header slack.

    The canonical encoding of weights that fit the reference is its tensor bytes plus a JSON header
    of about two names per tensor; anything much larger cannot pass the shape checks, so it is
    refused by size before it is read whole.
    """
    data = sum(_nbytes(ref) for ref in reference.values())
    names = sum(2 * len(name.encode("utf-8")) + 96 for name in reference)
    return int(data * 1.05) + HEADER_SLACK + names


def check_values(weights: Mapping[str, np.ndarray]) -> None:
    """Every float value finite; raises ProposalRejected naming the first tensor that is not."""
    for name, array in weights.items():
        if array.dtype.kind == "f":
            bad = wts.count_chunked(array, lambda part: ~np.isfinite(part))
            if bad:
                values = "value" if bad == 1 else "values"
                raise ProposalRejected(f"{wts.show(name)} holds {bad} non-finite {values} (NaN or inf)")


def check_weights(weights: Mapping[str, np.ndarray], reference: Mapping[str, Any] | None) -> None:
    """Checks 4 and 5 on decoded weights: names, shapes, dtypes against ``reference``, then values."""
    if reference is not None:
        reason = wts.mismatch(weights, reference)
        if reason:
            raise ProposalRejected(reason)
    check_values(weights)


@contextmanager
def rejecting() -> Iterator[None]:
    """Within it, an IntegrityError (a check in ``weights``) becomes ProposalRejected, same reason."""
    try:
        yield
    except ProposalRejected:
        raise
    except IntegrityError as exc:
        raise ProposalRejected(str(exc)) from None


def _checked(actual: bytes, digest: bytes, blob: bytes | bytearray,
             reference: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Checks 2 to 5 on a whole blob whose sha256 is ``actual``; past the digest, a failure is BadBlob."""
    with rejecting():
        wts.check_digest(actual, digest)
    try:
        with rejecting():
            weights = wts.decode(blob)
        check_weights(weights, reference)
    except ProposalRejected as exc:
        raise BadBlob(exc.reason) from None
    return weights


def check_blob(blob: bytes, digest: bytes, reference: Mapping[str, Any] | None, *,
               max_bytes: int) -> dict[str, np.ndarray]:
    """All checks on a blob already in memory; returns the weights or raises ProposalRejected.

    ``reference`` None skips the name/shape/dtype check (only when the model is not known).
    """
    if len(blob) > max_bytes:
        raise ProposalRejected(over_cap(len(blob), max_bytes))
    return _checked(wts.digest_bytes(blob), digest, blob, reference)


def check_stream(chunks: Iterable[bytes], digest: bytes, reference: Mapping[str, Any] | None, *,
                 max_bytes: int, length: int | None = None,
                 keep: Callable[[bytes, bytearray], None] | None = None) -> dict[str, np.ndarray]:
    """All checks on a blob arriving in chunks, hashed as it comes; memory is the blob plus a chunk.

    ``length`` is the size the transport announced (Content-Length, file size), itself untrusted:
    over the cap is refused before the first chunk is read; otherwise the buffer is allocated once
    and the stream must deliver exactly that many bytes. Without it the stream stops as soon as it
    passes the cap. The weights returned are views into the one buffer (no second copy). ``keep``:
    called with (digest, bytes) once every check has passed (a member keeps what it verified).
    """
    if length is not None and length > max_bytes:
        raise ProposalRejected(over_cap(length, max_bytes))
    buffer = bytearray(length) if length is not None else bytearray()
    sha, received = hashlib.sha256(), 0
    for chunk in chunks:
        end = received + len(chunk)
        if end > max_bytes:
            raise ProposalRejected(f"blob is over the {size_text(max_bytes)} cap "
                                   f"(stopped reading at {end:,} bytes)")
        if length is not None:
            if end > length:
                raise Unavailable(f"unavailable: more than the {length:,} bytes announced arrived")
            buffer[received:end] = chunk
        else:
            buffer += chunk
        sha.update(chunk)
        received = end
    if length is not None and received != length:
        raise Unavailable(f"unavailable: the transfer ended after {received:,} of {length:,} bytes")
    weights = _checked(sha.digest(), digest, buffer, reference)
    if keep is not None:
        keep(bytes(digest), buffer)
    return weights
