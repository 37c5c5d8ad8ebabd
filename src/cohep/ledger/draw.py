"""The Coordinator's proposer draw, recomputed off chain (tests and audits compare the two).

Rounds are grouped in epochs of n rounds (n = number of members). Each epoch has its own
permutation of the member indices: a four-round Feistel bijection of 2h-bit numbers (h the least
with 4**h >= n) whose round function is keccak256(seed || epoch || round || half) (32-byte
big-endian words, as the contract hashes them) masked to h bits, applied again while the result is
n or more (cycle walking keeps it a bijection of 0..n-1). The contract evaluates one position in
O(1), so a round's draw costs the same at 3 or 256 members (a shuffle of n indices did not). Round r goes
to ``perm[r % n]`` of epoch ``r // n``; if that member is suspended, to the next active member after
it in the permutation, cyclically.

Why this shape: the draw reads only the seed fixed at deployment, the member list and the round
number. Nothing a member does (digests proposed or accepted, votes, when it sends) and no block
data enters it, so a proposer cannot make itself picked again by re-encoding its weights, and a
run replays identically on the embedded chain whose block hashes depend on wall-clock time. The
per-epoch permutation also makes the draw fair: while all are active, every member proposes
exactly once per n rounds.

With k proposers per round (``[round] proposers``) the rounds' slots are laid end to end: slot j of
round r is position ``q = r * k + j``, read as above with epoch ``q // n`` and ``perm[q % n]``, and a
member already holding an earlier slot of the round is passed over like a suspended one, so the k
proposers are distinct. A round has ``min(k, active members)`` slots (at least one). With k = 1 this
is the one-proposer draw, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import keccak

MAX_MEMBERS = 256


def _word(x: int) -> bytes:
    return x.to_bytes(32, "big")


def _half(n: int) -> int:
    h = 1
    while 4**h < n:
        h += 1
    return h


def position(seed: bytes, n: int, epoch: int, pos: int) -> int:
    """Position ``pos`` of epoch ``epoch``'s permutation (Coordinator._perm_at)."""
    h = _half(n)
    low = (1 << h) - 1
    x = pos
    prefix = seed + _word(epoch)
    while True:
        left, right = x >> h, x & low
        for i in range(4):
            f = int.from_bytes(keccak(prefix + _word(i) + _word(right)), "big") & low
            left, right = right, left ^ f
        x = (left << h) | right
        if x < n:
            return x


def permutation(seed: bytes, n: int, epoch: int) -> list[int]:
    """Member indices in proposing order for rounds ``epoch * n`` .. ``epoch * n + n - 1``."""
    seed = bytes(seed)
    if len(seed) != 32:
        raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
    if not 1 <= n <= MAX_MEMBERS:
        raise ValueError(f"need 1..{MAX_MEMBERS} members, got {n}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return [position(seed, n, epoch, pos) for pos in range(n)]


def proposer_index(seed: bytes, n_members: int, round: int, active: Sequence[bool]) -> int:
    """Index of round ``round``'s proposer (one slot per round) given who is active when it starts.

    With nobody active the slot's owner keeps the round (it cannot propose, so the round voids).
    """
    return proposer_indices(seed, n_members, round, active, 1)[0]


def slot_count(k: int, active: Sequence[bool]) -> int:
    """Slots of a round: k, or fewer when fewer members are active (at least one)."""
    return max(1, min(k, sum(bool(a) for a in active)))


def proposer_indices(seed: bytes, n_members: int, round: int, active: Sequence[bool], k: int = 1) -> list[int]:
    """Indices of round ``round``'s proposers in slot order, k slots per round (distinct members)."""
    if len(active) != n_members:
        raise ValueError(f"active has {len(active)} entries for {n_members} members")
    if round < 0:
        raise ValueError(f"round must be >= 0, got {round}")
    if not 1 <= k <= n_members:
        raise ValueError(f"proposers per round must be 1..{n_members}, got {k}")
    out: list[int] = []
    perms: dict[int, list[int]] = {}
    for j in range(slot_count(k, active)):
        q = round * k + j
        epoch, pos = divmod(q, n_members)
        if epoch not in perms:
            perms[epoch] = permutation(seed, n_members, epoch)
        perm = perms[epoch]
        pick = perm[pos]
        for s in range(n_members):
            idx = perm[(pos + s) % n_members]
            if active[idx] and idx not in out:
                pick = idx
                break
        out.append(pick)
    return out
