"""Aggregated ballots (``[chain] ballots = "aggregate"``): a phase's ballots as one bundle.

A relayer posts a round's signed commitments, then its reveals, each as one bundle in one
transaction; the AggregateCoordinator keeps only the bundle's keccak256 and the bitmaps it claims,
so a round's chain cost does not grow with the members (docs/contract.md, Aggregated ballots). A
bundle is the ABI encoding of the array the contract's challenge takes (``SignedCommit[]``,
``HashedReveal[]``), so the contract hashes a challenge's argument and compares it with the post.
``check_commits`` and ``check_reveals`` are what an honest member runs on a post before it lets it
stand: the faults a challenge proves, found off chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from eth_utils import keccak
from web3 import Web3

from cohep.ledger.ballots import Domain, Reveal, SignedCommit, _scores_hash


@lru_cache(maxsize=4096)
def _checksum(a: str) -> str:
    """An address checksummed once: a keccak each time, ~0.1 ms, and a post names every member."""
    return Web3.to_checksum_address(a)


@lru_cache(maxsize=8)
def _indices(members: tuple[str, ...]) -> dict[str, int]:
    return {_checksum(m): i for i, m in enumerate(members)}


def _index(members: Sequence[str]) -> dict[str, int]:
    """members[i] (checksummed) -> i, built once per member list."""
    return _indices(tuple(members))

#: the ABI types of the bundles (the contract's SignedCommit[] and HashedReveal[])
COMMITS_TYPE = "(uint256,bytes32,uint8,bytes32,bytes32)[]"
REVEALS_TYPE = "(address,uint256,bytes32,bytes32)[]"


def _word(x: int) -> bytes:
    return int(x).to_bytes(32, "big")  # OverflowError for what a uint256 / uint8 cannot hold


def _b32(x: bytes) -> bytes:
    if len(x) != 32:
        raise ValueError(f"a bytes32 is 32 bytes, got {len(x)}")
    return bytes(x)


def _static_array(entries: list[bytes]) -> bytes:
    """abi_encode of one dynamic array of static tuples: the head's offset (32), the length, the entries."""
    return _word(32) + _word(len(entries)) + b"".join(entries)


def commits_bundle(commits: Sequence[SignedCommit]) -> bytes:
    """The commitments post's bundle: abi_encode(SignedCommit[]), as the contract re-encodes it.

    Written word by word (its tuples are static: five words each), not by eth_abi, whose checks cost
    0.8 ms at 63 voters, a tenth of the post's own time; tests/test_aggregate.py holds it equal to eth_abi's."""
    entries = []
    for c in commits:
        if not 0 <= int(c.v) < 256:
            raise OverflowError(f"v {c.v} is not a uint8")
        entries.append(_word(c.round) + _b32(c.commitment) + _word(c.v) + _b32(c.r) + _b32(c.s))
    return _static_array(entries)


def hashed(reveal: Reveal) -> tuple:
    """A reveal as a bundle entry (HashedReveal): the scores enter as their hash."""
    return (_checksum(reveal.voter), int(reveal.approvals), _scores_hash(reveal.scores_ppm),
            bytes(reveal.salt))


def reveals_bundle(reveals: Sequence[Reveal]) -> bytes:
    """The reveals post's bundle: abi_encode(HashedReveal[]), word by word as commits_bundle is (1.3 ms by
    eth_abi at 63 voters)."""
    entries = []
    for rv in reveals:
        voter, approvals, scores_hash, salt = hashed(rv)
        entries.append(bytes.fromhex(voter[2:]).rjust(32, b"\0") + _word(approvals) + scores_hash + _b32(salt))
    return _static_array(entries)


def root(bundle: bytes) -> bytes:
    """What the contract stores of a post: keccak256 of its bundle."""
    return keccak(bundle)


def voters_mask(members: Sequence[str], voters: Sequence[str]) -> int:
    """Bit i set for members[i] among voters."""
    index = _index(members)
    mask = 0
    for v in voters:
        mask |= 1 << index[_checksum(v)]
    return mask


def claim(members: Sequence[str], reveals: Sequence[Reveal]) -> tuple[int, int]:
    """The tally a reveals post claims, two bitmaps: bit i members[i] revealed; bit i it approved (one verdict)."""
    index = _index(members)
    voted = approved = 0
    for rv in reveals:
        i = index[_checksum(rv.voter)]
        voted |= 1 << i
        approved |= (rv.approvals & 1) << i
    return voted, approved


@dataclass(frozen=True)
class Check:
    """What a member found in a post: ``fault`` names the first wrong thing ("" if none)."""

    fault: str
    index: int = -1


def check_commits(domain: Domain, r: int, members: Sequence[str], mask: int, commits: Sequence[SignedCommit],
                  voters: Sequence[str], committed_before: int) -> Check:
    """The faults open_commits proves: an entry not a voter's valid signed commitment of round r
    (forged, another round, a voter twice, one committed before the post), or a mask other than the
    valid entries' signers."""
    allowed = voters_mask(members, voters)
    index = _index(members)
    seen = committed_before
    for k, c in enumerate(commits):
        signer = c.signer(domain)
        i = index.get(signer) if signer else None
        if i is None or c.round != r or not (allowed >> i) & 1 or (seen >> i) & 1 or c.commitment == bytes(32):
            return Check("not a voter's valid signed commitment", k)
        seen |= 1 << i
    if seen & ~committed_before != mask:
        return Check("voters named without a commitment")
    return Check("")


def check_reveals(domain: Domain, r: int, members: Sequence[str], voted: tuple[int, int], reveals: Sequence[Reveal],
                  commitments: dict[str, bytes]) -> Check:
    """The faults challenge_reveals proves: a reveal that does not match its voter's commitment
    (``commitments``: voter -> commitment), a voter twice, an approval other than bit 0, or a claim
    other than the entries'."""
    index = _index(members)
    marks = yes = 0
    for k, rv in enumerate(reveals):
        voter: str = _checksum(rv.voter)
        i = index.get(voter)
        if (i is None or (marks >> i) & 1 or rv.approvals > 1 or rv.round != r
                or commitments.get(voter) != rv.commitment(domain)):
            return Check("a reveal that does not match its commitment", k)
        marks |= 1 << i
        yes |= (rv.approvals & 1) << i
    if (marks, yes) != tuple(voted):
        return Check("a tally other than the reveals'")
    return Check("")
