"""Contract semantics: every rule is exercised on both sides, through the Python client,
on the embedded chain, using the committed artifact."""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction

import pytest

from cohep.core.errors import ChainError
from cohep.ledger import Chain, Coordinator, MemberStats
from cohep.ledger.artifact import load_artifact
from cohep.ledger.draw import proposer_index

SEED = hashlib.sha256(b"cohep test seed").digest()
INITIAL = hashlib.sha256(b"initial weights").digest()
MODEL = hashlib.sha256(b"model spec").digest()
URI = "file:///tmp/store/"


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain.embedded(8)


def deploy(chain: Chain, n: int = 5, **kw) -> Coordinator:
    kw.setdefault("seed", SEED)
    kw.setdefault("sealed", False)  # plain vote(); sealed votes: tests/test_sealed.py
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


def expected_proposer(c: Coordinator, r: int) -> str:
    """The Python draw (ledger/draw.py) with who is active now."""
    members = c.members()
    active = [not c.member_stats(m).suspended for m in members]
    return members[proposer_index(c.settings().draw_seed, len(members), r, active)]


def base(s: MemberStats) -> MemberStats:
    """The stats less the misses by kind (tests of the kinds look at them themselves)."""
    return dataclasses.replace(s, missed_proposals=0, missed_votes=0, missed_reveals=0)


def stats(proposed=0, accepted=0, cast=0, majority=0, missed=0, in_a_row=0, suspended=False):
    return MemberStats(proposed, accepted, cast, majority, missed, in_a_row, suspended)


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
    assert base(c.member_stats(p0)) == stats(missed=1, in_a_row=1)
    assert c.member_stats(p0).missed_proposals == 1
    # Round 1 starts fresh, with its own window, at the finalize block.
    st1 = c.round_state(1)
    assert st1.start_block == chain.block_number() and not st1.finalized
    assert c.proposer(1) == expected_proposer(c, 1)
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
    assert (out.accepted, out.void, out.approvals, out.votes, out.required) == (True, False, 2, 3, 2)
    assert base(c.member_stats(vs[3])) == stats(missed=1, in_a_row=1)  # did not vote: a missed duty
    assert (c.member_stats(vs[3]).missed_votes, c.member_stats(vs[3]).missed_proposals) == (1, 0)
    assert base(c.member_stats(vs[2])) == stats(cast=1)


def test_all_votes_in_allows_immediate_finalize(chain):
    c = deploy(chain, n=3, vote_window=1000)
    d = digest_of("w")
    c.propose(c.proposer(0), 0, d, URI)
    for v in voters(c, 0):
        c.vote(v, 0, False, -3)
    out = c.finalize(c.proposer(0), 0)
    assert (out.accepted, out.approvals, out.votes, out.digest) == (False, 0, 2, d)
    assert c.accepted_digest() == INITIAL and c.round() == 1


# -- counters and events ---------------------------------------------------------------------


