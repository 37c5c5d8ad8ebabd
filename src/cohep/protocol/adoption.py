"""Adopting what the chain accepted, and the blobs a member holds while a round is open.

A member's weights are the chain's accepted digest, fetched and checked: the accepted round's
accepted proposals, reused if this member proposed or judged them, else fetched by the URI the
chain recorded and checked against their on-chain digests like any proposal; several are averaged
in slot order (:func:`cohep.protocol.combine.combined`). With a server step (``server_lr`` != 1)
a round steps from the weights it started from: those adopted after the last accepted round before
it, held if this member adopted every accepted round so far, else (a restarted node, or one that
could not adopt for a while) rebuilt round by round from the blobs on chain.

An accepted (or the initial) blob is read from whoever holds it (``BlobSource.fetch_any``): every
member keeps what it verified, so the weights outlive their proposer. A proposal that fails while a
round is open is remembered for that round, so the screens and the verdicts do not fetch it twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cohep.core.errors import IntegrityError
from cohep.frameworks.learner import Scores, Weights
from cohep.protocol.combine import Policy, Proposal, combination, combined
from cohep.protocol.records import Stopwatch

if TYPE_CHECKING:  # the chain client pulls in web3; these names serve only the annotations
    from cohep.ledger.coordinator import Coordinator, RoundState


class BlobSource(Protocol):
    """Reads another member's blob by URI, checked against the digest (a ``cohep.wire`` Fetcher);
    raises IntegrityError with the reason when any check fails. ``proposer``: the member whose
    proposal it is (its URI must name its own store); ``fetch_any``: an accepted blob, from any store
    that holds a copy."""

    def fetch(self, uri: str, digest: bytes, *, proposer: str | None = None) -> Weights: ...

    def fetch_any(self, uri: str, digest: bytes) -> Weights: ...


class NotTheCombination(IntegrityError):
    """The chain's accepted digest is not what its round's accepted slots combine to: the record on
    chain is inconsistent, which no retry can mend (permanent)."""


@dataclass(frozen=True)
class Held:
    """A blob this member holds in the open round: the proposal, and its scores once judged."""

    proposal: Proposal
    scores: Scores | None = None


@dataclass(frozen=True)
class Adopted:
    """Weights just adopted, their sha256, and this member's scores of them if it judged exactly these."""

    weights: Weights
    digest: bytes
    scores: Scores | None


