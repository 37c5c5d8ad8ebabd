"""A voter's verdicts: the vote rule applied to one proposal, to the average of a round's slots, or
to the average of the slots that pass the screens.

Every verdict rests on this member's private vote set: the weights are scored there and compared
with the scores of the weights it holds (:class:`cohep.protocol.vote.VoteRule`); with ``vote.probe``
an approved one must also pass the patch probe. A proposal that fails a check, or scores a
non-finite number, is rejected with the reason, never a crash.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cohep.core.errors import IntegrityError
from cohep.frameworks.learner import Scores, TrainableLearner, Weights
from cohep.protocol.adoption import Adoption
from cohep.protocol.combine import Proposal
from cohep.protocol.records import Stopwatch
from cohep.protocol.screens import patch_probe, score_outliers, update_outliers
from cohep.protocol.strikes import Strikes
from cohep.protocol.vote import VoteRule

if TYPE_CHECKING:  # the chain client pulls in web3; these names serve only the annotations
    from cohep.ledger.coordinator import SlotState


def all_finite(weights: Weights) -> bool:
    """True iff every value is finite (a diverged proposal is never offered)."""
    return all(np.isfinite(np.asarray(v)).all() for v in weights.values())


@dataclass(frozen=True)
class Verdict:
    """This member's verdict on a proposal (or an average of several): approve or not, why not when
    the scores alone do not say, the scores, and the digest of what was judged."""

    approve: bool = False
    reason: str = ""
    scores: Scores | None = None
    digest: bytes = b""


class Judge:
    """Scores proposals on this member's vote set and applies the vote rule and the screens."""

    def __init__(self, address: str, rule: VoteRule, learner: TrainableLearner, adoption: Adoption,
                 clock: Stopwatch):
        self.address, self.rule, self.learner = address, rule, learner
        self.adoption, self.clock = adoption, clock

    # -- verdicts --------------------------------------------------------------------------------
    def one(self, uri: str, digest: bytes, current: Scores, proposer: str | None = None) -> Verdict:
        """The verdict on a proposal (of ``proposer``, whose URI must name its own store): checked,
        scored on the private vote set, compared with ``current``."""
        try:
            proposal = self.adoption.proposal(uri, digest, proposer)
        except IntegrityError as exc:  # every check that fails is a reject vote with its reason
            return Verdict(reason=str(exc), digest=digest)
        return self._verdict(proposal, digest, current)

    def average(self, slots: Sequence[SlotState], current: Scores) -> Verdict:
        """combine "average": the verdict on the average of every proposed slot, in slot order. A
        slot that fails its checks leaves no average to judge: reject, with that slot's reason."""
        chosen = [s for s in slots if s.proposed]
        try:
            parts = [self.adoption.proposal(s.uri, s.digest, s.proposer) for s in chosen]
        except IntegrityError as exc:
            return Verdict(reason=str(exc))
        if not all(all_finite(p.weights) for p in parts):
            return Verdict(reason="a proposal has non-finite values: no average to judge")
        return self._on_average(parts, [s.digest for s in chosen], current)

    def screened_average(self, slots: Sequence[SlotState], judged: dict[int, Verdict], outliers: dict[int, str],
                         current: Scores) -> tuple[set[int], Verdict]:
        """``vote.judge = "screened_average"``: the slots that pass every screen (checked, a finite score
        on this member's vote set, not a norm or peer outlier; this member's own proposal passes by
        itself unless it is an outlier), and the verdict on their average (weighted and stepped as the
        round combines), judged like a proposal (so the backdoor probe, if on, judges the average)."""
        passed = [s for s in slots if s.proposed and s.slot not in outliers and self._screened_in(s, judged)]
        if not passed:
            return set(), Verdict(reason="no slot passed the screens")
        try:
            parts = [self.adoption.proposal(s.uri, s.digest, s.proposer) for s in passed]
        except IntegrityError as exc:  # held or checked above; a failure here is still a reason
            return set(), Verdict(reason=str(exc))
        return {s.slot for s in passed}, self._on_average(parts, [s.digest for s in passed], current)

    def _screened_in(self, s: SlotState, judged: dict[int, Verdict]) -> bool:
        if s.slot in judged:  # failed a check, or scored non-finite (the probe, if on, judges the average)
            scores = judged[s.slot].scores
            return scores is not None and self.rule.finite(scores.vote)
        return s.proposer == self.address

    def _on_average(self, parts: list[Proposal], digests: list[bytes], current: Scores) -> Verdict:
        start = self.adoption.weights if self.adoption.weights is not None else self.learner.current()
        weights, digest = self.adoption.combine(parts, digests, start)
        return self._verdict(Proposal(weights), digest, current)

    def _verdict(self, proposal: Proposal, digest: bytes, current: Scores) -> Verdict:
        scores = self.clock.timed("evaluation", self.learner.evaluate, proposal.weights)
        if not self.rule.finite(scores.vote):
            return Verdict(reason=f"non-finite {self.rule.metric} on the vote set", scores=scores, digest=digest)
        approve, reason = self.rule.approve(scores.vote, current.vote), ""
        if approve and self.rule.probe is not None:  # the backdoor guard, off by default
            suspicious = self.clock.timed("evaluation", patch_probe, self.learner, proposal.weights,
                                          self.learner.current(), probe=self.rule.probe, size=self.rule.probe_size)
            if suspicious:
                approve, reason = False, suspicious
        self.adoption.hold(digest, proposal, scores)
        return Verdict(approve, reason, scores, digest)

    # -- the screens of a round of several slots -------------------------------------------------
    def update_outliers(self, slots: Sequence[SlotState], r: int, strikes: Strikes) -> dict[int, str]:
        """``vote.norm_bound`` and ``vote.direction_floor``: the slots whose update (from the weights this
        member holds) stands out against the round's others (:func:`cohep.protocol.screens.update_outliers`);
        slots that fail their checks are left out. With ``vote.strikes`` a member whose slot was screened
        out here (a failed check, the norm or the direction) in that many earlier rounds is held to a
        direction floor of 0; round ``r`` is recorded as a strike for each slot screened out now."""
        current, checked = self.learner.current(), {}
        proposers = {s.slot: s.proposer for s in slots if s.proposed}
        for s in slots:
            if not s.proposed:
                continue
            try:
                weights = self.adoption.proposal(s.uri, s.digest, s.proposer).weights
            except IntegrityError:
                continue  # its verdict rejects it with the reason
            if all_finite(weights):
                checked[s.slot] = weights
        limit = self.rule.strikes
        struck = set() if limit is None else {j for j, a in proposers.items() if strikes.before(a, r) >= limit}
        out = update_outliers(checked, current, norm_bound=self.rule.norm_bound,
                              direction_floor=self.rule.direction_floor, direction_share=self.rule.direction_share,
                              struck=struck)
        if limit is not None:
            strikes.record(r, [a for j, a in proposers.items() if j in out or j not in checked])
        return out

    def peer_outliers(self, slots: Sequence[SlotState], judged: dict[int, Verdict], margin: float) -> dict[int, str]:
        """``vote.peer_margin``: the slots whose vote-set score stands out low against the round's median.
        The median is over every slot of the round with a score, this member's own proposal included
        (scored on its vote set like the others: with three slots a proposer judges only two); slots
        that failed their checks have no score and are left out."""
        metric, scores = self.rule.peer_metric(), {}
        for s in slots:
            got = self._peer_score(s, judged)
            if got is not None and math.isfinite(got.vote.metric(metric)):
                scores[s.slot] = got.vote.metric(metric)
        return score_outliers(scores, margin, lower_is_better=metric == "loss")

    def _peer_score(self, s: SlotState, judged: dict[int, Verdict]) -> Scores | None:
        if not s.proposed:
            return None
        if s.slot in judged:
            return judged[s.slot].scores
        if s.proposer != self.address:
            return None
        try:
            weights = self.adoption.proposal(s.uri, s.digest, s.proposer).weights
        except IntegrityError:
            return None
        return self.clock.timed("evaluation", self.learner.evaluate, weights)