def test_counters_after_several_rounds(chain):
    c = deploy(chain, n=4, threshold=Fraction(1, 2), proposal_window=2)  # 2 of 3 approvals needed
    members = c.members()
    # proposed, accepted, cast, majority, missed, missed in a row, suspended
    expect = {m: [0, 0, 0, 0, 0, 0, False] for m in members}
    plans = ["accept", "reject", "void", "accept"]
    for r, plan in enumerate(plans):
        p = c.proposer(r)
        vs = [m for m in members if m != p]
        if plan == "void":
            chain.mine(3)
            assert c.finalize(vs[0], r).void
            expect[p][4] += 1
            expect[p][5] += 1
            continue
        c.propose(p, r, digest_of(f"r{r}"), URI)
        expect[p][0] += 1
        expect[p][5] = 0
        ballots = [True, True, False] if plan == "accept" else [True, False, False]
        for v, b in zip(vs, ballots):
            c.vote(v, r, b, 0)
            expect[v][2] += 1
            expect[v][5] = 0
        out = c.finalize(p, r)
        assert out.accepted == (plan == "accept")
        if out.accepted:
            expect[p][1] += 1
        for v, b in zip(vs, ballots):
            expect[v][3] += int(b == out.accepted)
    assert c.round() == len(plans)
    for m in members:
        assert base(c.member_stats(m)) == MemberStats(*expect[m]), m
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
    started, *evs = c.events()
    assert (started.name, started.args["seed_block"]) == ("Started", c.settings().deployed_block)
    assert [e.name for e in evs] == [
        "RoundStarted", "Proposed", "Voted", "Voted", "Finalized",
        "RoundStarted", "RoundVoided", "RoundStarted"]
    assert evs[0].args == {"round": 0, "proposer": p0, "start_block": start, "eligible": 2,
                           "required": 1, "proposers": [p0]}
    assert evs[1].args == {"round": 0, "proposer": p0, "digest": d, "uri": URI + "w", "slot": 0}
    assert evs[2].args == {"round": 0, "voter": v[0], "approvals": 1, "scores_ppm": [750_000]}
    assert evs[3].args == {"round": 0, "voter": v[1], "approvals": 0, "scores_ppm": [-12]}
    assert evs[4].args == {"round": 0, "proposer": p0, "accepted": True, "digest": d,
                           "approvals": [1], "votes": 2, "required": 1, "proposed_slots": 1,
                           "accepted_slots": 1}
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
        ([0, 1], {"threshold": Fraction(10001, 10000)}, "threshold above 1"),
        ([0, 1], {"threshold": Fraction(1, 10**6 + 1)}, "threshold denominator out of range"),
        ([0, 1], {"proposal_window": 0}, "proposal window out of range"),
        ([0, 1], {"vote_window": 0}, "vote window out of range"),
        ([0, 1], {"proposal_window": 10**6 + 1}, "proposal window out of range"),
        ([0, 1], {"vote_window": 10**6 + 1}, "vote window out of range"),
        # 2**256 - 1 used to overflow start + window and brick every later call
        ([0, 1], {"proposal_window": 2**256 - 1}, "proposal window out of range"),
        ([0, 1], {"vote_window": 2**256 - 1}, "vote window out of range"),
        ([0, 1], {"max_missed": 0}, "max_missed must be >= 1"),
        ([0, 1], {"initial_digest": bytes(32)}, "empty initial digest"),
    ],
)
def test_constructor_rejects_bad_parameters(chain, members, kw, reason):
    addrs = ["0x" + "00" * 20 if i is None else chain.accounts[i] for i in members]
    kw = {"seed": SEED, "initial_digest": INITIAL, "model_digest": MODEL, **kw}
    with reverts(reason):
        Coordinator.deploy(chain, addrs, **kw)


def test_raw_constructor_rejects_zero_denominator(chain):
    """Fraction cannot carry a zero denominator; another client could send one."""
    art = load_artifact()
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    args = (chain.accounts[:2], 1, 0, 5, 5, 3, SEED, INITIAL, MODEL, 1, False, False, 5)
    with pytest.raises(Exception, match="threshold denominator out of range"):
        factory.constructor(*args).transact({"from": chain.accounts[0]})


def test_float_threshold_is_refused_by_the_client(chain):
    with pytest.raises(TypeError, match="threshold_fraction"):
        deploy(chain, threshold=2 / 3)


def test_settings_round_trip(chain):
    c = deploy(chain, n=3, threshold=Fraction(3, 5), proposal_window=7, vote_window=9,
               max_missed=4)
    s = c.settings()
    assert s.members == tuple(chain.accounts[:3])
    assert (s.threshold_num, s.threshold_den, s.threshold) == (3, 5, Fraction(3, 5))
    assert (s.proposal_window, s.vote_window, s.max_missed) == (7, 9, 4)
    assert (s.seed, s.initial_digest, s.model_digest) == (SEED, INITIAL, MODEL)
    assert s.deployed_block + 1 == c.round_state(0).start_block  # start() is the next transaction
    assert (s.sealed, s.reveal_window) == (False, 9)  # the reveal window defaults to the vote window
    assert c.round() == 0 and c.accepted_digest() == INITIAL and c.accepted_round() is None
    assert c.proposer(0) == expected_proposer(c, 0)
    st = c.round_state(0)
    assert (st.eligible, st.required) == (2, 2)  # ceil(3/5 x 2)
    assert st.voters == tuple(m for m in s.members if m != st.proposer)
    assert c._call("is_member", chain.accounts[0]) and not c._call("is_member", outsider(chain))


