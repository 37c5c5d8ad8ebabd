"""Signed ballots: a vote as an EIP-712 message, so one transaction can carry every member's vote.

With ``[chain] ballots = "signed"`` a voter does not send ``vote()`` itself: it signs
``Ballot(uint256 round, uint256 approvals, int256[] scores_ppm)`` (what ``vote()`` carries: the
approval bitmap over the round's slots and one score per slot, or the average's) under the
contract's EIP-712 domain (name ``cohep Coordinator``, version ``4``, the chain id, the contract's
address), hands it on (in
process, or as a small JSON file in its store) and any member submits the batch with
``Coordinator.submit_ballots``. The contract recovers each signer with ``ecrecover`` and counts the
ballot exactly as a ``vote()`` of that signer, so a round costs three transactions whatever the
number of members.

A ballot read from another member is untrusted: :func:`from_json` checks its shape and
:meth:`SignedBallot.signer` recovers who signed it, so a forged, malformed or misplaced ballot is
dropped (or, if submitted, skipped by the contract with ``BallotSkipped``), never counted.

Sealed votes (the contract's ``sealed``, the default): what a voter first hands on is not its ballot
but a signed :class:`SignedCommit` of its :func:`commitment` (keccak256 of the domain separator, round,
voter, approvals, the scores' hash and a secret salt), submitted with ``submit_commits``; once the
reveal phase opens it hands on a :class:`Reveal` (approvals, scores, salt: no signature, the
commitment binds it), submitted with ``submit_reveals``. A reveal read before every commitment is in
would show the vote, so a voter writes it only once the chain's reveal phase has opened.

The digest is computed here directly (the fixed type hashes once, the domain separator once per
domain, then two keccaks a ballot) and signed and recovered with libsecp256k1 (coincurve): eth_account's
generic typed-data encoder took about 0.5 ms a ballot. :func:`typed_data` still gives the full
EIP-712 message, for nodes that sign with ``eth_signTypedData_v4``; the tests check that both
give the same digest for random ballots.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from collections.abc import Sequence

import coincurve
from eth_utils import keccak
from web3 import Web3

from cohep.core.errors import IntegrityError

EIP712_NAME = "cohep Coordinator"
EIP712_VERSION = "5"
#: approvals: bit j approves slot j (combine "average": bit 0 approves the average); scores_ppm: one
#: per slot (the voter's own slot: 0), or one for the average
BALLOT_TYPE = [
    {"name": "round", "type": "uint256"},
    {"name": "approvals", "type": "uint256"},
    {"name": "scores_ppm", "type": "int256[]"},
]
DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
TYPE_STRING = "Ballot(uint256 round,uint256 approvals,int256[] scores_ppm)"
COMMIT_TYPE_STRING = "Commit(uint256 round,bytes32 commitment)"
COMMIT_TYPE = [{"name": "round", "type": "uint256"}, {"name": "commitment", "type": "bytes32"}]
#: the contract's MAX_SLOTS: at most one score per slot
MAX_SCORES = 64
#: a ballot file is a few hundred bytes (64 scores: about 1.5 KB); anything much larger is not one
MAX_JSON_BYTES = 8192
DOMAIN_TYPE_STRING = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
_BALLOT_TYPEHASH = keccak(text=TYPE_STRING)
_COMMIT_TYPEHASH = keccak(text=COMMIT_TYPE_STRING)
#: secp256k1's group order: r and s must lie in [1, N) (what the ecrecover precompile accepts)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class Domain:
    """Where a ballot counts: one contract on one chain."""

    chain_id: int
    contract: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": EIP712_NAME, "version": EIP712_VERSION, "chainId": int(self.chain_id),
                "verifyingContract": Web3.to_checksum_address(self.contract)}


@lru_cache(maxsize=64)
def domain_separator(domain: Domain) -> bytes:
    """EIP-712 hashStruct(EIP712Domain) of ``domain`` (the contract's ``domain_separator()``)."""
    contract = Web3.to_bytes(hexstr=Web3.to_checksum_address(domain.contract))
    return keccak(keccak(text=DOMAIN_TYPE_STRING) + keccak(text=EIP712_NAME) + keccak(text=EIP712_VERSION)
                  + int(domain.chain_id).to_bytes(32, "big") + contract.rjust(32, b"\0"))


def digest(domain: Domain, r: int, approvals: int, scores_ppm: int | Sequence[int]) -> bytes:
    """The EIP-712 digest a ballot's signature signs: keccak256(0x1901 ‖ domain separator ‖
    hashStruct(Ballot)), with the int256[] hashed as keccak256 of its 32-byte words. Raises
    OverflowError for a round, bitmap or score its type cannot hold."""
    struct = keccak(_BALLOT_TYPEHASH + int(r).to_bytes(32, "big") + int(approvals).to_bytes(32, "big")
                    + _scores_hash(scores_ppm))
    return keccak(b"\x19\x01" + domain_separator(domain) + struct)


def _scores_hash(scores_ppm: int | Sequence[int]) -> bytes:
    return keccak(b"".join(x.to_bytes(32, "big", signed=True) for x in scores(scores_ppm)))


def commitment(domain: Domain, r: int, voter: str, approvals: int, scores_ppm: int | Sequence[int],
               salt: bytes) -> bytes:
    """A sealed vote's commitment, as the contract computes it: keccak256 of the 32-byte words domain
    separator, round, voter, approvals, keccak256(scores' words), salt."""
    if len(salt) != 32:
        raise ValueError(f"a salt is 32 bytes, got {len(salt)}")
    addr = _address_word(voter)
    return keccak(domain_separator(domain) + int(r).to_bytes(32, "big") + addr + int(approvals).to_bytes(32, "big")
                  + _scores_hash(scores_ppm) + bytes(salt))


def new_salt() -> bytes:
    """32 secret random bytes: without them a commitment could be matched by trying every vote."""
    return secrets.token_bytes(32)


def commit_digest(domain: Domain, r: int, commitment_: bytes) -> bytes:
    """The EIP-712 digest a signed commitment's signature signs (Commit(round, commitment))."""
    return keccak(b"\x19\x01" + domain_separator(domain)
                  + keccak(_COMMIT_TYPEHASH + int(r).to_bytes(32, "big") + bytes(commitment_)))


def recover(message_hash: bytes, v: int, r: bytes, s: bytes) -> str | None:
    """The checksummed address whose key signed message_hash, or None: what the contract's
    ``ecrecover`` accepts (v 27 or 28, r and s in [1, N)), nothing else."""
    ri, si = int.from_bytes(r, "big"), int.from_bytes(s, "big")
    if v not in (27, 28) or not (0 < ri < SECP256K1_N and 0 < si < SECP256K1_N) or len(r) != 32 or len(s) != 32:
        return None
    try:
        public = coincurve.PublicKey.from_signature_and_message(bytes(r) + bytes(s) + bytes([v - 27]),
                                                                message_hash, hasher=None)
    except Exception:  # noqa: BLE001 - no point on the curve: a signature of nobody
        return None
    return _address(public)


def _address(public: coincurve.PublicKey) -> str:
    return _checksum_of(keccak(public.format(compressed=False)[1:])[-20:])


@lru_cache(maxsize=4096)
def _checksum_of(address: bytes) -> str:
    """EIP-55 spelling of a 20-byte address, kept: it is a keccak and a string walk (~12 us), and a
    round recovers the same voters' addresses from every bundle (issue 29: the client's work a round)."""
    return Web3.to_checksum_address(address)


@lru_cache(maxsize=4096)
def _address_word(voter: str) -> bytes:
    """A voter's address as the 32-byte word a commitment hashes (checked as an address once)."""
    return Web3.to_bytes(hexstr=Web3.to_checksum_address(voter)).rjust(32, b"\0")


@lru_cache(maxsize=4096)
def _signing_key(key: bytes) -> tuple[coincurve.PrivateKey, str]:
    """A local key and its address, made once: building the key and deriving its public point and
    address took ~45 of a signature's ~70 us, and each voter signs every round."""
    secret = coincurve.PrivateKey(key)
    return secret, _address(secret.public_key)


def scores(scores_ppm: int | Sequence[int]) -> tuple[int, ...]:
    """One score (a one-slot round's, or the average's) or one per slot, as a tuple."""
    if isinstance(scores_ppm, int):
        return (int(scores_ppm),)
    return tuple(int(x) for x in scores_ppm)


def typed_data(domain: Domain, r: int, approvals: int, scores_ppm: int | Sequence[int]) -> dict[str, Any]:
    """The full EIP-712 message (what ``eth_signTypedData_v4`` and ``encode_typed_data`` take)."""
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, "Ballot": BALLOT_TYPE},
        "primaryType": "Ballot",
        "domain": domain.as_dict(),
        "message": {"round": int(r), "approvals": int(approvals), "scores_ppm": list(scores(scores_ppm))},
    }


