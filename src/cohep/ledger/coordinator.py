"""Python client of the Coordinator contract (v3; docs/contract.md has the rules).

The client only relays: every outcome (who proposes, who may vote, how many approvals are needed,
whether weights are accepted, who is suspended) is read back from the contract's state or events,
never computed here. ``ledger/draw.py`` recomputes the draw only to audit it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from numbers import Rational
from collections.abc import Mapping
from typing import Any, cast
from collections.abc import Callable

import eth_abi
from eth_abi.exceptions import EncodingError
from eth_typing import ABIEvent, ABIFunction, ChecksumAddress
from eth_utils.abi import event_abi_to_log_topic, function_abi_to_4byte_selector
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, Web3Exception
from web3.types import BlockIdentifier

from cohep.core.errors import ChainError
from cohep.ledger.artifact import load_artifact
from cohep.ledger.chain import Chain

try:  # the embedded chain reports reverts as eth-tester's own exception, not ContractLogicError
    from eth_tester.exceptions import TransactionFailed as _TesterRevert
except ImportError:  # pragma: no cover - eth-tester is a dependency, but only the embedded chain needs it
    class _TesterRevert(Exception):  # type: ignore[no-redef]
        pass

try:  # eth-tester refusing a transaction outright (a bad sender, a balance too small)
    from eth_tester.exceptions import ValidationError as _TesterInvalid
except ImportError:  # pragma: no cover
    class _TesterInvalid(Exception):  # type: ignore[no-redef]
        pass

_REVERTS = (ContractLogicError, _TesterRevert)

#: A transaction receipt in web3's shape: web3's own, or the embedded chain's built to match it.
Receipt = Mapping[str, Any]

URI_MAX_BYTES = 256
MAX_MEMBERS = 64
#: the contract's events, all of which the client decodes (tests/test_ledger.py checks them against the ABI)
EVENT_NAMES = ("RoundStarted", "Proposed", "Voted", "Finalized", "RoundVoided", "Suspended", "Rejoined",
               "BallotSkipped")
_NO_ACCEPTANCE = 2**256 - 1  # contract's accepted_round while the initial digest stands
_VOTED = 1 << 255  # the contract's ballot flag: ballot = _VOTED | approval bitmap
_REVERT_PREFIXES = ("execution reverted: ", "execution reverted:", "execution reverted")
RECEIPT_TIMEOUT_S = 120.0
# Gas limit for propose/vote/finalize/rejoin on the embedded chain (block limit 30M). The worst
# cases, finalize with 64 members when all 63 voters agree with the outcome for the first time, or
# all 63 miss their vote and are suspended at once, need ~1.7-1.75M (checked in tests).
# Unused gas is refunded, so a generous cap costs nothing.
EMBEDDED_TX_GAS = 5_000_000
# Fees on the embedded chain, given so that web3 does not read a block per transaction to fill them:
# its base fee starts at 1 gwei and only falls (no block comes near the 15M gas target).
EMBEDDED_FEES = {"maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
_TESTER_FEES = {"max_fee_per_gas": 10**10, "max_priority_fee_per_gas": 10**9}  # the same, as eth-tester spells them
# submit_ballots with 63 ballots needs about 4.0M (every voter's first vote; 2.9M later; checked in tests); the block
# limit is 30M.
EMBEDDED_BATCH_GAS = 12_000_000


@dataclass(frozen=True)
class Outcome:
    """How the contract closed a round (zero digest if void).

    digest: the new accepted digest if any slot was accepted, else the same combination of the
    proposed slots (with one slot: the proposal's digest). required: approvals each slot (or the
    average) needed, 0 for a void round. approvals: slot 0's (or the average's); slot_approvals: all.
    proposed_slots / accepted_slots: bitmaps over the round's slots.
    """

    round: int
    accepted: bool
    void: bool
    digest: bytes
    approvals: int
    votes: int
    proposer: str
    required: int
    proposed_slots: int = 0
    accepted_slots: int = 0
    slot_approvals: tuple[int, ...] = ()


@dataclass(frozen=True)
class BallotBatch:
    """What submit_ballots did: the voters it counted, and (index in the batch, signer, reason) of
    every ballot the contract skipped."""

    round: int
    counted: tuple[str, ...]
    skipped: tuple[tuple[int, str, str], ...]


@dataclass(frozen=True)
class MemberStats:
    proposed: int
    accepted: int
    votes_cast: int
    votes_with_majority: int
    missed: int  # duties missed in total: proposals not made in time, votes not cast
    missed_in_a_row: int  # reset by any duty done (or rejoin); max_missed of them suspend
    suspended: bool


@dataclass(frozen=True)
class SlotState:
    """One proposer slot of a round."""

    slot: int
    proposer: str
    proposed: bool
    digest: bytes
    uri: str
    approvals: int
    accepted: bool


@dataclass(frozen=True)
class RoundState:
    """Deadlines are the last block (inclusive) at which propose / vote are accepted.

    voters are the members expected to vote (active when the round started, less the proposer of a
    one-slot round); eligible is their number and required the approvals each slot (or the average)
    needs, both fixed for the round. proposer, digest, uri and approvals are slot 0's; ``slots`` has
    every slot. ``proposed`` means voting is open (every slot proposed, or some and the proposal
    window over); proposed_block is the block it opened at.
    """

    round: int
    proposer: str
    start_block: int
    voters: tuple[str, ...]
    eligible: int
    required: int
    proposed: bool
    proposed_block: int | None
    digest: bytes
    uri: str
    approvals: int
    votes: int
    finalized: bool
    accepted: bool
    void: bool
    proposal_deadline: int
    vote_deadline: int | None
    slots: tuple[SlotState, ...] = ()
    proposed_slots: int = 0
    accepted_slots: int = 0

    def slot_of(self, member: str) -> int | None:
        """The slot ``member`` holds in this round, or None."""
        return next((s.slot for s in self.slots if s.proposer == member), None)


@dataclass(frozen=True)
class Settings:
    """Fixed at deployment; cached by the client since the contract cannot change them."""

    members: tuple[str, ...]
    threshold_num: int
    threshold_den: int
    proposal_window: int
    vote_window: int
    max_missed: int
    seed: bytes
    initial_digest: bytes
    model_digest: bytes
    deployed_block: int
    proposers: int = 1  #: slots (distinct proposers) per round
    vote_on_average: bool = False  #: combine "average": one vote on the average of the slots

    @property
    def combine(self) -> str:
        return "average" if self.vote_on_average else "each"

    @property
    def threshold(self) -> Fraction:
        return Fraction(self.threshold_num, self.threshold_den)


@dataclass(frozen=True)
class ChainEvent:
    name: str
    block: int
    log_index: int
    tx_hash: str
    args: dict[str, Any]


def _b32(value: bytes, what: str) -> bytes:
    if isinstance(value, str):
        value = bytes.fromhex(value.removeprefix("0x"))
    value = bytes(value)
    if len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(value)}")
    return value


def _reason(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or (exc.args[0] if exc.args else "") or str(exc)
    msg = str(msg)
    for prefix in _REVERT_PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):].strip() or "reverted without reason"
    return msg


def _plain(value: Any) -> Any:
    """HexBytes -> bytes (and tuples -> lists) so events compare and serialise like ordinary values."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _chain_error(what: str, reason: str) -> ChainError:
    return ChainError(f"{what} rejected by the contract: {reason}")


