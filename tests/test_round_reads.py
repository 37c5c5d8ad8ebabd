"""Issue 29: the client reads a round's ``round_info`` once where the chain cannot have changed it
(it knows what it sent). Every state it derives or keeps must equal a fresh client's read of the chain."""
from __future__ import annotations

import hashlib
from fractions import Fraction

import pytest

from cohep.ledger import Chain, Coordinator
from cohep.ledger import ballots as B


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Counting(Coordinator):
    """A real client that counts its round_info and aggregate calls."""

    calls = 0
    aggregate_calls = 0

    def _call(self, name, *args):
        if name == "round_info":
            self.calls += 1
        if name == "aggregate":
            self.aggregate_calls += 1
        return super()._call(name, *args)



def agrees(c: Coordinator, r: int):
    """c's round state equals what a fresh client reads from the chain."""
    other = Coordinator.at(c.chain, c.address)
    fresh = other.round_state(r)
    assert c.round_state(r) == fresh
    if c.aggregated:  # and the posts it derived from its own (aggregate_info)
        assert c.aggregate_info(r) == other.aggregate_info(r)
    return fresh


def commits_and_reveals(c: Coordinator, r: int, voters):
    dom = c.ballot_domain()
    commits, reveals = [], []
    for i, v in enumerate(voters):
        salt = h(f"s{r}.{i}")
        commits.append(c.sign_commit(v, r, B.commitment(dom, r, v, 1, [900_000], salt)))
        reveals.append(B.Reveal(v, r, 1, (900_000,), salt))
    return commits, reveals


def test_an_aggregated_round_reads_round_info_once_and_every_state_matches_the_chain():
    chain = Chain.embedded(12)
    c = Coordinator.at(chain, Coordinator.deploy(chain, chain.accounts[:12], threshold=Fraction(1, 2), seed=h("a"),
                                                 initial_digest=h("i"), model_digest=h("m"), vote_window=50,
                                                 challenge_window=2).address)
    c.__class__ = Counting
    aggregate_before = 0
    for k in range(3):
        r = c.round()
        before = c.calls
        s = agrees(c, r)  # read in round 0; later derived from the finalize that started the round
        assert c.calls - before == (1 if k == 0 else 0)
        c.propose(s.proposer, r, h(f"w{r}"), f"file:///{r}")
        s = agrees(c, r)  # derived from the proposal this client sent
        assert s.proposed and s.vote_deadline == s.proposed_block + 50
        commits, reveals = commits_and_reveals(c, r, s.voters)
        c.post_commits(s.proposer, r, commits)
        agrees(c, r)  # the post leaves round_info alone
        c.pass_challenge_window()
        s = agrees(c, r)  # and its empty blocks too: the reveal phase opens from the post
        assert s.reveal_block is not None
        assert c.calls - before == (1 if k == 0 else 0)
        if k > 0:  # the round's posts until its reveals post: derived from this client's own transactions
            assert c.aggregate_calls == aggregate_before
        c.post_reveals(s.proposer, r, reveals)
        c.pass_challenge_window()
        agrees(c, r)  # the post settles the commitments: every voter committed in its block, derived
        assert c.calls - before == (1 if k == 0 else 0)
        assert c.finalize(s.proposer, r).votes == len(s.voters)
        agrees(c, r)  # the finalized round: derived from the Finalized event, and the next round's kept
        assert c.calls - before == (1 if k == 0 else 0), "a round of this client's own transactions is read once"
        calls = c.calls
        assert c.round_state(r) == agrees(c, r) and c.calls == calls  # a finalized round is never read again
        aggregate_before = c.aggregate_calls


def test_someone_elses_transaction_or_blocks_make_the_client_read_again():
    chain = Chain.embedded(5)
    c = Coordinator.at(chain, Coordinator.deploy(chain, chain.accounts[:5], threshold=Fraction(1, 2), seed=h("t"),
                                                 initial_digest=h("i"), model_digest=h("m"), vote_window=50).address)
    c.__class__ = Counting
    other = Coordinator.at(chain, c.address)
    r = c.round()
    s = c.round_state(r)
    other.propose(s.proposer, r, h("w"), "file:///w")  # another client's transaction
    assert agrees(c, r).proposed and c.calls == 2
    voter = s.voters[0]
    other.commit_vote(voter, r, h("c"))
    assert agrees(c, r).commits == 1 and c.calls == 3
    chain.mine(60)  # blocks this client did not mine: the vote window may have passed
    late = agrees(c, r)
    assert late.reveal_block == late.proposed_block + 50 and c.calls == 4


