"""The one seam where a research attack takes over from the honest protocol.

A member consults its conduct at three points of a round, always, whatever it is: the weights it
sends (``propose``), the verdict it casts on a proposer (``vote``) and what it saw adopted
(``adopted``, the history replay attacks need). An honest member's conduct is :data:`HONEST`, which
changes nothing; a malicious one's is a :class:`cohep.research.attacks.Behaviour` (the research
floor implements this seam; the protocol never imports it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cohep.frameworks.learner import Weights


class Misbehaviour(Protocol):
    """How a member departs from the honest protocol (research only)."""

    @property
    def attack(self) -> str:
        """The attack's name, in the records ("" for an honest member)."""
        ...

    def propose(self, current: Callable[[], Weights], honest: Weights) -> Weights:
        """The weights sent instead of the honest proposal (``current()``: a copy of the adopted
        weights, asked for only by an attack that needs it, so an honest proposal copies nothing)."""
        ...

    def vote(self, proposer: str, approve: bool) -> bool:
        """The verdict cast on ``proposer``'s proposal, given the honest one."""
        ...

    def adopted(self, weights: Weights) -> None:
        """Weights this member just adopted."""
        ...


@dataclass(frozen=True)
class Honest:
    """The honest member's conduct: the honest proposal, the honest verdict, nothing kept."""

    attack: str = ""

    def propose(self, current: Callable[[], Weights], honest: Weights) -> Weights:
        return honest

    def vote(self, proposer: str, approve: bool) -> bool:
        return approve

    def adopted(self, weights: Weights) -> None:
        return None


HONEST = Honest()