# -- scores ----------------------------------------------------------------------------------


def test_score_is_bounded(chain):
    """|score_ppm| <= 10**15, what to_ppm clamps to; anything wider is refused."""
    from cohep.protocol.vote import to_ppm

    c = deploy(chain, n=5)
    c.propose(c.proposer(0), 0, digest_of("w"), URI)
    vs = voters(c, 0)
    for bad in (10**15 + 1, -(10**15) - 1, 2**255 - 1, -(2**255)):
        with reverts("score out of range"):
            c.vote(vs[0], 0, True, bad)
    assert c.round_state(0).votes == 0
    c.vote(vs[0], 0, True, 10**15)
    c.vote(vs[1], 0, False, -(10**15))
    c.vote(vs[2], 0, True, to_ppm(float("inf")))
    c.vote(vs[3], 0, True, to_ppm(-1e300))
    assert [e.args["scores_ppm"] for e in c.events() if e.name == "Voted"] == [
        [10**15], [-(10**15)], [10**15], [-(10**15)]]


# -- suspension ------------------------------------------------------------------------------


def play(c: Coordinator, r: int, approve: bool = True, skip: tuple[str, ...] = ()) -> None:
    """Round r with a proposal and a vote from every expected voter not in skip."""
    p = c.proposer(r)
    c.propose(p, r, digest_of(f"r{r}-{c.address}"), URI)
    for v in c.round_state(r).voters:
        if v not in skip:
            c.vote(v, r, approve, 0)


def close(chain: Chain, c: Coordinator, r: int):
    """Finalize r, letting the vote window pass first when a vote is missing."""
    st = c.round_state(r)
    if st.proposed and st.votes < st.eligible:
        mine_until(chain, st.vote_deadline)
    elif not st.proposed:
        mine_until(chain, st.proposal_deadline)
    return c.finalize(outsider(chain), r)


def test_lost_key_is_suspended_and_no_longer_waited_for(chain):
    """A member that never acts (its key is lost) stalls nothing once it has missed K duties:
    it is suspended, skipped by the draw, and finalize stops waiting for its vote."""
    c = deploy(chain, n=5, vote_window=4, proposal_window=4, max_missed=3)
    members = c.members()
    lost = members[2]
    r = 0
    misses = 0
    last = ""
    while misses < 3:
        if c.proposer(r) == lost:  # its proposal never comes: the round voids
            out = close(chain, c, r)
            assert out.void
            last = "missed proposal"
        else:
            play(c, r, skip=(lost,))
            with reverts("too early to finalize"):
                c.finalize(outsider(chain), r)  # still waited for, until the window passes
            out = close(chain, c, r)
            assert out.accepted and out.votes == 3
            last = "missed vote"
        misses += 1
        r += 1
        assert c.member_stats(lost).missed_in_a_row == misses
        assert c.member_stats(lost).suspended == (misses == 3)
    sus = [e for e in c.events() if e.name == "Suspended"]
    assert [e.args for e in sus] == [{"member": lost, "round": r - 1, "reason": last}]  # the duty it missed last
    # From the next round on: not drawn, not a voter, and rounds close as soon as the others voted.
    for k in range(2 * len(members)):
        st = c.round_state(r)
        assert st.proposer != lost and lost not in st.voters
        assert (st.eligible, st.required) == (3, 2)
        assert c.proposer(r) == expected_proposer(c, r)
        assert not c.is_eligible(r, lost)
        if k == 0:
            c.propose(st.proposer, r, digest_of("k0"), URI)
            with reverts("suspended"):
                c.vote(lost, r, True, 0)
            for v in st.voters:
                c.vote(v, r, True, 0)
        else:
            play(c, r)
        out = c.finalize(outsider(chain), r)  # no waiting for the window
        assert out.accepted and (out.votes, out.required) == (3, 2)
        r += 1
    assert base(c.member_stats(lost)) == stats(missed=3, in_a_row=3, suspended=True)


