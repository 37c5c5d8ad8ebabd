"""How votes become outcomes: the vote metric and margin each learner applies, and the share of the
other learners that must approve (vote.threshold).

The rules are checked on canned inputs: scores for the vote, and one round's contract events for the
outcome, replayed by the audit (``cohep.run.audit.replay``, the Python statement of the contract's
rule) with the outcome right and wrong. One real run then shows that its records and its chain log
follow both rules for the settings it was given.
"""
from collections import defaultdict
from fractions import Fraction

import pytest

from cohep.config import experiment as config
from cohep.frameworks.learner import Score
from cohep.ledger.draw import proposer_indices
from cohep.outputs import rundir
from cohep.protocol.vote import VoteRule, required_approvals, threshold_fraction
from cohep.run.audit import ContractRules, audit_run, replay
from cohep.run.local import run_experiment

SEED = bytes(range(32))
MEMBERS = [f"0x{i:040x}" for i in range(1, 6)]


def rules(learners: int, threshold: Fraction) -> ContractRules:
    return ContractRules(MEMBERS[:learners], threshold, max_missed=3, seed=SEED, initial_digest="00" * 32)


def one_round(learners: int, approvals: int, accepted: bool) -> list[dict]:
    """Round 0's events as the contract logs them: the drawn proposer proposes, the first
    ``approvals`` of the other members approve and the rest reject, the round closes ``accepted``."""
    proposer = proposer_indices(SEED, learners, 0, [True] * learners)[0]
    voters = [i for i in range(learners) if i != proposer]
    return [
        {"name": "RoundStarted", "args": {"round": 0, "proposer": MEMBERS[proposer]}},
        {"name": "Proposed", "args": {"round": 0, "proposer": MEMBERS[proposer], "digest": "ab" * 32, "uri": "file:///b"}},
        *({"name": "Voted", "args": {"round": 0, "voter": MEMBERS[v], "approve": k < approvals}}
          for k, v in enumerate(voters)),
        {"name": "Finalized", "args": {"round": 0, "accepted": accepted}},
    ]


def test_the_loss_vote_approves_only_beyond_the_margin():
    rule = VoteRule("loss", margin=0.05)
    assert rule.approve(Score(0.1, 0.90), Score(0.1, 1.0))  # 0.10 lower: beyond the margin
    assert not rule.approve(Score(0.9, 0.97), Score(0.1, 1.0))  # 0.03 lower: within it (accuracy is not read)
    assert not rule.approve(Score(0.9, 1.20), Score(0.1, 1.0))  # worse
    assert rule.score(Score(0.9, 0.97)) == 0.97  # the loss is what the records and the chain carry


@pytest.mark.parametrize(("learners", "threshold", "approvals", "accepted"), [
    pytest.param(4, 1.0, 2, False, id="all-of-3-two-reject"),  # enough at 0.5
    pytest.param(4, 1.0, 3, True, id="all-of-3"),
    pytest.param(5, 0.25, 1, True, id="quarter-of-4-one"),  # 0.5 would need 2
    pytest.param(4, 2 / 3, 2, True, id="two-thirds-of-3-two"),  # basis points (6667) would need 3
    pytest.param(4, 0.0, 0, False, id="zero-none"),  # threshold 0 still needs one approval
    pytest.param(4, 0.0, 1, True, id="zero-one"),
])
def test_the_outcome_is_the_approvals_against_the_threshold(learners, threshold, approvals, accepted):
    frac = threshold_fraction(threshold)
    assert (approvals >= required_approvals(learners - 1, frac)) == accepted
    assert replay(one_round(learners, approvals, accepted), rules(learners, frac)).clean
    wrong = replay(one_round(learners, approvals, not accepted), rules(learners, frac))
    assert wrong.findings == [f"round 1: accepted {not accepted} on chain, {accepted} recomputed from the ballots"]


def test_a_run_votes_and_decides_by_its_vote_section(tmp_path, mnist_dir, one_torch_thread):
    """Loss with a margin, all 3 others must approve: every vote in the records follows the rule on the
    recorded losses, every outcome the count; the contract was deployed with the threshold and its log
    audits clean."""
    rule = VoteRule("loss", margin=0.05, threshold=1.0)
    cfg = config.load(None, {
        "experiment": {"learners": 4, "rounds": 3, "seed": 0, "protocol": "paper"},  # one proposer, 3 voters
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 100},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
        "vote": {"metric": rule.metric, "margin": rule.margin, "threshold": rule.threshold},
    })
    res = run_experiment(cfg, tmp_path / "run", figure=False)
    settings = rundir.read_manifest(res.out_dir)["contract_settings"]
    assert (settings["threshold_num"], settings["threshold_den"]) == (1, 1)
    need = required_approvals(3, threshold_fraction(rule.threshold))
    rounds = defaultdict(list)
    for r in res.records:
        rounds[r.round].append(r)
    assert sorted(rounds) == [0, 1, 2, 3]
    for rnd in (1, 2, 3):
        voters = [r for r in rounds[rnd] if not r.is_proposer]
        assert len(voters) == 3
        for r in voters:
            assert (r.vote == "approve") == rule.approve(Score(0.0, r.vote_score), Score(0.0, r.current_vote_score))
        approvals = sum(r.vote == "approve" for r in voters)
        assert {r.accepted for r in rounds[rnd]} == {approvals >= need}, (rnd, approvals)
    # the recorded scores are cross-entropy losses, not accuracies: about ln 10 = 2.30 untrained
    assert all(1.5 < r.current_vote_score < 3.5 for r in rounds[0])
    assert audit_run(res.out_dir).clean