@dataclass(frozen=True)
class SignedBallot:
    """One member's vote in one round, with its signature; ``voter`` is who claims to have signed."""

    voter: str
    round: int
    approvals: int
    scores_ppm: tuple[int, ...]
    v: int
    r: bytes
    s: bytes

    @property
    def approve(self) -> bool:
        """Slot 0 (or the average) approved."""
        return self.approvals & 1 == 1

    @property
    def score_ppm(self) -> int:
        """Slot 0's (or the average's) score."""
        return self.scores_ppm[0] if self.scores_ppm else 0

    def signer(self, domain: Domain) -> str | None:
        """The address that signed this ballot under ``domain`` (None if the signature is invalid)."""
        try:
            return recover(digest(domain, self.round, self.approvals, self.scores_ppm), self.v, self.r, self.s)
        except Exception:  # noqa: BLE001 - any failure (a field out of its type's range) means: not valid
            return None

    def as_tuple(self) -> tuple:
        """The contract's SignedBallot struct."""
        return (self.round, self.approvals, list(self.scores_ppm), self.v, self.r, self.s)

    def to_json(self) -> str:
        return json.dumps({"voter": self.voter, "round": self.round, "approvals": self.approvals,
                           "scores_ppm": list(self.scores_ppm), "v": self.v, "r": "0x" + self.r.hex(),
                           "s": "0x" + self.s.hex()}, sort_keys=True)


