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
    #: sealed votes: ``voted`` means committed (the vote is fixed and sent); ``revealed``: its reveal sent too
    sealed: bool = False
    revealed: bool = False

    def after_vote(self, ballot: Duty) -> Duty:
        """This round's duty once ``ballot`` (what it voted) is cast: what it did with its own slot
        is kept; the row shows what it judged."""
        return Duty(self.round, proposed=self.proposed, declined=self.declined, voted=True, approve=ballot.approve,
                    digest=self.digest or ballot.digest, scores=ballot.scores,
                    reason="; ".join(x for x in (self.reason, ballot.reason) if x), verdicts=ballot.verdicts,
                    sealed=ballot.sealed)


@dataclass(frozen=True)
class PendingVote:
    """A sealed vote between its commitment and its reveal: what was committed to, and the secret salt.

    A node keeps these on disk (written before the commitment is sent), so a restart can still reveal."""

    approvals: int
    scores: tuple[int, ...]
    salt: bytes
    reason: str = ""  #: the verdict's reason and per-slot verdicts, so a restarted node's row still says why
    verdicts: str = ""

    def to_json(self) -> dict:
        return {"approvals": self.approvals, "scores_ppm": list(self.scores), "salt": self.salt.hex(),
                "reason": self.reason, "verdicts": self.verdicts}

    @classmethod
    def from_json(cls, raw: dict) -> PendingVote:
        return cls(int(raw["approvals"]), tuple(int(x) for x in raw["scores_ppm"]), bytes.fromhex(raw["salt"]),
                   str(raw.get("reason", "")), str(raw.get("verdicts", "")))

    def duty(self, r: int) -> Duty:
        """The vote as this member cast it, rebuilt after a restart (the scores are not kept: they are
        the private vote set's)."""
        return Duty(r, voted=True, approve=bool(self.approvals & 1), reason=self.reason, verdicts=self.verdicts,
                    sealed=True)
