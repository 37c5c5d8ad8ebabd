"""Building a member: the one place a participant and its pieces are wired together.

The in-process runner, a node and the tests all build their members here, from what every member
of one experiment shares (the contract, where blobs are read and written, the vote rule, the round's
``[round]`` policy, where the initial weights live) and what is each member's own (its index,
address and learner; for research, its attack).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cohep.frameworks.learner import TrainableLearner
from cohep.protocol.adoption import Adoption, BlobSource
from cohep.protocol.ballot import Voter
from cohep.protocol.combine import Policy
from cohep.protocol.judge import Judge
from cohep.protocol.misbehaviour import HONEST, Misbehaviour
from cohep.protocol.participant import BlobStore, Participant
from cohep.protocol.records import Stopwatch
from cohep.protocol.vote import VoteRule

if TYPE_CHECKING:  # the chain client pulls in web3; these names serve only the annotations
    from cohep.ledger.ballots import Reveal, SignedBallot, SignedCommit
    from cohep.ledger.coordinator import Coordinator


@dataclass(frozen=True)
class MemberWiring:
    """What a member is wired to: the contract, its store (where its proposals go), the fetcher it
    reads other members' blobs with, the ``[vote]`` rule, the ``[round]`` policy
    (``RoundSection.policy()``) and the initial weights' URI (the experiment file says)."""

    coordinator: Coordinator
    store: BlobStore
    source: BlobSource
    rule: VoteRule
    policy: Policy
    initial_uri: str

    def member(self, index: int, address: str, learner: TrainableLearner, *,
               misbehaviour: Misbehaviour | None = None,
               post_ballot: Callable[[SignedBallot | SignedCommit | Reveal], None] | None = None,
               before_release: Callable[[], None] | None = None) -> Participant:
        """Member ``index`` at ``address`` with its ``learner``; ``misbehaviour``: research only (None:
        honest); ``post_ballot``: signed ballots go there instead of ``vote()``; ``before_release``:
        called before each proposal leaves the member."""
        clock = Stopwatch()
        conduct = HONEST if misbehaviour is None else misbehaviour
        adoption = Adoption(self.coordinator, self.source, self.initial_uri, self.policy, clock)
        judge = Judge(address, self.rule, learner, adoption, clock)
        return Participant(index, address, learner, self.coordinator, self.store, self.rule, self.policy,
                           adoption, Voter(address, self.rule, judge, conduct), clock, conduct=conduct,
                           post_ballot=post_ballot, before_release=before_release)
