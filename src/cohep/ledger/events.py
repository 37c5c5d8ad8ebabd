"""The Coordinator's events as plain values: the audit trail of a run, and what a transaction did.

A log is decoded with the contract's ABI codec (ledger/abi.py). How finalize closed a round and
which ballots a batch counted are read from the events their transaction emitted, never computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from cohep.ledger.abi import Codec
from cohep.ledger.state import BallotBatch, Outcome

#: the contract's events, all of which the client decodes (tests/test_ledger.py checks them against the ABI)
EVENT_NAMES = ("Started", "RoundStarted", "Proposed", "Committed", "Voted", "Finalized", "RoundVoided", "Suspended",
               "Rejoined", "BallotSkipped")
#: and the AggregateCoordinator's own (aggregated ballots)
AGGREGATE_EVENT_NAMES = ("CommitsPosted", "RevealsPosted", "RelayFault")


@dataclass(frozen=True)
class ChainEvent:
    name: str
    block: int
    log_index: int
    tx_hash: str
    args: dict[str, Any]


def plain(value: Any) -> Any:
    """HexBytes -> bytes (and tuples -> lists) so events compare and serialise like ordinary values."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def decode_logs(codec: Codec, address: str, logs: Iterable[Any]) -> list[ChainEvent]:
    """The events among ``logs`` that the contract at ``address`` emitted, in the order given."""
    out = []
    for log in logs:
        if log["address"] != address or not log["topics"]:
            continue
        decoded = codec.event([bytes(t) for t in log["topics"]], bytes(log["data"]))
        if decoded is None:  # not one of the ABI's events (EVENT_NAMES)
            continue
        name, args = decoded
        out.append(ChainEvent(
            name=name,
            block=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
            tx_hash=Web3.to_hex(log["transactionHash"]),
            args={k: plain(v) for k, v in args.items()},
        ))
    return out


def outcome_of(events: Iterable[ChainEvent]) -> Outcome | None:
    """How finalize closed its round: its Finalized or RoundVoided event, or None without either."""
    for ev in events:
        a = ev.args
        if ev.name == "Finalized":
            approvals = tuple(int(x) for x in a["approvals"])
            return Outcome(a["round"], a["accepted"], False, a["digest"], approvals[0] if approvals else 0,
                           a["votes"], a["proposer"], a["required"], int(a["proposed_slots"]),
                           int(a["accepted_slots"]), approvals)
        if ev.name == "RoundVoided":
            return Outcome(a["round"], False, True, bytes(32), 0, 0, a["proposer"], 0)
    return None


def ballot_batch_of(r: int, events: Iterable[ChainEvent]) -> BallotBatch:
    """What a batch (submit_ballots, submit_commits, submit_reveals) of round r did: its Voted or
    Committed events counted, its BallotSkipped skipped."""
    counted, skipped = [], []
    for ev in events:
        if ev.name in ("Voted", "Committed"):
            counted.append(ev.args["voter"])
        elif ev.name == "BallotSkipped":
            skipped.append((int(ev.args["index"]), ev.args["signer"], ev.args["reason"]))
    return BallotBatch(int(r), tuple(counted), tuple(skipped))
