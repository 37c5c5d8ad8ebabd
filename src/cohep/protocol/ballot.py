"""What a voter casts in a round: one approval bit and one score per judged slot, with the reasons.

A round has one slot (the verdict on its proposal), several judged by their average (combine
"average": one verdict, spoiled by a slot the update screens name), or several judged one by one
(combine "each": each slot's verdict, after the screens; with ``vote.judge = "screened_average"``
the slots that pass every screen share the verdict on their average, whose score the voter's own
slot carries, so that ``cohep audit`` checks it). The verdict cast on a
proposer goes through this member's conduct (:mod:`cohep.protocol.misbehaviour`) in one place.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from cohep.frameworks.learner import Score, Scores
from cohep.protocol.duty import Duty
from cohep.protocol.judge import Judge, Verdict
from cohep.protocol.misbehaviour import Misbehaviour
from cohep.protocol.strikes import Strikes
from cohep.protocol.vote import VoteRule, to_ppm

if TYPE_CHECKING:  # the chain client pulls in web3; these names serve only the annotations
    from cohep.ledger.coordinator import RoundState


@dataclass(frozen=True)
class Ballot:
    """A vote as the contract takes it (``approvals``: bit j approves slot j; ``scores``: the ppm
    scores, one per slot, or one for a vote on a single proposal or an average) and the row's duty."""

    approvals: int
    scores: list[int]
    duty: Duty


def mean_scores(scores: list[Scores]) -> Scores:
    """The mean of the slots' scores: what one records row shows for a ballot over several slots."""
    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else math.nan
    return Scores(Score(mean([s.vote.accuracy for s in scores]), mean([s.vote.loss for s in scores])),
                  Score(mean([s.test.accuracy for s in scores]), mean([s.test.loss for s in scores])))


def settled(slot: int, v: Verdict, outliers: dict[int, str], average: tuple[set[int], Verdict] | None) -> Verdict:
    """A slot's honest verdict after the screens: a screened-in slot takes its average's verdict, a
    screened-out one is rejected with why (the outlier, the failed check or score); an outlier is
    never approved."""
    if average is not None:
        passed, on_average = average
        if slot in passed:
            v = replace(v, approve=on_average.approve, reason="" if on_average.approve else
                        on_average.reason or "the average of the screened slots does not beat the current weights")
        else:
            v = replace(v, approve=False, reason=outliers.get(slot) or v.reason or "screened out")
    if v.approve and slot in outliers:
        v = replace(v, approve=False, reason=outliers[slot])
    return v


class Voter:
    """Turns this member's verdicts on a round into its ballot."""

    def __init__(self, address: str, rule: VoteRule, judge: Judge, conduct: Misbehaviour):
        self.address, self.rule, self.judge, self.conduct = address, rule, judge, conduct

    def ballot(self, state: RoundState, current: Scores, strikes: Strikes, on_average: bool) -> Ballot:
        """This member's ballot on round ``state`` (voting open), judged against its ``current`` scores."""
        if len(state.slots) == 1:
            return self._single(state, current)
        if on_average:
            return self._on_average(state, current, strikes)
        return self._each(state, current, strikes)

    def _cast(self, approve: bool, proposers: Iterable[str]) -> bool:
        """The verdict this member casts on a proposal of ``proposers`` (several: an average) given the
        honest one: its conduct's (research: a colluder's follows the proposer, not the scores)."""
        return any(self.conduct.vote(p, approve) for p in proposers)

    def _ppm(self, verdict: Verdict) -> int:
        return to_ppm(self.rule.score(verdict.scores.vote) if verdict.scores is not None else math.nan)

    def _screens_updates(self) -> bool:
        return self.rule.norm_bound is not None or self.rule.direction_floor is not None

    # -- one slot, or the average of all -------------------------------------------------------------
    def _single(self, state: RoundState, current: Scores) -> Ballot:
        v = self.judge.one(state.uri, state.digest, current, state.proposer)
        approve = self._cast(v.approve, [state.proposer])
        duty = Duty(state.round, approve=approve, digest=v.digest, scores=v.scores, reason=v.reason)
        return Ballot(int(approve), [self._ppm(v)], duty)

    def _on_average(self, state: RoundState, current: Scores, strikes: Strikes) -> Ballot:
        v = self.judge.average(state.slots, current)
        if self._screens_updates() and (v.approve or self.rule.strikes is not None):
            # a boosted or reversed slot spoils the average (with strikes, screened every round: they count)
            outliers = self.judge.update_outliers(state.slots, state.round, strikes)
            if outliers and v.approve:
                v = replace(v, approve=False, reason="; ".join(f"slot {j}: {why}" for j, why in sorted(outliers.items())))
        approve = self._cast(v.approve, [s.proposer for s in state.slots if s.proposed])
        duty = Duty(state.round, approve=approve, digest=v.digest, scores=v.scores, reason=v.reason)
        return Ballot(int(approve), [self._ppm(v)], duty)

    # -- each slot on its own ------------------------------------------------------------------------
    def _each(self, state: RoundState, current: Scores, strikes: Strikes) -> Ballot:
        slots = state.slots
        outliers = self.judge.update_outliers(slots, state.round, strikes) if self._screens_updates() else {}
        judged = {s.slot: self.judge.one(s.uri, s.digest, current, s.proposer) for s in slots
                  if s.proposer != self.address and s.proposed}
        if self.rule.peer_margin is not None:
            outliers = {**self.judge.peer_outliers(slots, judged, self.rule.peer_margin), **outliers}
        average = self.judge.screened_average(slots, judged, outliers, current) \
            if self.rule.judge == "screened_average" else None
        verdicts = {j: settled(j, v, outliers, average) for j, v in judged.items()}
        return self._per_slot(state, verdicts, average[1] if average is not None else None)

    def _per_slot(self, state: RoundState, honest: dict[int, Verdict], average: Verdict | None) -> Ballot:
        """The ballot of a round judged slot by slot: a bit, a score and a verdict per slot ("-": not
        judged, its own), the reasons joined; the row's scores are the judged slots' mean, or the
        screened average's when there is one (what the verdicts rest on)."""
        approvals, scores, verdicts, judged_scores, reasons = 0, [], [], [], []
        for s in state.slots:
            v = honest.get(s.slot)
            if v is None:
                scores.append(0)
                verdicts.append("-")
                continue
            approve = self._cast(v.approve, [s.proposer])
            approvals |= int(approve) << s.slot
            scores.append(self._ppm(v))
            verdicts.append("approve" if approve else "reject")
            if v.scores is not None:
                judged_scores.append(v.scores)
            if v.reason:
                reasons.append(f"slot {s.slot}: {v.reason}")
        row = mean_scores(judged_scores) if judged_scores else None
        if average is not None and average.scores is not None:
            row = average.scores
        if self.rule.judge == "screened_average":
            # the row's score (the screened average's), which no slot's score gives, rides in this
            # voter's own slot (which it cannot approve): so the ballot, signed or sealed, commits to it
            own = [s.slot for s in state.slots if s.proposer == self.address]
            if own:
                scores[own[0]] = to_ppm(self.rule.score(row.vote) if row is not None else math.nan)
        duty = Duty(state.round, approve=approvals != 0, scores=row, reason="; ".join(reasons),
                    verdicts="/".join(verdicts))
        return Ballot(approvals, scores, duty)
