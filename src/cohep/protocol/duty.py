"""What one member did in one round: the material of its records row."""
from __future__ import annotations

from dataclasses import dataclass

from cohep.frameworks.learner import Scores


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

    def after_vote(self, ballot: Duty) -> Duty:
        """This round's duty once ``ballot`` (what it voted) is cast: what it did with its own slot
        is kept; the row shows what it judged."""
        return Duty(self.round, proposed=self.proposed, declined=self.declined, voted=True, approve=ballot.approve,
                    digest=self.digest or ballot.digest, scores=ballot.scores,
                    reason="; ".join(x for x in (self.reason, ballot.reason) if x), verdicts=ballot.verdicts)
