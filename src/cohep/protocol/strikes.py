"""``vote.strikes``: the rounds in which this member screened each proposer's slot out.

The one piece of a member's state that neither the chain nor the stores can rebuild: each voter
screens on its own weights, so its strikes are its own. A node saves them beside its records
(``strikes.json``, :func:`cohep.run.node.keep_strikes`) and restores them when it restarts, so a
restart does not give a struck member the benefit of the doubt again.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cohep.core.errors import DataError


@dataclass
class Strikes:
    """Proposer address -> the rounds in which this member screened its slot out (a set: a vote retried
    after a restart counts its round once)."""

    rounds: dict[str, set[int]] = field(default_factory=dict)

    def record(self, r: int, proposers: Iterable[str]) -> None:
        """Round ``r`` is a strike for each of ``proposers``."""
        for address in proposers:
            self.rounds.setdefault(address, set()).add(r)

    def before(self, proposer: str, r: int) -> int:
        """How many rounds other than ``r`` struck ``proposer`` (so a retried vote does not count itself)."""
        return len(self.rounds.get(proposer, set()) - {r})

    def to_json(self) -> dict[str, list[int]]:
        """Plain data, sorted: what a node saves."""
        return {a: sorted(rs) for a, rs in sorted(self.rounds.items())}

    @classmethod
    def from_json(cls, saved: object, source: str) -> Strikes:
        """Back from :meth:`to_json`'s data; anything else is one line naming ``source``."""
        if not isinstance(saved, dict) or not all(
                isinstance(a, str) and isinstance(rs, list) and all(type(x) is int and x >= 0 for x in rs)
                for a, rs in saved.items()):
            raise DataError(f"{source}: expected {{member address: [round, ...]}} with rounds >= 0")
        return cls({a: set(rs) for a, rs in saved.items()})
