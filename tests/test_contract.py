"""Contract semantics: every rule is exercised on both sides, through the Python client,
on the embedded chain, using the committed artifact."""

from __future__ import annotations

import hashlib

import pytest
from eth_utils import keccak

from cohep.errors import ChainError
from cohep.ledger import Chain, Coordinator, MemberStats

SEED = hashlib.sha256(b"cohep test seed").digest()
INITIAL = hashlib.sha256(b"initial weights").digest()
MODEL = hashlib.sha256(b"model spec").digest()
URI = "file:///tmp/store/"


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain.embedded(8)


def deploy(chain: Chain, n: int = 5, **kw) -> Coordinator:
    kw.setdefault("seed", SEED)
    kw.setdefault("initial_digest", INITIAL)
    kw.setdefault("model_digest", MODEL)
    return Coordinator.deploy(chain, chain.accounts[:n], **kw)


def outsider(chain: Chain) -> str:
    return chain.accounts[-1]


def digest_of(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def voters(c: Coordinator, r: int) -> list[str]:
    p = c.proposer(r)
    return [m for m in c.members() if m != p]


def expected_proposer(seed: bytes, accepted: bytes, r: int, members: list[str]) -> str:
    """Independent recomputation of the contract's draw."""
    h = keccak(seed + accepted + r.to_bytes(32, "big"))
    return members[int.from_bytes(h, "big") % len(members)]


def reverts(reason: str):
    return pytest.raises(ChainError, match=f": {reason}$")


def mine_until(chain: Chain, block: int) -> None:
    """Leave the chain at `block`, so the next transaction is mined in block + 1."""
    assert chain.block_number() <= block
    chain.mine(block - chain.block_number())


# -- membership and roles ------------------------------------------------------------------


def test_non_member_cannot_propose_or_vote(chain):
    c = deploy(chain)
    with reverts("not a member"):
        c.propose(outsider(chain), 0, digest_of("x"), URI)
    c.propose(c.proposer(0), 0, digest_of("w1"), URI + "w1")
    with reverts("not a member"):
        c.vote(outsider(chain), 0, True, 1)
    st = c.round_state(0)
    assert (st.approvals, st.votes) == (0, 0)
    assert c.ballot(0, outsider(chain)) is None


def test_only_selected_proposer_may_propose(chain):
    c = deploy(chain)
    other = voters(c, 0)[0]
    with reverts("not the proposer"):
        c.propose(other, 0, digest_of("x"), URI)
    assert c.round_state(0).proposed is False


def test_propose_once_and_nonzero_digest(chain):
    c = deploy(chain)
    p = c.proposer(0)
    with reverts("empty digest"):
        c.propose(p, 0, bytes(32), URI)
    c.propose(p, 0, digest_of("a"), URI + "a")
    with reverts("already proposed"):
        c.propose(p, 0, digest_of("b"), URI + "b")
    st = c.round_state(0)
    assert (st.digest, st.uri) == (digest_of("a"), URI + "a")


def test_double_vote_rejected(chain):
    c = deploy(chain)
    c.propose(c.proposer(0), 0, digest_of("w"), URI)
    v = voters(c, 0)[0]
    c.vote(v, 0, True, 10)
    with reverts("already voted"):
        c.vote(v, 0, False, 20)
    st = c.round_state(0)
    assert (st.approvals, st.votes) == (1, 1)
    assert c.ballot(0, v) is True


def test_proposer_cannot_vote(chain):
    c = deploy(chain)
    p = c.proposer(0)
    c.propose(p, 0, digest_of("w"), URI)
    with reverts("proposer cannot vote"):
        c.vote(p, 0, True, 0)
    assert c.round_state(0).votes == 0


def test_vote_needs_a_proposal(chain):
    c = deploy(chain)
    with reverts("no proposal"):
        c.vote(voters(c, 0)[0], 0, True, 0)


# -- rounds ----------------------------------------------------------------------------------


def test_wrong_round_future_and_past(chain):
    c = deploy(chain, n=3)
    p0 = c.proposer(0)
    with reverts("wrong round"):
        c.propose(p0, 1, digest_of("x"), URI)
    with reverts("wrong round"):
        c.finalize(p0, 1)
    c.propose(p0, 0, digest_of("w0"), URI)
    with reverts("wrong round"):
        c.vote(voters(c, 0)[0], 7, True, 0)
    for v in voters(c, 0):
        c.vote(v, 0, True, 0)
    c.finalize(p0, 0)
    assert c.round() == 1
    # Round 0 is closed for good.
    with reverts("wrong round"):
        c.propose(c.proposer(0), 0, digest_of("again"), URI)
    with reverts("wrong round"):
        c.vote(voters(c, 0)[0], 0, True, 0)
    with reverts("wrong round"):
        c.finalize(p0, 0)
    with reverts("round not started"):
        c.proposer(2)


@pytest.mark.parametrize("late", [False, True])
def test_proposal_window_boundary(chain, late):
    c = deploy(chain, proposal_window=3)
    st = c.round_state(0)
    assert st.proposal_deadline == st.start_block + 3
    # The next transaction lands in block deadline (allowed) or deadline + 1 (closed).
    mine_until(chain, st.proposal_deadline - 1 + int(late))
    if late:
        with reverts("proposal window closed"):
            c.propose(st.proposer, 0, digest_of("w"), URI)
        assert c.round_state(0).proposed is False
    else:
        c.propose(st.proposer, 0, digest_of("w"), URI)
        assert c.round_state(0).proposed_block == st.proposal_deadline


@pytest.mark.parametrize("late", [False, True])
def test_vote_window_boundary(chain, late):
    c = deploy(chain, vote_window=2)
    c.propose(c.proposer(0), 0, digest_of("w"), URI)
    st = c.round_state(0)
    assert st.vote_deadline == st.proposed_block + 2
    mine_until(chain, st.vote_deadline - 1 + int(late))
    v = voters(c, 0)[0]
    if late:
        with reverts("vote window closed"):
            c.vote(v, 0, True, 0)
        assert c.round_state(0).votes == 0
    else:
        c.vote(v, 0, True, 0)
        assert c.round_state(0).votes == 1


def test_missed_proposal_voids_round(chain):
    c = deploy(chain, proposal_window=2)
    p0 = c.proposer(0)
    with reverts("too early to finalize"):
        c.finalize(p0, 0)
    mine_until(chain, c.round_state(0).proposal_deadline)  # finalize lands one block after
    out = c.finalize(outsider(chain), 0)  # anyone may finalize
    assert out.void and not out.accepted
    assert (out.round, out.digest, out.approvals, out.votes, out.proposer) == (
        0, bytes(32), 0, 0, p0)
    assert c.round() == 1
    assert c.accepted_digest() == INITIAL
    assert c.accepted_round() is None
    st = c.round_state(0)
    assert (st.finalized, st.void, st.accepted, st.proposed) == (True, True, False, False)
    assert c.member_stats(p0) == MemberStats(0, 0, 0, 0, 1)
    # Round 1 starts fresh, with its own window, at the finalize block.
    st1 = c.round_state(1)
    assert st1.start_block == chain.block_number() and not st1.finalized
    assert c.proposer(1) == expected_proposer(SEED, INITIAL, 1, c.members())
    with reverts("wrong round"):
        c.propose(p0, 0, digest_of("too late"), URI)


def test_finalize_too_early_until_all_votes_or_window(chain):
    c = deploy(chain, vote_window=6)
    c.propose(c.proposer(0), 0, digest_of("w"), URI)
    with reverts("too early to finalize"):
        c.finalize(c.proposer(0), 0)
    vs = voters(c, 0)
    c.vote(vs[0], 0, True, 0)
    c.vote(vs[1], 0, True, 0)
    c.vote(vs[2], 0, False, 0)
    with reverts("too early to finalize"):  # three of four votes in
        c.finalize(vs[0], 0)
    assert c.round() == 0
    # The window passes with three of four votes: the round closes on those three.
    mine_until(chain, c.round_state(0).vote_deadline)
    out = c.finalize(vs[0], 0)
    assert (out.accepted, out.void, out.approvals, out.votes) == (True, False, 2, 3)
    assert c.member_stats(vs[3]) == MemberStats(0, 0, 0, 0, 0)
    assert c.member_stats(vs[2]) == MemberStats(0, 0, 1, 0, 0)


def test_all_votes_in_allows_immediate_finalize(chain):
    c = deploy(chain, n=3, vote_window=1000)
    d = digest_of("w")
    c.propose(c.proposer(0), 0, d, URI)
    for v in voters(c, 0):
        c.vote(v, 0, False, -3)
    out = c.finalize(c.proposer(0), 0)
    assert (out.accepted, out.approvals, out.votes, out.digest) == (False, 0, 2, d)
    assert c.accepted_digest() == INITIAL and c.round() == 1


# -- thresholds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "bps", "required"),
    [
        (2, 5000, 1), (3, 5000, 1), (5, 5000, 2),
        (2, 10000, 1), (3, 10000, 2), (5, 10000, 4),
        (2, 0, 0), (5, 0, 0),
        (5, 2500, 1), (5, 2501, 2), (5, 5001, 3), (3, 3333, 1), (3, 6667, 2), (8, 5000, 4),
    ],
)
def test_required_approvals_is_ceiling(chain, n, bps, required):
    c = deploy(chain, n=n, threshold_bps=bps)
    assert c.required_approvals() == required
    assert c.settings().threshold_bps == bps


