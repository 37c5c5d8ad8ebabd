"""Calls and transactions to one of our contracts, and every refusal as one line naming the reason.

Both clients (Coordinator, CompetitionLedger) are ContractClients: views are encoded by the ABI
codec (ledger/abi.py) and timed; ``send`` mines a transaction, waits for its receipt and turns a
revert into ChainError with the contract's reason. On the embedded chain a call or transaction goes
to eth-tester directly, with a fixed gas limit and fixed fees: web3's formatters, its gas estimate
and its receipt polling were most of a transaction's CPU time there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from eth_abi.exceptions import EncodingError
from web3 import Web3
from web3.contract import Contract
from web3._utils.error_formatters_utils import raise_contract_logic_error_on_revert
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3Exception, Web3RPCError
from web3.types import RPCEndpoint

from cohep.core.errors import ChainError
from cohep.ledger.abi import Codec, codec_of
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

#: the contracts' limit on a weights URI (String[256])
URI_MAX_BYTES = 256
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


def b32(value: bytes, what: str) -> bytes:
    """A bytes32 argument (bytes or hex), or ValueError naming it."""
    if isinstance(value, str):
        value = bytes.fromhex(value.removeprefix("0x"))
    value = bytes(value)
    if len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(value)}")
    return value


def check_uri(uri: str) -> None:
    """ChainError for a weights URI the contract would refuse (over URI_MAX_BYTES)."""
    if len(uri.encode("utf-8")) > URI_MAX_BYTES:
        raise ChainError(f"weights URI longer than {URI_MAX_BYTES} bytes: {uri[:60]}...")


def _reason(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or (exc.args[0] if exc.args else "") or str(exc)
    msg = str(msg)
    for prefix in _REVERT_PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):].strip() or "reverted without reason"
    return msg


def _chain_error(what: str, reason: str) -> ChainError:
    return ChainError(f"{what} rejected by the contract: {reason}")


class Encoded:
    """A contract call as bytes, with the two methods ``send`` uses of a web3 contract function.

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
    def _codec(self) -> Codec:
        codec = self.__dict__.get("_codec_cache")
        if codec is None:
            codec = self.__dict__["_codec_cache"] = codec_of(json.dumps(self._c.abi, sort_keys=True))
        return codec

    def _encoded(self, name: str, args: tuple) -> Encoded:
        try:
            data = self._codec.encode(name, args)
        except (EncodingError, TypeError) as exc:  # what web3's argument validation refused, as it did
            raise ChainError(f"{name}{tuple(args)!r}: arguments do not fit the contract's ABI: {exc}") from None
        return Encoded(self.chain.w3, self._c.address, data)

    def _call(self, name: str, *args: Any, block: str = "latest") -> Any:
        """The view ``name(*args)`` at ``block`` ("latest"; a node's "pending": the block being built, with
        the transactions waiting for it)."""
        t0 = time.perf_counter()
        # A call without "from" makes eth-tester's provider list the accounts three times to guess one.
        opts = {"from": self.chain.accounts[0]} if self.chain.kind == "embedded" else None
        try:
            return self._codec.decode(name, bytes(self._encoded(name, args).call(opts, block_identifier=block)))
        except _REVERTS as exc:
            raise _chain_error(f"{name}{tuple(args)!r}", _reason(exc)) from None
        except (Web3Exception, OSError, _TesterInvalid) as exc:
            raise ChainError(f"{name} call failed on {self.chain.kind}: {exc}") from None
        finally:
            self.seconds += time.perf_counter() - t0


#: the first wait for a receipt, doubled after each miss up to RECEIPT_POLL_MAX_S
RECEIPT_POLL_FIRST_S = 0.002
RECEIPT_POLL_MAX_S = 0.5


def wait_for_receipt(w3: Web3, tx_hash: Any, timeout: float = RECEIPT_TIMEOUT_S) -> Receipt:
    """The transaction's receipt, asked for again after 2, 4, 8 ... ms (at most 0.5 s apart).

    web3's own wait asks every 0.1 s: an auto-mining node (Anvil) answers the hash before the
    block is sealed, and a receipt asked for a moment too early cost a whole 0.1 s, a round's chain
    time on Anvil varying from 80 to 180 ms with 64 members (issue 29). A chain with 12 s blocks is
    still asked about twice a second."""
    deadline = time.monotonic() + timeout
    wait = RECEIPT_POLL_FIRST_S
    while True:
        try:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            if receipt is not None:
                return receipt
        except TransactionNotFound:
            pass
        if time.monotonic() + wait > deadline:
            raise TimeExhausted(f"transaction {Web3.to_hex(tx_hash)} not mined after {timeout:g} s")
        time.sleep(wait)
        wait = min(2 * wait, RECEIPT_POLL_MAX_S)


