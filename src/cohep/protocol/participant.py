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

from cohep.protocol.combine import adopted, combination
from cohep.protocol.screens import direction_outliers, flat_update, norm_outliers, patch_probe, score_outliers, update_norm
from cohep.core.errors import ChainError, DataError, IntegrityError
from cohep.frameworks.privacy import BudgetSpent
from cohep.frameworks.learner import Score, Scores, TrainableLearner, Weights
from cohep.protocol.vote import VoteRule, to_ppm
from cohep.protocol.records import RoundRecord
from cohep.wire.weights import Declared

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
    """What this member did in one round: proposing (a slot it holds), voting, or both (k > 1)."""

    round: int
    proposed: bool = False  #: this member proposed (its proposal's digest is ``digest``)
    declined: bool = False  #: it held a slot but offered nothing (training diverged)
    voted: bool = False
    approve: bool = False
    digest: bytes = b""
    scores: Scores | None = None  #: the judged proposal's scores (several slots: their mean)
    reason: str = ""  #: why a proposal was rejected (or not offered) without a verdict on its scores
    verdicts: str = ""  #: several slots, combine "each": approve / reject / - per slot


def _mean_scores(scores: list[Scores]) -> Scores:
    """The mean of the slots' scores: what one records row shows for a ballot over several slots."""
    def mean(values):
        return float(np.mean(values)) if values else math.nan
    return Scores(Score(mean([s.vote.accuracy for s in scores]), mean([s.vote.loss for s in scores])),
                  Score(mean([s.test.accuracy for s in scores]), mean([s.test.loss for s in scores])))


