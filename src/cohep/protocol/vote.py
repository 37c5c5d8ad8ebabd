"""The vote rule every learner applies, and the threshold and score arithmetic of the contract.

A learner approves a proposal iff its score on the learner's own private vote set beats the score of
the learner's current weights by more than ``margin`` (higher accuracy, or lower loss; with
``accuracy_or_loss``, either of the two). A negative margin is a tolerance: a proposal no worse than
the current weights by that much is approved, so the neutral rounds of a converged model are not
lost to vote-set noise, while a gross update (far worse on both) is still rejected. The rule is
also the ``[vote]`` settings section: what a learner judges by and how many approvals the contract
asks for are configured, validated and recorded together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, Literal

from cohep.frameworks.learner import Score
from cohep.core.settings import Section, setting

#: Scores travel on chain as integers in parts per million.
PPM = 1_000_000
#: Largest threshold denominator: 2/3, 0.25 or 0.6 come out exact, float noise does not survive.
THRESHOLD_DENOMINATOR_MAX = 10_000


def threshold_fraction(threshold: float) -> Fraction:
    """The threshold (a share in [0, 1]) as the exact fraction the contract is deployed with.

    ``2 / 3`` is the float 0.666...6, which in basis points (6667) would make 4 members need 3 of 3
    approvals instead of 2; the nearest fraction with a small denominator recovers 2/3 exactly.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return Fraction(threshold).limit_denominator(THRESHOLD_DENOMINATOR_MAX)


def required_approvals(eligible_voters: int, fraction: Fraction) -> int:
    """max(1, ceil(fraction x eligible_voters)): what the contract requires, computed exactly.

    At least one approval, so a proposal nobody approved is never accepted (threshold 0 included).
    """
    if eligible_voters < 0:
        raise ValueError(f"eligible_voters must be >= 0, got {eligible_voters}")
    return max(1, math.ceil(Fraction(fraction) * eligible_voters))


def to_ppm(value: float) -> int:
    """Score as an on-chain integer (parts per million), clamped to +-1e9, i.e. +-10**15 ppm: the
    contract refuses anything wider. A non-finite score is recorded as +1e9."""
    if not math.isfinite(value):
        value = 1e9
    return int(round(max(-1e9, min(1e9, value)) * PPM))