@dataclass(frozen=True)
class SignedCommit:
    """One voter's sealed vote (its commitment) in one round, signed; ``voter``: who claims to have signed."""

    voter: str
    round: int
    commitment: bytes
    v: int
    r: bytes
    s: bytes

    def signer(self, domain: Domain) -> str | None:
        try:
            return recover(commit_digest(domain, self.round, self.commitment), self.v, self.r, self.s)
        except Exception:  # noqa: BLE001 - a field out of its type's range: not valid
            return None

    def as_tuple(self) -> tuple:
        """The contract's SignedCommit struct."""
        return (self.round, self.commitment, self.v, self.r, self.s)

    def to_json(self) -> str:
        return json.dumps({"voter": self.voter, "round": self.round, "commitment": "0x" + self.commitment.hex(),
                           "v": self.v, "r": "0x" + self.r.hex(), "s": "0x" + self.s.hex()}, sort_keys=True)


@dataclass(frozen=True)
class Reveal:
    """A sealed vote opened: what the voter committed to, and the salt. Needs no signature: the
    contract counts it only if it hashes to the voter's commitment."""

    voter: str
    round: int
    approvals: int
    scores_ppm: tuple[int, ...]
    salt: bytes

    def commitment(self, domain: Domain) -> bytes:
        return commitment(domain, self.round, self.voter, self.approvals, self.scores_ppm, self.salt)

    def as_tuple(self) -> tuple:
        """The contract's Reveal struct."""
        return (Web3.to_checksum_address(self.voter), self.approvals, list(self.scores_ppm), self.salt)

    def to_json(self) -> str:
        return json.dumps({"voter": self.voter, "round": self.round, "approvals": self.approvals,
                           "scores_ppm": list(self.scores_ppm), "salt": "0x" + self.salt.hex()}, sort_keys=True)


def sign_commit(private_key: Any, domain: Domain, r: int, commitment_: bytes) -> SignedCommit:
    """Sign a commitment with a local key (as :func:`sign` signs a ballot)."""
    secret, address = _signing_key(_key_bytes(private_key))
    sig = secret.sign_recoverable(commit_digest(domain, r, commitment_), hasher=None)
    return SignedCommit(address, int(r), bytes(commitment_), sig[64] + 27, sig[:32], sig[32:64])


def commit_typed_data(domain: Domain, r: int, commitment_: bytes) -> dict[str, Any]:
    """The full EIP-712 Commit message (for ``eth_signTypedData_v4``)."""
    return {"types": {"EIP712Domain": DOMAIN_TYPE, "Commit": COMMIT_TYPE}, "primaryType": "Commit",
            "domain": domain.as_dict(), "message": {"round": int(r), "commitment": "0x" + bytes(commitment_).hex()}}


def commit_from_signature(voter: str, r: int, commitment_: bytes, signature: bytes) -> SignedCommit:
    """A signed commitment from a 65-byte r ‖ s ‖ v signature."""
    if len(signature) != 65:
        raise IntegrityError(f"a commitment signature is 65 bytes, got {len(signature)}")
    v = signature[64]
    v = v + 27 if v < 27 else v
    return SignedCommit(Web3.to_checksum_address(voter), int(r), bytes(commitment_), v, bytes(signature[:32]),
                        bytes(signature[32:64]))


