"""On-chain coordination: the Vyper contract, its committed artifact, the web3 client, the chains.

Exports resolve lazily: web3 takes most of a second to import, and `python -m
cohep.ledger.artifact` must not find its module pre-imported by this package.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING


def _prefer_c_keccak() -> None:
    """Have eth-hash use safe-pysha3's C keccak (a dependency) unless the user chose a backend.

    eth-hash takes the first of its backends that imports, pycryptodome, whose cffi wrapper costs
    ~4 us a hash against ~0.6 us: py-evm hashes every trie node, so on the embedded chain it was 15 % of
    a 64-member round (issue 29, docs/benchmarks/ledger.md). The variable is read at the first hash,
    so it must be set before anything hashes: here, on the first import of the ledger."""
    if "ETH_HASH_BACKEND" not in os.environ and importlib.util.find_spec("sha3") is not None:
        os.environ["ETH_HASH_BACKEND"] = "pysha3"


_prefer_c_keccak()

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