@dataclass
class Participant:
    """One member: its address, its learner (private data), and how it reaches the chain and stores."""

    index: int
    address: str
    learner: TrainableLearner
    coordinator: object  #: a ledger.Coordinator (shared in-process; the node's own otherwise)
    store: object  #: this member's WeightStore: where its proposals go and what its URIs name
    fetch: Fetch  #: reads another member's blob by URI, checked (see cohep.wire.store.Fetcher)
    rule: VoteRule
    initial_uri: str  #: where the initial weights live (the experiment file says)
    #: ``[chain] ballots = "signed"``: the member signs an EIP-712 ballot and hands it here (the
    #: runner's batch, or a node's ballot box) instead of sending ``vote()``; someone submits the batch
    post_ballot: Callable | None = None
    ballot_box: object | None = None  #: a node's ballotbox.BallotBox in signed mode (where post_ballot posts)
    #: research only: a malicious member's attack (cohep.research.attacks.Behaviour); None for an honest member
    behaviour: object | None = None
    #: ``[round] server_lr``: a round leaves ``w0 + server_lr * (average - w0)`` (1: the average)
    server_lr: float = 1.0
    #: ``[round] weighting`` and ``weight_cap``: equal shares, or by the example counts proposals declare
    weighting: str = "equal"
    weight_cap: float = 2.0
    #: called after a proposal is trained and before it leaves this member (a node saves its spent
    #: privacy budget here, so a restart never forgets a release)
    before_release: Callable[[], None] | None = None
    digest: bytes = b""  #: sha256 of the adopted weights ("" until the first sync)
    key: bytes = b""  #: the chain's accepted digest those weights stand for (== digest with one proposal)
    current: Scores = field(default_factory=lambda: _NO_SCORE)  #: adopted weights on the private sets
    seconds: dict = field(default_factory=lambda: {"training": 0.0, "evaluation": 0.0, "store": 0.0})
    _seen: dict = field(default_factory=dict, repr=False)  #: digest -> (weights, scores or None) this round
    _duty: dict = field(default_factory=dict, repr=False)  #: round -> Duty
    _adopted: Weights | None = field(default=None, repr=False)  #: the adopted weights (a round's start)
    _adopted_round: int = field(default=-1, repr=False)  #: the accepted round they came from (-1: initial)
    #: ``vote.strikes``: proposer address -> the rounds in which this member screened its slot out
    _strikes: dict = field(default_factory=dict, repr=False)

    # -- adopting ------------------------------------------------------------------------------
    def sync(self, accepted: bytes | None = None) -> bool:
        """Adopt the chain's accepted weights if they are not ours yet; True if anything changed.

        ``accepted`` is the contract's accepted digest when the caller has just read it (the
        in-process runner reads it once for all members); otherwise it is read here. The accepted
        round's accepted proposals are reused if this member proposed or judged them, else fetched
        by the URI the chain recorded and checked against their on-chain digests like a proposal;
        several are averaged in slot order (:func:`cohep.protocol.combine.adopted`), and with a server step
        (``server_lr`` != 1) the step is taken from the weights the round started from.
        """
        coord = self.coordinator
        key = accepted if accepted is not None else coord.accepted_digest()
        if key == self.key:
            return False
        r = coord.accepted_round()
        if r is None:
            digests = [key]
            weights, digest = adopted([self._weights(self.initial_uri, key)], digests)
        else:
            start = self._start_of(r) if self.server_lr != 1.0 else None
            parts, digests = self._accepted_slots(coord.round_state(r))
            weights, digest = adopted(parts, digests, start=start, **self._policy())
        if combination(digests) != key:  # the chain's record and its slots disagree
            raise IntegrityError(f"accepted digest {key.hex()[:16]} is not the combination of round "
                                 f"{r}'s accepted slots")
        self._adopted, self._adopted_round = weights, -1 if r is None else r
        seen = self._seen.get(digest)
        scores = seen[1] if seen is not None else None
        self.learner.accept(weights)
        if self.behaviour is not None:
            self.behaviour.adopted(weights)
        self.current = scores if scores is not None else self._timed("evaluation", self.learner.evaluate, weights)
        self.digest, self.key = digest, key
        self._seen.clear()
        return True

    def _policy(self) -> dict:
        """How this round's accepted proposals combine (:func:`cohep.protocol.combine.adopted`'s keywords)."""
        return {"server_lr": self.server_lr, "weighting": self.weighting, "weight_cap": self.weight_cap}

    def _start_of(self, r: int) -> Weights:
        """The weights accepted round ``r`` started from: those adopted after the last accepted round
        before it. Held when this member adopted every accepted round so far; else (a restarted node,
        or one that could not adopt for a while) rebuilt round by round from the initial weights or the
        last it holds, each accepted round from its blobs on chain, checked like proposals."""
        coord = self.coordinator
        if self._adopted is None or self._adopted_round >= r:
            w, q0 = self._weights(self.initial_uri, coord.settings().initial_digest), -1
        else:
            w, q0 = self._adopted, self._adopted_round
        for q in range(q0 + 1, r):
            st = coord.round_state(q)
            if not st.accepted:
                continue
            parts, digests = self._accepted_slots(st)
            w, _ = adopted(parts, digests, start=w, **self._policy())
        return w

    def _accepted_slots(self, state) -> tuple[list[Weights], list[bytes]]:
        """An accepted round's accepted slots in slot order: their weights (held, or fetched by the
        URI on chain and checked against the digest) and their digests."""
        chosen = [(s.uri, s.digest) for s in state.slots if s.accepted]
        return [self._weights(uri, d) for uri, d in chosen], [d for _, d in chosen]

    def _weights(self, uri: str, digest: bytes) -> Weights:
        """A proposal's weights: the copy this member proposed or already checked, else fetched and
        checked against the digest (raises IntegrityError with the reason)."""
        if digest in self._seen:
            return self._seen[digest][0]
        weights = self._timed("store", self.fetch, uri, digest)
        self._seen[digest] = (weights, None)
        return weights

    # -- duties --------------------------------------------------------------------------------
    def act(self, r: int, state=None, block: int | None = None) -> Duty | None:
        """Do this member's pending duty in round ``r``, if any; reads the chain first (``state``: the
        round's state and ``block`` the block number, just read by the caller: the in-process runner
        reads them once for all members), so calling it again, or after a restart, never proposes or
        votes twice. A member holding a slot of a round with several proposes first and votes once
        voting opens."""
        coord = self.coordinator
        state = state if state is not None else coord.round_state(r)
        done = self._duty.get(r)
        if state.finalized:
            return None
        block = block if block is not None else coord.chain.block_number()
        slot = state.slot_of(self.address)
        if slot is not None and not state.slots[slot].proposed and not (done and (done.proposed or done.declined)):
            if block > state.proposal_deadline:
                return None
            return self._propose(r, slot)
        if done is not None and done.voted:
            return None
        if not state.proposed or block > state.vote_deadline or self.address not in state.voters:
            return None  # nothing to judge yet, too late, or not a voter of this round (suspended)
        if state.votes and coord.ballot_bits(r, self.address) is not None:  # no vote counted: not ours either
            return None
        return self._vote(r, state)

    def _propose(self, r: int, slot: int = 0) -> Duty:
        duty = self._duty.setdefault(r, Duty(r))
        try:
            weights = self._timed("training", self.learner.propose)
        except BudgetSpent as exc:  # a private learner out of budget stays silent; its slot is not proposed
            duty.declined, duty.reason = True, str(exc)
            return duty
        if not all_finite(weights):  # a diverged proposer stays silent; its slot counts as not proposed
            duty.declined = True
            duty.reason = "training diverged (non-finite weights): nothing proposed"
            return duty
        if self.before_release is not None:
            self.before_release()
        if self.behaviour is not None:  # the attack's proposal instead of the honest one
            weights = self.behaviour.propose(self.learner.current(), weights)
        examples = self.learner.examples() if self.weighting == "examples" else None
        digest, uri = self._timed("store", self.store.put, weights, examples)
        weights = Declared(weights, examples)  # as every other member will read it from the blob
        self.coordinator.propose(self.address, r, digest, uri, slot)
        duty.proposed, duty.digest = True, digest
        duty.scores = self._timed("evaluation", self.learner.evaluate, weights)
        self._seen[digest] = (weights, duty.scores)
        return duty

    def judge(self, uri: str, digest: bytes) -> Duty:
        """The verdict on a proposal: checked, scored on the private vote set, compared with ours."""
        duty = Duty(-1, digest=digest)
        try:
            weights = self._weights(uri, digest)
        except IntegrityError as exc:  # every check that fails is a reject vote with its reason
            duty.reason = str(exc)
            return duty
        return self._verdict(duty, weights, digest)

    def _verdict(self, duty: Duty, weights: Weights, digest: bytes) -> Duty:
        duty.scores = self._timed("evaluation", self.learner.evaluate, weights)
        if not self.rule.finite(duty.scores.vote):
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

    def judge_average(self, slots) -> Duty:
        """combine "average": the verdict on the average of every proposed slot, in slot order. A
        slot that fails its checks leaves no average to judge: reject, with that slot's reason."""
        chosen = [s for s in slots if s.proposed]
        try:
            parts = [self._weights(s.uri, s.digest) for s in chosen]
        except IntegrityError as exc:
            return Duty(-1, reason=str(exc))
        if not all(all_finite(w) for w in parts):
            return Duty(-1, reason="a proposal has non-finite values: no average to judge")
        start = self._adopted if self._adopted is not None else self.learner.current()
        weights, digest = adopted(parts, [s.digest for s in chosen], start=start, **self._policy())
        return self._verdict(Duty(-1, digest=digest), weights, digest)

    def _screened_average(self, slots, judged: dict[int, Duty], outliers: dict[int, str]) -> tuple[set[int], Duty]:
        """``vote.judge = "screened_average"``: the slots that pass every screen (checked, a finite score
        on this member's vote set, not a norm or peer outlier; this member's own proposal passes by
        itself unless it is an outlier), and the verdict on their average (weighted and stepped as the
        round combines), judged like a proposal (so the backdoor probe, if on, judges the average)."""
        passed = []
        for s in slots:
            if not s.proposed or s.slot in outliers:
                continue
            if s.slot in judged:
                d = judged[s.slot]
                if d.scores is None or not self.rule.finite(d.scores.vote):
                    continue  # failed a check, or scored non-finite (the probe, if on, judges the average)
            elif s.proposer != self.address:
                continue
            passed.append(s)
        if not passed:
            return set(), Duty(-1, reason="no slot passed the screens")
        try:
            parts = [self._weights(s.uri, s.digest) for s in passed]
        except IntegrityError as exc:  # held or checked above; a failure here is still a reason
            return set(), Duty(-1, reason=str(exc))
        start = self._adopted if self._adopted is not None else self.learner.current()
        weights, digest = adopted(parts, [s.digest for s in passed], start=start, **self._policy())
        return {s.slot for s in passed}, self._verdict(Duty(-1, digest=digest), weights, digest)

    # -- the record (vote.strikes) --------------------------------------------------------------
    def strikes(self) -> dict[str, list[int]]:
        """Proposer address -> the rounds in which this member screened its slot out (a node saves it,
        so a restart does not give a struck member the benefit of the doubt again)."""
        return {a: sorted(rs) for a, rs in sorted(self._strikes.items())}

    def restore_strikes(self, saved, source: str) -> None:
        """Take back what :meth:`strikes` returned; anything else is one line naming ``source``."""
        if not isinstance(saved, dict) or not all(
                isinstance(a, str) and isinstance(rs, list) and all(type(x) is int and x >= 0 for x in rs)
                for a, rs in saved.items()):
            raise DataError(f"{source}: expected {{member address: [round, ...]}} with rounds >= 0")
        self._strikes = {a: set(rs) for a, rs in saved.items()}

    def _update_outliers(self, slots, r: int) -> dict[int, str]:
        """``vote.norm_bound`` and ``vote.direction_floor``: the slots whose update (from the weights this
        member holds) stands out against the round's others: its norm against their median, then its
        direction against the sum of the others that are not norm outliers (a re-initialised slot's
        update is so long that it would set the direction for everyone); slots that fail their checks
        are left out of both. With ``vote.strikes`` a member whose slot was screened out here (a failed
        check, the norm or the direction) in that many earlier rounds is held to a direction floor of 0;
        round ``r`` is recorded as a strike for each slot screened out now."""
        current, checked, proposer = self.learner.current(), {}, {}
        for s in slots:
            if not s.proposed:
                continue
            proposer[s.slot] = s.proposer
            try:
                weights = self._weights(s.uri, s.digest)
            except IntegrityError:
                continue  # judge() rejects it with the reason
            if all_finite(weights):
                checked[s.slot] = weights
        out: dict[int, str] = {}
        if self.rule.norm_bound is not None:
            out.update(norm_outliers({j: update_norm(w, current) for j, w in checked.items()}, self.rule.norm_bound))
        if self.rule.direction_floor is not None:  # among the rest: a huge random update would swamp the sum
            rest = {j: flat_update(w, current) for j, w in checked.items() if j not in out}
            strikes = self.rule.strikes
            struck = set() if strikes is None else \
                {j for j, a in proposer.items() if len(self._strikes.get(a, set()) - {r}) >= strikes}
            out.update(direction_outliers(rest, self.rule.direction_floor, self.rule.direction_share, struck))
        if self.rule.strikes is not None:
            for j, a in proposer.items():
                if j in out or j not in checked:  # a set of rounds: a vote retried after a restart counts once
                    self._strikes.setdefault(a, set()).add(r)
        return out

    def _peer_outliers(self, slots, judged: dict[int, "Duty"]) -> dict[int, str]:
        """``vote.peer_margin``: the slots whose vote-set score stands out low against the round's median.
        The median is over every slot of the round with a score, this member's own proposal included
        (scored on its vote set like the others: with three slots a proposer judges only two); slots
        that failed their checks have no score and are left out."""
        metric, scores = self.rule.peer_metric(), {}
        for s in slots:
            if not s.proposed:
                continue
            if s.slot in judged:
                got = judged[s.slot].scores
            elif s.proposer == self.address:
                try:
                    got = self._timed("evaluation", self.learner.evaluate, self._weights(s.uri, s.digest))
                except IntegrityError:
                    got = None
            else:
                got = None
            if got is not None and math.isfinite(got.vote.metric(metric)):
                scores[s.slot] = got.vote.metric(metric)
        return score_outliers(scores, self.rule.peer_margin, lower_is_better=metric == "loss")

    def _colluded(self, proposer: str, approve: bool) -> bool:
        """A colluder's verdict depends on who proposed, not on the scores (research only)."""
        return approve if self.behaviour is None else self.behaviour.vote(proposer, approve)

    def _vote(self, r: int, state) -> Duty:
        settings = self.coordinator.settings()
        mine = self._duty.get(r)
        if len(state.slots) == 1:
            duty = self.judge(state.uri, state.digest)
            duty.approve = self._colluded(state.proposer, duty.approve)
            approvals, scores = int(duty.approve), [self._ppm(duty)]
        elif settings.vote_on_average:
            duty = self.judge_average(state.slots)
            screens = self.rule.norm_bound is not None or self.rule.direction_floor is not None
            if screens and (duty.approve or self.rule.strikes is not None):
                # a boosted or reversed slot spoils the average (with strikes, screened every round: they count)
                outliers = self._update_outliers(state.slots, r)
                if outliers and duty.approve:
                    duty.approve = False
                    duty.reason = "; ".join(f"slot {j}: {why}" for j, why in sorted(outliers.items()))
            if self.behaviour is not None:
                duty.approve = any(self._colluded(s.proposer, duty.approve) for s in state.slots if s.proposed)
            approvals, scores = int(duty.approve), [self._ppm(duty)]
        else:
            duty, approvals, scores, verdicts, judged = Duty(r), 0, [], [], []
            outliers = self._update_outliers(state.slots, r) \
                if self.rule.norm_bound is not None or self.rule.direction_floor is not None else {}
            judged_slots = {s.slot: self.judge(s.uri, s.digest) for s in state.slots
                            if s.proposer != self.address and s.proposed}
            if self.rule.peer_margin is not None:
                low = self._peer_outliers(state.slots, judged_slots)
                outliers = {**low, **outliers}
            average = self._screened_average(state.slots, judged_slots, outliers) \
                if self.rule.judge == "screened_average" else None
            for s in state.slots:
                if s.slot not in judged_slots:
                    scores.append(0)
                    verdicts.append("-")
                    continue
                d = judged_slots[s.slot]
                if average is not None and s.slot in average[0]:  # screened in: the average decides
                    d.approve = average[1].approve
                    d.reason = "" if d.approve else \
                        average[1].reason or "the average of the screened slots does not beat the current weights"
                elif average is not None:  # screened out: why (the outlier, the failed check or score)
                    d.approve, d.reason = False, outliers.get(s.slot) or d.reason or "screened out"
                if d.approve and s.slot in outliers:
                    d.approve, d.reason = False, outliers[s.slot]
                d.approve = self._colluded(s.proposer, d.approve)
                approvals |= int(d.approve) << s.slot
                scores.append(self._ppm(d))
                verdicts.append("approve" if d.approve else "reject")
                if d.scores is not None:
                    judged.append(d.scores)
                if d.reason:
                    duty.reason = "; ".join(x for x in (duty.reason, f"slot {s.slot}: {d.reason}") if x)
            duty.approve, duty.verdicts = approvals != 0, "/".join(verdicts)
            duty.scores = _mean_scores(judged) if judged else None
            if average is not None and average[1].scores is not None:
                duty.scores = average[1].scores  # what this member's verdicts rest on
        if self.post_ballot is None:
            self.coordinator.vote_slots(self.address, r, approvals, scores)
        else:  # signed ballots: the same approvals and scores, submitted by someone in one batch
            self.post_ballot(self.coordinator.sign_ballot(self.address, r, approvals, scores))
        duty.round, duty.voted = r, True
        if mine is not None:  # keep what it did with its own slot; the row shows what it judged
            duty.proposed, duty.declined = mine.proposed, mine.declined
            duty.digest = mine.digest or duty.digest
            duty.reason = "; ".join(x for x in (mine.reason, duty.reason) if x)
        self._duty[r] = duty
        return duty

    def _ppm(self, duty: Duty) -> int:
        return to_ppm(self.rule.score(duty.scores.vote) if duty.scores is not None else math.nan)

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
        vote = duty.verdicts or ("approve" if duty.approve else "reject") if duty.voted else ""
        return RoundRecord(
            round=r + 1, learner=self.index, proposer=proposer,
            is_proposer=proposer == self.index or duty.proposed or duty.declined,
            vote=vote,
            accepted=outcome.accepted, void=outcome.void,
            vote_score=self.rule.score(scores.vote) if scores is not None else math.nan,
            current_vote_score=self.rule.score(before.vote),
            proposal_test_accuracy=scores.test.accuracy if scores is not None else math.nan,
            test_accuracy=self.current.test.accuracy, test_loss=self.current.test.loss,
            digest=outcome.digest.hex() if not outcome.void else "", reason=duty.reason,
            adopted=self.digest.hex(),
            attack=self.behaviour.attack if self.behaviour is not None else "",
        )

    def _timed(self, stage: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - start
