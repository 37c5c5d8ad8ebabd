"""How votes become outcomes in real runs: the vote metric and margin each learner applies, and the
share of the other learners that must approve (vote.threshold), read back from the run's records.

Each case's seed was chosen so that the rule under test decides at least one vote or round; the
test asserts that such a decisive case occurs, so it cannot pass without exercising the rule.
"""
import math
from collections import defaultdict
from fractions import Fraction

import pytest

from cohep.config import experiment as config
from cohep.run.local import run_experiment


def cfg(mnist_dir, learners, rounds, seed, **vote):
    return config.load(None, {
        "experiment": {"learners": learners, "rounds": rounds, "seed": seed},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 100},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
        "vote": vote,
    })


def rounds_of(records):
    out = defaultdict(list)
    for r in records:
        if r.round > 0:
            out[r.round].append(r)
    return dict(sorted(out.items()))


def required_approvals(threshold: float, n_learners: int) -> int:
    """ceil(threshold x (n - 1)) computed exactly, for the threshold as written (2/3, not 0.6667)."""
    exact = Fraction(threshold).limit_denominator(10_000) * (n_learners - 1)
    return math.ceil(exact)


def test_required_approvals_helper_is_exact():
    assert required_approvals(2 / 3, 4) == 2  # basis points would give ceil(6667 * 3 / 10000) = 3
    assert required_approvals(1 / 3, 4) == 1
    assert required_approvals(0.1, 11) == 1
    assert required_approvals(0.25, 5) == 1 and required_approvals(0.26, 5) == 2
    assert required_approvals(1.0, 4) == 3 and required_approvals(0.0, 4) == 0


def test_loss_metric_with_margin(tmp_path, mnist_dir, one_torch_thread):
    """vote.metric = loss: approve iff the proposal's loss on my vote set is below mine minus the margin."""
    margin = 0.05
    res = run_experiment(cfg(mnist_dir, 3, 3, 0, metric="loss", margin=margin), tmp_path / "loss", figure=False)
    decided_by_margin = approved = 0
    for rnd, rows in rounds_of(res.records).items():
        voters = [r for r in rows if not r.is_proposer]
        assert len(voters) == 2
        for r in voters:
            assert (r.vote == "approve") == (r.vote_score < r.current_vote_score - margin), (rnd, r.learner)
            decided_by_margin += r.vote == "reject" and 0 < r.current_vote_score - r.vote_score <= margin
            approved += r.vote == "approve"
        assert rows[0].accepted == any(r.vote == "approve" for r in voters)  # 1 of 2 at threshold 0.5
    assert decided_by_margin >= 1, "a voter whose loss improved by less than the margin must reject"
    assert approved >= 1
    # the recorded scores are cross-entropy losses, not accuracies: positive, about ln 10 untrained
    scores = [r.vote_score for r in res.records if r.round > 0] + [r.current_vote_score for r in res.records]
    assert all(s > 0 for s in scores)
    first = [r.current_vote_score for r in res.records if r.round == 0]
    assert all(1.5 < s < 3.5 for s in first), first  # ln 10 = 2.30 for a 10-class guess
    assert max(r.vote_score for r in res.records if r.round == 1) > 1.0


@pytest.mark.parametrize(
    ("learners", "threshold", "seed", "decisive"),
    [
        # all 3 others must approve; a round with 2 approvals (enough at 0.5) is rejected
        pytest.param(4, 1.0, 3, 2, id="all-of-3"),
        # a quarter of 4 others = 1 approval suffices (0.5 would need 2)
        pytest.param(5, 0.25, 0, 1, id="quarter-of-4"),
        # two thirds of 3 others = exactly 2 approvals (basis points, 6667 x 3 / 10000, would need 3)
        pytest.param(4, 2 / 3, 1, 2, id="two-thirds-of-3"),
    ],
)
def test_threshold_decides_outcomes(tmp_path, mnist_dir, one_torch_thread, learners, threshold, seed, decisive):
    need = required_approvals(threshold, learners)
    res = run_experiment(cfg(mnist_dir, learners, 4, seed, threshold=threshold), tmp_path / "t", figure=False)
    seen = []
    for rnd, rows in rounds_of(res.records).items():
        voters = [r for r in rows if not r.is_proposer]
        assert len(voters) == learners - 1 and all(r.vote in ("approve", "reject") for r in voters)
        for r in voters:
            assert (r.vote == "approve") == (r.vote_score > r.current_vote_score), (rnd, r.learner)
        approvals = sum(r.vote == "approve" for r in voters)
        seen.append(approvals)
        assert rows[0].accepted == (approvals >= need), (
            f"round {rnd}: {approvals} of {learners - 1} approved, threshold {threshold} needs {need}, "
            f"but the round was {'accepted' if rows[0].accepted else 'rejected'}")
    assert decisive in seen, f"no round with {decisive} approvals (saw {seen}): the case tests nothing"