def _abi_type(param: dict) -> str:
    """eth_abi's type string of an ABI parameter (tuples spelled out)."""
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + t[len("tuple"):]
    return t


def _normaliser(param: dict) -> Callable[[Any], Any] | None:
    """What web3 does to a decoded value of this parameter (addresses checksummed, arrays as lists),
    or None."""
    t = param["type"]
    if t.endswith("]"):
        inner = _normaliser({**param, "type": t[: t.rindex("[")]})
        return (lambda v: list(v)) if inner is None else (lambda v: [inner(x) for x in v])
    if t == "tuple":
        parts = [_normaliser(c) for c in param["components"]]
        if all(f is None for f in parts):
            return None
        return lambda v: tuple(x if f is None else f(x) for f, x in zip(parts, v))
    if t == "address":
        return Web3.to_checksum_address
    return None


def _decoder(params: list[dict]) -> Callable[[bytes], tuple]:
    types = [_abi_type(p) for p in params]
    norms = [_normaliser(p) for p in params]
    return lambda data: tuple(x if f is None else f(x) for f, x in zip(norms, eth_abi.decode(types, data)))


class _Codec:
    """A contract's ABI, compiled once: selector and types per function, decoders per event topic.

    web3's contract functions look the ABI entry up, validate it and walk every argument through
    its normalisers on each use, and ``process_log`` does the same per log: on the embedded chain
    that was about a tenth of a 63-ballot batch, and a few ms of every call. Encoding and decoding
    here is plain eth_abi, with web3's one normalisation of results (checksummed addresses)."""

    def __init__(self, abi: list[dict]):
        self.functions: dict[str, tuple[bytes, list[str], Callable[[bytes], tuple]]] = {}
        for entry in abi:
            if entry["type"] != "function":
                continue
            if entry["name"] in self.functions:  # an overload: this codec keys by name only
                raise ValueError(f"ABI has two functions named {entry['name']}")
            self.functions[entry["name"]] = (function_abi_to_4byte_selector(cast(ABIFunction, entry)),
                                             [_abi_type(i) for i in entry["inputs"]], _decoder(entry["outputs"]))
        self.events: dict[bytes, tuple[str, list[str], list[tuple[str, str, Callable | None]], Callable]] = {}
        for entry in abi:
            if entry["type"] != "event":
                continue
            indexed = [(i["name"], _abi_type(i), _normaliser(i)) for i in entry["inputs"] if i["indexed"]]
            data = [i for i in entry["inputs"] if not i["indexed"]]
            self.events[event_abi_to_log_topic(cast(ABIEvent, entry))] = (entry["name"], [i["name"] for i in data], indexed,
                                                         _decoder(data))

    def encode(self, name: str, args: tuple) -> bytes:
        selector, types, _ = self.functions[name]
        return selector + eth_abi.encode(types, args)

    def decode(self, name: str, data: bytes) -> Any:
        """A call's result as web3 gives it: the value of a single output, else the tuple."""
        out = self.functions[name][2](data)
        return out[0] if len(out) == 1 else out

    def event(self, topics: list[bytes], data: bytes) -> tuple[str, dict[str, Any]] | None:
        """(name, args) of a log of this ABI (indexed arguments first, as web3 orders them), or None."""
        spec = self.events.get(topics[0]) if topics else None
        if spec is None:
            return None
        name, data_names, indexed, decode = spec
        args = {}
        for (arg, typ, norm), topic in zip(indexed, topics[1:]):
            value = eth_abi.decode([typ], topic)[0]
            args[arg] = value if norm is None else norm(value)
        args.update(zip(data_names, decode(data)))
        return name, args


