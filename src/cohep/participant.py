"""One member's side of the protocol, whoever drives it: the in-process runner or an autonomous node.

A participant reads the round from the chain and does this member's duty in it: propose when the
contract drew it, otherwise fetch the proposal by the digest and URI recorded on chain, check it,
score it on its private vote set and vote; afterwards it adopts whatever the chain accepted. It holds
no state the chain and the stores cannot rebuild: its adopted weights are the chain's accepted
digest, fetched and checked, and whether it has voted is the chain's ballot.

Everything that comes from another member is untrusted: a proposal that fails any check (URI
outside the allowed stores, size cap, digest, names, shapes and dtypes against the model, finite
values) or scores a non-finite number is a reject vote with the reason in the records, never a crash.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .defence import patch_probe
from .errors import ChainError, IntegrityError
from .frameworks.privacy import BudgetSpent
from .learner import Score, Scores, TrainableLearner, Weights
from .protocol import VoteRule, to_ppm
from .results import RoundRecord

#: fetch(uri, digest) -> checked weights; raises IntegrityError (a ProposalRejected) with a reason
Fetch = Callable[[str, bytes], Weights]

_NO_SCORE = Scores(Score(math.nan, math.nan), Score(math.nan, math.nan))


def all_finite(weights: Weights) -> bool:
    """True iff every value is finite (a diverged proposal is never offered)."""
    return all(np.isfinite(np.asarray(v)).all() for v in weights.values())


def initial_record(index: int, rule: VoteRule, scores: Scores, attack: str = "") -> RoundRecord:
    """A member's round-0 row: its scores of the initial weights, before any proposal."""
    return RoundRecord(
        round=0, learner=index, proposer=-1, is_proposer=False, vote="", accepted=False, void=False,
        vote_score=math.nan, current_vote_score=rule.score(scores.vote), proposal_test_accuracy=math.nan,
        test_accuracy=scores.test.accuracy, test_loss=scores.test.loss, digest="", attack=attack,
    )


@dataclass
class Duty:
    """What this member did in one round (at most one of proposing and voting)."""

    round: int
    proposed: bool = False  #: this member proposed (its proposal's digest is ``digest``)
    voted: bool = False
    approve: bool = False
    digest: bytes = b""
    scores: Scores | None = None  #: the proposal's scores on this member's private sets
    reason: str = ""  #: why a proposal was rejected (or not offered) without a verdict on its scores


