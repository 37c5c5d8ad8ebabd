"""On-chain coordination: the Vyper contract, its committed artifact, the web3 client, the chains."""

from cohep.ledger.artifact import load_artifact
from cohep.ledger.chain import Chain
from cohep.ledger.coordinator import (
    ChainEvent,
    Coordinator,
    MemberStats,
    Outcome,
    RoundState,
    Settings,
)

__all__ = [
    "Chain",
    "ChainEvent",
    "Coordinator",
    "MemberStats",
    "Outcome",
    "RoundState",
    "Settings",
    "load_artifact",
]
