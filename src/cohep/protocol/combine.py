"""The round shape (``[round]``) and the model a round leaves: the average of its accepted proposals.

With one proposer per round a single update drags the model towards that member's class mix, and on
class-skewed (non-IID) data the others reject it. With k proposers per round (``[round] proposers``)
the contract records k digests and decides which are accepted (``combine = "each"``: every voter
judges each proposal; ``"average"``: every voter judges the average of all proposals, one vote); the
members then adopt the average of the accepted proposals, in slot order.

Every member and ``cohep audit`` must reach the same bytes from the same blobs, so the average is a
pure function with a fixed order: float tensors are summed in float32, proposal by proposal in slot
order, divided by the count, and cast back to their dtype; integer tensors are summed in int64 and
floor-divided; bool tensors keep the first proposal's values. One accepted proposal is adopted as
is (its own digest), so a one-proposer round is exactly today's round.

Averaging k updates of 1/k epoch each moves the model about as far as one of them, a fifth of what
one client-epoch would. ``[round] server_lr`` (s) scales the step the round takes: the round leaves
``w0 + s (average - w0)``, w0 being the weights it started from (the previously adopted weights, which
every member holds), computed in float32 in a fixed order, so every member and the audit again reach
the same bytes. s = 1 is the plain average, bit for bit (the step is skipped, not computed).

A plain average weighs a member with 300 examples like one with 3,000; on class-skewed data FedAvg's
example-weighted average starts several points higher. ``[round] weighting = "examples"`` weighs each
accepted proposal by the training examples its proposer declared inside the blob (so the on-chain
digest covers the declaration). A declaration is untrusted: each count is clipped to ``weight_cap``
times the lower median of the declared counts being averaged (an undeclared proposal counts as one
example), so a member that inflates its count gains at most that factor over an honest median
member, and its proposal still faces the vote.

The contract cannot average, so it records an identity instead: the accepted slot's digest, or
sha256 chained over the accepted slots' digests in slot order (:func:`combination`); the adopted
weights' own sha256 is recomputed off chain from the blobs, each checked against its digest first.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, TypedDict

import numpy as np

from cohep.core.settings import Section, setting
from cohep.frameworks.learner import Weights
from cohep.wire.weights import declared_examples
from cohep.wire.weights import digest as weights_digest


class Policy(TypedDict):
    """How a round's accepted proposals combine (:meth:`RoundSection.policy`; :func:`combined`'s keywords)."""

    server_lr: float
    weighting: Literal["equal", "examples"]
    weight_cap: float


@dataclass(frozen=True)
class Proposal:
    """A proposal's weights and the training examples its proposer declared with them (None: none).

    The count travels beside the weights, never on them: a copy of the weights (``dict(w)``) cannot
    drop it, and what a member proposed, judged and adopted carries the count its blob declares."""

    weights: Weights
    examples: int | None = None

    @classmethod
    def decoded(cls, weights: Weights) -> Proposal:
        """Weights as :func:`cohep.wire.weights.decode` returned them, with the count their blob declares."""
        return cls(weights, declared_examples(weights))


@dataclass(frozen=True)
class RoundSection(Section):
    """``[round]``: how many members propose per round and what the voters judge."""

    section: ClassVar[str] = "round"

    proposers: int = setting(1, ge=1, le=64, help="Distinct proposers per round (k); at most the learners.")
    #: "each": vote on every proposal, adopt the average of the accepted ones;
    #: "average": vote once on the average of all proposals, adopt it if accepted
    combine: Literal["each", "average"] = setting("each", help="Vote on each proposal, or on the average of all of them.")
    #: the round leaves w0 + server_lr * (average - w0); 1: the average itself
    server_lr: float = setting(1.0, gt=0, le=64, help="Server step: a round leaves w0 + s (average - w0) (1: the average).")
    #: "equal": every accepted proposal counts the same; "examples": by its declared training examples
    weighting: Literal["equal", "examples"] = setting(
        "equal", help="Average accepted proposals equally, or by the training examples each declares (capped).")
    #: "examples": a declared count weighs at most weight_cap times the lower median declaration
    weight_cap: float = setting(2.0, ge=1, le=1000, help="Cap on a declared count, in round medians.")

    def policy(self) -> Policy:
        """What this section tells :func:`combined` (its keywords): how a round's accepted proposals combine."""
        return Policy(server_lr=self.server_lr, weighting=self.weighting, weight_cap=self.weight_cap)


def combination(digests: Sequence[bytes]) -> bytes:
    """The contract's identity of a set of proposals in slot order: one digest as is; several
    chained as ``h = d_1``, then ``h = sha256(h || d_i)`` (``Coordinator._combination``)."""
    if not digests:
        raise ValueError("no digests to combine")
    h = bytes(digests[0])
    for d in digests[1:]:
        h = hashlib.sha256(h + bytes(d)).digest()
    return h