@dataclass
class Participant:
    """One member: its address, its learner (private data), and how it reaches the chain and stores."""

    index: int
    address: str
    learner: TrainableLearner
    coordinator: object  #: a ledger.Coordinator (shared in-process; the node's own otherwise)
    store: object  #: this member's WeightStore: where its proposals go and what its URIs name
    fetch: Fetch  #: reads another member's blob by URI, checked (see cohep.store.Fetcher)
    rule: VoteRule
    initial_uri: str  #: where the initial weights live (the experiment file says)
    #: ``[chain] ballots = "signed"``: the member signs an EIP-712 ballot and hands it here (the
    #: runner's batch, or a node's ballot box) instead of sending ``vote()``; someone submits the batch
    post_ballot: Callable | None = None
    ballot_box: object | None = None  #: a node's ballotbox.BallotBox in signed mode (where post_ballot posts)
    #: research only: a malicious member's attack (cohep.attacks.Behaviour); None for an honest member
    behaviour: object | None = None
    digest: bytes = b""  #: the adopted weights' digest ("" until the first sync)
    current: Scores = field(default_factory=lambda: _NO_SCORE)  #: adopted weights on the private sets
    seconds: dict = field(default_factory=lambda: {"training": 0.0, "evaluation": 0.0, "store": 0.0})
    _seen: dict = field(default_factory=dict, repr=False)  #: digest -> (weights, scores) judged this round
    _duty: dict = field(default_factory=dict, repr=False)  #: round -> Duty

    # -- adopting ------------------------------------------------------------------------------
    def sync(self, accepted: bytes | None = None) -> bool:
        """Adopt the chain's accepted weights if they are not ours yet; True if anything changed.

        ``accepted`` is the contract's accepted digest when the caller has just read it (the
        in-process runner reads it once for all members); otherwise it is read here. Weights this
        member proposed or judged are reused; anything else is fetched by the URI the chain recorded
        for the accepted round (or the initial URI) and checked like a proposal.
        """
        coord = self.coordinator
        digest = accepted if accepted is not None else coord.accepted_digest()
        if digest == self.digest:
            return False
        if digest in self._seen:
            weights, scores = self._seen[digest]
        else:
            r = coord.accepted_round()
            uri = self.initial_uri if r is None else coord.round_state(r).uri
            weights = self._timed("store", self.fetch, uri, digest)
            scores = None
        self.learner.accept(weights)
        if self.behaviour is not None:
            self.behaviour.adopted(weights)
        self.current = scores if scores is not None else self._timed("evaluation", self.learner.evaluate, weights)
        self.digest = digest
        self._seen.clear()
        return True

    # -- duties --------------------------------------------------------------------------------
    def act(self, r: int, state=None, block: int | None = None) -> Duty | None:
        """Do this member's pending duty in round ``r``, if any; reads the chain first (``state``: the
        round's state and ``block`` the block number, just read by the caller: the in-process runner
        reads them once for all members), so calling it again, or after a restart, never proposes or
        votes twice."""
        coord = self.coordinator
        state = state if state is not None else coord.round_state(r)
        done = self._duty.get(r)
        if state.finalized or done is not None and (done.proposed or done.voted or done.reason):
            return None  # decided, or this member already did (or declined) its duty
        block = block if block is not None else coord.chain.block_number()
        if state.proposer == self.address:
            if state.proposed or block > state.proposal_deadline:
                return None
            return self._propose(r)
        if not state.proposed or block > state.vote_deadline or self.address not in state.voters:
            return None  # nothing to judge yet, too late, or not a voter of this round (suspended)
        if state.votes and coord.ballot(r, self.address) is not None:  # no vote counted: not ours either
            return None
        return self._vote(r, state)

    def _propose(self, r: int) -> Duty:
        duty = self._duty.setdefault(r, Duty(r))
        try:
            weights = self._timed("training", self.learner.propose)
        except BudgetSpent as exc:  # a private learner out of budget stays silent; the round voids
            duty.reason = str(exc)
            return duty
        if not all_finite(weights):  # a diverged proposer stays silent; the contract voids the round
            duty.reason = "training diverged (non-finite weights): nothing proposed"
            return duty
        if self.behaviour is not None:  # the attack's proposal instead of the honest one
            weights = self.behaviour.propose(self.learner.current(), weights)
        digest, uri = self._timed("store", self.store.put, weights)
        self.coordinator.propose(self.address, r, digest, uri)
        duty.proposed, duty.digest = True, digest
        duty.scores = self._timed("evaluation", self.learner.evaluate, weights)
        self._seen[digest] = (weights, duty.scores)
        return duty

    def judge(self, uri: str, digest: bytes) -> Duty:
        """The verdict on a proposal: checked, scored on the private vote set, compared with ours."""
        duty = Duty(-1, digest=digest)
        try:
            weights = self._timed("store", self.fetch, uri, digest)
        except IntegrityError as exc:  # every check that fails is a reject vote with its reason
            duty.reason = str(exc)
            return duty
        duty.scores = self._timed("evaluation", self.learner.evaluate, weights)
        score = self.rule.score(duty.scores.vote)
        if not math.isfinite(score):
            duty.reason = f"non-finite {self.rule.metric} on the vote set"
            return duty
        duty.approve = self.rule.approve(duty.scores.vote, self.current.vote)
        if duty.approve and self.rule.probe is not None:  # the backdoor guard, off by default
            suspicious = self._timed("evaluation", self._probe, weights)
            if suspicious:
                duty.approve, duty.reason = False, suspicious
        self._seen[digest] = (weights, duty.scores)
        return duty

    def _probe(self, weights: Weights) -> str | None:
        return patch_probe(self.learner, weights, self.learner.current(), probe=self.rule.probe,
                           size=self.rule.probe_size)

    def _vote(self, r: int, state) -> Duty:
        duty = self.judge(state.uri, state.digest)
        duty.round = r
        if self.behaviour is not None:  # a colluder's verdict depends on who proposed, not on the scores
            duty.approve = self.behaviour.vote(state.proposer, duty.approve)
        score = self.rule.score(duty.scores.vote) if duty.scores is not None else math.nan
        if self.post_ballot is None:
            self.coordinator.vote(self.address, r, duty.approve, to_ppm(score))
        else:
            self.post_ballot(self.coordinator.sign_ballot(self.address, r, duty.approve, to_ppm(score)))
        duty.voted = True
        self._duty[r] = duty
        return duty

    def finalize(self, r: int):
        """Close round ``r`` (anyone may, once the contract allows); None if someone else already did."""
        try:
            return self.coordinator.finalize(self.address, r)
        except ChainError as exc:
            if self.coordinator.round() > r:  # another member closed it first
                return None
            raise exc

    # -- records -------------------------------------------------------------------------------
    def record(self, r: int, outcome, before: Scores) -> RoundRecord:
        """This member's row for round ``r`` once the contract decided it (call after ``sync``)."""
        duty = self._duty.pop(r, None) or Duty(r)
        proposer = self.coordinator.settings().members.index(outcome.proposer)
        scores = duty.scores
        return RoundRecord(
            round=r + 1, learner=self.index, proposer=proposer, is_proposer=(proposer == self.index),
            vote=("approve" if duty.approve else "reject") if duty.voted else "",
            accepted=outcome.accepted, void=outcome.void,
            vote_score=self.rule.score(scores.vote) if scores is not None else math.nan,
            current_vote_score=self.rule.score(before.vote),
            proposal_test_accuracy=scores.test.accuracy if scores is not None else math.nan,
            test_accuracy=self.current.test.accuracy, test_loss=self.current.test.loss,
            digest=outcome.digest.hex() if not outcome.void else "", reason=duty.reason,
            attack=self.behaviour.attack if self.behaviour is not None else "",
        )

    def _timed(self, stage: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - start
