"""Signed ballots: EIP-712 votes that one transaction submits and the contract verifies.

Every ballot a batch carries is checked on its own: forged, tampered, replayed from another round or
another contract, duplicated, from the proposer or out of range, it is skipped with BallotSkipped and
never counted, and the honest ballots of the same batch still are.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from fractions import Fraction

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from cohep.config import experiment as config
from cohep.core.errors import ConfigError, IntegrityError
from cohep.ledger import Chain, Coordinator
from cohep.ledger import ballots as B
from cohep.ledger.coordinator import EMBEDDED_BATCH_GAS

SEED = hashlib.sha256(b"ballot seed").digest()
INITIAL = hashlib.sha256(b"initial").digest()
MODEL = hashlib.sha256(b"model").digest()


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain.embedded(8)


def deploy(chain: Chain, members: list[str], **kw) -> Coordinator:
    kw.setdefault("threshold", Fraction(1, 2))
    kw.setdefault("sealed", False)  # submit_ballots; sealed batches: tests/test_sealed.py
    return Coordinator.deploy(chain, members, seed=SEED, initial_digest=INITIAL, model_digest=MODEL, **kw)


def twins(n: int, **kw) -> tuple[Coordinator, Coordinator]:
    """The same deployment on two fresh embedded chains: the same blocks, so the same draw (the draw
    seed mixes in the deployment block's hash, which differs between two contracts of one chain)."""
    a, b = Chain.embedded(8), Chain.embedded(8)
    return deploy(a, a.accounts[:n], **kw), deploy(b, b.accounts[:n], **kw)


def proposed(c: Coordinator, tag: str = "w") -> tuple[int, str, list[str]]:
    r = c.round()
    p = c.proposer(r)
    c.propose(p, r, hashlib.sha256(tag.encode()).digest(), "file:///store/x.safetensors")
    return r, p, [m for m in c.members() if m != p]


def test_domain_matches_eth_account_and_the_contract_recovers_the_same_signer(chain):
    c = deploy(chain, chain.accounts[:4])
    msg = encode_typed_data(full_message=B.typed_data(c.ballot_domain(), 0, 1, 5))
    assert bytes(msg.header) == bytes(c._call("domain_separator"))  # EIP-712 domain separator
    r, p, voters = proposed(c)
    b = c.sign_ballot(voters[0], r, True, 123_456)
    assert b.signer(c.ballot_domain()) == voters[0] == b.voter
    assert b.signer(B.Domain(chain.chain_id + 1, c.address)) != voters[0]  # bound to the chain
    assert B.from_json(b.to_json()) == b
    batch = c.submit_ballots(p, r, [b])
    assert batch.counted == (voters[0],) and batch.skipped == ()
    assert c.ballot(r, voters[0]) is True
    [voted] = [e for e in c.events() if e.name == "Voted"]
    assert voted.args == {"round": r, "voter": voters[0], "approvals": 1, "scores_ppm": [123_456]}


def test_direct_digest_and_signature_are_eth_accounts_for_random_ballots(chain):
    """ballots.digest / sign skip eth_account's typed-data encoder: the same EIP-712 digest, the same
    RFC 6979 signature byte for byte, over random domains, rounds, bitmaps and 0..64 extreme scores;
    and the contract counts what they sign."""
    from eth_account.messages import _hash_eip191_message

    rng = random.Random(712)
    for i in range(60):
        domain = B.Domain(rng.randrange(1, 2**64), "0x" + rng.randbytes(20).hex())
        r, approvals = rng.randrange(2**256), rng.randrange(2**rng.randint(1, 256))
        scores = [rng.choice([rng.randrange(-(2**255), 2**255), -(2**255), 2**255 - 1, 0, -1])
                  for _ in range(rng.choice([0, 1, 3, 64]))]
        message = B.typed_data(domain, r, approvals, scores)
        assert B.digest(domain, r, approvals, scores) == _hash_eip191_message(encode_typed_data(full_message=message)), i
        key = rng.randbytes(32)
        ours, ref = B.sign(key, domain, r, approvals, scores), Account.sign_typed_data(key, full_message=message)
        assert (ours.v, ours.r, ours.s) == (ref.v, ref.r.to_bytes(32, "big"), ref.s.to_bytes(32, "big")), i
        assert ours.voter == Account.from_key(key).address == ours.signer(domain)
    # the k-slot shape on chain: the contract recovers the signer of a directly signed ballot
    c = deploy(chain, chain.accounts[:5], proposers=2)
    r = c.round()
    holders = c.proposers_of(r)
    for j, m in enumerate(holders):
        c.propose(m, r, hashlib.sha256(f"k{j}".encode()).digest(), "file:///store/k.safetensors", slot=j)
    voter = next(m for m in c.members() if m not in holders)
    b = B.sign(chain._keys[voter], c.ballot_domain(), r, 0b10, [-(10**15), 10**15])
    assert c.submit_ballots(holders[0], r, [b]).counted == (voter,)


def test_signer_accepts_only_what_ecrecover_accepts():
    """v 27/28 and r, s in [1, N): the contract's ecrecover refuses anything else, so the off-chain
    check does too (eth_account took chain-encoded v's, 35 and up, that the contract skips)."""
    domain = B.Domain(1, "0x" + "22" * 20)
    good = B.sign("0x" + "11" * 32, domain, 3, True, -7)
    assert good.signer(domain) == good.voter
    n = SECP256K1_N.to_bytes(32, "big")
    for bad in [replace(good, v=good.v - 27), replace(good, v=29), replace(good, v=good.v + 10),
                replace(good, r=bytes(32)), replace(good, s=bytes(32)), replace(good, s=n), replace(good, r=n),
                replace(good, round=-1), replace(good, scores_ppm=(2**255,)), replace(good, r=b"\x01" * 31)]:
        assert bad.signer(domain) is None, bad
    assert replace(good, round=4).signer(domain) != good.voter  # another message: another signer


def test_signed_round_decides_like_a_round_of_vote_transactions(chain):
    """Same members, same verdicts: the two paths leave the same outcome and the same counters."""
    members = chain.accounts[:6]
    a, b = twins(6)
    for k in range(3):  # three rounds, so the counters and the draw move on
        r, p, voters = proposed(a, f"a{k}")
        rb, pb, voters_b = proposed(b, f"a{k}")
        assert (r, p, voters) == (rb, pb, voters_b)
        verdicts = {m: (i + k) % 3 != 0 for i, m in enumerate(voters)}
        for m in voters:
            a.vote(m, r, verdicts[m], 1000)
        tx0 = b.transactions
        batch = b.submit_ballots(p, r, [b.sign_ballot(m, r, verdicts[m], 1000) for m in voters])
        assert b.transactions - tx0 == 1 and len(batch.counted) == len(voters)
        out_a, out_b = a.finalize(members[0], r), b.finalize(members[0], r)
        assert (out_a.accepted, out_a.approvals, out_a.votes) == (out_b.accepted, out_b.approvals, out_b.votes)
    assert [a.member_stats(m) for m in members] == [b.member_stats(m) for m in members]


def test_bad_ballots_are_skipped_and_never_counted(chain):
    members = chain.accounts[:6]
    c = deploy(chain, members)
    other = deploy(chain, members)  # a second contract: its domain differs
    r, p, voters = proposed(c)
    proposed(other)
    d = c.ballot_domain()
    stranger = Account.create()
    honest = [c.sign_ballot(m, r, True, 10) for m in voters[:2]]
    flipped = c.sign_ballot(voters[2], r, True, 10)
    bad = [
        (B.sign(stranger.key, d, r, True, 10), "not a member's signature"),
        (replace(flipped, approvals=0), "not a member's signature"),  # tampered after signing
        (replace(honest[0], v=29), "not a member's signature"),  # recovers to nobody
        (other.sign_ballot(voters[3], r, True, 10), "not a member's signature"),  # another contract's
        (c.sign_ballot(voters[3], r + 1, True, 10), "wrong round"),
        (c.sign_ballot(p, r, True, 10), "proposer cannot vote"),
        (honest[1], "already voted"),  # a duplicate in the same batch
        (B.sign(chain._keys[voters[3]], d, r, False, 10**15 + 1), "score out of range"),
        (replace(B.sign(chain._keys[voters[4]], d, r, True, 0), approvals=2), "not a member's signature"),
    ]
    over = B.sign(chain._keys[voters[4]], d, r, False, 0)
    over = B.SignedBallot(over.voter, r, 2, (0,), *_resign(chain._keys[voters[4]], d, r, 2, 0))
    bad.append((over, "approvals outside the slots"))
    bad.append((B.sign(chain._keys[voters[4]], d, r, True, [1, 2]), "one score per slot"))
    batch = c.submit_ballots(p, r, honest + [b for b, _ in bad])
    assert batch.counted == tuple(m for m in voters[:2])
    assert [(i, reason) for i, _, reason in batch.skipped] == [(i + 2, why) for i, (_, why) in enumerate(bad)]
    assert [c.ballot(r, m) for m in voters] == [True, True, None, None, None]
    st = c.round_state(r)
    assert (st.votes, st.approvals) == (2, 2)
    skipped = [e for e in c.events() if e.name == "BallotSkipped"]
    assert len(skipped) == len(bad) and skipped[0].args["signer"] == stranger.address
    # a ballot already counted, submitted again in a later batch, is skipped too
    again = c.submit_ballots(voters[0], r, [honest[0], flipped])
    assert again.counted == (voters[2],) and again.skipped[0][2] == "already voted"
    assert c.round_state(r).votes == 3


def _resign(key, domain, r, approvals, score):
    signed = Account.sign_typed_data(key.to_bytes(), full_message=B.typed_data(domain, r, approvals, score))
    return int(signed.v), int(signed.r).to_bytes(32, "big"), int(signed.s).to_bytes(32, "big")


def test_a_batch_fails_whole_only_for_the_round(chain):
    members = chain.accounts[:4]
    c = deploy(chain, members, vote_window=3)
    p = c.proposer(0)
    voter = next(m for m in members if m != p)
    early = c.sign_ballot(voter, 0, True, 1)
    with pytest.raises(Exception, match=": no proposal$"):
        c.submit_ballots(p, 0, [early])
    r, p, _ = proposed(c)
    with pytest.raises(Exception, match=": not a member$"):
        c.submit_ballots(chain.accounts[7], r, [early])
    with pytest.raises(Exception, match=": wrong round$"):
        c.submit_ballots(p, r + 1, [early])
    chain.mine(4)
    with pytest.raises(Exception, match=": vote window closed$"):
        c.submit_ballots(p, r, [early])
    assert c.round_state(r).votes == 0
    assert c.submit_ballots(p, r, []).counted == ()  # nothing to send: no transaction


def test_ballot_files_from_other_members_are_checked():
    good = B.sign("0x" + "11" * 32, B.Domain(1, "0x" + "22" * 20), 3, True, -7)
    assert B.from_json(good.to_json()) == good
    for text, why in [
        ("[]", "not a JSON object"), ("{", "not JSON"), ("x" * 9000, "over"),
        (good.to_json().replace('"round": 3', '"round": -1'), "round"),
        (good.to_json().replace('"v": ', '"v": 1000 + '), "not JSON"),
        (good.to_json().replace(good.voter, "0xnope"), "voter"),
        (good.to_json().replace('"scores_ppm": [-7]', '"scores_ppm": -7'), "scores_ppm"),
        (good.to_json().replace('"scores_ppm": [-7]', '"scores_ppm": [' + "1, " * 64 + "1]"), "scores_ppm"),
        (good.to_json().replace('"scores_ppm": [-7]', '"scores_ppm": [true]'), "scores_ppm"),
        (good.to_json().replace("0x" + good.r.hex(), "0x12"), "field r"),
    ]:
        with pytest.raises(IntegrityError, match=why):
            B.from_json(text)


def test_member_count_defaults_hold_for_64_members():
    """The default config runs 64 learners: the vote window follows the member count (it used to fail
    from 52 members on), and 65 fails at config time with one line for signed ballots (one batch a
    round, at most 64 entries; tests/test_member_cap.py has every mode's bound)."""
    for n in (2, 3, 20, 51, 52, 64):
        cfg = config.from_dict({"experiment": {"learners": n}})
        assert cfg.chain.resolved_vote_window(n) >= max(50, n - 1)
        signed = config.from_dict({"experiment": {"learners": n}, "chain": {"ballots": "signed"}})
        assert signed.chain.ballots == "signed"
    assert config.from_dict({"chain": {"vote_window": 7}}).chain.resolved_vote_window(64) == 7
    with pytest.raises(ConfigError, match="experiment.learners must be at most 64"):
        config.from_dict({"experiment": {"learners": 65}, "chain": {"ballots": "signed"}})
    with pytest.raises(ConfigError, match="chain.vote_window"):
        config.from_dict({"experiment": {"learners": 12}, "chain": {"vote_window": 5}})
    with pytest.raises(ConfigError, match="chain.ballots"):
        config.from_dict({"chain": {"ballots": "carrier pigeon"}})


def test_64_member_rounds_with_the_default_config():
    """64 members on the embedded chain, deployed as the runner does with the default config: a
    round of 63 vote transactions, then a round whose 63 signed ballots go in one transaction."""
    n = 64
    cfg = config.from_dict({"experiment": {"learners": n}})
    chain = Chain.embedded(n)
    c = deploy(chain, chain.accounts, proposal_window=cfg.chain.proposal_window,
               vote_window=cfg.chain.resolved_vote_window(n), max_missed=cfg.chain.max_missed)
    r, p, voters = proposed(c, "t")
    for m in voters:
        c.vote(m, r, True, 1)
    out = c.finalize(p, r)
    assert (out.accepted, out.votes, out.required) == (True, 63, 32)
    r, p, voters = proposed(c, "s")
    tx0, gas0 = c.transactions, c.gas_used
    batch = c.submit_ballots(p, r, [c.sign_ballot(m, r, True, 1) for m in voters])
    assert len(batch.counted) == 63 and c.transactions - tx0 == 1
    assert c.gas_used - gas0 < EMBEDDED_BATCH_GAS // 2, c.gas_used - gas0
    out = c.finalize(p, r)
    assert (out.accepted, out.votes, out.approvals) == (True, 63, 63)
    assert not any(c.member_stats(m).missed for m in chain.accounts)


def test_a_node_signs_ballots_for_its_unlocked_accounts():
    """Chain.connect without keys: Anvil signs the ballot (eth_signTypedData_v4); the contract
    recovers the same voter as eth_account does."""
    from cohep.ledger.anvil import Anvil

    with Anvil(accounts=4) as anvil:
        chain = Chain.connect(anvil.url, 4)
        assert chain._keys == {}
        c = deploy(chain, chain.accounts[:4])
        r, p, voters = proposed(c)
        ballots = [c.sign_ballot(m, r, True, 5) for m in voters]
        assert [b.signer(c.ballot_domain()) for b in ballots] == voters
        assert c.submit_ballots(p, r, ballots).counted == tuple(voters)
        assert c.finalize(p, r).accepted


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_a_suspended_member_and_a_malleated_twin_are_not_counted(chain):
    members = chain.accounts[:4]
    c = deploy(chain, members, vote_window=2, max_missed=1)
    r, p, voters = proposed(c, "m0")
    for m in voters[1:]:
        c.vote(m, r, True, 0)
    c.finalize(p, r)  # voters[0] missed its vote: suspended from round 1 on
    assert c.member_stats(voters[0]).suspended
    r, p, now = proposed(c, "m1")
    honest = c.sign_ballot(next(m for m in now if m != voters[0]), r, True, 0)
    # the same signature with s -> n - s and v flipped recovers the same signer: one vote, not two
    twin = replace(honest, s=(SECP256K1_N - int.from_bytes(honest.s, "big")).to_bytes(32, "big"),
                   v=55 - honest.v)
    assert twin.signer(c.ballot_domain()) == honest.voter
    batch = c.submit_ballots(p, r, [c.sign_ballot(voters[0], r, True, 0), honest, twin])
    assert batch.counted == (honest.voter,)
    assert [(i, why) for i, _, why in batch.skipped] == [(0, "suspended"), (2, "already voted")]


def test_signed_ballots_carry_every_slot_of_a_k_slot_round(chain):
    """With k proposers the signed ballot is vote()'s: the slot bitmap and one score per slot
    (Ballot(uint256 round,uint256 approvals,int256[] scores_ppm)); a ballot that approves its
    signer's own slot, names an unproposed slot or carries the wrong number of scores is skipped,
    and the counted ones decide each slot exactly as vote transactions do."""
    members = chain.accounts[:6]
    a, b = twins(6, proposers=3)
    for c in (a, b):
        r = c.round()
        for j, holder in enumerate(c.proposers_of(r)):
            c.propose(holder, r, hashlib.sha256(f"slot{j}".encode()).digest(), f"file:///s/{j}", j)
    holders = a.proposers_of(r)
    d = b.ballot_domain()
    ballots, bad = [], []
    for i, m in enumerate(members):
        own = holders.index(m) if m in holders else None
        approvals = sum(1 << j for j in range(3) if j != own and (i + j) % 2 == 0)
        scores = [0 if j == own else 1000 * (i + j) for j in range(3)]
        a.vote_slots(m, r, approvals, scores)
        ballots.append(b.sign_ballot(m, r, approvals, scores))
    h0 = chain._keys[holders[0]]
    bad = [
        (B.sign(h0, d, r, 0b011, [0, 5, 5]), "cannot approve own proposal"),
        (B.sign(h0, d, r, 0b1000, [0, 5, 5]), "approvals outside the slots"),
        (B.sign(h0, d, r, 0b010, [5]), "one score per slot"),
    ]
    batch = b.submit_ballots(members[0], r, [x for x, _ in bad] + ballots)
    assert [(i, why) for i, _, why in batch.skipped] == [(i, why) for i, (_, why) in enumerate(bad)]
    assert batch.counted == tuple(members)
    assert [a.ballot_bits(r, m) for m in members] == [b.ballot_bits(r, m) for m in members]
    out_a, out_b = a.finalize(members[0], r), b.finalize(members[0], r)
    assert out_a.slot_approvals == out_b.slot_approvals and out_a.accepted_slots == out_b.accepted_slots
    assert out_a.digest == out_b.digest and a.accepted_digest() == b.accepted_digest()


def test_signed_ballots_on_the_average(chain):
    """combine "average": a signed ballot carries one bit and one score, the average's."""
    members = chain.accounts[:4]
    c = deploy(chain, members, proposers=2, combine="average")
    r = c.round()
    for j, holder in enumerate(c.proposers_of(r)):
        c.propose(holder, r, hashlib.sha256(f"avg{j}".encode()).digest(), f"file:///s/{j}", j)
    batch = c.submit_ballots(members[0], r, [c.sign_ballot(members[3], r, True, [7, 7])]
                             + [c.sign_ballot(m, r, m != members[3], [7]) for m in members])
    assert batch.counted == tuple(members)
    assert [(i, why) for i, _, why in batch.skipped] == [(0, "one score for the average")]
    out = c.finalize(members[0], r)
    assert out.accepted and out.accepted_slots == 0b11 and out.slot_approvals == (3,)


@pytest.mark.parametrize("shape", [{}, {"proposers": 3}, {"proposers": 3, "combine": "average"}])
def test_majority_credit_and_tallies_match_vote_transactions_and_the_rule(chain, shape):
    """finalize credits a voter whose verdict matches the outcome on every slot it judged (a
    one-verdict round reads it from the round's voted marks, a k-slot round from the ballots);
    a batch writes the round's marks once. Random verdicts, some voters silent: signed ballots and
    vote() transactions leave the same state, and both follow the rule computed here."""
    members = chain.accounts[:7]
    a, b = twins(7, vote_window=40, **shape)
    rng = random.Random(str(shape))
    for k in range(4):
        r = a.round()
        st = a.round_state(r)
        for c in (a, b):
            for s in st.slots:
                c.propose(s.proposer, r, hashlib.sha256(f"{k}{s.slot}".encode()).digest(), "file:///x", slot=s.slot)
        one = len(st.slots) == 1 or a.settings().vote_on_average
        before = {m: a.member_stats(m).votes_with_majority for m in members}
        ballots, verdicts = [], {}
        for v in a.round_state(r).voters:
            if rng.random() < 0.2:
                continue  # silent: a missed duty, no credit
            own = sum(1 << s.slot for s in st.slots if s.proposer == v)
            bits = rng.getrandbits(1) if one else rng.getrandbits(len(st.slots)) & ~own
            scores = [rng.randrange(10**6)] if one else [0] * len(st.slots)
            verdicts[v] = bits
            a.vote_slots(v, r, bits, scores)
            ballots.append(b.sign_ballot(v, r, bits, scores))
        batch = b.submit_ballots(st.proposer, r, ballots)
        assert len(batch.counted) == len(ballots)
        a.chain.mine(41)  # silent voters: the window must pass
        b.chain.mine(41)
        out_a, out_b = a.finalize(members[0], r), b.finalize(members[0], r)
        assert out_a == out_b
        blocks = dict(start_block=0, proposed_block=0, proposal_deadline=0, vote_deadline=0)
        assert replace(a.round_state(r), **blocks) == replace(b.round_state(r), **blocks)
        for v, bits in verdicts.items():
            judged = (1 if one else out_a.proposed_slots) & ~(0 if one else sum(
                1 << s.slot for s in st.slots if s.proposer == v))
            accepted = (1 if out_a.accepted else 0) if one else out_a.accepted_slots
            agreed = bits & judged == accepted & judged
            assert a.member_stats(v).votes_with_majority == before[v] + agreed, (k, v)
        assert [a.member_stats(m) for m in members] == [b.member_stats(m) for m in members]
        assert [a.ballot_bits(r, m) for m in members] == [b.ballot_bits(r, m) for m in members]
