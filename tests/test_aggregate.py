"""Aggregated ballots (``[chain] ballots = "aggregate"``, the AggregateCoordinator): one post a phase,
challengeable. Real embedded chain and real Anvil; each fault a relayer can commit is posted for real,
challenged, and the relayer alone pays for it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from fractions import Fraction

import pytest

from cohep.config import experiment as config
from cohep.core.errors import ChainError, ConfigError
from cohep.ledger import Chain, Coordinator
from cohep.ledger import ballots as B
from cohep.ledger import bundles
from cohep.ledger.draw import proposer_index


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@pytest.fixture
def chain() -> Chain:
    return Chain.embedded(6)


def deploy(chain: Chain, n: int = 5, **kw) -> Coordinator:
    kw.setdefault("threshold", Fraction(1, 2))
    return Coordinator.deploy(chain, chain.accounts[:n], seed=h("agg"), initial_digest=h("init"),
                              model_digest=h("model"), challenge_window=kw.pop("challenge_window", 2), **kw)


def proposed(c: Coordinator, k: int = 0):
    r = c.round()
    p = c.round_state(r).proposer
    c.propose(p, r, h(f"w{r}"), f"file:///store/{r}.safetensors")
    return r, p, list(c.round_state(r).voters)


def sealed_votes(c: Coordinator, r: int, voters: list[str], approve=lambda i: i % 3 != 2):
    """Each voter's signed commitment and its reveal."""
    dom = c.ballot_domain()
    commits, reveals = {}, {}
    for i, v in enumerate(voters):
        salt, a, score = B.new_salt(), int(approve(i)), 900_000 + i
        commits[v] = c.sign_commit(v, r, B.commitment(dom, r, v, a, [score], salt))
        reveals[v] = B.Reveal(v, r, a, (score,), salt)
    return commits, reveals

def forged_bundle(c: Coordinator, relayer: str, r: int, voters: list[str], commits: dict) -> list:
    """A commit bundle whose first voter's commitment the relayer signed itself, of its own choosing."""
    forged = replace(c.sign_commit(relayer, r, h("forged")), voter=voters[0])
    return [forged] + [commits[v] for v in voters[1:]]


def stats(c: Coordinator, members):
    return {m: c.member_stats(m) for m in members}


def fault_events(c: Coordinator):
    return [(e.args["relayer"], e.args["phase"]) for e in c.events() if e.name == "RelayFault"]


def test_artifact_is_current_and_both_contracts_fit_eip_170():
    from cohep.ledger.artifact import compile_artifact, load_artifact

    assert compile_artifact("AggregateCoordinator") == load_artifact("AggregateCoordinator"), \
        "AggregateCoordinator.vy or Coordinator.vy changed: run `python -m cohep.ledger.artifact`"
    for name, immutables in (("Coordinator", 8), ("AggregateCoordinator", 9)):
        runtime = (len(load_artifact(name)["bytecode_runtime"]) - 2) // 2
        assert runtime + 32 * immutables <= 24_576, (name, runtime)


def test_an_honest_round_is_four_transactions_and_counts_every_vote(chain):
    c = deploy(chain)
    r, p, voters = proposed(c)
    commits, reveals = sealed_votes(c, r, voters)
    c.post_commits(p, r, list(commits.values()))
    # sealed: after the commitments post nothing of a vote is on chain, and no reveal is taken yet
    assert all(c.ballot_bits(r, v) is None for v in voters)
    assert not [e for e in c.events() if e.name == "Voted"]
    with pytest.raises(ChainError, match="commitments still open|challenge window open"):
        c.reveal_vote(voters[0], r, reveals[voters[0]].approvals, list(reveals[voters[0]].scores_ppm),
                      reveals[voters[0]].salt)
    # a voter the post names cannot commit again (it could otherwise change its vote later)
    with pytest.raises(ChainError, match="already committed"):
        c.commit_vote(voters[1], r, h("other"))
    assert c.round_state(r).reveal_block is None  # its challenge window is still open
    c.pass_challenge_window()
    assert c.round_state(r).reveal_block is not None
    c.post_reveals(p, r, list(reveals.values()))
    with pytest.raises(ChainError, match="too early to finalize"):
        c.finalize(p, r)
    c.pass_challenge_window()
    out = c.finalize(p, r)
    approvals = sum(rv.approvals for rv in reveals.values())
    assert (out.votes, out.approvals, out.accepted) == (len(voters), approvals, approvals >= out.required)
    assert c.transactions == 4
    s = stats(c, chain.accounts[:5])
    assert all(s[v].votes_cast == 1 and s[v].missed == 0 for v in voters)


