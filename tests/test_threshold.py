"""The approval threshold is an exact fraction: required = max(1, ceil(num x eligible / den)).

v1 rounded the threshold to basis points, so 2/3 became 6667/10000 and 4 members needed 3 of 3
approvals instead of 2 (7 members: 5 of 6 instead of 4), and threshold 0 accepted a proposal
nobody voted for.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

import pytest

from cohep.core.errors import ChainError
from cohep.ledger import Chain, Coordinator
from cohep.protocol.vote import VoteRule, required_approvals, threshold_fraction, to_ppm

SEED = hashlib.sha256(b"threshold seed").digest()
INITIAL = hashlib.sha256(b"initial").digest()
MODEL = hashlib.sha256(b"model").digest()

#: The shares a user writes in [vote] threshold, as floats.
SHARES = [0.0, 1 / 3, 0.5, 2 / 3, 0.75, 1.0]


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain.embedded(64)


def deploy(chain: Chain, n: int, threshold: Fraction, **kw) -> Coordinator:
    kw = {"seed": SEED, "initial_digest": INITIAL, "model_digest": MODEL, "sealed": False, **kw}
    return Coordinator.deploy(chain, chain.accounts[:n], threshold=threshold, **kw)


# -- protocol helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "fraction"),
    [(2 / 3, Fraction(2, 3)), (0.6666666666666666, Fraction(2, 3)), (1 / 3, Fraction(1, 3)),
     (0.5, Fraction(1, 2)), (0.75, Fraction(3, 4)), (0.25, Fraction(1, 4)), (0.6, Fraction(3, 5)),
     (0.1, Fraction(1, 10)), (0.0, Fraction(0)), (1.0, Fraction(1)), (0.6667, Fraction(6667, 10000))],
)
def test_threshold_fraction_recovers_the_written_share(share, fraction):
    assert threshold_fraction(share) == fraction
    assert threshold_fraction(share).denominator <= 10_000


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), float("inf")])
def test_threshold_fraction_rejects_shares_outside_0_1(bad):
    with pytest.raises(ValueError, match="threshold"):
        threshold_fraction(bad)


@pytest.mark.parametrize(("voters", "share", "expected"), [
    (3, 2 / 3, 2), (6, 2 / 3, 4), (63, 2 / 3, 42),  # 4 and 7 members: 2 of 3, 4 of 6 (basis points: 3, 5)
    (1, 0.5, 1), (2, 0.5, 1), (4, 0.5, 2), (5, 0.5, 3), (3, 0.75, 3), (63, 1 / 3, 21), (4, 1.0, 4),
    (4, 0.0, 1),  # threshold 0 still needs one approval
    (0, 0.5, 1),  # nobody can vote: never accepted
])
def test_required_approvals_is_exact_and_at_least_one(voters, share, expected):
    assert required_approvals(voters, threshold_fraction(share)) == expected


def test_required_approvals_refuses_a_negative_count():
    with pytest.raises(ValueError, match="eligible_voters"):
        required_approvals(-1, Fraction(1, 2))


def test_to_ppm_stays_within_the_contract_bound():
    assert to_ppm(1e300) == 10**15 and to_ppm(-1e300) == -(10**15)
    assert to_ppm(float("nan")) == 10**15
    assert to_ppm(0.5) == 500_000


def test_vote_rule_threshold_maps_to_the_deployed_fraction():
    assert threshold_fraction(VoteRule(threshold=2 / 3).threshold) == Fraction(2, 3)


# -- the contract's arithmetic, for every group size -----------------------------------------


@pytest.mark.parametrize("share", SHARES, ids=lambda s: f"t{s:.3f}")
def test_contract_requires_exactly_the_ceiling_for_every_group_size(chain, share):
    """For n = 2..256 members (n - 1 voters) the contract's required_for is required_approvals'."""
    frac = threshold_fraction(share)
    c = deploy(chain, 2, frac)
    assert (c.settings().threshold_num, c.settings().threshold_den) == (frac.numerator, frac.denominator)
    for n in [*range(2, 65), 128, 200, 256]:
        assert c.required_for(n - 1) == required_approvals(n - 1, frac), (share, n)
    assert c.required_for(0) == 1
    with pytest.raises(ChainError, match="eligible out of range"):
        c.required_for(256)


def test_large_denominators_are_exact(chain):
    frac = Fraction(999_999, 10**6)
    c = deploy(chain, 2, frac)
    assert [c.required_for(e) for e in (1, 2, 63)] == [1, 2, 63]
    c = deploy(chain, 2, Fraction(1, 10**6))
    assert [c.required_for(e) for e in (1, 63)] == [1, 1]


# -- real rounds flip exactly at the required count ------------------------------------------


def _round(c: Coordinator, r: int, approvals: int) -> tuple[bool, int]:
    """Play round r with `approvals` approvals and the other voters rejecting."""
    st = c.round_state(r)
    before = {v: c.member_stats(v).votes_with_majority for v in st.voters}
    c.propose(st.proposer, r, hashlib.sha256(f"{c.address}{r}".encode()).digest(), "u")
    for i, v in enumerate(st.voters):
        c.vote(v, r, i < approvals, 0)
    out = c.finalize(st.proposer, r)  # every voter voted: no waiting for the window
    assert (out.votes, out.approvals, out.required) == (len(st.voters), approvals, st.required)
    if len(st.voters) <= 7:  # voters agreeing with the outcome are credited (skipped for 63)
        for i, v in enumerate(st.voters):
            agreed = (i < approvals) == out.accepted
            assert c.member_stats(v).votes_with_majority == before[v] + agreed
    return out.accepted, st.required


#: (members, share) of real rounds: one voter, threshold 0 (one approval, where v1 accepted none),
#: the issue's 2/3 of 3 and of 6 voters (2 and 4), all of them, and shares between; the count itself
#: is checked against the contract for every group size and share above
FLIPS = [(2, 0.0), (2, 1.0), (3, 0.0), (3, 0.5), (4, 2 / 3), (4, 1.0), (7, 2 / 3), (7, 1 / 3), (7, 0.75)]


@pytest.mark.parametrize(("n", "share"), FLIPS, ids=[f"n{n}-t{s:.3f}" for n, s in FLIPS])
def test_outcome_flips_at_the_required_count(chain, n, share):
    """One approval short is rejected, the required count accepted, and the voters who sided with
    the outcome are credited."""
    frac = threshold_fraction(share)
    c = deploy(chain, n, frac)
    need = required_approvals(n - 1, frac)
    assert (c.round_state(0).eligible, c.round_state(0).required) == (n - 1, need)
    assert _round(c, 0, need - 1) == (False, need)
    assert c.accepted_digest() == INITIAL and c.accepted_round() is None
    assert _round(c, 1, need) == (True, need)
    assert c.accepted_round() == 1


@pytest.mark.slow
def test_64_members_two_thirds(chain):
    c = deploy(chain, 64, threshold_fraction(2 / 3), vote_window=100)
    assert (c.round_state(0).eligible, c.round_state(0).required) == (63, 42)
    assert _round(c, 0, 41) == (False, 42)
    assert _round(c, 1, 42) == (True, 42)