def _threshold_cases():
    required = {(2, 5000): 1, (3, 5000): 1, (5, 5000): 2,
                (2, 10000): 1, (3, 10000): 2, (5, 10000): 4,
                (2, 0): 0, (3, 0): 0, (5, 0): 0}
    for (n, bps), k in required.items():
        yield pytest.param(n, bps, k, True, id=f"n{n}-t{bps}-{k}of{n - 1}-accept")
        if k > 0:
            yield pytest.param(n, bps, k - 1, False, id=f"n{n}-t{bps}-{k - 1}of{n - 1}-reject")


@pytest.mark.parametrize(("n", "bps", "approvals", "accepted"), list(_threshold_cases()))
def test_threshold_accept_reject(chain, n, bps, approvals, accepted):
    c = deploy(chain, n=n, threshold_bps=bps)
    p = c.proposer(0)
    d = digest_of(f"{n}-{bps}-{approvals}")
    c.propose(p, 0, d, URI)
    vs = voters(c, 0)
    for i, v in enumerate(vs):
        c.vote(v, 0, i < approvals, 1000 * i)
    out = c.finalize(p, 0)
    assert (out.accepted, out.void, out.approvals, out.votes) == (accepted, False, approvals, n - 1)
    assert c.accepted_digest() == (d if accepted else INITIAL)
    assert c.accepted_round() == (0 if accepted else None)
    st = c.round_state(0)
    assert (st.finalized, st.accepted) == (True, accepted)
    # Voters agreeing with the outcome are credited; the proposer only if accepted.
    for i, v in enumerate(vs):
        agreed = (i < approvals) == accepted
        assert c.member_stats(v) == MemberStats(0, 0, 1, int(agreed), 0)
    assert c.member_stats(p) == MemberStats(1, int(accepted), 0, 0, 0)