def test_a_correct_post_cannot_be_challenged(chain):
    c = deploy(chain)
    r, p, voters = proposed(c)
    commits, reveals = sealed_votes(c, r, voters)
    c.post_commits(p, r, list(commits.values()))
    with pytest.raises(ChainError, match="no fault"):
        c.open_commits(voters[0], r, list(commits.values()))
    with pytest.raises(ChainError, match="not the posted bundle"):
        c.open_commits(voters[0], r, list(commits.values())[:-1])
    c.pass_challenge_window()
    c.post_reveals(p, r, list(reveals.values()))
    c.open_commits(voters[0], r, list(commits.values()))  # settled: stores the commitments
    with pytest.raises(ChainError, match="no fault"):
        c.challenge_reveals(voters[0], r, list(reveals.values()))
    assert c.relay_faults(p) == 0 and not fault_events(c)


def test_a_forged_commitment_is_challenged_and_only_the_relayer_pays(chain):
    members = chain.accounts[:5]
    c = deploy(chain)
    r, p, voters = proposed(c)
    commits, reveals = sealed_votes(c, r, voters)
    victim = voters[0]
    bundle = forged_bundle(c, p, r, voters, commits)  # the relayer's commitment in the victim's place
    assert bundles.check_commits(c.ballot_domain(), r, members, bundles.voters_mask(members, voters), bundle,
                                 voters, 0).fault
    c.post_commits(p, r, bundle)
    c.open_commits(victim, r, bundle)  # the challenge, within the window
    assert fault_events(c) == [(p, "commits")] and c.relay_faults(p) == 1
    assert c.member_stats(p).suspended  # from the next round on
    # the valid commitments stand; the victim commits directly, in time
    c.commit_vote(victim, r, commits[victim].commitment)
    assert c.round_state(r).reveal_block is not None
    for v in voters:
        rv = reveals[v]
        c.reveal_vote(v, r, rv.approvals, list(rv.scores_ppm), rv.salt)
    out = c.finalize(p, r)
    assert out.votes == len(voters)
    s = stats(c, members)
    assert all(s[m].missed == 0 and not s[m].suspended for m in members if m != p)


def test_an_omitted_commitment_is_made_directly_and_counts(chain):
    members = chain.accounts[:5]
    c = deploy(chain)
    r, p, voters = proposed(c)
    commits, reveals = sealed_votes(c, r, voters)
    censored = voters[-1]
    c.post_commits(p, r, [commits[v] for v in voters if v != censored])
    c.commit_vote(censored, r, commits[censored].commitment)  # the fallback: its own transaction
    c.pass_challenge_window()
    c.post_reveals(p, r, list(reveals.values()))  # its commitment is on chain: the bundle may carry its reveal
    c.pass_challenge_window()
    out = c.finalize(p, r)
    assert out.votes == len(voters)
    s = stats(c, members)
    assert s[censored].missed == 0 and s[censored].votes_cast == 1 and not fault_events(c)


def test_an_omitted_reveal_is_made_directly_and_counts(chain):
    members = chain.accounts[:5]
    c = deploy(chain)
    r, p, voters = proposed(c)
    commits, reveals = sealed_votes(c, r, voters, approve=lambda i: True)
    censored = voters[0]
    c.post_commits(p, r, list(commits.values()))
    c.pass_challenge_window()
    c.post_reveals(p, r, [reveals[v] for v in voters if v != censored])
    c.pass_challenge_window()
    with pytest.raises(ChainError, match="too early to finalize"):  # a committed vote is still out
        c.finalize(p, r)
    c.open_commits(censored, r, list(commits.values()))  # its commitment, from the post's bundle
    rv = reveals[censored]
    c.reveal_vote(censored, r, rv.approvals, list(rv.scores_ppm), rv.salt)
    out = c.finalize(p, r)
    assert (out.votes, out.approvals) == (len(voters), len(voters))
    assert stats(c, members)[censored].missed == 0 and not fault_events(c)