@lru_cache(maxsize=8)
def _codec_of(abi_json: str) -> _Codec:
    return _Codec(json.loads(abi_json))


class _Encoded:
    """A contract call as bytes, with the two methods ``_send`` uses of a web3 contract function.

    On the embedded chain it goes to eth-tester directly: web3's request and result formatters and
    its receipt polling were about a fifth of a transaction's CPU time there (a no-op transaction
    took 11 ms on the shared machine), and a call's work is the same."""

    def __init__(self, w3: Web3, to: str, data: bytes):
        self.w3, self.to, self.data = w3, to, data
        self.tester = getattr(w3.provider, "ethereum_tester", None)

    def transact(self, tx: dict) -> Any:
        return self.w3.eth.send_transaction({**tx, "to": self.to, "data": self.data})

    def send_embedded(self, sender: str, gas: int) -> dict:
        """Send on the embedded chain (auto-mined at once); the receipt in web3's shape."""
        if self.tester is None:
            raise RuntimeError("send_embedded needs the embedded chain")
        tx_hash = self.tester.send_transaction({"from": sender, "to": self.to, "data": "0x" + self.data.hex(),
                                                "gas": gas, **_TESTER_FEES})
        return _web3_receipt(self.tester.get_transaction_receipt(tx_hash))

    def call(self, tx: dict | None = None, block_identifier: Any = "latest") -> bytes:
        if self.tester is not None:
            out = self.tester.call({**(tx or {}), "to": self.to, "data": "0x" + self.data.hex()}, block_identifier)
            return bytes.fromhex(out.removeprefix("0x"))
        return self.w3.eth.call({**(tx or {}), "to": self.to, "data": self.data}, block_identifier)