# -- proposer selection ----------------------------------------------------------------------


def _run_rounds(chain: Chain, c: Coordinator, rounds: int, accept_every: int) -> list[str]:
    """Drive rounds cheaply (threshold 0, 1-block windows): some accepted, the rest void."""
    members = c.members()
    seq = []
    for r in range(rounds):
        accepted = c.accepted_digest()
        p = c.proposer(r)
        assert p == expected_proposer(SEED, accepted, r, members), f"round {r}"
        seq.append(p)
        if accept_every and r % accept_every == 0:
            d = digest_of(f"round {r}")
            c.propose(p, r, d, URI)
            chain.mine(1)
            out = c.finalize(p, r)
            assert out.accepted and c.accepted_digest() == d
        else:
            chain.mine(1)
            assert c.finalize(p, r).void
    return seq


def test_proposer_draw_matches_recomputation_and_is_not_round_robin(chain):
    n, rounds = 5, 30
    c = deploy(chain, n=n, threshold_bps=0, proposal_window=1, vote_window=1)
    seq = _run_rounds(chain, c, rounds, accept_every=3)
    members = c.members()
    assert set(seq) == set(members)  # everyone gets picked
    idx = [members.index(p) for p in seq]
    # Not a rotation and not periodic with any period shorter than the run.
    assert any((b - a) % n != 1 for a, b in zip(idx, idx[1:]))
    for period in range(1, rounds):
        assert any(seq[i] != seq[i + period] for i in range(rounds - period)), period


def test_proposer_draw_is_reproducible_and_seed_dependent(chain):
    kw = dict(n=5, threshold_bps=0, proposal_window=1, vote_window=1)
    a = _run_rounds(chain, deploy(chain, **kw), 8, accept_every=2)
    b = _run_rounds(chain, deploy(chain, **kw), 8, accept_every=2)
    assert a == b
    other = deploy(chain, seed=digest_of("another seed"), **kw)
    members = other.members()
    draws = [expected_proposer(digest_of("another seed"), INITIAL, r, members) for r in range(8)]
    assert other.proposer(0) == draws[0]
    assert draws != [expected_proposer(SEED, INITIAL, r, members) for r in range(8)]


# -- counters and events ---------------------------------------------------------------------