@pytest.mark.parametrize("fault", ["wrong tally", "double count"])
def test_a_wrong_reveals_post_is_challenged_reversed_and_only_the_relayer_pays(chain, fault):
    members = chain.accounts[:5]
    c = deploy(chain, max_missed=1)
    r, p, voters = proposed(c)
    commits, reveals = sealed_votes(c, r, voters, approve=lambda i: False)  # every voter rejects
    c.post_commits(p, r, list(commits.values()))
    c.pass_challenge_window()
    posted = list(reveals.values())
    if fault == "wrong tally":  # the relayer claims every voter approved
        voted = bundles.claim(members, [replace(rv, approvals=1) for rv in posted])
        c._transact("post_reveals", p, r, *voted, bundles.reveals_bundle(posted))
    else:  # one reveal twice in the bundle, the tally claimed over it
        posted = posted + posted[:1]
        c._transact("post_reveals", p, r, *bundles.claim(members, posted[:-1]), bundles.reveals_bundle(posted))
    with pytest.raises(ChainError, match="open the commitments first"):
        c.challenge_reveals(voters[1], r, posted)
    c.open_commits(voters[1], r, list(commits.values()))
    c.challenge_reveals(voters[1], r, posted)
    assert fault_events(c) == [(p, "reveals")]
    for v in voters:  # the discarded post's voters reveal directly
        rv = reveals[v]
        c.reveal_vote(v, r, rv.approvals, list(rv.scores_ppm), rv.salt)
    out = c.finalize(p, r)
    assert (out.votes, out.approvals, out.accepted) == (len(voters), 0, False)  # reversed: rejected
    s = stats(c, members)
    assert s[p].suspended and c.relay_faults(p) == 1
    assert all(s[m].missed == 0 and not s[m].suspended for m in members if m != p)
    from cohep.run.audit import ContractRules, replay

    audit = replay(c.events(), ContractRules.of(c.settings()))  # the discarded claim, the relayer's suspension
    assert not audit.findings and [why for _, _, why in audit.suspended] == ["faulty relay"]


def test_a_challenge_after_the_window_is_refused_and_the_post_stands(chain):
    c = deploy(chain)
    r, p, voters = proposed(c)
    commits, _ = sealed_votes(c, r, voters)
    bundle = forged_bundle(c, p, r, voters, commits)
    c.post_commits(p, r, bundle)
    c.pass_challenge_window()
    c.open_commits(voters[0], r, bundle)  # past the window: only stores the valid commitments
    assert not fault_events(c)


def test_aggregate_needs_one_verdict_a_round(chain, tmp_path):
    with pytest.raises(ChainError, match="one verdict a round"):
        deploy(chain, proposers=3)
    with pytest.raises(ConfigError, match="one verdict a round"):
        config.load(None, {"experiment": {"learners": 4}, "chain": {"ballots": "aggregate"}})  # guarded: k = 4, each
    cfg = config.load(None, {"experiment": {"learners": 4, "protocol": "paper"}, "chain": {"ballots": "aggregate"}})
    assert cfg.chain.ballots == "aggregate"


def test_a_round_on_anvil():
    from cohep.ledger.anvil import Anvil, dev_private_keys

    with Anvil(accounts=6) as anvil:
        chain = Chain.connect(anvil.url, 5, private_keys=dev_private_keys(6)[1:])
        c = deploy(chain)
        r, p, voters = proposed(c)
        commits, reveals = sealed_votes(c, r, voters)
        bundle = forged_bundle(c, p, r, voters, commits)
        c.post_commits(p, r, bundle)
        c.open_commits(voters[0], r, bundle)
        assert fault_events(c) == [(p, "commits")]
        c.commit_vote(voters[0], r, commits[voters[0]].commitment)
        for v in voters:
            rv = reveals[v]
            c.reveal_vote(v, r, rv.approvals, list(rv.scores_ppm), rv.salt)
        assert c.finalize(p, r).votes == len(voters)
        r, p, voters = proposed(c)
        commits, reveals = sealed_votes(c, r, voters)
        c.post_commits(p, r, list(commits.values()))
        c.pass_challenge_window()
        c.post_reveals(p, r, list(reveals.values()))
        c.pass_challenge_window()
        assert c.finalize(p, r).votes == len(voters)


