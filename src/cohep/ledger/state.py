"""What the Coordinator contract holds and decides, as frozen values the client reads back.

Nothing here is computed from the protocol's rules: each value is a view's result or an event's
arguments, reshaped (a round's slots gathered, its deadlines as block numbers, its voters named).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from web3 import Web3


@dataclass(frozen=True)
class Outcome:
    """How the contract closed a round (zero digest if void).

    digest: the new accepted digest if any slot was accepted, else the same combination of the
    proposed slots (with one slot: the proposal's digest). required: approvals each slot (or the
    average) needed, 0 for a void round. approvals: slot 0's (or the average's); slot_approvals: all.
    proposed_slots / accepted_slots: bitmaps over the round's slots.
    """

    round: int
    accepted: bool
    void: bool
    digest: bytes
    approvals: int
    votes: int
    proposer: str
    required: int
    proposed_slots: int = 0
    accepted_slots: int = 0
    slot_approvals: tuple[int, ...] = ()


@dataclass(frozen=True)
class BallotBatch:
    """What submit_ballots did: the voters it counted, and (index in the batch, signer, reason) of
    every ballot the contract skipped."""

    round: int
    counted: tuple[str, ...]
    skipped: tuple[tuple[int, str, str], ...]


@dataclass(frozen=True)
class MemberStats:
    proposed: int
    accepted: int
    votes_cast: int
    votes_with_majority: int
    missed: int  # duties missed in total: proposals not made in time, votes not cast (or not revealed)
    missed_in_a_row: int  # reset by any duty done (or rejoin); max_missed of them suspend
    suspended: bool
    missed_proposals: int = 0
    missed_votes: int = 0  #: no vote (sealed: no commitment)
    missed_reveals: int = 0  #: sealed: committed, never revealed


@dataclass(frozen=True)
class SlotState:
    """One proposer slot of a round."""

    slot: int
    proposer: str
    proposed: bool
    digest: bytes
    uri: str
    approvals: int
    accepted: bool


@dataclass(frozen=True)
class RoundState:
    """Deadlines are the last block (inclusive) at which propose / vote are accepted.

    voters are the members expected to vote (active when the round started, less the proposer of a
    one-slot round); eligible is their number and required the approvals each slot (or the average)
    needs, both fixed for the round. proposer, digest, uri and approvals are slot 0's; ``slots`` has
    every slot. ``proposed`` means voting is open (every slot proposed, or some and the proposal
    window over); proposed_block is the block it opened at.

    Sealed votes (``sealed``): the vote window is the commit phase (``commit_deadline`` is
    ``vote_deadline``); the reveal phase opens at ``reveal_block`` (every voter committed, or the
    commit phase over) and lasts until ``reveal_deadline``. ``commits`` counts the commitments,
    ``votes`` (``reveals``) the revealed votes, the only ones counted.
    """

    round: int
    proposer: str
    start_block: int
    voters: tuple[str, ...]
    eligible: int
    required: int
    proposed: bool
    proposed_block: int | None
    digest: bytes
    uri: str
    approvals: int
    votes: int
    finalized: bool
    accepted: bool
    void: bool
    proposal_deadline: int
    vote_deadline: int | None
    slots: tuple[SlotState, ...] = ()
    proposed_slots: int = 0
    accepted_slots: int = 0
    sealed: bool = False
    commits: int = 0
    reveal_block: int | None = None
    reveal_deadline: int | None = None
    reveal_window: int = 0  #: the deployment's (sealed)

    @property
    def commit_deadline(self) -> int | None:
        """Sealed: the last block a commitment is taken at (the vote window's end); None otherwise."""
        return self.vote_deadline if self.sealed else None

    @property
    def reveals(self) -> int:
        return self.votes

    @property
    def last_deadline(self) -> int | None:
        """The last block this round's voting (sealed: revealing) can take place in, once it is known."""
        if self.sealed:
            if self.reveal_deadline is not None:
                return self.reveal_deadline
            return None if self.vote_deadline is None else self.vote_deadline + self.reveal_window
        return self.vote_deadline

    def slot_of(self, member: str) -> int | None:
        """The slot ``member`` holds in this round, or None."""
        return next((s.slot for s in self.slots if s.proposer == member), None)


@dataclass(frozen=True)
class Settings:
    """Fixed at deployment; cached by the client since the contract cannot change them."""

    members: tuple[str, ...]
    threshold_num: int
    threshold_den: int
    proposal_window: int
    vote_window: int
    max_missed: int
    seed: bytes
    initial_digest: bytes
    model_digest: bytes
    deployed_block: int
    proposers: int = 1  #: slots (distinct proposers) per round
    vote_on_average: bool = False  #: combine "average": one vote on the average of the slots
    sealed: bool = False  #: votes are committed, then revealed
    reveal_window: int = 0
    #: the draw's seed (start() mixed the deployment block's hash into ``seed``); empty before start()
    draw_seed: bytes = bytes(32)
    #: aggregated ballots (AggregateCoordinator): blocks a post can be challenged in; 0 for Coordinator
    challenge_window: int = 0

    @property
    def combine(self) -> str:
        return "average" if self.vote_on_average else "each"

    @property
    def threshold(self) -> Fraction:
        return Fraction(self.threshold_num, self.threshold_den)


def settings_from(call: Callable[[str], Any]) -> Settings:
    """The deployment's settings, each read from its view (``call(name)`` gives the view's result)."""
    return Settings(
        members=tuple(call("members")),
        threshold_num=call("threshold_num"),
        threshold_den=call("threshold_den"),
        proposal_window=call("proposal_window"),
        vote_window=call("vote_window"),
        max_missed=call("max_missed"),
        seed=bytes(call("seed")),
        initial_digest=bytes(call("initial_digest")),
        model_digest=bytes(call("model_digest")),
        deployed_block=call("deployed_block"),
        proposers=call("proposers"),
        vote_on_average=bool(call("vote_on_average")),
        sealed=bool(call("sealed")),
        reveal_window=call("reveal_window"),
        draw_seed=bytes(call("draw_seed")),
    )


def round_state_from(r: int, info: tuple, s: Settings, slot_state: Callable[[int], SlotState]) -> RoundState:
    """Round r from the contract's ``round_info(r)`` and the settings; ``slot_state(j)`` reads slot j
    (asked only for a round of several slots: a one-slot round's slot is in ``info``)."""
    (proposer, start, active, eligible, required, proposed, proposed_block, digest, uri,
     approvals, votes, finalized, accepted, void, n_slots, proposed_slots, accepted_slots, commits, reveal_block) = info
    proposer = Web3.to_checksum_address(proposer)
    slots: tuple[SlotState, ...]
    if n_slots == 1:
        slots = (SlotState(0, proposer, bool(proposed_slots & 1), bytes(digest), uri, int(approvals),
                           bool(accepted_slots & 1)),)
    else:
        slots = tuple(slot_state(j) for j in range(n_slots))
    voters = tuple(m for i, m in enumerate(s.members)
                   if active >> i & 1 and (n_slots > 1 or m != proposer))
    return RoundState(
        round=r,
        proposer=proposer,
        start_block=start,
        voters=voters,
        eligible=eligible,
        required=required,
        proposed=proposed,
        proposed_block=proposed_block if proposed else None,
        digest=bytes(digest),
        uri=uri,
        approvals=approvals,
        votes=votes,
        finalized=finalized,
        accepted=accepted,
        void=void,
        proposal_deadline=start + s.proposal_window,
        vote_deadline=proposed_block + s.vote_window if proposed else None,
        slots=slots,
        proposed_slots=int(proposed_slots),
        accepted_slots=int(accepted_slots),
        sealed=s.sealed,
        commits=int(commits),
        reveal_block=int(reveal_block) if s.sealed and reveal_block else None,
        reveal_deadline=int(reveal_block) + s.reveal_window if s.sealed and reveal_block else None,
        reveal_window=s.reveal_window,
    )