def _web3_receipt(r: dict) -> dict:
    """eth-tester's receipt with the keys and value types web3 gives (what the client reads)."""
    def log(entry: dict) -> dict:
        return {"address": entry["address"], "topics": [bytes.fromhex(t[2:]) for t in entry["topics"]],
                "data": bytes.fromhex(entry["data"][2:]), "blockNumber": entry["block_number"],
                "logIndex": entry["log_index"], "transactionHash": bytes.fromhex(entry["transaction_hash"][2:])}

    return {"status": r["status"], "gasUsed": r["gas_used"], "blockNumber": r["block_number"],
            "transactionHash": bytes.fromhex(r["transaction_hash"][2:]), "contractAddress": r["contract_address"],
            "logs": [log(entry) for entry in r["logs"]]}


class ContractClient:
    """What every client of one of our contracts shares: timed views whose reverts are one line.

    Subclasses set ``chain``, ``_c`` (the web3 contract) and ``seconds``.
    """

    chain: Chain
    seconds: float
    _c: Contract

    @property
    def _codec(self) -> _Codec:
        codec = self.__dict__.get("_codec_cache")
        if codec is None:
            codec = self.__dict__["_codec_cache"] = _codec_of(json.dumps(self._c.abi, sort_keys=True))
        return codec

    def _encoded(self, name: str, args: tuple) -> _Encoded:
        try:
            data = self._codec.encode(name, args)
        except (EncodingError, TypeError) as exc:  # what web3's argument validation refused, as it did
            raise ChainError(f"{name}{tuple(args)!r}: arguments do not fit the contract's ABI: {exc}") from None
        return _Encoded(self.chain.w3, self._c.address, data)

    def _call(self, name: str, *args: Any) -> Any:
        t0 = time.perf_counter()
        # A call without "from" makes eth-tester's provider list the accounts three times to guess one.
        opts = {"from": self.chain.accounts[0]} if self.chain.kind == "embedded" else None
        try:
            return self._codec.decode(name, bytes(self._encoded(name, args).call(opts)))
        except _REVERTS as exc:
            raise _chain_error(f"{name}{tuple(args)!r}", _reason(exc)) from None
        except (Web3Exception, OSError, _TesterInvalid) as exc:
            raise ChainError(f"{name} call failed on {self.chain.kind}: {exc}") from None
        finally:
            self.seconds += time.perf_counter() - t0


