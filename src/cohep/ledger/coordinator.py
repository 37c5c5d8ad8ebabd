"""Python client of the Coordinator contract (v4; docs/contract.md has the rules).

The client only relays: every outcome (who proposes, who may vote, how many approvals are needed,
whether weights are accepted, who is suspended) is read back from the contract's state or events,
never computed here. ``ledger/draw.py`` recomputes the draw only to audit it. What it reads back
is in ledger/state.py and ledger/events.py; how it talks to the chain, in ledger/contract_client.py.
"""

from __future__ import annotations

import dataclasses
import time
from fractions import Fraction
from numbers import Rational
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import BlockIdentifier

from cohep.core.errors import ChainError
from cohep.ledger.artifact import load_artifact
from cohep.ledger.chain import Chain
from cohep.ledger.contract_client import (
    EMBEDDED_TX_GAS,
    URI_MAX_BYTES,
    ContractClient,
    Receipt,
    b32,
    check_uri,
    send,
)
from cohep.ledger.events import EVENT_NAMES, ChainEvent, ballot_batch_of, decode_logs, outcome_of
from cohep.ledger.state import (
    BallotBatch,
    MemberStats,
    Outcome,
    RoundState,
    Settings,
    SlotState,
    round_state_from,
    settings_from,
)

#: what this module offers, the values it reads back included (they live in state.py and events.py)
__all__ = ["EMBEDDED_BATCH_GAS", "EMBEDDED_TX_GAS", "EVENT_NAMES", "MAX_BATCH", "MAX_MEMBERS", "MAX_SLOTS",
           "URI_MAX_BYTES", "BallotBatch", "ChainEvent", "Coordinator", "MemberStats", "Outcome", "Receipt", "RoundState",
           "Settings", "SlotState", "constructor_args"]

MAX_MEMBERS = 256
#: Coordinator.vy MAX_SLOTS: proposers a round, scores a ballot; MAX_BATCH: entries of a signed batch
MAX_SLOTS = 64
MAX_BATCH = 64
_NO_ACCEPTANCE = 2**256 - 1  # contract's accepted_round while the initial digest stands
_VOTED = 1 << 255  # the contract's ballot flag: ballot = _VOTED | approval bitmap
# submit_ballots with 63 ballots needs about 4.0M (every voter's first vote; 2.9M later; checked in tests); the block
# limit is 30M.
#: this client's transactions that never change the contract's live member set (``_active``): rejoin,
#: finalize (suspensions) and the challenges (a proven fault suspends the relayer) do
_KEEP_ACTIVE = frozenset({"propose", "vote", "commit_vote", "reveal_vote", "submit_commits", "submit_reveals",
                          "submit_ballots", "post_commits", "post_reveals"})
EMBEDDED_BATCH_GAS = 12_000_000
# start(): round 0's draw and slots, with 64 members and 64 slots about 1.83M (checked in tests)
START_GAS = 3_000_000
#: the contract of aggregated ballots (``[chain] ballots = "aggregate"``; ledger/bundles.py)
AGGREGATE = "AggregateCoordinator"


def aggregate_args(args: tuple, challenge_window: int) -> tuple:
    """AggregateCoordinator's constructor arguments from Coordinator's: votes always sealed, and the
    challenge window."""
    if int(challenge_window) < 0:
        raise ChainError(f"challenge_window must be >= 0, got {challenge_window}")
    return (*args[:11], args[12], int(challenge_window))


def constructor_args(members: list[str], threshold: Fraction, proposal_window: int, vote_window: int, seed: bytes,
                     initial_digest: bytes, model_digest: bytes, max_missed: int, proposers: int,
                     combine: str, sealed: bool = True, reveal_window: int | None = None) -> tuple:
    """The Coordinator's constructor arguments, or one line naming the first that cannot be encoded
    (the contract checks every bound itself and reverts with the reason)."""
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
    if reveal_window is None:
        reveal_window = vote_window
    ints = {"proposal_window": proposal_window, "vote_window": vote_window, "max_missed": max_missed,
            "proposers": proposers, "reveal_window": reveal_window}
    for name, value in ints.items():
        if int(value) < 0:  # the ABI cannot encode it; the contract names the valid range
            raise ChainError(f"{name} must be >= 0, got {value}")
    return (
        [Web3.to_checksum_address(m) for m in members],
        threshold.numerator,
        threshold.denominator,
        int(proposal_window),
        int(vote_window),
        int(max_missed),
        b32(seed, "seed"),
        b32(initial_digest, "initial_digest"),
        b32(model_digest, "model_digest"),
        int(proposers),
        combine == "average",
        bool(sealed),
        int(reveal_window),
    )


