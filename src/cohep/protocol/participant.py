"""One member's side of the protocol, whoever drives it: the in-process runner or an autonomous node.

A participant does this member's duty in a round its caller has read from the chain
(:class:`~cohep.protocol.view.RoundView`): propose when the contract drew it, otherwise fetch the
proposals by the digests and URIs recorded on chain, check them, score them on its private vote set
and vote (:mod:`cohep.protocol.ballot`) or, with sealed votes, commit to its vote when voting opens and
reveal it when the reveal phase opens; afterwards it adopts whatever the chain accepted
(:mod:`cohep.protocol.adoption`). Its adopted weights are the chain's accepted digest, fetched and
checked, and whether it has voted is the chain's ballot; the one state of its own is its
``vote.strikes`` record (:mod:`cohep.protocol.strikes`), which a node saves.

Everything that comes from another member is untrusted: a proposal that fails any check (URI
outside the allowed stores, size cap, digest, names, shapes and dtypes against the model, finite
values) or scores a non-finite number is a reject vote with the reason in the records, never a crash.
Build one with :class:`cohep.protocol.member.MemberWiring`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cohep.core.errors import ChainError
from cohep.frameworks.learner import Score, Scores, TrainableLearner, Weights
from cohep.frameworks.privacy import BudgetSpent
from cohep.protocol.adoption import Adoption
from cohep.protocol.ballot import Voter
from cohep.protocol.combine import Policy, Proposal
from cohep.protocol.duty import Duty, PendingVote
from cohep.protocol.judge import all_finite
from cohep.protocol.misbehaviour import HONEST, Misbehaviour
from cohep.protocol.records import RoundRecord, Stopwatch
from cohep.protocol.strikes import Strikes
from cohep.protocol.view import Decided, RoundView
from cohep.protocol.vote import VoteRule

if TYPE_CHECKING:  # the chain client pulls in web3; these names serve only the annotations
    from cohep.ledger.ballots import Reveal, SignedBallot, SignedCommit
    from cohep.ledger.coordinator import Coordinator, Outcome

__all__ = ["BlobStore", "Participant", "initial_record"]

NO_SCORES = Scores(Score(math.nan, math.nan), Score(math.nan, math.nan))


class BlobStore(Protocol):
    """Where this member's proposals go (a ``cohep.wire`` WeightStore): (digest, URI) of the blob."""

    def put(self, weights: Weights, examples: int | None = None) -> tuple[bytes, str]: ...


def initial_record(index: int, rule: VoteRule, scores: Scores, attack: str = "") -> RoundRecord:
    """A member's round-0 row: its scores of the initial weights, before any proposal."""
    return RoundRecord(
        round=0, learner=index, proposer=-1, is_proposer=False, vote="", accepted=False, void=False,
        vote_score=math.nan, current_vote_score=rule.score(scores.vote), proposal_test_accuracy=math.nan,
        test_accuracy=scores.test.accuracy, test_loss=scores.test.loss, digest="", attack=attack,
    )