@dataclass(frozen=True)
class VoteRule(Section):
    """``[vote]``: approve iff the proposal beats the current weights on the learner's vote set."""

    section: ClassVar[str] = "vote"

    #: accuracy_or_loss: approve when either improves. Late in training the loss on a small vote set can rise
    #: while accuracy rises (sharper, over-confident outputs), which the loss vote rejects; the accuracy vote
    #: rejects real gains smaller than one vote image. A gross update worsens both, so it is still rejected.
    metric: Literal["accuracy", "loss", "accuracy_or_loss"] = setting(
        "accuracy", help="Vote metric (accuracy_or_loss: approve if either improves).")
    #: negative: the regression a voter tolerates (e.g. -0.005: up to half a point of accuracy, or 0.005 of
    #: loss); late rounds of full participation are often neutral on a few hundred vote images, and the
    #: strict rule rejects them where FedAvg would keep them (docs/protocol_variants.md)
    margin: float = setting(0.0, ge=-1, le=1, help="Required improvement to approve (negative: the regression tolerated).")
    threshold: float = setting(0.5, ge=0, le=1, help="Fraction of the other learners that must approve.")
    #: the backdoor guard (cohep.protocol.screens): reject a proposal whose accuracy on patched vote images falls
    #: more than this beyond the current weights' fall; None: off
    probe: float | None = setting(None, ge=0, le=1, help="Patch-probe guard against backdoors (off: none).")
    probe_size: int = setting(4, ge=1, help="Side in pixels of the patch-probe's square.")
    #: rounds of several proposals ([round] proposers >= 3): reject a proposal whose update is more than
    #: this many times the median update norm of the round's proposals (cohep.protocol.screens); None: off
    norm_bound: float | None = setting(None, gt=1, help="Update-norm bound against boosted proposals (off: none).")
    #: rounds of several proposals voted one by one ([round] proposers >= 3, combine = "each"): reject a
    #: proposal whose vote-set score is more than this worse than the median of the round's proposals
    #: (accuracy; loss for metric = "loss"); None: off
    peer_margin: float | None = setting(None, gt=0,
                                        help="Reject a proposal scoring this far below the round's median (off: none).")
    #: rounds of several proposals ([round] proposers >= 3): reject a proposal whose update's cosine with the
    #: summed updates of the round's other proposals is below this (cohep.protocol.screens; 0: it points against
    #: them, as a sign-flipped update does); None: off
    direction_floor: float | None = setting(None, ge=-1, le=1,
                                            help="Reject a proposal whose update points against the others' (off: none).")
    #: with direction_floor: the floor rises by this share of the round's median cosine (when positive), so
    #: a slot must agree with the others at least this share as much as the typical slot does. Early in
    #: training honest updates agree strongly (cosines +0.3 to +0.9) and a random or negated one sits at
    #: or below 0; late on class-skewed data they are near 0 and the floor alone decides (cohep.protocol.screens)
    direction_share: float = setting(0.0, ge=0, lt=1,
                                     help="Raise the direction floor by this share of the round's median cosine.")
    #: with a negative direction_floor: a member whose slots this voter screened out (a failed check, the norm
    #: bound or the direction) in this many earlier rounds loses the benefit of the doubt the negative floor
    #: gives; its slots need a cosine of at least 0 (plus the share) from then on. Late on class-skewed data an
    #: honest update and a negated one are both near 0, so a floor that keeps every honest slot passes some negated ones; a
    #: member that sends negated updates every round is screened out early, where they point clearly
    #: against the others (cosines -0.3 to -0.6), and is held to the strict floor when they no longer do.
    #: None: off
    strikes: int | None = setting(None, ge=1,
                                  help="Screened-out rounds after which a member's slots need a cosine of at least 0 "
                                  "(off: none).")
    #: rounds of several proposals voted one by one (combine = "each"): "alone" judges each proposal on its
    #: own; "screened_average" approves every proposal that passes the screens (the checks, a finite score,
    #: norm_bound, peer_margin) iff the average of all that pass (this member's own included, weighted as the
    #: round weighs) beats the current weights, and rejects the rest. On class-skewed data each update
    #: alone drags towards its member's classes and loses on the others' vote sets while their average
    #: wins; screening keeps a gross slot out of that average instead of spoiling it (as combine =
    #: "average" does: one bad slot there rejects the whole round, every round it proposes)
    judge: Literal["alone", "screened_average"] = setting(
        "alone", help="Each slot judged alone, or the screened slots judged by their average.")

    def approve(self, proposal: Score, current: Score) -> bool:
        if self.metric == "accuracy_or_loss":
            return (proposal.accuracy > current.accuracy + self.margin
                    or proposal.loss < current.loss - self.margin)
        new, old = proposal.metric(self.metric), current.metric(self.metric)
        if self.metric == "loss":
            return new < old - self.margin
        return new > old + self.margin

    def score(self, s: Score) -> float:
        """The score recorded on chain (higher is better except for ``loss``): accuracy for the
        combined rule, whose loss half is not finite-checked by the score (see ``finite``)."""
        return s.metric("accuracy" if self.metric == "accuracy_or_loss" else self.metric)

    def peer_metric(self) -> str:
        """What the peer margin compares: the vote metric, accuracy for the combined rule."""
        return "loss" if self.metric == "loss" else "accuracy"

    def finite(self, s: Score) -> bool:
        """Whether every quantity the rule reads is a number (a NaN loss must not approve by accident)."""
        return math.isfinite(s.accuracy) and (self.metric == "accuracy" or math.isfinite(s.loss))