def low_median(values) -> float:
    """The lower of the two middle values (the middle one for an odd count): with two proposals the
    smaller declaration, so one liar beside one honest member cannot lift the cap (a mean of the two
    would follow the lie)."""
    ordered = sorted(float(v) for v in values)
    return ordered[(len(ordered) - 1) // 2]


def shares(declared: Sequence[int | None], cap: float) -> list[float]:
    """Each proposal's share of an example-weighted average: its declared count (None: 1), clipped to
    ``cap`` times the lower median declaration, over the clipped total. float64 throughout, so every
    member computes the same shares."""
    if not declared:
        raise ValueError("no proposals to weigh")
    if not (math.isfinite(cap) and cap >= 1):
        raise ValueError(f"weight_cap must be a finite number >= 1, got {cap!r}")
    counts = np.array([1 if n is None else n for n in declared], np.float64)
    counts = np.minimum(counts, np.float64(cap) * low_median(counts))
    return [float(c) for c in counts / counts.sum()]


def average(proposals: Sequence[Weights], weights: Sequence[float] | None = None) -> Weights:
    """The average of proposals (same names, shapes and dtypes: checked blobs are) in their order.

    Float tensors: float32 sum in the given order, divided by the count, cast back to the dtype; with
    ``weights`` (the proposals' shares, from :func:`shares`) the float32 sum of share x proposal in
    order instead. Integer tensors: int64 sum floor-divided by the count (counters, not directions:
    never weighted). Bool tensors: the first proposal's.
    """
    if not proposals:
        raise ValueError("nothing to average")
    if weights is not None and len(weights) != len(proposals):
        raise ValueError("one weight per proposal")
    first = proposals[0]
    if len(proposals) == 1:
        return {k: np.array(v, copy=True) for k, v in first.items()}
    m = len(proposals)
    factors = None if weights is None else [np.float32(w) for w in weights]
    out: dict[str, np.ndarray] = {}
    for name, ref in first.items():
        ref = np.asarray(ref)
        parts = [np.asarray(p[name]) for p in proposals]
        if any(p.shape != ref.shape or p.dtype != ref.dtype for p in parts):
            raise ValueError(f"{name}: proposals differ in shape or dtype")
        if ref.dtype == np.bool_:
            out[name] = ref.copy()
        elif np.issubdtype(ref.dtype, np.integer):
            counts = parts[0].astype(np.int64)
            for p in parts[1:]:
                counts = counts + p.astype(np.int64)
            out[name] = (counts // m).astype(ref.dtype)
        elif factors is not None:
            acc = factors[0] * parts[0].astype(np.float32)
            for f, p in zip(factors[1:], parts[1:]):
                acc = acc + f * p.astype(np.float32)
            out[name] = acc.astype(ref.dtype)
        else:
            acc = parts[0].astype(np.float32)
            for p in parts[1:]:
                acc = acc + p.astype(np.float32)
            out[name] = (acc / np.float32(m)).astype(ref.dtype)
    return out


def step(start: Weights, target: Weights, server_lr: float) -> Weights:
    """``start + server_lr * (target - start)`` for float tensors, elementwise in float32 (the
    difference, then the product, then the sum: each correctly rounded, so the same bytes everywhere),
    cast back to the dtype. Integer and bool tensors (counters, masks: not directions) are the target's."""
    lr = np.float32(server_lr)
    out: dict[str, np.ndarray] = {}
    for name, t in target.items():
        t = np.asarray(t)
        if name not in start:
            raise ValueError(f"{name}: not in the round's start weights")
        w0 = np.asarray(start[name])
        if w0.shape != t.shape or w0.dtype != t.dtype:
            raise ValueError(f"{name}: the start weights differ in shape or dtype")
        if t.dtype == np.bool_ or np.issubdtype(t.dtype, np.integer):
            out[name] = t.copy()
            continue
        w0 = w0.astype(np.float32)
        out[name] = (w0 + lr * (t.astype(np.float32) - w0)).astype(t.dtype)
    return out


def adopted(proposals: Sequence[Weights], digests: Sequence[bytes], *, start: Weights | None = None,
            server_lr: float = 1.0, weighting: str = "equal", weight_cap: float = 2.0) -> tuple[Weights, bytes]:
    """:func:`combined` of weights as decoded from their blobs (each with the count its blob declares):
    what ``cohep audit`` recomputes from the blobs alone."""
    return combined([Proposal.decoded(p) for p in proposals], digests, start=start, server_lr=server_lr,
                    weighting=weighting, weight_cap=weight_cap)


def combined(proposals: Sequence[Proposal], digests: Sequence[bytes], *, start: Weights | None = None,
             server_lr: float = 1.0, weighting: str = "equal", weight_cap: float = 2.0) -> tuple[Weights, bytes]:
    """The weights a round leaves and their sha256 (canonically encoded, so every member gets the
    same digest). ``server_lr = 1``: the one accepted proposal as is, or the average of several
    (``weighting = "examples"``: weighted by the counts the proposals declare, see :func:`shares`).
    Otherwise the round's step from ``start`` (the weights it began from) is scaled:
    ``start + server_lr * (average - start)``."""
    if len(proposals) != len(digests) or not proposals:
        raise ValueError("one digest per accepted proposal, at least one")
    if not (math.isfinite(server_lr) and server_lr > 0):
        raise ValueError(f"server_lr must be a finite number > 0, got {server_lr!r}")
    if weighting not in ("equal", "examples"):
        raise ValueError(f"weighting must be 'equal' or 'examples', got {weighting!r}")
    portions = None
    if weighting == "examples" and len(proposals) > 1:
        portions = shares([p.examples for p in proposals], weight_cap)
    weights = [p.weights for p in proposals]
    if server_lr == 1.0:
        if len(weights) == 1:
            return weights[0], bytes(digests[0])
        avg = average(weights, portions)
        return avg, weights_digest(avg)
    if start is None:
        raise ValueError("a server step needs the round's start weights")
    out = step(start, average(weights, portions), server_lr)
    return out, weights_digest(out)
