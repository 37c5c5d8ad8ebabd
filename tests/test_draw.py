"""The proposer draw: ledger/draw.py equals the contract, is fair, and cannot be steered.

The v1 draw hashed the accepted digest, so a proposer could re-encode its weights (an extra
safetensors metadata key changes the bytes, not the weights) until the digest made it the next
proposer. The v2 draw reads only the seed, the member list and the round number.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections import Counter

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from cohep.core.errors import ChainError, IntegrityError
from cohep.ledger import Chain, Coordinator
from cohep.ledger.draw import permutation, proposer_index
from cohep.wire.weights import decode, digest_bytes, encode

SEED = hashlib.sha256(b"draw seed").digest()
INITIAL = hashlib.sha256(b"initial").digest()
MODEL = hashlib.sha256(b"model").digest()
URI = "file:///store/w"


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain.embedded(64)


def deploy(chain: Chain, n: int, **kw) -> Coordinator:
    kw = {"seed": SEED, "initial_digest": INITIAL, "model_digest": MODEL, "sealed": False, **kw}
    return Coordinator.deploy(chain, chain.accounts[:n], **kw)


# -- the Python draw on its own --------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 63, 64, 200, 256])
def test_permutation_is_a_permutation_and_deterministic(n):
    for epoch in range(5):
        perm = permutation(SEED, n, epoch)
        assert sorted(perm) == list(range(n))
        assert perm == permutation(SEED, n, epoch)
    if n >= 5:
        perms = {tuple(permutation(SEED, n, e)) for e in range(20)}
        assert len(perms) > 15  # epochs differ
        assert permutation(SEED, n, 0) != permutation(b"\x01" * 32, n, 0)  # the seed matters


def test_pinned_vector():
    """A change of the hashing or bijection would silently change every seeded run: pin one."""
    assert permutation(bytes(32), 8, 0) == PINNED_8_0
    assert permutation(bytes(32), 8, 3) == PINNED_8_3


PINNED_8_0 = [4, 7, 1, 5, 6, 2, 3, 0]
PINNED_8_3 = [0, 1, 2, 3, 6, 7, 5, 4]


def test_every_member_proposes_once_per_epoch_and_slots_are_uniform():
    n = 5
    first = Counter()
    for epoch in range(400):
        seq = [proposer_index(SEED, n, epoch * n + k, [True] * n) for k in range(n)]
        assert sorted(seq) == list(range(n))
        first[seq[0]] += 1
    # Each member opens an epoch about 80 times in 400 (binomial sd ~8).
    assert all(40 < first[i] < 120 for i in range(n)), first


def test_suspended_slot_goes_to_the_next_active_member_in_the_permutation():
    n = 6
    for r in range(3 * n):
        perm = permutation(SEED, n, r // n)
        pos = r % n
        owner = perm[pos]
        active = [True] * n
        active[owner] = False
        assert proposer_index(SEED, n, r, active) == perm[(pos + 1) % n]
        active[perm[(pos + 1) % n]] = False
        assert proposer_index(SEED, n, r, active) == perm[(pos + 2) % n]
        only = perm[(pos - 1) % n]  # wraps around the end of the permutation
        assert proposer_index(SEED, n, r, [i == only for i in range(n)]) == only
        assert proposer_index(SEED, n, r, [False] * n) == owner  # nobody active: the owner


def test_python_draw_rejects_bad_arguments():
    with pytest.raises(ValueError, match="32 bytes"):
        permutation(b"short", 3, 0)
    with pytest.raises(ValueError, match="1..256"):
        permutation(SEED, 257, 0)
    with pytest.raises(ValueError, match="epoch"):
        permutation(SEED, 3, -1)
    with pytest.raises(ValueError, match="3 members"):
        proposer_index(SEED, 3, 0, [True, True])
    with pytest.raises(ValueError, match="round"):
        proposer_index(SEED, 3, -1, [True] * 3)


# -- the contract equals the Python draw -----------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 8, 17, 64])
def test_contract_draw_equals_python(chain, n):
    """Round by round (draw) for 120 rounds, and epoch by epoch (permutation) for at least 300."""
    c = deploy(chain, n)
    members, seed = c.members(), c.settings().draw_seed
    for r in range(120):
        assert c.draw(r) == members[proposer_index(seed, n, r, [True] * n)], r
    for epoch in range(-(-300 // n)):
        assert c.permutation(epoch) == permutation(seed, n, epoch), epoch
    assert c.permutation(10**30) == permutation(seed, n, 10**30)  # far epochs too
    assert c.draw(10**40 + 1) == members[proposer_index(seed, n, 10**40 + 1, [True] * n)]
    assert c.proposer(0) == c.draw(0)


def test_contract_draw_equals_python_at_256_members():
    """The largest group (the Feistel domain is exactly 256: no cycle walking) and one just above a power
    of four (130 members: domain 256, walks)."""
    chain = Chain.embedded(256)
    for n in (130, 256):
        c = deploy(chain, n)
        members, seed = c.members(), c.settings().draw_seed
        for r in range(0, 3 * n, 7):
            assert c.draw(r) == members[proposer_index(seed, n, r, [True] * n)], (n, r)
        for epoch in (0, 1, 10**30):
            assert c.permutation(epoch) == permutation(seed, n, epoch), (n, epoch)


def test_real_rounds_follow_the_python_draw_through_suspensions(chain):
    """Rounds played on chain (some void, some accepted, members suspended and rejoining):
    proposer(r) always equals proposer_index(seed, n, r, who was active when r started)."""
    n = 6
    c = deploy(chain, n, proposal_window=3, vote_window=n, max_missed=2)
    members, seed = c.members(), c.settings().draw_seed
    lazy = members[4]  # never proposes: suspended at its second slot
    r = 0
    while r < 3 * n:
        active = [not c.member_stats(m).suspended for m in members]
        p = c.proposer(r)
        assert p == members[proposer_index(seed, n, r, active)], r
        if r == 2 * n and c.member_stats(lazy).suspended:
            c.rejoin(lazy)  # active again from round r + 1
        st = c.round_state(r)
        if p == lazy:
            chain.mine(st.proposal_deadline - chain.block_number())
            assert c.finalize(p, r).void
        else:
            c.propose(p, r, hashlib.sha256(f"r{r}".encode()).digest(), URI)
            for v in st.voters:
                if v != lazy:
                    c.vote(v, r, True, 0)
            if lazy in st.voters:  # its vote never comes: wait out the window
                chain.mine(c.round_state(r).vote_deadline - chain.block_number())
            assert c.finalize(p, r).accepted
        r += 1
    assert [e.args["member"] for e in c.events() if e.name == "Suspended"][:1] == [lazy]
    assert any(e.name == "Rejoined" for e in c.events())


# -- the draw cannot be steered --------------------------------------------------------------


def _reencode(weights: dict[str, np.ndarray], k: int) -> bytes:
    """The same weights with an extra metadata key: other bytes, other digest, same weights."""
    blob = encode(weights)
    if k == 0:
        return blob
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    meta = dict(header["__metadata__"], pad=str(k))
    return st_save({name: np.asarray(v) for name, v in decode(blob).items()}, metadata=meta)


def test_reencoding_attack_cannot_repick_the_proposer(chain):
    """The issue's attack, replayed: each round the proposer tries several re-encodings of its
    weights (snapshot, propose, get it accepted, look at the next proposer, roll back). In v1 it
    found one that re-picked it in 12 of 12 rounds; here every attempt yields the same next
    proposer, which is the Python draw, and members take turns once per epoch."""
    n, rounds, tries = 5, 12, 5
    c = deploy(chain, n, threshold=0, proposal_window=2, vote_window=1, max_missed=10**6)
    members, seed = c.members(), c.settings().draw_seed
    tester = chain._tester
    rng = np.random.default_rng(0)
    seq = []
    for r in range(rounds):
        p = c.proposer(r)
        seq.append(p)
        weights = {"w": rng.normal(size=(4, 3)).astype(np.float32)}
        nexts, digests = set(), set()
        for k in range(tries):
            blob = _reencode(weights, k)
            assert st_load(blob)["w"].tobytes() == weights["w"].tobytes()  # same weights to a plain reader
            if k:  # (cohep's own decoder refuses the padding: non-canonical metadata)
                with pytest.raises(IntegrityError, match="non-canonical metadata"):
                    decode(blob)
            d = digest_bytes(blob)
            digests.add(d)
            snap = tester.take_snapshot()
            c.propose(p, r, d, f"{URI}{r}-{k}")
            c.vote(c.round_state(r).voters[0], r, True, 0)
            chain.mine(1)
            assert c.finalize(p, r).accepted and c.accepted_digest() == d
            nexts.add(c.proposer(r + 1))
            if k < tries - 1:
                tester.revert_to_snapshot(snap)
        assert len(digests) == tries  # the attacker really had different digests to choose from
        assert nexts == {members[proposer_index(seed, n, r + 1, [True] * n)]}
    assert sum(a == b for a, b in itertools.pairwise(seq)) <= 2  # no re-picking streaks
    for e in range(rounds // n):
        assert sorted(seq[e * n:(e + 1) * n]) == sorted(members)


def test_sequence_is_identical_whatever_is_accepted(chain):
    """Same seed, members and deployment block; one run accepts digests A, one accepts other digests
    B, one rejects everything, one proposes nothing: the four proposer sequences are identical."""
    n, rounds = 4, 8
    kw = {"proposal_window": 1, "vote_window": 1, "max_missed": 10**6}
    snap = chain._tester.take_snapshot()  # each run deploys in the same block: the same draw seed
    seeds = set()

    def run(mode: str) -> list[str]:
        chain._tester.revert_to_snapshot(snap)
        c = deploy(chain, n, threshold=0, **kw)
        seeds.add(c.settings().draw_seed)
        seq = []
        for r in range(rounds):
            p = c.proposer(r)
            seq.append(p)
            if mode != "void":
                c.propose(p, r, hashlib.sha256(f"{mode}{r}".encode()).digest(), URI)
                c.vote(c.round_state(r).voters[0], r, mode != "reject", 0)
            chain.mine(1)
            out = c.finalize(p, r)
            assert (out.accepted, out.void) == (mode in ("A", "B"), mode == "void")
        return seq

    runs = {mode: run(mode) for mode in ("A", "B", "reject", "void")}
    members = chain.accounts[:n]
    assert len(seeds) == 1
    (seed,) = seeds
    expected = [members[proposer_index(seed, n, r, [True] * n)] for r in range(rounds)]
    assert all(seq == expected for seq in runs.values()), runs


def test_draw_view_needs_no_started_round(chain):
    c = deploy(chain, 3)
    assert c.draw(10**20) in c.members()
    with pytest.raises(ChainError, match="round not started"):
        c.proposer(1)


# -- the draw's seed: the deployer's seed and a block hash nobody knew when it deployed ---------


def test_start_mixes_the_deployment_blocks_hash_into_the_seed():
    """draw_seed = keccak256(seed, blockhash(deployed_block)), fixed by start() (anyone may call it, once,
    from the next block); before it no round runs; the order is the Python draw of draw_seed."""
    from eth_utils import keccak

    chain = Chain.embedded(4)
    c = deploy(chain, 3, start=False)
    s = c.settings()
    assert s.draw_seed == bytes(32) and s.seed == SEED
    with pytest.raises(ChainError, match="not started"):
        c.finalize(chain.accounts[0], 0)
    with pytest.raises(ChainError, match="no such slot"):
        c.propose(chain.accounts[0], 0, INITIAL, URI)
    c.start(chain.accounts[3])  # not a member: anyone may start it
    deployed = chain.w3.eth.get_block(s.deployed_block)
    assert c.draw_seed() == keccak(SEED + bytes(deployed["hash"])) == c.settings().draw_seed
    with pytest.raises(ChainError, match="already started"):
        c.start(chain.accounts[0])
    started = [e for e in c.events() if e.name == "Started"]
    assert [(e.args["draw_seed"], e.args["seed_block"]) for e in started] == [(c.draw_seed(), s.deployed_block)]
    members = c.members()
    assert c.proposer(0) == members[proposer_index(c.draw_seed(), 3, 0, [True] * 3)]


def test_the_same_seed_on_other_chains_gives_other_orders_and_each_replays():
    """Two deployments with the same seed on chains whose deployment blocks differ (one chain carried
    one more transaction first) draw different orders; the same chain history gives the same draw seed
    (the embedded chain's blocks do not depend on the wall clock), so a run replays from its seed."""
    def deployed(extra: bool, pause: float = 0.0) -> Coordinator:
        chain = Chain.embedded(8)
        if extra:
            chain.w3.eth.send_transaction({"from": chain.accounts[7], "to": chain.accounts[6], "value": 1})
        time.sleep(pause)
        return deploy(chain, 8)

    a, b, again = deployed(False), deployed(True), deployed(False, pause=1.1)
    assert a.settings().seed == b.settings().seed == SEED
    assert a.draw_seed() != b.draw_seed()
    assert [a.permutation(e) for e in range(3)] != [b.permutation(e) for e in range(3)]
    assert again.draw_seed() == a.draw_seed()  # a second later, the same blocks
    assert [again.permutation(e) for e in range(3)] == [a.permutation(e) for e in range(3)]
    for c in (a, b):
        assert c.permutation(0) == permutation(c.draw_seed(), 8, 0)


def test_a_deployer_cannot_pick_the_order_with_the_seed_alone():
    """The issue's attack: seeds tried offline until one gives member 0 the last round of the first
    epochs. With the block hash mixed in, the order the chosen seed gives on chain is not the one the
    deployer computed for it (it is the draw of draw_seed)."""
    n = 5
    chain = Chain.embedded(n)
    favoured = next(s for s in (hashlib.sha256(b"try %d" % k).digest() for k in range(10_000))
                    if all(permutation(s, n, e)[n - 1] == 0 for e in range(3)))
    c = deploy(chain, n, seed=favoured)
    assert c.permutation(0) == permutation(c.draw_seed(), n, 0)
    assert [c.permutation(e) for e in range(3)] != [permutation(favoured, n, e) for e in range(3)]