def _key_bytes(private_key: Any) -> bytes:
    key = private_key.to_bytes() if hasattr(private_key, "to_bytes") else private_key
    if isinstance(key, str):
        key = bytes.fromhex(key.removeprefix("0x"))
    return bytes(key)


def sign(private_key: Any, domain: Domain, r: int, approvals: int,
         scores_ppm: int | Sequence[int]) -> SignedBallot:
    """Sign a ballot with a local key (hex string, bytes or eth_keys PrivateKey). approvals: the
    bitmap (a bool approves slot 0 / the average); scores_ppm: one score or one per slot."""
    secret, address = _signing_key(_key_bytes(private_key))
    sc = scores(scores_ppm)
    # RFC 6979 nonce and low s, as eth_account's signatures (the tests compare them byte for byte)
    sig = secret.sign_recoverable(digest(domain, r, int(approvals), sc), hasher=None)
    return SignedBallot(address, int(r), int(approvals), sc, sig[64] + 27, sig[:32], sig[32:64])


def from_signature(voter: str, r: int, approvals: int, scores_ppm: int | Sequence[int],
                   signature: bytes) -> SignedBallot:
    """A ballot from a 65-byte r ‖ s ‖ v signature (what a node's ``eth_signTypedData_v4`` returns)."""
    if len(signature) != 65:
        raise IntegrityError(f"a ballot signature is 65 bytes, got {len(signature)}")
    v = signature[64]
    v = v + 27 if v < 27 else v
    return SignedBallot(Web3.to_checksum_address(voter), int(r), int(approvals), scores(scores_ppm), v,
                        bytes(signature[:32]), bytes(signature[32:64]))


def _int(raw: dict, name: str, lo: int, hi: int) -> int:
    value = raw.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise IntegrityError(f"ballot field {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _word(raw: dict, name: str) -> bytes:
    value = raw.get(name)
    try:
        out = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else b""
    except ValueError:
        out = b""
    if len(out) != 32:
        raise IntegrityError(f"ballot field {name} must be 32 bytes hex")
    return out


def _scores(raw: dict) -> tuple[int, ...]:
    value = raw.get("scores_ppm")
    if not isinstance(value, list) or len(value) > MAX_SCORES:
        raise IntegrityError(f"ballot field scores_ppm must be a list of at most {MAX_SCORES} integers")
    return tuple(_int({"scores_ppm": x}, "scores_ppm", -(2**255), 2**255 - 1) for x in value)


def _object(text: str | bytes) -> dict:
    if len(text) > MAX_JSON_BYTES:
        raise IntegrityError(f"ballot file is {len(text)} bytes, over {MAX_JSON_BYTES}")
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError("ballot file is not JSON") from None
    if not isinstance(raw, dict):
        raise IntegrityError("ballot file is not a JSON object")
    voter = raw.get("voter")
    if not isinstance(voter, str) or not Web3.is_address(voter):
        raise IntegrityError(f"ballot voter is not an address: {str(voter)[:60]!r}")
    raw["voter"] = Web3.to_checksum_address(voter)
    return raw


def commit_from_json(text: str | bytes) -> SignedCommit:
    """Parse a signed commitment written by another member; anything malformed raises IntegrityError."""
    raw = _object(text)
    return SignedCommit(voter=raw["voter"], round=_int(raw, "round", 0, 2**256 - 1), commitment=_word(raw, "commitment"),
                        v=_int(raw, "v", 0, 255), r=_word(raw, "r"), s=_word(raw, "s"))


def reveal_from_json(text: str | bytes) -> Reveal:
    """Parse a reveal written by another member; anything malformed raises IntegrityError."""
    raw = _object(text)
    return Reveal(voter=raw["voter"], round=_int(raw, "round", 0, 2**256 - 1),
                  approvals=_int(raw, "approvals", 0, 2**256 - 1), scores_ppm=_scores(raw), salt=_word(raw, "salt"))


def from_json(text: str | bytes) -> SignedBallot:
    """Parse a ballot written by another member; anything malformed raises IntegrityError."""
    raw = _object(text)
    return SignedBallot(
        voter=raw["voter"],
        round=_int(raw, "round", 0, 2**256 - 1),
        approvals=_int(raw, "approvals", 0, 2**256 - 1),
        scores_ppm=_scores(raw),
        v=_int(raw, "v", 0, 255),
        r=_word(raw, "r"),
        s=_word(raw, "s"),
    )
