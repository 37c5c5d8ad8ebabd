"""Python client of the Competition contract: entries and every member's scores, on chain.

Like the coordinator's client it only relays: the leaderboard is computed from what the contract
recorded, read back here. Both share their calls, transactions and revert reasons
(ledger/contract_client.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from web3 import Web3

from cohep.core.errors import ChainError
from cohep.ledger.artifact import load_artifact
from cohep.ledger.chain import Chain
from cohep.ledger.contract_client import EMBEDDED_TX_GAS, ContractClient, Receipt, b32, check_uri, send

CONTRACT = "Competition"


@dataclass(frozen=True)
class EntryRecord:
    """One entry as the contract holds it."""

    index: int
    owner: str
    spec_digest: bytes
    weights_digest: bytes
    uri: str
    scores: int
    total_ppm: int


class CompetitionLedger(ContractClient):
    """One deployed Competition contract."""

    def __init__(self, chain: Chain, address: str):
        self.chain = chain
        self._c = chain.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(CONTRACT)["abi"])
        self._fixed_gas = EMBEDDED_TX_GAS if chain.kind == "embedded" else None
        self.seconds = 0.0
        self.transactions = 0

    @classmethod
    def deploy(cls, chain: Chain, members: list[str], task_digest: bytes, sender: str | None = None) -> "CompetitionLedger":
        art = load_artifact(CONTRACT)
        factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        sender = Web3.to_checksum_address(sender or chain.accounts[0])
        receipt = send(chain.w3, "deploy competition",
                       factory.constructor([Web3.to_checksum_address(m) for m in members], b32(task_digest, "task")),
                       sender)
        return cls(chain, receipt["contractAddress"])

    @property
    def address(self) -> str:
        return self._c.address

    def _transact(self, name: str, sender: str, *args) -> Receipt:
        t0 = time.perf_counter()
        try:
            receipt = send(self.chain.w3, name, getattr(self._c.functions, name)(*args),
                           Web3.to_checksum_address(sender), self._fixed_gas)
        finally:
            self.seconds += time.perf_counter() - t0
        self.transactions += 1
        return receipt

    # -- transactions ------------------------------------------------------------------------
    def enter(self, sender: str, spec_digest: bytes, weights_digest: bytes, uri: str) -> int:
        check_uri(uri)
        receipt = self._transact("enter", sender, b32(spec_digest, "spec digest"), b32(weights_digest, "digest"), uri)
        for log in self._c.events.Entered().process_receipt(receipt):
            return int(log["args"]["entry"])
        raise ChainError("enter mined without an Entered event")

    def score(self, sender: str, entry: int, score_ppm: int) -> None:
        self._transact("score", sender, int(entry), int(score_ppm))

    # -- views ---------------------------------------------------------------------------------
    def members(self) -> list[str]:
        return [Web3.to_checksum_address(m) for m in self._call("members")]

    def entries(self) -> list[EntryRecord]:
        out = []
        for i in range(int(self._call("n_entries"))):
            owner, spec, weights, uri, scores, total = self._call("entry", i)
            out.append(EntryRecord(i, Web3.to_checksum_address(owner), bytes(spec), bytes(weights), uri,
                                   int(scores), int(total)))
        return out

    def score_of(self, entry: int, member: str) -> int | None:
        """A member's recorded score (ppm) of an entry, None if it has not scored it."""
        member = Web3.to_checksum_address(member)
        if not self._call("has_scored", int(entry), member):
            return None
        return int(self._call("score_of", int(entry), member))