def test_an_aggregate_run_decides_every_round_from_its_members_votes_in_four_transactions(tmp_path, mnist_dir,
                                                                                         one_torch_thread):
    """A full in-process run with ``ballots = "aggregate"``. Its records cannot equal the signed run's
    byte for byte: the draw seed mixes in the deployment block's hash, and the two contracts' code
    differs, so the proposers' order does. What must hold: every round counts every member's vote as
    the member recorded it, and decides by the threshold, in four transactions a round."""
    from cohep.protocol.records import read_csv
    from cohep.run.local import run_experiment

    cfg = config.load(None, {
        "experiment": {"learners": 3, "rounds": 3, "seed": 0, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 900, "holdout": 300},
        "model": {"name": "mnist_cnn"}, "train": {"epochs": 1.0, "batch_size": 32},
        "chain": {"ballots": "aggregate"}})
    run = run_experiment(cfg, tmp_path / "aggregate", figure=False)
    manifest = json.loads((tmp_path / "aggregate" / "manifest.json").read_text())
    assert manifest["traffic"]["transactions"] == 4 * len(run.timings) == 4 * 3
    rows = [r for r in read_csv(tmp_path / "aggregate" / "records.csv") if r.round >= 1]
    events = [json.loads(line) for line in (tmp_path / "aggregate" / "chain_events.jsonl").read_text().splitlines()]
    finalized = [e["args"] for e in events if e["name"] == "Finalized"]
    assert len(finalized) == 3 and [e["name"] for e in events].count("RevealsPosted") == 3
    for rnd, fin in zip((1, 2, 3), finalized):  # records count rounds from 1, the chain from 0
        votes = [r.vote for r in rows if r.round == rnd and not r.is_proposer]
        assert len(votes) == 2 == fin["votes"]
        assert fin["approvals"] == [votes.count("approve")]
        assert {r.accepted for r in rows if r.round == rnd} == {fin["accepted"]} == {fin["approvals"][0] >= fin["required"]}
    from cohep.run.audit import audit_run

    assert audit_run(tmp_path / "aggregate").clean  # the audit counts a standing claim as the contract does


# -- issue 29: constant work per round in the members, 256 members, duty-rule suspension on bitmaps --


def aggregate_round(c: Coordinator, leave_out=()) -> dict:
    """One honest aggregated round (the drawn proposer relays), leaving `leave_out` out of both posts;
    returns the gas of its posts and of finalize."""
    r, p, voters = proposed(c)
    voters = [v for v in voters if v not in leave_out]
    commits, reveals = sealed_votes(c, r, voters)
    gas = {"commits": c.post_commits(p, r, list(commits.values()))["gasUsed"]}
    c.pass_challenge_window()
    if leave_out:  # a voter did not commit: the reveals open once the vote window has passed
        c.chain.mine(c.settings().vote_window)
    gas["reveals"] = c.post_reveals(p, r, list(reveals.values()))["gasUsed"]
    c.pass_challenge_window()
    gas["finalize"] = c._transact("finalize", p, r)["gasUsed"]
    return gas


def test_256_members_finalize_and_gas_grows_by_the_bundles_calldata_only():
    """A round at 16 and at 256 members: finalize's gas is the same to within 10 k (no step loops over
    the voters; measured equal), and the whole round grows by the bundles alone (160 + 128 bytes a
    member of calldata at 16 gas a byte, ~4.6 k, plus copying and hashing them); measured 7.1 k gas
    a member, bound 8 k."""
    chain = Chain.embedded(256)
    rounds = {}
    for n in (16, 256):
        c = deploy(chain, n, vote_window=6, reveal_window=6)
        aggregate_round(c)  # warm: the counters' planes exist
        rounds[n] = aggregate_round(c)
        assert c.round_state(c.round() - 1).votes == n - 1
    per_member = (sum(rounds[256].values()) - sum(rounds[16].values())) / 240
    assert per_member < 8_000, (per_member, rounds)
    assert abs(rounds[256]["finalize"] - rounds[16]["finalize"]) < 10_000, rounds