class Coordinator(ContractClient):
    """One deployed Coordinator; ``seconds`` accumulates wall time spent on the chain."""

    def __init__(self, chain: Chain, address: str, artifact: dict | None = None):
        self.chain = chain
        self.w3: Web3 = chain.w3
        art = artifact or load_artifact()
        self._c = self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=art["abi"])
        #: aggregated ballots: an AggregateCoordinator (post_commits, post_reveals, challenges)
        self.aggregated = any(e.get("name") == "post_commits" for e in art["abi"])
        # aggregate_info of the last round read, until this client sends or mines: every voter of a
        # round in this process asks it, and it changes only with a transaction (one read a round)
        self._agg_cache: tuple[tuple, dict] | None = None
        # round_info of one round as read, or advanced by this client's own propose / post_commits, with
        # the block it was read at and the block the chain must be at for it to stand (_known_round_info)
        self._round_info: tuple[int, tuple, int, int] | None = None
        # (round, block, active): the contract's live member set at that block is still ``active``, the
        # round's round_info ``active`` (read in the round's first block, or derived by finalize, and since
        # then only this client's own transactions that leave it alone, and empty blocks): _started_info
        self._active_known: tuple[int, int, int] | None = None
        # on the embedded chain, round_info of finalized rounds: never written again (every member of an
        # in-process run reads the accepted round's to adopt it: 64 reads a round at 64 members); the last
        # RoundState built, for the same info at the same block; and accepted_round as read at a block
        self._final_info: dict[int, tuple] = {}
        self._final_slots: dict[tuple[int, int], SlotState] = {}
        self._state_memo: tuple[tuple, tuple, RoundState] | None = None
        self._accepted_at: tuple[int, int] | None = None
        self._decoded: tuple[list, list[ChainEvent]] | None = None  # the last receipt's logs, decoded
        self._mined = 0
        self._settings: Settings | None = None
        self._fixed_gas = EMBEDDED_TX_GAS if chain.kind == "embedded" else None
        self.seconds = 0.0
        self.gas_used = 0
        self.transactions = 0  # mined by this client (deployment excluded)
        self.calldata_bytes = 0  # what those transactions carried (the chain's share of the traffic)

    # -- construction --------------------------------------------------------------

    @classmethod
    def deploy(cls, chain: Chain, members: list[str], *, threshold: Fraction = Fraction(1, 2), proposal_window: int = 50,
               vote_window: int = 50, seed: bytes, initial_digest: bytes, model_digest: bytes, max_missed: int = 3,
               proposers: int = 1, combine: str = "each", sealed: bool = True, reveal_window: int | None = None,
               sender: str | None = None, start: bool = True, challenge_window: int | None = None) -> Coordinator:
        """Deploy with an exact threshold (a Fraction: protocol.threshold_fraction turns a float
        share into one); the contract checks every bound and reverts with the reason.

        proposers: slots per round (distinct proposers); combine: "each" (vote on each slot) or
        "average" (vote once on the average of the proposed slots); sealed: votes are committed, then
        revealed within reveal_window blocks (default: the vote window); False keeps plain vote().
        start: call start() at once (the next transaction, so in a later block), which fixes the
        draw's seed from the deployment block's hash and starts round 0. challenge_window: deploy an
        AggregateCoordinator (aggregated ballots, sealed) whose posts can be challenged that many blocks."""
        art = load_artifact(AGGREGATE if challenge_window is not None else "Coordinator")
        factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        args = constructor_args(members, threshold, proposal_window, vote_window, seed, initial_digest, model_digest,
                                max_missed, proposers, combine, sealed, reveal_window)
        if challenge_window is not None:
            args = aggregate_args(args, challenge_window)
        sender = Web3.to_checksum_address(sender or chain.accounts[0])
        t0 = time.perf_counter()
        try:
            receipt = send(chain.w3, "deploy", factory.constructor(*args), sender)
        finally:
            elapsed = time.perf_counter() - t0
        coord = cls(chain, receipt["contractAddress"], art)
        coord.seconds += elapsed
        coord.gas_used += int(receipt["gasUsed"])
        if start:  # part of the deployment: its gas is counted, not as one of the client's transactions
            coord.start(sender)
            coord.transactions, coord.calldata_bytes = 0, 0
        return coord

    @classmethod
    def at(cls, chain: Chain, address: str) -> Coordinator:
        """Attach to an existing deployment; fails if no Coordinator code is there."""
        address = Web3.to_checksum_address(address)
        code = bytes(chain.w3.eth.get_code(address))
        for name in ("Coordinator", AGGREGATE):
            art = load_artifact(name)
            # Vyper appends the immutables (threshold, windows, digests...) after the runtime code.
            if code.startswith(bytes.fromhex(art["bytecode_runtime"].removeprefix("0x"))):
                return cls(chain, address, art)
        raise ChainError(f"no cohep Coordinator (this version) at {address} on {chain.kind}")

    @property
    def address(self) -> ChecksumAddress:
        return self._c.address

    # -- views -----------------------------------------------------------------------

    def settings(self) -> Settings:
        """The deployment's settings (cached once start() has fixed the draw seed: nothing changes after)."""
        if self._settings is None:
            settings = settings_from(self._call)
            if self.aggregated:
                settings = dataclasses.replace(settings, challenge_window=int(self._call("challenge_window")))
            if settings.draw_seed == bytes(32):
                return settings
            self._settings = settings
        return self._settings

    def draw_seed(self) -> bytes:
        """The seed the proposer draw uses (empty until start())."""
        return bytes(self._call("draw_seed"))

    def members(self) -> list[str]:
        return list(self.settings().members)

    def required_for(self, eligible: int) -> int:
        """Approvals the contract requires of a round with `eligible` voters (at least 1)."""
        return int(self._call("required_for", int(eligible)))

    def round(self) -> int:
        return int(self._call("round"))

    def closed(self, r: int) -> bool:
        """Whether round ``r`` is decided, or about to be: past it in the latest block, or (a node) in the
        block being built, where another member's finalize already waits. A node's own finalize is
        estimated against that block, so the contract refuses it ("wrong round") while the latest block
        still shows the round open: a race lost to an honest member, not a fault to retry."""
        if self.round() > r:
            return True
        return self.chain.kind != "embedded" and int(self._call("round", block="pending")) > r

    def proposer(self, r: int) -> str:
        """Slot 0's proposer of a started round (the contract reverts for later rounds)."""
        return self.proposers_of(r)[0]

    def proposers_of(self, r: int) -> list[str]:
        """Every slot's proposer of a started round, in slot order."""
        if self.aggregated:  # no proposers_of view there (EIP-170): the round's slots name them
            return [slot.proposer for slot in self.round_state(int(r)).slots]
        return [Web3.to_checksum_address(a) for a in self._call("proposers_of", int(r))]

    def draw_slots(self, r: int) -> list[int]:
        """Member indices the draw names for round r's slots given who is active now."""
        return [int(i) for i in self._call("draw_slots", int(r))]

    def draw(self, r: int) -> str:
        """Whom the draw names for round r given who is active now (any r, started or not)."""
        return self.members()[self.draw_slots(r)[0]]

    def permutation(self, epoch: int) -> list[int]:
        """Member indices in proposing order for the n rounds of an epoch."""
        return [int(i) for i in self._call("permutation", int(epoch))]

    def is_eligible(self, r: int, member: str) -> bool:
        """True iff member may vote in round r (active when it started, not its proposer)."""
        return Web3.to_checksum_address(member) in self.round_state(int(r)).voters

    def accepted_digest(self) -> bytes:
        return bytes(self._call("accepted_digest"))

    def accepted_round(self) -> int | None:
        """Round whose proposal is the current model; None while the initial weights stand.

        On the embedded chain the value read is kept while the chain stays at the block it was read at
        (only a finalize changes it, and every transaction mines a block): each member adopting a round
        asks it, 64 calls a round at 64 members in one process, where a node asks once."""
        block = self.chain.block_number() if self.chain.kind == "embedded" else -1
        if self._accepted_at is not None and block >= 0 and self._accepted_at[0] == block:
            r = self._accepted_at[1]
        else:
            r = int(self._call("accepted_round"))
            if block >= 0:
                self._accepted_at = (block, r)
        return None if r == _NO_ACCEPTANCE else r

    def slot_state(self, r: int, j: int) -> SlotState:
        proposer, proposed, digest, uri, approvals, accepted = self._call("slot_info", int(r), int(j))
        return SlotState(j, Web3.to_checksum_address(proposer), bool(proposed), bytes(digest), uri,
                         int(approvals), bool(accepted))

    def round_state(self, r: int) -> RoundState:
        info = self._final_info.get(int(r)) or self._known_round_info(int(r))
        if info is None:
            block = self.chain.block_number() if self.chain.kind == "embedded" else -1
            info = tuple(self._call("round_info", r))
            if block >= 0 and info[11] and (info[5] or info[13]):  # finalized (proposed or void) on the embedded
                self._final_info[int(r)] = info  # chain: its storage is never written again, and no reorg comes
            if block >= 0 and (self._round_info is None or self._round_info[0] <= r):  # keep a later round's
                self._round_info = (int(r), info, block, block)
                if block == int(info[1]):
                    self._active_known = (int(r), block, int(info[2]))
                elif self._active_known is None or self._active_known[:2] != (int(r), block):
                    self._active_known = None
        # the same info at the same block (and no transaction or empty block of this client's since: the
        # posts' view) is the same state: an in-process round's 63 voters each ask it (RoundState is frozen)
        key = (int(r), id(info), self.chain.block_number() if self.chain.kind == "embedded" else None,
               self.transactions, self._mined)
        if self._state_memo is not None and self._state_memo[0] == key and self._state_memo[1] is info:
            return self._state_memo[2]
        slot = self.slot_state if int(r) not in self._final_info else self._final_slot
        state = round_state_from(r, info, self.settings(), lambda j: slot(r, j))
        if self.aggregated and state.reveal_block is None and state.proposed and not state.finalized:
            # members' view of the reveal phase: a commitments post naming every voter, unsettled, past
            # its challenge window (the reveals post settles it on chain)
            a = self.aggregate_info(r)
            if a["commit_root"] != bytes(32) and not a["settled"] and a["commit_block"]:
                cw = self.settings().challenge_window
                mask = a["commit_mask"]  # not yet in the contract's commitments, which state.commits counts
                if (state.commits + bin(mask).count("1") == state.eligible
                        and self.chain.block_number() + 1 > a["commit_block"] + cw):  # the next block settles it
                    at = a["commit_block"] + cw  # its last challengeable block (the chain's phase: at the settling one)
                    state = dataclasses.replace(state, reveal_block=at, commits=state.eligible,
                                                reveal_deadline=at + self.settings().reveal_window)
        if key[2] is not None:
            self._state_memo = (key, info, state)
        return state

    def _final_slot(self, r: int, j: int) -> SlotState:
        """Slot j of a finalized round, read once (a several-slot round's members each read every slot
        to adopt the round)."""
        key = (int(r), int(j))
        if key not in self._final_slots:
            self._final_slots[key] = self.slot_state(r, j)
        return self._final_slots[key]

    def _known_round_info(self, r: int) -> tuple | None:
        """Round r's ``round_info`` without a call, where the chain cannot have changed it since it was
        read (issue 29: the runner reads a round three times, and the client knows what it sent).

        Only on the embedded chain, where every transaction mines its own block: the chain is still at
        the block this client expects (its own transactions and empty blocks since the read, nobody
        else's), and the view's block-dependent parts have not flipped (:meth:`_stable`)."""
        if self._round_info is None or self._round_info[0] != r or self.chain.kind != "embedded":
            return None
        _, info, read_at, expected = self._round_info
        now = self.chain.block_number()
        if now != expected or (now != read_at and not self._stable(info, now)):
            return None
        return info

    def _stable(self, info: tuple, now: int) -> bool:
        """Whether round_info read before block ``now`` still holds at it, storage unchanged: in a one-slot
        round voting opens at the proposal (no block in it), and a sealed round's reveal phase opens by
        block only once the vote window has passed (kept two blocks clear: a call runs in the next)."""
        eligible, proposed, proposed_block, n_slots, commits, reveal_block = (info[3], info[5], info[6], info[14],
                                                                              info[17], info[18])
        if n_slots != 1:
            return False  # a partly proposed round opens voting when its proposal window ends
        if not proposed or not self.settings().sealed or reveal_block or commits == eligible:
            return True
        return now + 2 <= proposed_block + self.settings().vote_window

    def _advance_round_info(self, name: str, r: int, receipt: Receipt, args: tuple) -> None:
        """After this client's transaction: what it did to the known round_info, or forget it."""
        known, self._round_info = self._round_info, None
        block = int(receipt["blockNumber"])
        live, self._active_known = self._active_known, None
        continuous = known is not None and known[0] == r and block == known[3] + 1
        if name == "finalize" and known is not None and continuous and self.chain.kind == "embedded":
            final = self._finalized_info(known[1], receipt)
            if final is not None:
                self._final_info[r] = final
        if live is not None and live[:2] == (r, block - 1):
            if name in _KEEP_ACTIVE:
                self._active_known = (r, block, live[2])
            elif name == "finalize":
                self._round_info = self._started_info(live[2], receipt, block)
                if self._round_info is not None:
                    self._active_known = (self._round_info[0], block, self._round_info[1][2])
                return
        if known is None or not continuous:
            return  # another block came between: someone else may have sent a transaction
        _, info, read_at, _ = known
        if name == "post_commits":  # it writes only the post (aggregate[r]), none of round_info's fields
            self._round_info = (r, info, read_at, block)
        elif name == "post_reveals" and info[14] == 1 and self._settles_every_voter(r, info):
            # it settles the commitments post first: every voter committed, in this block (_add_commits), so
            # the reveal phase opened here (_reveal_opened: max(proposal, last commitment)); the claim itself
            # is counted only by finalize
            info = info[:17] + (int(info[3]), max(int(info[6]), block))
            self._round_info = (r, info, block, block)
        elif name == "propose" and info[14] == 1 and not info[5] and info[3] > 0 and info[17] == 0:
            # a one-slot round's proposal opens voting at its block (Coordinator.vy propose, _vote_opened)
            _slot, digest, uri = args
            info = info[:5] + (True, block, digest, uri) + info[9:15] + (int(info[15]) | 1,) + info[16:]
            self._round_info = (r, info, block, block)

    def _settles_every_voter(self, r: int, info: tuple) -> bool:
        """Whether round r's standing commitments post, as this client last knew it (the cache before its
        own reveals post), is unsettled and names every voter that has not committed directly."""
        cached = self._agg_cache
        if cached is None or cached[0] != (r, self.transactions - 1, self._mined):
            return False
        a = cached[1]
        return (a["commit_root"] != bytes(32) and not a["settled"] and bool(info[5])
                and int(info[17]) + bin(a["commit_mask"]).count("1") == int(info[3]))

    def _finalized_info(self, info: tuple, receipt: Receipt) -> tuple | None:
        """A one-slot round's ``round_info`` once this client's ``finalize`` closed it: what it knew just
        before, with the counts, the outcome and the slot masks of the receipt's ``Finalized`` event (what
        finalize writes of round_info). None for a round of several slots, an unproposed (void) round, or
        a receipt without the event."""
        if info[14] != 1 or not info[5]:
            return None
        done = [e.args for e in self._events_of(receipt) if e.name == "Finalized"]
        if len(done) != 1 or len(done[0]["approvals"]) != 1:
            return None
        f = done[0]
        return (info[:4] + (int(f["required"]),) + info[5:9]
                + (int(f["approvals"][0]), int(f["votes"]), True, bool(f["accepted"]), False)
                + (info[14], int(f["proposed_slots"]), int(f["accepted_slots"])) + info[17:])

    def _started_info(self, active: int, receipt: Receipt, block: int) -> tuple | None:
        """The round finalize just started, as ``round_info`` would give it (one read a round saved):
        its ``RoundStarted`` event (proposers, eligible, required) and a fresh round's zeros. Who is
        active is ``active``, the live set before the finalize (``_active_known``: no ``rejoin`` or relay
        fault came between), less whom the receipt's ``Suspended`` events name. None where the receipt
        does not say enough."""
        events = self._events_of(receipt)
        started = [e.args for e in events if e.name == "RoundStarted"]
        if len(started) != 1 or not started[0]["proposers"]:
            return None
        a = started[0]
        members = self.members()
        for e in events:
            if e.name == "Suspended":
                active &= ~(1 << members.index(Web3.to_checksum_address(e.args["member"])))
        proposer = Web3.to_checksum_address(a["proposer"])
        voters = active & ~(1 << members.index(proposer)) if len(a["proposers"]) == 1 and active else active
        if bin(voters).count("1") != int(a["eligible"]):
            return None  # not the chain's active set after all: read it
        fresh = (proposer, block, active, int(a["eligible"]), int(a["required"]), False, 0, bytes(32), "",
                 0, 0, False, False, False, len(a["proposers"]), 0, 0, 0, 0)
        return (int(a["round"]), fresh, block, block)

    def ballot(self, r: int, member: str) -> bool | None:
        """A member's vote in round r on slot 0 (or the average): True approve, False reject,
        None not voted."""
        b = self.ballot_bits(r, member)
        return None if b is None else bool(b & 1)

    def ballot_bits(self, r: int, member: str) -> int | None:
        """A member's approval bitmap in round r (bit j: slot j), None if it has not voted."""
        b = int(self._call("ballot", r, Web3.to_checksum_address(member)))
        return None if b == 0 else b & ~_VOTED

    def commitment(self, r: int, member: str) -> bytes | None:
        """A member's sealed-vote commitment in round r, None if it has not committed."""
        c = bytes(self._call("commitment", int(r), Web3.to_checksum_address(member)))
        return None if c == bytes(32) else c

    def aggregate_info(self, r: int) -> dict:
        """Aggregated ballots: round r's posts (AggregateCoordinator.aggregate)."""
        key = (int(r), self.transactions, self._mined)
        if self._agg_cache is not None and self._agg_cache[0] == key and self.chain.kind == "embedded":
            return dict(self._agg_cache[1])  # on the embedded chain only this process sends transactions
        names = ("commit_root", "commit_mask", "commit_block", "commit_relayer", "settled", "unpacked",
                 "reveal_root", "voted", "approved", "reveal_block", "reveal_relayer")
        values = self._call("aggregate", int(r))
        info = {k: (bytes(v) if isinstance(v, (bytes, bytearray)) else v) for k, v in zip(names, values)}
        if self._agg_cache is None or self._agg_cache[0][0] <= r:  # keep a later round's (derived at its start)
            self._agg_cache = (key, info)
        return dict(info)

    _AGGREGATE_ZERO = {"commit_root": bytes(32), "commit_mask": 0, "commit_block": 0,
                       "commit_relayer": "0x0000000000000000000000000000000000000000", "settled": False,
                       "unpacked": False, "reveal_root": bytes(32), "voted": 0, "approved": 0, "reveal_block": 0,
                       "reveal_relayer": "0x0000000000000000000000000000000000000000"}

    def _advance_aggregate(self, name: str, r: int, receipt: Receipt) -> None:
        """After this client's transaction: the round's posts as ``aggregate_info`` would read them, where
        the transaction says (the cache then stands for one more transaction), or forget them. A proposal
        leaves them alone; this client's commitments post is its ``CommitsPosted`` event; the round a
        finalize starts has none yet (a post needs the round's proposal)."""
        cached, self._agg_cache = self._agg_cache, None
        key = (r, self.transactions, self._mined)
        if name == "finalize" and self._round_info is not None and self._round_info[0] == r + 1:
            self._agg_cache = ((r + 1, self.transactions, self._mined), dict(self._AGGREGATE_ZERO))
            return
        if cached is None or cached[0] != (r, self.transactions - 1, self._mined):
            return
        if name == "propose":
            self._agg_cache = (key, cached[1])
        elif name == "post_commits" and cached[1]["commit_relayer"] == self._AGGREGATE_ZERO["commit_relayer"]:
            posted = [e.args for e in self._events_of(receipt) if e.name == "CommitsPosted"]
            if len(posted) == 1:
                self._agg_cache = (key, {**cached[1], "commit_root": bytes(posted[0]["root"]),
                                         "commit_mask": int(posted[0]["voters"]),
                                         "commit_block": int(receipt["blockNumber"]),
                                         "commit_relayer": Web3.to_checksum_address(posted[0]["relayer"])})

    def relay_faults(self, member: str) -> int:
        """Aggregated ballots: the member's posts a challenge proved wrong."""
        return int(self._call("relay_faults", Web3.to_checksum_address(member)))

    def has_committed(self, r: int, member: str) -> bool:
        """Sealed: the member's commitment of round r is on chain, or (aggregated) named by the round's
        standing commitments post (whose bundle holds it)."""
        if self.aggregated:  # the post first: its voters' commitments are in its bundle, not in storage
            a = self.aggregate_info(r)
            bit = 1 << self.members().index(Web3.to_checksum_address(member))
            if a["commit_root"] != bytes(32) and a["commit_mask"] & bit:
                return True
        return self.commitment(r, member) is not None

    def member_stats(self, member: str) -> MemberStats:
        (proposed, accepted, cast, majority, missed, in_a_row, suspended, missed_proposals, missed_votes,
         missed_reveals) = self._call("member_stats", Web3.to_checksum_address(member))
        return MemberStats(proposed, accepted, cast, majority, missed, in_a_row, bool(suspended), missed_proposals,
                           missed_votes, missed_reveals)

    # -- transactions ------------------------------------------------------------------

    def _transact(self, name: str, sender: str, *args: Any, gas: int | None = None) -> Receipt:
        what = f"{name}(round {args[0]})" if args else f"{name}()"
        t0 = time.perf_counter()
        try:
            fn = self._encoded(name, args)
            sender = Web3.to_checksum_address(sender)
            receipt = send(self.w3, what, fn, sender, gas or self._fixed_gas,
                           None if self.chain.kind == "embedded" else self.chain)
        finally:
            self.seconds += time.perf_counter() - t0
        self.gas_used += int(receipt["gasUsed"])
        self.transactions += 1
        self.calldata_bytes += len(fn.data)
        if self._round_info is not None or self._active_known is not None:
            self._advance_round_info(name, int(args[0]) if args else -1, receipt, args[1:])
        if self.aggregated:
            self._advance_aggregate(name, int(args[0]) if args else -1, receipt)
        return receipt

    def propose(self, sender: str, r: int, digest: bytes, uri: str, slot: int = 0) -> Receipt:
        check_uri(uri)
        return self._transact("propose", sender, int(r), int(slot), b32(digest, "digest"), uri)

    def vote(self, sender: str, r: int, approve: bool, score_ppm: int) -> Receipt:
        """A one-slot round's (or the average's) vote: approve or reject, and the score."""
        return self.vote_slots(sender, r, int(bool(approve)), [int(score_ppm)])

    def vote_slots(self, sender: str, r: int, approvals: int, scores_ppm: list[int]) -> Receipt:
        """One ballot over every slot: bit j of approvals approves slot j; one score per slot
        (combine "average": bit 0 and one score, the average's)."""
        if len(scores_ppm) > MAX_SLOTS:
            raise ChainError(f"at most {MAX_SLOTS} scores, got {len(scores_ppm)}")
        return self._transact("vote", sender, int(r), int(approvals), [int(x) for x in scores_ppm])

    def start(self, sender: str) -> Receipt:
        """Fix the draw's seed and start round 0 (anyone, once, from the block after deployment)."""
        # A fixed gas limit: a node estimates gas against its latest block, which right after the
        # deployment is the deployment's own block, where start() must refuse.
        receipt = self._transact("start", sender, gas=START_GAS)
        self._settings = None
        return receipt

    def commit_vote(self, sender: str, r: int, commitment: bytes) -> Receipt:
        """Sealed: commit to a vote (ballots.commitment of approvals, scores and a secret salt)."""
        return self._transact("commit_vote", sender, int(r), b32(commitment, "commitment"))

    def reveal_vote(self, sender: str, r: int, approvals: int, scores_ppm: list[int], salt: bytes) -> BallotBatch:
        """Sealed: reveal the vote ``sender`` committed to (submit_reveals with its one reveal; aggregated:
        reveal_vote); a reveal the contract skips is ChainError with its reason."""
        from cohep.ledger.ballots import Reveal

        if self.aggregated:
            if len(scores_ppm) != 1:
                raise ChainError(f"aggregated ballots take one score, got {len(scores_ppm)}")
            receipt = self._transact("reveal_vote", sender, int(r), int(approvals), int(scores_ppm[0]), b32(salt, "salt"))
            return ballot_batch_of(r, self._decode(receipt["logs"]))

        batch = self.submit_reveals(sender, r, [Reveal(Web3.to_checksum_address(sender), int(r), int(approvals),
                                                       tuple(int(x) for x in scores_ppm), b32(salt, "salt"))])
        if batch.skipped:
            raise ChainError(f"reveal(round {r}) rejected by the contract: {batch.skipped[0][2]}")
        return batch

    def sign_commit(self, voter: str, r: int, commitment: bytes):
        """``voter``'s signed commitment for round r (what submit_commits takes)."""
        t0 = time.perf_counter()
        try:
            return self.chain.sign_commit(voter, self.address, int(r), b32(commitment, "commitment"))
        finally:
            self.seconds += time.perf_counter() - t0

    def submit_commits(self, sender: str, r: int, commits: list) -> BallotBatch:
        """Sealed: submit signed commitments (ledger.ballots.SignedCommit) for round r in one
        transaction; each valid one counts as its signer's commit_vote, any other is skipped."""
        return self._batch("submit_commits", sender, r, commits)

    def submit_reveals(self, sender: str, r: int, reveals: list) -> BallotBatch:
        """Sealed: submit reveals (ledger.ballots.Reveal) for round r in one transaction; each that
        matches its voter's commitment counts as its vote, any other is skipped."""
        return self._batch("submit_reveals", sender, r, reveals)

    def _batch(self, name: str, sender: str, r: int, items: list) -> BallotBatch:
        if not items:
            return BallotBatch(int(r), (), ())
        if len(items) > MAX_BATCH:
            raise ChainError(f"at most {MAX_BATCH} entries in a batch, got {len(items)}")
        gas = EMBEDDED_BATCH_GAS if self._fixed_gas is not None else None
        receipt = self._transact(name, sender, int(r), [b.as_tuple() for b in items], gas=gas)
        return ballot_batch_of(r, self._decode(receipt["logs"]))

    def finalize(self, sender: str, r: int) -> Outcome:
        receipt = self._transact("finalize", sender, int(r))
        outcome = outcome_of(self._events_of(receipt))
        if outcome is None:
            raise ChainError(f"finalize(round {r}) mined without a Finalized/RoundVoided event")
        if outcome.accepted and self.chain.kind == "embedded":  # it set accepted_round to r, in this block
            self._accepted_at = (int(receipt["blockNumber"]), int(r))
        return outcome

    def ballot_domain(self):
        """The EIP-712 domain this contract verifies ballots under (ledger/ballots.py)."""
        from cohep.ledger.ballots import Domain

        return Domain(self.chain.chain_id, self.address)

    def sign_ballot(self, voter: str, r: int, approvals: int, scores_ppm):
        """``voter``'s ballot for round r, signed with the key the chain holds for it: what vote_slots
        sends (approvals: bit j approves slot j, a bool slot 0 / the average; scores_ppm: one score
        or one per slot)."""
        if not isinstance(scores_ppm, int) and len(scores_ppm) > MAX_SLOTS:
            raise ChainError(f"at most {MAX_SLOTS} scores, got {len(scores_ppm)}")
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
        return self._batch("submit_ballots", sender, r, ballots)

    # -- aggregated ballots (AggregateCoordinator; ledger/bundles.py) -----------------------

    def post_commits(self, sender: str, r: int, commits: list) -> Receipt:
        """Post round r's signed commitments (ledger.ballots.SignedCommit) as one bundle naming their voters."""
        from cohep.ledger import bundles

        mask = bundles.voters_mask(self.members(), [c.voter for c in commits])
        return self._transact("post_commits", sender, int(r), mask, bundles.commits_bundle(commits))

    def post_reveals(self, sender: str, r: int, reveals: list) -> Receipt:
        """Post round r's reveals (ledger.ballots.Reveal) as one bundle and the tally they give."""
        from cohep.ledger import bundles

        return self._transact("post_reveals", sender, int(r), *bundles.claim(self.members(), reveals),
                              bundles.reveals_bundle(reveals))

    def pass_challenge_window(self) -> None:
        """Let the challenge window of a post just mined pass (empty blocks; counted in ``seconds``)."""
        t0 = time.perf_counter()
        try:
            # a node estimates a transaction's gas at its latest block's number: one block more there
            blocks = self.settings().challenge_window + (self.chain.kind != "embedded")
            self.chain.mine(blocks)
            self._mined += 1
            if self._agg_cache is not None and self._agg_cache[0][1:] == (self.transactions, self._mined - 1):
                (r_agg, *_), posts = self._agg_cache  # empty blocks: the posts stand
                self._agg_cache = ((r_agg, self.transactions, self._mined), posts)
            if self._round_info is not None:  # empty blocks: round_info's storage stands
                r, info, read_at, expected = self._round_info
                self._round_info = (r, info, read_at, expected + blocks)
            if self._active_known is not None:
                r, at, active = self._active_known
                self._active_known = (r, at + blocks, active)
        finally:
            self.seconds += time.perf_counter() - t0

    def open_commits(self, sender: str, r: int, commits: list) -> Receipt:
        """Submit round r's commitments bundle: a challenge within its window, else its commitments stored."""
        gas = EMBEDDED_BATCH_GAS if self._fixed_gas is not None else None
        return self._transact("open_commits", sender, int(r), [c.as_tuple() for c in commits], gas=gas)

    def challenge_reveals(self, sender: str, r: int, reveals: list) -> Receipt:
        """Challenge round r's reveals post with its bundle (its commitments stored: open_commits first)."""
        from cohep.ledger import bundles

        gas = EMBEDDED_BATCH_GAS if self._fixed_gas is not None else None
        return self._transact("challenge_reveals", sender, int(r), [bundles.hashed(rv) for rv in reveals], gas=gas)

    def rejoin(self, sender: str) -> Receipt:
        """A suspended member (key recovered, node restarted) is active again from the next round."""
        return self._transact("rejoin", sender)

    # -- events -----------------------------------------------------------------------

    def _decode(self, logs: list) -> list[ChainEvent]:
        return decode_logs(self._codec, self.address, logs)

    def _events_of(self, receipt: Receipt) -> list[ChainEvent]:
        """This contract's events in a receipt, decoded once: a finalize's are read for its outcome, the
        round it closed and the round it started."""
        logs = receipt["logs"]
        if self._decoded is None or self._decoded[0] is not logs:
            self._decoded = (logs, self._decode(logs))
        return self._decoded[1]

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
