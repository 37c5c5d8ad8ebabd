"""On-chain coordination: the Vyper contract, its committed artifact, the web3 client, the chains.

Exports resolve lazily: web3 takes most of a second to import, and `python -m
cohep.ledger.artifact` must not find its module pre-imported by this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Chain": "cohep.ledger.chain",
    "ChainEvent": "cohep.ledger.events",
    "Coordinator": "cohep.ledger.coordinator",
    "MemberStats": "cohep.ledger.state",
    "Outcome": "cohep.ledger.state",
    "RoundState": "cohep.ledger.state",
    "Settings": "cohep.ledger.state",
    "load_artifact": "cohep.ledger.artifact",
    "permutation": "cohep.ledger.draw",
    "proposer_index": "cohep.ledger.draw",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from cohep.ledger.artifact import load_artifact
    from cohep.ledger.chain import Chain
    from cohep.ledger.draw import permutation, proposer_index
    from cohep.ledger.coordinator import Coordinator
    from cohep.ledger.events import ChainEvent
    from cohep.ledger.state import MemberStats, Outcome, RoundState, Settings


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