def test_the_bitmap_counters_suspend_exactly_at_max_missed_in_a_row_and_a_rejoin_starts_over(chain):
    """max_missed 2: a miss, a vote, a miss leaves one in a row (two in total) and no suspension; the
    next miss suspends, with the duty it missed; the draw then never names the member; rejoin makes it
    active from the next round with its count back at 0."""
    members = chain.accounts[:5]
    c = deploy(chain, max_missed=2)
    seed = c.settings().draw_seed

    def draw(r: int) -> str:  # the contract's draw given who is active now (ledger/draw.py equals it)
        return members[proposer_index(seed, 5, r, [not c.member_stats(m).suspended for m in members])]

    late = draw(4)  # proposes once in rounds 0-4 (the draw is fair): in round 4, once it is suspended
    for r, missed in enumerate((True, False, True)):
        aggregate_round(c, leave_out=[late] if missed else [])
        s = c.member_stats(late)
        assert not s.suspended and s.missed_in_a_row == int(missed), (r, s)
    assert (s.missed_votes, s.votes_cast, s.missed) == (2, 1, 2)
    aggregate_round(c, leave_out=[late])
    s = c.member_stats(late)
    assert s.suspended and (s.missed_in_a_row, s.missed_votes) == (2, 3)
    assert [e.args["reason"] for e in c.events() if e.name == "Suspended"] == ["missed vote"]
    assert late not in c.round_state(4).voters
    others = [m for m in members if m != late]
    assert all(c.member_stats(m).missed == 0 and c.member_stats(m).votes_cast + c.member_stats(m).proposed == 4
               for m in others)
    # the draw skips the suspended member (in every round to come, and in the rounds the contract starts)
    assert late not in {draw(r) for r in range(4, 200)}
    for _ in range(3):
        assert c.round_state(c.round()).proposer != late
        aggregate_round(c)
    c._transact("rejoin", late)
    assert c.member_stats(late).missed_in_a_row == 0 and not c.member_stats(late).suspended
    aggregate_round(c)
    assert late in c.round_state(c.round()).voters or c.round_state(c.round()).proposer == late


def test_256_members_all_suspended_in_one_finalize_fits_the_gas_cap():
    """The worst case left in finalize: every voter misses (no post at all) with max_missed 1, so 255
    Suspended events in one transaction (measured 2.01 M gas); the next round goes to the one active
    member."""
    from cohep.ledger.coordinator import EMBEDDED_TX_GAS

    chain = Chain.embedded(256)
    c = deploy(chain, 256, max_missed=1, vote_window=6, reveal_window=6)
    r, p, voters = proposed(c)
    chain.mine(c.settings().vote_window + c.settings().reveal_window + 2)
    gas = c._transact("finalize", p, r)["gasUsed"]
    assert gas < EMBEDDED_TX_GAS // 2, gas
    assert [e.name for e in c.events()].count("Suspended") == 255
    assert all(c.member_stats(v).suspended for v in voters[::51]) and not c.member_stats(p).suspended
    assert c.round_state(r + 1).proposer == p


def test_the_bundles_are_written_as_eth_abi_encodes_them():
    """commits_bundle and reveals_bundle write the words themselves (eth_abi's checks were a tenth of a
    post's time at 63 voters): byte for byte what abi_encode gives, which is what the contract re-encodes."""
    import os

    from eth_abi import encode

    dom = B.Domain(31337, "0x" + "11" * 20)
    for n in (0, 1, 63):
        commits = [B.sign_commit(os.urandom(32), dom, 2**40 + k, os.urandom(32)) for k in range(n)]
        reveals = [B.Reveal("0x" + os.urandom(20).hex(), 7, k % 2, (900_000 - k,), os.urandom(32)) for k in range(n)]
        assert bundles.commits_bundle(commits) == encode([bundles.COMMITS_TYPE], [[c.as_tuple() for c in commits]])
        assert bundles.reveals_bundle(reveals) == encode([bundles.REVEALS_TYPE], [[bundles.hashed(rv) for rv in reveals]])