class Coordinator(ContractClient):
    """One deployed Coordinator; ``seconds`` accumulates wall time spent on the chain."""

    def __init__(self, chain: Chain, address: str, artifact: dict | None = None):
        self.chain = chain
        self.w3: Web3 = chain.w3
        art = artifact or load_artifact()
        self._c = self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=art["abi"])
        self._settings: Settings | None = None
        self._fixed_gas = EMBEDDED_TX_GAS if chain.kind == "embedded" else None
        self.seconds = 0.0
        self.gas_used = 0
        self.transactions = 0  # mined by this client (deployment excluded)
        self.calldata_bytes = 0  # what those transactions carried (the chain's share of the traffic)

    # -- construction --------------------------------------------------------------

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        members: list[str],
        *,
        threshold: Fraction = Fraction(1, 2),
        proposal_window: int = 50,
        vote_window: int = 50,
        seed: bytes,
        initial_digest: bytes,
        model_digest: bytes,
        max_missed: int = 3,
        proposers: int = 1,
        combine: str = "each",
        sender: str | None = None,
    ) -> Coordinator:
        """Deploy with an exact threshold (a Fraction: protocol.threshold_fraction turns a float
        share into one); the contract checks every bound and reverts with the reason.

        proposers: slots per round (distinct proposers); combine: "each" (vote on each slot) or
        "average" (vote once on the average of the proposed slots)."""
        art = load_artifact()
        factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        if len(members) > MAX_MEMBERS:
            raise ChainError(f"at most {MAX_MEMBERS} members, got {len(members)}")
        if not isinstance(threshold, Rational):  # a float would deploy its binary noise, or fail
            raise TypeError(f"threshold must be a Fraction, got {type(threshold).__name__} "
                            "(use cohep.protocol.vote.threshold_fraction)")
        threshold = Fraction(threshold)
        if threshold < 0:
            raise ChainError(f"threshold must be >= 0, got {threshold}")
        if combine not in ("each", "average"):
            raise ChainError(f"combine must be each or average, got {combine!r}")
        ints = {"proposal_window": proposal_window, "vote_window": vote_window, "max_missed": max_missed,
                "proposers": proposers}
        for name, value in ints.items():
            if int(value) < 0:  # the ABI cannot encode it; the contract names the valid range
                raise ChainError(f"{name} must be >= 0, got {value}")
        args = (
            [Web3.to_checksum_address(m) for m in members],
            threshold.numerator,
            threshold.denominator,
            int(proposal_window),
            int(vote_window),
            int(max_missed),
            _b32(seed, "seed"),
            _b32(initial_digest, "initial_digest"),
            _b32(model_digest, "model_digest"),
            int(proposers),
            combine == "average",
        )
        sender = Web3.to_checksum_address(sender or chain.accounts[0])
        t0 = time.perf_counter()
        try:
            receipt = _send(chain.w3, "deploy", factory.constructor(*args), sender)
        finally:
            elapsed = time.perf_counter() - t0
        coord = cls(chain, receipt["contractAddress"], art)
        coord.seconds += elapsed
        coord.gas_used += int(receipt["gasUsed"])
        return coord

    @classmethod
    def at(cls, chain: Chain, address: str) -> Coordinator:
        """Attach to an existing deployment; fails if no Coordinator code is there."""
        address = Web3.to_checksum_address(address)
        code = chain.w3.eth.get_code(address)
        art = load_artifact()
        runtime = bytes.fromhex(art["bytecode_runtime"].removeprefix("0x"))
        # Vyper appends the immutables (threshold, windows, digests...) after the runtime code.
        if not bytes(code).startswith(runtime):
            raise ChainError(f"no cohep Coordinator (this version) at {address} on {chain.kind}")
        return cls(chain, address, art)

    @property
    def address(self) -> ChecksumAddress:
        return self._c.address

    # -- views -----------------------------------------------------------------------

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings(
                members=tuple(self._call("members")),
                threshold_num=self._call("threshold_num"),
                threshold_den=self._call("threshold_den"),
                proposal_window=self._call("proposal_window"),
                vote_window=self._call("vote_window"),
                max_missed=self._call("max_missed"),
                seed=bytes(self._call("seed")),
                initial_digest=bytes(self._call("initial_digest")),
                model_digest=bytes(self._call("model_digest")),
                deployed_block=self._call("deployed_block"),
                proposers=self._call("proposers"),
                vote_on_average=bool(self._call("vote_on_average")),
            )
        return self._settings

    def members(self) -> list[str]:
        return list(self.settings().members)

    def required_for(self, eligible: int) -> int:
        """Approvals the contract requires of a round with `eligible` voters (at least 1)."""
        return int(self._call("required_for", int(eligible)))

    def round(self) -> int:
        return int(self._call("round"))

    def proposer(self, r: int) -> str:
        """Slot 0's proposer of a started round (the contract reverts for later rounds)."""
        return Web3.to_checksum_address(self._call("proposer", r))

    def proposers_of(self, r: int) -> list[str]:
        """Every slot's proposer of a started round, in slot order."""
        return [Web3.to_checksum_address(a) for a in self._call("proposers_of", int(r))]

    def draw_slots(self, r: int) -> list[int]:
        """Member indices the draw names for round r's slots given who is active now."""
        return [int(i) for i in self._call("draw_slots", int(r))]

    def draw(self, r: int) -> str:
        """Whom the draw names for round r given who is active now (any r, started or not)."""
        return Web3.to_checksum_address(self._call("draw", int(r)))

    def permutation(self, epoch: int) -> list[int]:
        """Member indices in proposing order for the n rounds of an epoch."""
        return [int(i) for i in self._call("permutation", int(epoch))]

    def is_eligible(self, r: int, member: str) -> bool:
        """True iff member may vote in round r (active when it started, not its proposer)."""
        return bool(self._call("is_eligible", int(r), Web3.to_checksum_address(member)))

    def accepted_digest(self) -> bytes:
        return bytes(self._call("accepted_digest"))

    def accepted_round(self) -> int | None:
        """Round whose proposal is the current model; None while the initial weights stand."""
        r = int(self._call("accepted_round"))
        return None if r == _NO_ACCEPTANCE else r

    def slot_state(self, r: int, j: int) -> SlotState:
        proposer, proposed, digest, uri, approvals, accepted = self._call("slot_info", int(r), int(j))
        return SlotState(j, Web3.to_checksum_address(proposer), bool(proposed), bytes(digest), uri,
                         int(approvals), bool(accepted))

    def round_state(self, r: int) -> RoundState:
        (proposer, start, active, eligible, required, proposed, proposed_block, digest, uri,
         approvals, votes, finalized, accepted, void, n_slots, proposed_slots,
         accepted_slots) = self._call("round_info", r)
        s = self.settings()
        proposer = Web3.to_checksum_address(proposer)
        slots: tuple[SlotState, ...]
        if n_slots == 1:
            slots = (SlotState(0, proposer, bool(proposed_slots & 1), bytes(digest), uri, int(approvals),
                               bool(accepted_slots & 1)),)
        else:
            slots = tuple(self.slot_state(r, j) for j in range(n_slots))
        voters = tuple(m for i, m in enumerate(s.members)
                       if active >> i & 1 and (n_slots > 1 or m != proposer))
        return RoundState(
            round=r,
            proposer=proposer,
            start_block=start,
            voters=voters,
            eligible=eligible,
            required=required,
            proposed=proposed,
            proposed_block=proposed_block if proposed else None,
            digest=bytes(digest),
            uri=uri,
            approvals=approvals,
            votes=votes,
            finalized=finalized,
            accepted=accepted,
            void=void,
            proposal_deadline=start + s.proposal_window,
            vote_deadline=proposed_block + s.vote_window if proposed else None,
            slots=slots,
            proposed_slots=int(proposed_slots),
            accepted_slots=int(accepted_slots),
        )

    def ballot(self, r: int, member: str) -> bool | None:
        """A member's vote in round r on slot 0 (or the average): True approve, False reject,
        None not voted."""
        b = self.ballot_bits(r, member)
        return None if b is None else bool(b & 1)

    def ballot_bits(self, r: int, member: str) -> int | None:
        """A member's approval bitmap in round r (bit j: slot j), None if it has not voted."""
        b = int(self._call("ballot", r, Web3.to_checksum_address(member)))
        return None if b == 0 else b & ~_VOTED

    def member_stats(self, member: str) -> MemberStats:
        (proposed, accepted, cast, majority, missed, in_a_row,
         suspended) = self._call("member_stats", Web3.to_checksum_address(member))
        return MemberStats(proposed, accepted, cast, majority, missed, in_a_row, bool(suspended))

    # -- transactions ------------------------------------------------------------------

    def _transact(self, name: str, sender: str, *args: Any, gas: int | None = None) -> Receipt:
        what = f"{name}(round {args[0]})" if args else f"{name}()"
        t0 = time.perf_counter()
        try:
            fn = self._encoded(name, args)
            receipt = _send(self.w3, what, fn,
                            Web3.to_checksum_address(sender), gas or self._fixed_gas)
        finally:
            self.seconds += time.perf_counter() - t0
        self.gas_used += int(receipt["gasUsed"])
        self.transactions += 1
        self.calldata_bytes += len(fn.data)
        return receipt

    def propose(self, sender: str, r: int, digest: bytes, uri: str, slot: int = 0) -> Receipt:
        if len(uri.encode("utf-8")) > URI_MAX_BYTES:
            raise ChainError(f"weights URI longer than {URI_MAX_BYTES} bytes: {uri[:60]}...")
        return self._transact("propose", sender, int(r), int(slot), _b32(digest, "digest"), uri)

    def vote(self, sender: str, r: int, approve: bool, score_ppm: int) -> Receipt:
        """A one-slot round's (or the average's) vote: approve or reject, and the score."""
        return self.vote_slots(sender, r, int(bool(approve)), [int(score_ppm)])

    def vote_slots(self, sender: str, r: int, approvals: int, scores_ppm: list[int]) -> Receipt:
        """One ballot over every slot: bit j of approvals approves slot j; one score per slot
        (combine "average": bit 0 and one score, the average's)."""
        if len(scores_ppm) > MAX_MEMBERS:
            raise ChainError(f"at most {MAX_MEMBERS} scores, got {len(scores_ppm)}")
        return self._transact("vote", sender, int(r), int(approvals), [int(x) for x in scores_ppm])

    def finalize(self, sender: str, r: int) -> Outcome:
        receipt = self._transact("finalize", sender, int(r))
        for ev in self._decode(receipt["logs"]):
            a = ev.args
            if ev.name == "Finalized":
                approvals = tuple(int(x) for x in a["approvals"])
                return Outcome(a["round"], a["accepted"], False, a["digest"], approvals[0] if approvals else 0,
                               a["votes"], a["proposer"], a["required"], int(a["proposed_slots"]),
                               int(a["accepted_slots"]), approvals)
            if ev.name == "RoundVoided":
                return Outcome(a["round"], False, True, bytes(32), 0, 0, a["proposer"], 0)
        raise ChainError(f"finalize(round {r}) mined without a Finalized/RoundVoided event")

    def ballot_domain(self):
        """The EIP-712 domain this contract verifies ballots under (ledger/ballots.py)."""
        from cohep.ledger.ballots import Domain

        return Domain(self.chain.chain_id, self.address)

    def sign_ballot(self, voter: str, r: int, approvals: int, scores_ppm):
        """``voter``'s ballot for round r, signed with the key the chain holds for it: what vote_slots
        sends (approvals: bit j approves slot j, a bool slot 0 / the average; scores_ppm: one score
        or one per slot)."""
        if not isinstance(scores_ppm, int) and len(scores_ppm) > MAX_MEMBERS:
            raise ChainError(f"at most {MAX_MEMBERS} scores, got {len(scores_ppm)}")
        t0 = time.perf_counter()
        try:
            return self.chain.sign_ballot(voter, self.address, int(r), int(approvals), scores_ppm)
        finally:
            self.seconds += time.perf_counter() - t0

    def submit_ballots(self, sender: str, r: int, ballots: list) -> BallotBatch:
        """Submit signed ballots (ledger.ballots.SignedBallot) for round r in one transaction.

        The contract counts each valid one as its signer's vote and skips (BallotSkipped) any other;
        the batch fails as a whole only for the round (not current, no proposal, window closed).
        """
        if not ballots:
            return BallotBatch(int(r), (), ())
        if len(ballots) > MAX_MEMBERS:
            raise ChainError(f"at most {MAX_MEMBERS} ballots in a batch, got {len(ballots)}")
        gas = EMBEDDED_BATCH_GAS if self._fixed_gas is not None else None
        receipt = self._transact("submit_ballots", sender, int(r), [b.as_tuple() for b in ballots], gas=gas)
        counted, skipped = [], []
        for ev in self._decode(receipt["logs"]):
            if ev.name == "Voted":
                counted.append(ev.args["voter"])
            elif ev.name == "BallotSkipped":
                skipped.append((int(ev.args["index"]), ev.args["signer"], ev.args["reason"]))
        return BallotBatch(int(r), tuple(counted), tuple(skipped))

    def rejoin(self, sender: str) -> Receipt:
        """A suspended member (key recovered, node restarted) is active again from the next round."""
        return self._transact("rejoin", sender)

    # -- events -----------------------------------------------------------------------

    def _decode(self, logs: list) -> list[ChainEvent]:
        out = []
        for log in logs:
            if log["address"] != self.address or not log["topics"]:
                continue
            decoded = self._codec.event([bytes(t) for t in log["topics"]], bytes(log["data"]))
            if decoded is None:  # not one of the ABI's events (EVENT_NAMES)
                continue
            name, args = decoded
            out.append(ChainEvent(
                name=name,
                block=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
                tx_hash=Web3.to_hex(log["transactionHash"]),
                args={k: _plain(v) for k, v in args.items()},
            ))
        return out

    def events(
        self, from_block: int | None = None, to_block: BlockIdentifier = "latest"
    ) -> list[ChainEvent]:
        """Every event of this contract in chain order: the audit trail of a run.

        from_block defaults to the deployment block: scanning from genesis is needlessly slow
        on long-lived chains (eth-tester walks every block).
        """
        if from_block is None:
            from_block = self.settings().deployed_block
        t0 = time.perf_counter()
        try:
            logs = self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": from_block, "toBlock": to_block}
            )
        except (Web3Exception, OSError) as exc:
            raise ChainError(f"reading events from {self.chain.kind} failed: {exc}") from None
        finally:
            self.seconds += time.perf_counter() - t0
        evs = self._decode(logs)
        evs.sort(key=lambda e: (e.block, e.log_index))
        return evs


