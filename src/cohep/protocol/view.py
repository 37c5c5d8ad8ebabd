"""What a member reads of the chain, read once per step by its caller and passed down.

The in-process runner reads a round once for all its members; a node reads it once per look at the
chain. Either way a member never reads it again behind its caller's back: :class:`RoundView` is the
round's state and the block number at the read, :class:`Decided` how the contract closed a round.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cohep.protocol.combine import combination

if TYPE_CHECKING:  # the chain client pulls in web3; these names serve only the annotations
    from cohep.ledger.coordinator import Coordinator, Outcome, RoundState


@dataclass(frozen=True)
class RoundView:
    """A round as the chain showed it: its state and the block number when it was read."""

    state: RoundState
    block: int

    @classmethod
    def read(cls, coordinator: Coordinator, r: int) -> RoundView:
        return cls(coordinator.round_state(r), coordinator.chain.block_number())

    @property
    def round(self) -> int:
        return self.state.round

    def proposals_open(self) -> bool:
        """The block is within the proposal window (a slot not proposed by then counts as silent)."""
        return self.block <= self.state.proposal_deadline

    def voting_open(self) -> bool:
        """Voting has opened (the proposals are in) and the block is within the vote window (sealed
        votes: the commit phase, until every voter has committed)."""
        deadline = self.state.vote_deadline
        if self.state.sealed and self.state.reveal_block is not None:
            return False
        return self.state.proposed and deadline is not None and self.block <= deadline

    def reveal_open(self) -> bool:
        """Sealed votes: the reveal phase has opened and the block is within it."""
        deadline = self.state.reveal_deadline
        return self.state.sealed and deadline is not None and self.block <= deadline


@dataclass(frozen=True)
class Decided:
    """How the contract closed a round, as a member's row records it.

    ``digest``: the combination of the accepted slots' digests (the new accepted digest), or of the
    proposed slots' when none was accepted; the round's own digest when nothing was proposed."""

    round: int
    accepted: bool
    void: bool
    digest: bytes
    proposer: str  #: slot 0's proposer

    @classmethod
    def of(cls, outcome: Outcome) -> Decided:
        """From the ``Finalized`` event of the member that closed the round."""
        return cls(outcome.round, outcome.accepted, outcome.void, outcome.digest, outcome.proposer)

    @classmethod
    def from_state(cls, state: RoundState) -> Decided:
        """From a finalized round's state on chain (a node that did not close the round itself)."""
        chosen = [s.digest for s in state.slots if (s.accepted if state.accepted else s.proposed)]
        digest = combination(chosen) if chosen else state.digest
        return cls(state.round, state.accepted, state.void, digest, state.proposer)