def test_suspended_member_cannot_propose_and_rejoins_next_round(chain):
    c = deploy(chain, n=3, proposal_window=5, max_missed=1)
    members = c.members()
    p0 = c.proposer(0)
    assert close(chain, c, 0).void  # K = 1: one missed proposal suspends
    assert base(c.member_stats(p0)) == stats(missed=1, in_a_row=1, suspended=True)
    with reverts("not suspended"):
        c.rejoin(c.proposer(1))
    with reverts("not a member"):
        c.rejoin(outsider(chain))
    c.rejoin(p0)
    ev = c.events()[-1]
    assert (ev.name, ev.args) == ("Rejoined", {"member": p0, "round": 2})
    assert base(c.member_stats(p0)) == stats(missed=1, in_a_row=0, suspended=False)
    with reverts("not suspended"):
        c.rejoin(p0)
    # Still out of round 1 (it started without p0), back from round 2.
    st1 = c.round_state(1)
    assert p0 not in st1.voters and st1.eligible == 1
    c.propose(st1.proposer, 1, digest_of("r1"), URI)
    with reverts("suspended"):
        c.vote(p0, 1, True, 0)
    (v,) = st1.voters
    c.vote(v, 1, True, 0)
    assert c.finalize(v, 1).accepted
    st2 = c.round_state(2)
    assert st2.eligible == 2 and (p0 in st2.voters or st2.proposer == p0)
    assert st2.proposer == members[proposer_index(c.settings().draw_seed, 3, 2, [True] * 3)]


def test_duty_resets_the_count(chain):
    c = deploy(chain, n=3, vote_window=2, max_missed=2)
    members = c.members()
    # Find a member who votes in rounds 0 and 1 (not the proposer of either).
    m = next(x for x in members if x not in (c.proposer(0), c.draw(1)))
    play(c, 0, skip=(m,))
    close(chain, c, 0)
    assert base(c.member_stats(m)) == stats(missed=1, in_a_row=1)
    assert m in c.round_state(1).voters
    play(c, 1)
    close(chain, c, 1)
    assert base(c.member_stats(m)) == stats(cast=1, majority=1, missed=1, in_a_row=0)
    r = 2
    while m not in c.round_state(r).voters:
        play(c, r)
        close(chain, c, r)
        r += 1
    play(c, r, skip=(m,))
    close(chain, c, r)
    st = c.member_stats(m)
    assert (st.missed, st.missed_in_a_row, st.suspended) == (2, 1, False)


def test_everyone_suspended_rounds_void_until_a_rejoin(chain):
    c = deploy(chain, n=2, proposal_window=1, max_missed=1)
    a, b = c.proposer(0), c.draw(1)
    assert close(chain, c, 0).void
    assert c.proposer(1) == b != a  # the suspended member's slot passes to the active one
    assert close(chain, c, 1).void
    assert all(c.member_stats(m).suspended for m in (a, b))
    st = c.round_state(2)
    assert (st.eligible, st.required, st.voters) == (0, 1, ())
    with reverts("suspended"):
        c.propose(st.proposer, 2, digest_of("x"), URI)
    c.rejoin(b)  # during round 2: active from round 3
    with reverts("suspended"):
        c.propose(st.proposer, 2, digest_of("x"), URI)
    before = {m: c.member_stats(m) for m in (a, b)}
    assert close(chain, c, 2).void  # nobody had a duty: nobody is charged
    assert {m: c.member_stats(m) for m in (a, b)} == before
    assert c.proposer(3) == b and c.round_state(3).eligible == 0
    c.propose(b, 3, digest_of("alone"), URI)
    out = c.finalize(a, 3)  # no voter can approve: rejected at once, never accepted unheard
    assert (out.accepted, out.votes, out.required) == (False, 0, 1)
    assert c.accepted_digest() == INITIAL


def test_suspension_and_rejoin_events(chain):
    c = deploy(chain, n=3, proposal_window=1, max_missed=1)
    p0 = c.proposer(0)
    start = chain.block_number()
    close(chain, c, 0)
    c.rejoin(p0)
    names = [(e.name, e.args.get("member")) for e in c.events(from_block=start + 1)]
    assert names == [("RoundVoided", None), ("Suspended", p0), ("RoundStarted", None),
                     ("Rejoined", p0)]