#: web3's own margin on a node's gas estimate (its buffered estimate: + 100,000, at most the block's limit)
GAS_BUFFER = 100_000


def send_signed(w3: Web3, fn: Encoded, sender: str, chain: Chain) -> Any:
    """Send ``fn`` from ``sender`` to a node, signed here with the chain's local key for it: its hash,
    or None where there is no such key or the node does not serve what this needs (no JSON-RPC batches,
    no EIP-1559 fees: the caller then sends through web3, and a node without batches is not asked again).

    What web3's signing middleware does in eight requests (the nonce, three reads of the latest block
    for the fee, the gas limit and the gas-price strategy, the tip, the estimate, the send), in two: one
    JSON-RPC batch of the nonce, the latest block, the tip and the gas estimate (the dry run: a revert
    surfaces here, with its reason, and nothing is sent), then the raw transaction. The same nonce,
    gas (estimate + 100,000, at most the block's limit) and fees (2 x the base fee + the tip) as web3
    fills. Issue 29: on Anvil a transaction's client side was ~11 ms, most of a 64-member round."""
    from eth_account import Account  # noqa: PLC0415

    key = chain._keys.get(sender)
    if key is None or chain._batches is False:
        return None
    tx = {"from": sender, "to": fn.to, "data": "0x" + fn.data.hex()}
    try:
        replies = w3.provider.make_batch_request([  # type: ignore[attr-defined]  # HTTPProvider's
            (RPCEndpoint("eth_getTransactionCount"), [sender, "pending"]),
            (RPCEndpoint("eth_getBlockByNumber"), ["latest", False]),
            (RPCEndpoint("eth_maxPriorityFeePerGas"), []),
            (RPCEndpoint("eth_estimateGas"), [tx]),
        ])
    except (AttributeError, NotImplementedError, ValueError, OSError, Web3Exception):
        replies = None  # a provider or node without batches (one dropped the connection): web3's way
    if not isinstance(replies, list) or len(replies) != 4 or not all(isinstance(x, dict) for x in replies):
        chain._batches = False
        return None
    chain._batches = True
    nonce, block, tip, estimate = replies
    if "error" in estimate:
        raise_contract_logic_error_on_revert(estimate)  # a revert: ContractLogicError with its reason
        raise Web3RPCError(str(estimate["error"]))
    try:
        head, priority = block["result"], int(tip["result"], 16)
        fields = {"nonce": int(nonce["result"], 16), "gas": min(int(estimate["result"], 16) + GAS_BUFFER,
                                                                int(head["gasLimit"], 16)),
                  "maxPriorityFeePerGas": priority, "maxFeePerGas": priority + 2 * int(head["baseFeePerGas"], 16)}
    except (KeyError, TypeError, ValueError):  # no EIP-1559 fees or no tip method, or replies not as specified
        chain._batches = False  # web3 knows the other ways
        return None
    signed = Account.sign_transaction({"type": 2, "chainId": chain.chain_id, "to": fn.to, "data": fn.data,
                                       "value": 0, **fields}, key)
    sent = w3.provider.make_request(RPCEndpoint("eth_sendRawTransaction"), ["0x" + bytes(signed.raw_transaction).hex()])
    if "error" in sent:
        raise Web3RPCError(str(sent["error"].get("message", sent["error"])))
    return sent["result"]


def send(w3: Web3, what: str, fn: Any, sender: str, fixed_gas: int | None = None,
         chain: Chain | None = None) -> Receipt:
    """Send, wait for the receipt, and turn any revert into ChainError with the reason.

    With ``chain`` (a node's), a sender whose key the chain holds sends through :func:`send_signed`.
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
        if tester is not None and fixed_gas is not None and isinstance(fn, Encoded) and fn.tester is tester:
            receipt = fn.send_embedded(sender, fixed_gas)
        else:
            tx_hash = None  # a local key: two requests
            if fixed_gas is None and chain is not None and isinstance(fn, Encoded):
                tx_hash = send_signed(w3, fn, sender, chain)
            if tx_hash is None and fixed_gas is None:
                tx_hash = fn.transact({"from": sender})  # gas estimation surfaces reverts here
            elif tx_hash is None:
                # a node fills in its own fees; the embedded chain's are fixed
                fees = EMBEDDED_FEES if tester is not None else {}
                tx_hash = fn.transact({"from": sender, "gas": fixed_gas, **fees})
            receipt = wait_for_receipt(w3, tx_hash)
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