def test_a_sealed_round_past_its_vote_window_is_read_again():
    """The known state is kept over this client's own empty blocks only while the vote window has not
    passed (the reveal phase then opens by block, which no transaction shows)."""
    chain = Chain.embedded(5)
    c = Coordinator.at(chain, Coordinator.deploy(chain, chain.accounts[:5], threshold=Fraction(1, 2), seed=h("v"),
                                                 initial_digest=h("i"), model_digest=h("m"), vote_window=50,
                                                 challenge_window=20).address)
    c.__class__ = Counting
    r = c.round()
    s = c.round_state(r)
    c.propose(s.proposer, r, h("w"), "file:///w")
    s = agrees(c, r)
    commits, _ = commits_and_reveals(c, r, s.voters[:-1])  # one voter left out: the post does not open reveals
    c.post_commits(s.proposer, r, commits)
    calls = c.calls
    for _ in range(3):  # 60 empty blocks of this client's: past the 50-block vote window
        c.pass_challenge_window()
        agrees(c, r)
    assert c.calls > calls
    assert agrees(c, r).reveal_block == s.proposed_block + 50


@pytest.mark.parametrize("sealed", [True, False])
def test_a_one_slot_proposal_is_derived_exactly_in_both_vote_modes(sealed):
    chain = Chain.embedded(4)
    c = Coordinator.at(chain, Coordinator.deploy(chain, chain.accounts[:4], threshold=Fraction(1, 2), seed=h("p"),
                                                 initial_digest=h("i"), model_digest=h("m"), vote_window=50,
                                                 sealed=sealed).address)
    c.__class__ = Counting
    r = c.round()
    s = c.round_state(r)
    c.propose(s.proposer, r, h("w"), "file:///w")
    assert agrees(c, r).proposed and c.calls == 1



def test_the_round_finalize_starts_is_derived_less_the_suspended_and_a_rejoin_is_read():
    """finalize's receipt says who proposes next and whom it suspended: the next round's state is the
    chain's, with no read. A rejoin (another client's transaction) makes the client read again, and
    since who is active may have changed after the round began, that round's finalize is not derived."""
    chain = Chain.embedded(6)
    c = Coordinator.at(chain, Coordinator.deploy(chain, chain.accounts[:6], threshold=Fraction(1, 2), seed=h("s"),
                                                 initial_digest=h("i"), model_digest=h("m"), vote_window=50,
                                                 challenge_window=10, max_missed=1).address)
    c.__class__ = Counting
    r = c.round()
    s = agrees(c, r)
    c.propose(s.proposer, r, h("w"), "file:///w")
    s = agrees(c, r)
    lazy = s.voters[0]
    commits, reveals = commits_and_reveals(c, r, s.voters[1:])  # the lazy voter never votes
    c.post_commits(s.proposer, r, commits)
    for _ in range(6):  # this client's empty blocks, past the vote window: the reveal phase opens by block
        c.pass_challenge_window()
    assert agrees(c, r).reveal_block == s.proposed_block + 50
    c.post_reveals(s.proposer, r, reveals)
    c.pass_challenge_window()
    out = c.finalize(s.proposer, r)
    assert out.votes == len(s.voters) - 1
    calls = c.calls
    nxt = agrees(c, r + 1)
    assert c.calls == calls, "the next round was read, not derived"
    assert lazy not in nxt.voters and nxt.proposer != lazy and nxt.eligible == len(nxt.voters)
    assert c.member_stats(lazy).suspended  # missed its vote with max_missed 1: suspended in that finalize
    Coordinator.at(chain, c.address).rejoin(lazy)  # another client's transaction
    assert agrees(c, r + 1) == nxt and c.calls == calls + 1  # read again; the round's own voters stand
    c.propose(nxt.proposer, r + 1, h("w2"), "file:///w2")
    s2 = agrees(c, r + 1)
    commits, reveals = commits_and_reveals(c, r + 1, s2.voters)
    c.post_commits(s2.proposer, r + 1, commits)
    c.pass_challenge_window()
    agrees(c, r + 1)
    c.post_reveals(s2.proposer, r + 1, reveals)
    c.pass_challenge_window()
    c.finalize(s2.proposer, r + 1)
    calls = c.calls
    after = agrees(c, r + 2)  # the rejoin came after round r + 1 began: its finalize is not derived
    assert c.calls == calls + 1
    assert after.eligible == len(after.voters) and (lazy in after.voters or after.proposer == lazy)
