"""Sealed votes: commit, then reveal (the contract's ``sealed``, the default), in both vote modes."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from web3 import Web3

from cohep.core.errors import ChainError
from cohep.ledger import Chain, Coordinator
from cohep.ledger import ballots as B
from cohep.ledger.coordinator import START_GAS

SEED = hashlib.sha256(b"sealed seed").digest()
INITIAL = hashlib.sha256(b"initial").digest()
MODEL = hashlib.sha256(b"model").digest()
URI = "file:///store/w"


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain.embedded(8)


def deploy(chain: Chain, n: int = 4, **kw) -> Coordinator:
    kw = {"seed": SEED, "initial_digest": INITIAL, "model_digest": MODEL, "vote_window": 8, "reveal_window": 6, **kw}
    return Coordinator.deploy(chain, chain.accounts[:n], **kw)


def reverts(reason: str):
    return pytest.raises(ChainError, match=f": {reason}$")


def proposed(c: Coordinator) -> tuple[int, str, tuple[str, ...]]:
    r = c.round()
    st = c.round_state(r)
    c.propose(st.proposer, r, hashlib.sha256(f"w{r}".encode()).digest(), URI)
    return r, st.proposer, st.voters


def commit(c: Coordinator, voter: str, r: int, approve: bool, score: int = 0) -> bytes:
    salt = B.new_salt()
    c.commit_vote(voter, r, B.commitment(c.ballot_domain(), r, voter, int(approve), [score], salt))
    return salt


def mine_past(chain: Chain, block: int) -> None:
    chain.mine(max(0, block + 1 - chain.block_number()))


def test_a_sealed_round_commits_then_reveals_and_counts_like_vote(chain):
    c = deploy(chain)
    assert c.settings().sealed and c.settings().reveal_window == 6
    r, p, voters = proposed(c)
    with reverts("votes are sealed"):
        c.vote(voters[0], r, True, 0)
    with reverts("votes are sealed"):
        c.submit_ballots(p, r, [c.sign_ballot(voters[0], r, True, 0)])
    salts = {v: commit(c, v, r, i != 2, 1000 * i) for i, v in enumerate(voters)}
    st = c.round_state(r)
    assert (st.commits, st.votes) == (3, 0) and st.reveal_block == chain.block_number()  # every voter committed
    assert st.reveal_deadline == st.reveal_block + 6 and st.commit_deadline == st.vote_deadline
    assert not any(e.name == "Voted" for e in c.events())  # nothing readable yet: commitments only
    assert [e.args["voter"] for e in c.events() if e.name == "Committed"] == list(voters)
    with reverts("too early to finalize"):
        c.finalize(p, r)
    for i, v in enumerate(voters):
        c.reveal_vote(v, r, int(i != 2), [1000 * i], salts[v])
    voted = [e.args for e in c.events() if e.name == "Voted"]
    assert voted == [{"round": r, "voter": v, "approvals": int(i != 2), "scores_ppm": [1000 * i]}
                     for i, v in enumerate(voters)]  # the same event vote() emits: every reader keeps working
    out = c.finalize(p, r)  # every committer revealed: no waiting for the reveal window
    assert (out.accepted, out.votes, out.approvals) == (True, 3, 2)
    assert not any(c.member_stats(v).missed for v in voters)


def test_a_reveal_must_match_its_own_commitment(chain):
    """Wrong salt, changed vote, or a copied commitment: none is counted. A member who copies another's
    commitment cannot reveal it as its own (the voter is inside the hash), so it gets a missed vote."""
    c = deploy(chain, reveal_window=20)  # a refused reveal is skipped, not reverted: it mines a block
    r, p, (a, copier, other) = proposed(c)
    salt_a = commit(c, a, r, True, 5)
    mine = c.commitment(r, a)
    c.commit_vote(copier, r, mine)  # the copy of a's commitment
    with reverts("already committed"):
        c.commit_vote(copier, r, mine)
    with reverts("commitments still open"):  # other has not committed and the window is open
        c.reveal_vote(a, r, 1, [5], salt_a)
    salt_o = commit(c, other, r, False, 7)
    with pytest.raises(ChainError, match="does not match the commitment"):
        c.reveal_vote(a, r, 1, [5], B.new_salt())  # wrong salt
    with pytest.raises(ChainError, match="does not match the commitment"):
        c.reveal_vote(a, r, 0, [5], salt_a)  # another vote than committed
    with pytest.raises(ChainError, match="does not match the commitment"):
        c.reveal_vote(copier, r, 1, [5], salt_a)  # a's vote and salt, as the copier's own
    c.reveal_vote(a, r, 1, [5], salt_a)
    with pytest.raises(ChainError, match="already voted"):
        c.reveal_vote(a, r, 1, [5], salt_a)
    c.reveal_vote(other, r, 0, [7], salt_o)
    with reverts("too early to finalize"):  # the copier's reveal is still due
        c.finalize(p, r)
    mine_past(chain, c.round_state(r).reveal_deadline)
    with pytest.raises(ChainError, match="reveal window closed"):
        c.reveal_vote(copier, r, 1, [5], salt_a)
    out = c.finalize(p, r)
    assert out.votes == 2
    s = c.member_stats(copier)
    assert (s.missed, s.missed_reveals, s.votes_cast) == (1, 1, 0)  # committed, never revealed: a missed vote


def test_windows_of_the_commit_and_reveal_phases(chain):
    c = deploy(chain)
    r, p, (a, b, silent) = proposed(c)
    with reverts("votes are not sealed"):
        deploy(chain, sealed=False).commit_vote(a, 0, bytes(32))
    with reverts("empty commitment"):
        c.commit_vote(a, r, bytes(32))
    with reverts("proposer cannot vote"):
        c.commit_vote(p, r, b"\x01" * 32)
    sa, sb = commit(c, a, r, True), commit(c, b, r, True)
    with reverts("commitments still open"):  # silent has not committed: the reveal phase waits for the window
        c.reveal_vote(a, r, 1, [0], sa)
    mine_past(chain, c.round_state(r).vote_deadline)
    with reverts("vote window closed"):
        commit(c, silent, r, True)
    st = c.round_state(r)
    assert st.reveal_block == st.vote_deadline and st.commits == 2
    c.reveal_vote(a, r, 1, [0], sa)
    c.reveal_vote(b, r, 1, [0], sb)
    out = c.finalize(p, r)  # both committers revealed: finalize at once
    assert out.accepted and out.votes == 2
    s = c.member_stats(silent)
    assert (s.missed, s.missed_votes, s.missed_reveals) == (1, 1, 0)


def test_suspension_says_which_duty_was_missed(chain):
    """max_missed = 1: a voter who commits and does not reveal is suspended with that reason; one who
    does not commit, for a missed vote; a silent proposer, for a missed proposal."""
    c = deploy(chain, n=4, max_missed=1, proposal_window=2)
    r, p, (a, b, d) = proposed(c)
    commit(c, a, r, True)
    sb = commit(c, b, r, True)
    mine_past(chain, c.round_state(r).vote_deadline)
    c.reveal_vote(b, r, 1, [0], sb)
    mine_past(chain, c.round_state(r).reveal_deadline)
    c.finalize(p, r)
    reasons = {e.args["member"]: e.args["reason"] for e in c.events() if e.name == "Suspended"}
    assert reasons == {a: "committed but did not reveal", d: "missed vote"}
    r += 1
    st = c.round_state(r)
    mine_past(chain, st.proposal_deadline)
    c.finalize(b, r)
    last = [e.args for e in c.events() if e.name == "Suspended"][-1]
    assert (last["member"], last["reason"], last["round"]) == (st.proposer, "missed proposal", r)
    assert c.member_stats(st.proposer).missed_proposals == 1


def test_signed_commitments_and_reveals_in_batches_skip_a_bad_entry(chain):
    c = deploy(chain, n=5)
    r, p, voters = proposed(c)
    d = c.ballot_domain()
    keys = chain._keys
    salts = {v: B.new_salt() for v in voters}
    commits = [c.sign_commit(v, r, B.commitment(d, r, v, 1, [i], salts[v])) for i, v in enumerate(voters)]
    outsider = B.sign_commit("0x" + "77" * 32, d, r, b"\x05" * 32)
    bad = [
        (outsider, "not a member's signature"),
        (B.sign_commit(keys[voters[0]], d, r + 1, b"\x05" * 32), "wrong round"),
        (B.sign_commit(keys[p], d, r, b"\x05" * 32), "proposer cannot vote"),
        (replace(commits[1], commitment=b"\x06" * 32), "not a member's signature"),  # recovers to someone else
    ]
    batch = c.submit_commits(p, r, [x for x, _ in bad] + commits[:3] + commits[:1])
    assert [(i, why) for i, _, why in batch.skipped] == [(i, why) for i, (_, why) in enumerate(bad)] + \
        [(7, "already committed")]
    assert batch.counted == voters[:3]
    c.submit_commits(voters[0], r, commits[3:])  # anyone relays the rest
    assert c.round_state(r).reveal_block is not None
    reveals = [B.Reveal(v, r, 1, (i,), salts[v]) for i, v in enumerate(voters)]
    bad_reveals = [
        (replace(reveals[0], salt=B.new_salt()), "does not match the commitment"),
        (replace(reveals[1], voter=p), "no commitment"),
        (replace(reveals[2], voter=reveals[3].voter), "does not match the commitment"),  # another's as its own
    ]
    batch = c.submit_reveals(p, r, [x for x, _ in bad_reveals] + reveals)
    assert [(i, why) for i, _, why in batch.skipped] == [(i, why) for i, (_, why) in enumerate(bad_reveals)]
    assert batch.counted == voters
    out = c.finalize(p, r)
    assert out.accepted and out.votes == 4


def test_signed_commitments_match_eth_account_and_a_node_signs_them():
    """The commit digest is EIP-712's (eth_account's encoder), and a node holding the key unlocked signs
    the same Commit the contract recovers (Anvil, eth_signTypedData_v4)."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from cohep.ledger.anvil import Anvil

    d = B.Domain(31337, "0x" + "22" * 20)
    key = "0x" + "11" * 32
    sc = B.sign_commit(key, d, 3, b"\x09" * 32)
    signed = Account.sign_message(encode_typed_data(full_message=B.commit_typed_data(d, 3, b"\x09" * 32)), key)
    assert (sc.r, sc.s, sc.v) == (signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"), signed.v)
    assert sc.signer(d) == Account.from_key(key).address
    with Anvil(accounts=4) as anvil:
        chain = Chain.connect(anvil.url, 4)
        c = deploy(chain, n=4)  # start() on a node: a fixed gas limit, no estimate at the deployment's block
        assert c.round_state(0).start_block == c.settings().deployed_block + 1
        r, p, voters = proposed(c)
        salts = {v: B.new_salt() for v in voters}
        commits = [c.sign_commit(v, r, B.commitment(c.ballot_domain(), r, v, 1, [0], salts[v])) for v in voters]
        assert [x.signer(c.ballot_domain()) for x in commits] == list(voters)
        assert c.submit_commits(p, r, commits).counted == voters
        assert c.submit_reveals(p, r, [B.Reveal(v, r, 1, (0,), salts[v]) for v in voters]).counted == voters
        assert c.finalize(p, r).accepted


def test_commitment_and_reveal_files_round_trip_and_refuse_junk():
    d = B.Domain(1, "0x" + "22" * 20)
    sc = B.sign_commit("0x" + "11" * 32, d, 2, b"\x01" * 32)
    assert B.commit_from_json(sc.to_json()) == sc
    rv = B.Reveal(Web3.to_checksum_address("0x" + "33" * 20), 2, 1, (5, -6), b"\x02" * 32)
    assert B.reveal_from_json(rv.to_json()) == rv
    from cohep.core.errors import IntegrityError

    for junk in ("[]", "{}", '{"voter": "0x' + "33" * 20 + '", "round": 2, "approvals": 1, "scores_ppm": [], "salt": "0x12"}'):
        with pytest.raises(IntegrityError):
            B.reveal_from_json(junk)


def test_start_of_64_members_and_slots_fits_its_gas_limit():
    chain = Chain.embedded(64)
    c = Coordinator.deploy(chain, chain.accounts, seed=SEED, initial_digest=INITIAL, model_digest=MODEL,
                           proposers=64, start=False)
    gas0 = c.gas_used
    c.start(chain.accounts[0])
    assert c.gas_used - gas0 < START_GAS * 2 // 3, c.gas_used - gas0
    assert len(c.proposers_of(0)) == 64


def test_the_codec_reads_committed_and_started_as_web3_does(chain):
    from cohep.ledger.events import plain

    c = deploy(chain)
    r, p, voters = proposed(c)
    commit(c, voters[0], r, True)
    logs = chain.w3.eth.get_logs({"address": c.address, "fromBlock": c.settings().deployed_block, "toBlock": "latest"})
    logs = sorted(logs, key=lambda log: (log["blockNumber"], log["logIndex"]))
    events = c.events()
    assert {"Started", "Committed"} <= {e.name for e in events}
    for log, ev in zip(logs, events):
        web3s = c._c.events[ev.name]().process_log(log)
        assert list({k: plain(v) for k, v in web3s["args"].items()}.items()) == list(ev.args.items()), ev.name


def test_a_nodes_pending_votes_survive_a_restart(tmp_path):
    """The node's hook: what it committed to and the salt are on disk (atomically) before the commitment
    leaves, and a restarted node reads them back; a damaged file is one line naming it."""
    from types import SimpleNamespace

    from cohep.core.errors import DataError
    from cohep.protocol.duty import PendingVote
    from cohep.run.node import keep_pending_votes

    path = tmp_path / "pending_votes.json"
    before = SimpleNamespace(pending={}, save_pending=None)
    keep_pending_votes(before, path)
    vote = PendingVote(0b101, (7, 0, -3), B.new_salt())
    before.save_pending({4: vote})
    after = SimpleNamespace(pending={}, save_pending=None)
    keep_pending_votes(after, path)
    assert after.pending == {4: vote}
    path.write_text('{"4": {"approvals": 1}}')
    with pytest.raises(DataError, match="pending_votes.json: not a pending-votes file"):
        keep_pending_votes(SimpleNamespace(pending={}, save_pending=None), path)
