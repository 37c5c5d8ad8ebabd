"""The vote rule every learner applies, and constants mirroring the contract.

A learner approves a proposal iff its score on the learner's own private vote set beats the score of
the learner's current weights by more than ``margin`` (higher accuracy, or lower loss). The rule is
also the ``[vote]`` settings section: what a learner judges by and how many approvals the contract
asks for are configured, validated and recorded together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from .learner import Score
from .settings import Section, setting

#: The contract counts in basis points; 5000 = half of the other members must approve.
DEFAULT_THRESHOLD_BPS = 5000
BPS = 10_000
#: Scores travel on chain as integers in parts per million.
PPM = 1_000_000


def threshold_to_bps(threshold: float) -> int:
    """The threshold (a validated fraction in [0, 1]) as the contract's basis points."""
    return int(round(threshold * BPS))


def required_approvals(n_members: int, threshold_bps: int) -> int:
    """ceil(threshold x (n - 1)): what the contract requires (used for display and tests only)."""
    return -(-threshold_bps * (n_members - 1) // BPS)


def to_ppm(value: float) -> int:
    """Score as an on-chain integer (parts per million), clamped to a sane range."""
    if not math.isfinite(value):
        value = 1e9
    return int(round(max(-1e9, min(1e9, value)) * PPM))


@dataclass(frozen=True)
class VoteRule(Section):
    """``[vote]``: approve iff the proposal beats the current weights on the learner's vote set."""

    section: ClassVar[str] = "vote"

    metric: Literal["accuracy", "loss"] = setting("accuracy", help="Vote metric: accuracy | loss.")
    margin: float = setting(0.0, ge=0, help="Required improvement to approve.")
    threshold: float = setting(0.5, ge=0, le=1, help="Fraction of the other learners that must approve.")

    def approve(self, proposal: Score, current: Score) -> bool:
        new, old = proposal.metric(self.metric), current.metric(self.metric)
        if self.metric == "loss":
            return new < old - self.margin
        return new > old + self.margin

    def score(self, s: Score) -> float:
        return s.metric(self.metric)