class Adoption:
    """The weights this member holds for the chain's accepted digest, and the open round's blobs."""

    def __init__(self, coordinator: Coordinator, source: BlobSource, initial_uri: str, policy: Policy,
                 clock: Stopwatch):
        self.coordinator, self.source, self.initial_uri = coordinator, source, initial_uri
        self.policy, self.clock = policy, clock
        self.digest = b""  #: sha256 of the adopted weights ("" until the first adoption)
        self.key = b""  #: the chain's accepted digest they stand for (== digest with one proposal)
        self.weights: Weights | None = None  #: the adopted weights (where the next round starts)
        self.round = -1  #: the accepted round they came from (-1: the initial weights)
        self._held: dict[bytes, Held] = {}
        self._failed: dict[tuple[bytes, str, str | None], IntegrityError] = {}  #: the open round's failures

    # -- the open round's blobs ------------------------------------------------------------------
    def proposal(self, uri: str, digest: bytes, proposer: str | None = None) -> Proposal:
        """A proposal: the copy this member proposed or already checked, else fetched and checked
        against the digest (raises IntegrityError with the reason; the same one again, without a
        second fetch, until the round is adopted)."""
        failed = self._failed.get((digest, uri, proposer))
        if failed is not None:
            raise failed
        held = self._held.get(digest)
        if held is not None:
            # a copy already held is no licence for the URI: a member naming another's file (its digest
            # held here) is refused as if fetched, never scored
            place = getattr(self.source, "place", None)
            if place is not None and proposer is not None:
                try:
                    place(uri, digest, proposer)
                except IntegrityError as exc:
                    self._failed[(digest, uri, proposer)] = exc
                    raise
            return held.proposal
        try:
            weights = self.clock.timed("store", self.source.fetch, uri, digest, proposer=proposer)
        except IntegrityError as exc:
            self._failed[(digest, uri, proposer)] = exc
            raise
        proposal = Proposal.decoded(weights)  # as the blob declared it
        self._held[digest] = Held(proposal)
        return proposal

    def give_up(self, uri: str, digest: bytes, proposer: str | None, reason: str) -> None:
        """No time is left to judge this proposal: it is rejected with ``reason`` (as a failed fetch
        is) until the round is adopted, even if its blob is held; an accepted one is still adopted."""
        self._failed[(digest, uri, proposer)] = IntegrityError(reason)

    def accepted(self, uri: str, digest: bytes) -> Proposal:
        """An accepted (or the initial) blob: held, else from any store holding a copy that verifies."""
        held = self._held.get(digest)
        if held is not None:
            return held.proposal
        proposal = Proposal.decoded(self.clock.timed("store", self.source.fetch_any, uri, digest))
        self._held[digest] = Held(proposal)
        return proposal

    def hold(self, digest: bytes, proposal: Proposal, scores: Scores) -> None:
        """Keep what this member proposed or judged, with its scores, until the round is adopted."""
        self._held[digest] = Held(proposal, scores)

    def combine(self, proposals: list[Proposal], digests: list[bytes], start: Weights) -> tuple[Weights, bytes]:
        """What a round of these proposals leaves from ``start``, as the round combines them."""
        return combined(proposals, digests, start=start, **self.policy)

    # -- adopting --------------------------------------------------------------------------------
    def adopt(self, accepted: bytes) -> Adopted | None:
        """Take the weights the chain's accepted digest stands for, if they are not held yet (None:
        nothing changed). Raises IntegrityError when a blob fails its checks or the accepted round's
        slots do not combine to the digest on chain; nothing changes then."""
        if accepted == self.key:
            return None
        r = self.coordinator.accepted_round()
        if r is None:
            digests = [accepted]
            weights, digest = combined([self.accepted(self.initial_uri, accepted)], digests)
        else:
            start = self._start_of(r) if self.policy["server_lr"] != 1.0 else None
            parts, digests = self._accepted_slots(self.coordinator.round_state(r))
            weights, digest = combined(parts, digests, start=start, **self.policy)
        if combination(digests) != accepted:  # the chain's record and its slots disagree
            which = "the initial weights" if r is None else f"round {r + 1}'s accepted slots (rounds counted from 1)"
            raise NotTheCombination(f"the accepted digest {accepted.hex()[:16]} on chain is not the combination of {which}")
        held = self._held.get(digest)
        self.weights, self.round = weights, -1 if r is None else r
        self.digest, self.key = digest, accepted
        self._held.clear()
        self._failed.clear()
        return Adopted(weights, digest, held.scores if held is not None else None)

    def _start_of(self, r: int) -> Weights:
        """The weights accepted round ``r`` started from: those adopted after the last accepted round
        before it, held or rebuilt from the initial weights (or the last held), each accepted round
        from its blobs on chain, checked like proposals."""
        if self.weights is None or self.round >= r:
            initial = self.coordinator.settings().initial_digest
            w, q0 = self.accepted(self.initial_uri, initial).weights, -1
        else:
            w, q0 = self.weights, self.round
        for q in range(q0 + 1, r):
            state = self.coordinator.round_state(q)
            if not state.accepted:
                continue
            parts, digests = self._accepted_slots(state)
            w, _ = combined(parts, digests, start=w, **self.policy)
        return w

    def _accepted_slots(self, state: RoundState) -> tuple[list[Proposal], list[bytes]]:
        """An accepted round's accepted slots in slot order: their proposals and digests."""
        chosen = [(s.uri, s.digest) for s in state.slots if s.accepted]
        return [self.accepted(uri, d) for uri, d in chosen], [d for _, d in chosen]