@dataclass
class Participant:
    """One member: its address, its learner (private data), how it reaches the chain and the stores."""

    index: int
    address: str
    learner: TrainableLearner
    coordinator: Coordinator  #: shared in-process; the node's own otherwise
    store: BlobStore  #: this member's store: where its proposals go and what its URIs name
    rule: VoteRule
    policy: Policy  #: ``[round]``: how a round's accepted proposals combine
    adoption: Adoption
    voter: Voter
    clock: Stopwatch
    #: research only: a malicious member's attack (cohep.research.attacks.Behaviour)
    conduct: Misbehaviour = HONEST
    #: ``[chain] ballots = "signed"``: the member signs an EIP-712 ballot (sealed votes: a signed
    #: commitment, later its reveal) and hands it here (the runner's batch, or a node's ballot box)
    #: instead of sending a transaction; someone submits the batch
    post_ballot: Callable[[SignedBallot | SignedCommit | Reveal], None] | None = None
    #: called after a proposal is trained and before it leaves this member (a node saves its spent
    #: privacy budget here, so a restart never forgets a release)
    before_release: Callable[[], None] | None = None
    strikes: Strikes = field(default_factory=Strikes)  #: ``vote.strikes``: this member's own record
    #: sealed votes committed and not yet known revealed, by round (a node restores them after a restart)
    pending: dict[int, PendingVote] = field(default_factory=dict)
    #: called with ``pending`` whenever it changes, before a commitment leaves this member (a node
    #: writes it to disk: a restarted node must still be able to reveal)
    save_pending: Callable[[dict[int, PendingVote]], None] | None = None
    current: Scores = NO_SCORES  #: the adopted weights' scores on the private sets
    #: round -> the salt of this member's sealed vote; None: 32 secret random bytes (``ballots.new_salt``).
    #: The in-process runner derives them from the seed so a run replays byte for byte (its members
    #: share one process, so there is nobody to keep them from)
    salt: Callable[[int], bytes] | None = None
    _duty: dict[int, Duty] = field(default_factory=dict, repr=False)  #: round -> what it did

    @property
    def digest(self) -> bytes:
        """sha256 of the adopted weights (b"" until the first sync)."""
        return self.adoption.digest

    @property
    def seconds(self) -> dict[str, float]:
        return self.clock.seconds

    # -- adopting ------------------------------------------------------------------------------
    def sync(self, accepted: bytes) -> bool:
        """Adopt the weights the chain's ``accepted`` digest (read by the caller) stands for, if they
        are not held yet; True if anything changed. IntegrityError if they cannot be had yet."""
        got = self.adoption.adopt(accepted)
        if got is None:
            return False
        self.learner.accept(got.weights)
        self.conduct.adopted(got.weights)
        self.current = got.scores if got.scores is not None else \
            self.clock.timed("evaluation", self.learner.evaluate, got.weights)
        return True

    # -- duties --------------------------------------------------------------------------------
    def act(self, view: RoundView) -> Duty | None:
        """Do this member's pending duty in the round ``view`` shows, if any: calling it again, or after
        a restart, never proposes or votes twice. A member holding a slot of a round with several
        proposes first and votes once voting opens."""
        state, r = view.state, view.round
        if state.finalized:
            return None
        done = self._duty.get(r)
        slot = state.slot_of(self.address)
        if slot is not None and not state.slots[slot].proposed and not (done and (done.proposed or done.declined)):
            return self._propose(r, slot) if view.proposals_open() else None
        if self.address not in state.voters:
            return None  # not a voter of this round (its proposer, or suspended)
        if state.sealed:
            return self._sealed(view, done)
        if done is not None and done.voted:
            return None
        if not view.voting_open():
            return None  # nothing to judge yet, or too late
        if state.votes and self.coordinator.ballot_bits(r, self.address) is not None:  # no vote counted: not ours either
            return None
        return self._vote(view)

    def _sealed(self, view: RoundView, done: Duty | None) -> Duty | None:
        """Sealed votes: commit while voting is open, reveal once the reveal phase opens (both once,
        also across a restart: the chain says what was committed and revealed, ``pending`` the salt)."""
        r, state = view.round, view.state
        if view.voting_open():
            if done is not None and done.voted:
                return None
            if state.commits and self.coordinator.commitment(r, self.address) is not None:
                return None  # committed before a restart: the reveal phase will come
            return self._commit(view)
        if not view.reveal_open() or (done is not None and done.revealed):
            return None
        pend = self.pending.get(r)
        if pend is None or not self.coordinator.has_committed(r, self.address):
            return None  # nothing committed on chain (or the salt is lost): nothing to reveal
        if state.votes and self.coordinator.ballot_bits(r, self.address) is not None:
            return None  # revealed already (before a restart, or relayed)
        return self._reveal(r, pend)

    def _propose(self, r: int, slot: int = 0) -> Duty:
        duty = self._duty.setdefault(r, Duty(r))
        try:
            weights = self.clock.timed("training", self.learner.propose)
        except BudgetSpent as exc:  # a private learner out of budget stays silent; its slot is not proposed
            duty.declined, duty.reason = True, str(exc)
            return duty
        if not all_finite(weights):  # a diverged proposer stays silent; its slot counts as not proposed
            duty.declined = True
            duty.reason = "training diverged (non-finite weights): nothing proposed"
            return duty
        if self.before_release is not None:
            self.before_release()
        weights = self.conduct.propose(self.learner.current, weights)
        examples = self.learner.examples() if self.policy["weighting"] == "examples" else None
        digest, uri = self.clock.timed("store", self.store.put, weights, examples)
        self.coordinator.propose(self.address, r, digest, uri, slot)
        duty.proposed, duty.digest = True, digest
        duty.scores = self.clock.timed("evaluation", self.learner.evaluate, weights)
        self.adoption.hold(digest, Proposal(weights, examples), duty.scores)  # as others read it from the blob
        return duty

    def _vote(self, view: RoundView) -> Duty:
        r = view.round
        on_average = self.coordinator.settings().vote_on_average
        ballot = self.voter.ballot(view.state, self.current, self.strikes, on_average)
        if self.post_ballot is None:
            self.coordinator.vote_slots(self.address, r, ballot.approvals, ballot.scores)
        else:  # signed ballots: the same approvals and scores, submitted by someone in one batch
            self.post_ballot(self.coordinator.sign_ballot(self.address, r, ballot.approvals, ballot.scores))
        duty = self._duty.get(r, Duty(r)).after_vote(ballot.duty)
        self._duty[r] = duty
        return duty

    def _commit(self, view: RoundView) -> Duty:
        from cohep.ledger import ballots as B

        r = view.round
        on_average = self.coordinator.settings().vote_on_average
        pend = self.pending.get(r)  # a commitment prepared before a restart: the same one, not a new verdict
        ballot = None
        if pend is None:
            ballot = self.voter.ballot(view.state, self.current, self.strikes, on_average)
            salt = self.salt(r) if self.salt is not None else B.new_salt()
            pend = PendingVote(ballot.approvals, tuple(ballot.scores), salt, ballot.duty.reason,
                               ballot.duty.verdicts)
            self.pending = {k: v for k, v in self.pending.items() if k >= r} | {r: pend}
            if self.save_pending is not None:
                self.save_pending(self.pending)  # on disk before the commitment leaves
        commitment = B.commitment(self.coordinator.ballot_domain(), r, self.address, pend.approvals, pend.scores,
                                  pend.salt)
        if self.post_ballot is None:
            self.coordinator.commit_vote(self.address, r, commitment)
        else:
            self.post_ballot(self.coordinator.sign_commit(self.address, r, commitment))
        cast = ballot.duty if ballot is not None else pend.duty(r)
        cast.sealed = True
        duty = self._duty.get(r, Duty(r)).after_vote(cast)
        self._duty[r] = duty
        return duty

    def _reveal(self, r: int, pend: PendingVote) -> Duty:
        from cohep.ledger.ballots import Reveal

        if self.post_ballot is None:
            self.coordinator.reveal_vote(self.address, r, pend.approvals, list(pend.scores), pend.salt)
        else:
            self.post_ballot(Reveal(self.address, r, pend.approvals, pend.scores, pend.salt))
        duty = self._duty.get(r) or pend.duty(r)
        duty.revealed = True
        self._duty[r] = duty
        return duty

    def finalize(self, r: int) -> Outcome | None:
        """Close round ``r`` (anyone may, once the contract allows); None if someone else already did."""
        try:
            return self.coordinator.finalize(self.address, r)
        except ChainError as exc:
            if self.coordinator.closed(r):  # another member closed it first (or its finalize waits to be mined)
                return None
            raise exc

    # -- records -------------------------------------------------------------------------------
    def record(self, decided: Decided, before: Scores) -> RoundRecord:
        """This member's row for the round the contract ``decided`` (call after ``sync``); ``before``:
        its scores of the weights it held when the round began."""
        duty = self._duty.pop(decided.round, None) or Duty(decided.round)
        proposer = self.coordinator.settings().members.index(decided.proposer)
        scores = duty.scores
        vote = duty.verdicts or ("approve" if duty.approve else "reject") if duty.voted else ""
        reason = duty.reason
        if duty.sealed and not duty.revealed:  # committed, never revealed: not counted
            vote, reason = "", "; ".join(x for x in (reason, "committed but not revealed") if x)
        return RoundRecord(
            round=decided.round + 1, learner=self.index, proposer=proposer,
            is_proposer=proposer == self.index or duty.proposed or duty.declined,
            vote=vote,
            accepted=decided.accepted, void=decided.void,
            vote_score=self.rule.score(scores.vote) if scores is not None else math.nan,
            current_vote_score=self.rule.score(before.vote),
            proposal_test_accuracy=scores.test.accuracy if scores is not None else math.nan,
            test_accuracy=self.current.test.accuracy, test_loss=self.current.test.loss,
            digest=decided.digest.hex() if not decided.void else "", reason=reason,
            adopted=self.digest.hex(), attack=self.conduct.attack,
        )