def _send(w3: Web3, what: str, fn: Any, sender: str, fixed_gas: int | None = None) -> Receipt:
    """Send, wait for the receipt, and turn any revert into ChainError with the reason.

    With fixed_gas (embedded chain) the transaction goes out as it is: no gas estimation (py-evm
    estimates by binary search, re-executing the transaction a dozen times), no dry run (a second
    execution), and fixed fees (no block read). One that reverts is undone with an eth-tester
    snapshot, so a refused call leaves no block behind (as estimation on a real node refuses it
    before sending), and is replayed as a call for the reason.
    """
    tester = getattr(w3.provider, "ethereum_tester", None) if fixed_gas is not None else None
    snapshot = tester.take_snapshot() if tester is not None else None
    try:
        receipt: Receipt
        if tester is not None and fixed_gas is not None and isinstance(fn, _Encoded) and fn.tester is tester:
            receipt = fn.send_embedded(sender, fixed_gas)
        else:
            if fixed_gas is None:
                tx_hash = fn.transact({"from": sender})  # gas estimation surfaces reverts here
            else:
                tx_hash = fn.transact({"from": sender, "gas": fixed_gas, **EMBEDDED_FEES})
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
    except _REVERTS as exc:
        raise _chain_error(what, _reason(exc)) from None
    except (Web3Exception, OSError, _TesterInvalid) as exc:
        raise ChainError(f"{what} failed: {exc}") from None
    if receipt["status"] != 1:
        # Reverted on chain (embedded: any revert; a node: the state changed after the estimate).
        reason = "reverted on chain (out of gas, or the state changed before it was mined)"
        at = receipt["blockNumber"]
        if tester is not None and snapshot is not None:
            tester.revert_to_snapshot(snapshot)
            at = "pending"  # the block it was mined in: latest + 1 once it is undone
        try:
            fn.call({"from": sender}, block_identifier=at)
        except _REVERTS as exc:
            reason = _reason(exc)
        except Exception:  # noqa: BLE001 - the replay is best effort
            pass
        raise _chain_error(what, reason)
    return receipt