def test_counters_after_several_rounds(chain):
    c = deploy(chain, n=4, threshold_bps=5000, proposal_window=2)  # 2 of 3 approvals needed
    members = c.members()
    expect = {m: [0, 0, 0, 0, 0] for m in members}  # proposed, accepted, cast, majority, missed
    plans = ["accept", "reject", "void", "accept"]
    for r, plan in enumerate(plans):
        p = c.proposer(r)
        vs = [m for m in members if m != p]
        if plan == "void":
            chain.mine(3)
            assert c.finalize(vs[0], r).void
            expect[p][4] += 1
            continue
        c.propose(p, r, digest_of(f"r{r}"), URI)
        expect[p][0] += 1
        ballots = [True, True, False] if plan == "accept" else [True, False, False]
        for v, b in zip(vs, ballots):
            c.vote(v, r, b, 0)
            expect[v][2] += 1
        out = c.finalize(p, r)
        assert out.accepted == (plan == "accept")
        if out.accepted:
            expect[p][1] += 1
        for v, b in zip(vs, ballots):
            expect[v][3] += int(b == out.accepted)
    assert c.round() == len(plans)
    for m in members:
        assert c.member_stats(m) == MemberStats(*expect[m]), m
    with reverts("not a member"):
        c.member_stats(outsider(chain))


def test_events_for_every_transition(chain):
    c = deploy(chain, n=3, proposal_window=1)
    start = chain.block_number()
    p0 = c.proposer(0)
    v = voters(c, 0)
    d = digest_of("w")
    c.propose(p0, 0, d, URI + "w")
    c.vote(v[0], 0, True, 750_000)
    c.vote(v[1], 0, False, -12)
    c.finalize(p0, 0)
    p1 = c.proposer(1)
    chain.mine(2)
    c.finalize(p0, 1)
    evs = c.events()
    assert [e.name for e in evs] == [
        "RoundStarted", "Proposed", "Voted", "Voted", "Finalized",
        "RoundStarted", "RoundVoided", "RoundStarted"]
    assert evs[0].args == {"round": 0, "proposer": p0, "start_block": start}
    assert evs[1].args == {"round": 0, "proposer": p0, "digest": d, "uri": URI + "w"}
    assert evs[2].args == {"round": 0, "voter": v[0], "approve": True, "score_ppm": 750_000}
    assert evs[3].args == {"round": 0, "voter": v[1], "approve": False, "score_ppm": -12}
    assert evs[4].args == {"round": 0, "proposer": p0, "accepted": True, "digest": d,
                           "approvals": 1, "votes": 2}
    assert evs[5].args["round"] == 1 and evs[5].args["proposer"] == p1
    assert evs[5].block == evs[4].block  # next round starts in the finalize transaction
    assert evs[6].args == {"round": 1, "proposer": p1}
    assert [(e.block, e.log_index) for e in evs] == sorted((e.block, e.log_index) for e in evs)
    # Resuming from a block returns only what happened since.
    assert [e.name for e in c.events(from_block=evs[6].block)] == ["RoundVoided", "RoundStarted"]


# -- deployment checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "kw", "reason"),
    [
        ([0], {}, "need at least 2 members"),
        ([0, 1, 0], {}, "duplicate member"),
        ([0, None], {}, "zero address member"),
        ([0, 1], {"threshold_bps": 10001}, "threshold above 10000 bps"),
        ([0, 1], {"proposal_window": 0}, "proposal window must be > 0"),
        ([0, 1], {"vote_window": 0}, "vote window must be > 0"),
        ([0, 1], {"initial_digest": bytes(32)}, "empty initial digest"),
    ],
)
def test_constructor_rejects_bad_parameters(chain, members, kw, reason):
    addrs = ["0x" + "00" * 20 if i is None else chain.accounts[i] for i in members]
    kw = {"seed": SEED, "initial_digest": INITIAL, "model_digest": MODEL, **kw}
    with reverts(reason):
        Coordinator.deploy(chain, addrs, **kw)


def test_settings_round_trip(chain):
    c = deploy(chain, n=3, threshold_bps=6000, proposal_window=7, vote_window=9)
    s = c.settings()
    assert s.members == tuple(chain.accounts[:3])
    assert (s.threshold_bps, s.required_approvals, s.proposal_window, s.vote_window) == (
        6000, 2, 7, 9)
    assert (s.seed, s.initial_digest, s.model_digest) == (SEED, INITIAL, MODEL)
    assert c.round() == 0 and c.accepted_digest() == INITIAL
    assert c.proposer(0) == expected_proposer(SEED, INITIAL, 0, list(s.members))
