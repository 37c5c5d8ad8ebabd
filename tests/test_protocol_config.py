import pytest

from cohep import config
from cohep.errors import ConfigError
from cohep.learner import Score
from cohep.protocol import VoteRule, required_approvals, threshold_to_bps, to_ppm


def test_vote_rule_accuracy_and_margin():
    rule = VoteRule("accuracy")
    assert rule.approve(Score(0.8, 1.0), Score(0.7, 0.5))
    assert not rule.approve(Score(0.7, 0.1), Score(0.7, 0.5))  # ties do not beat
    assert not VoteRule("accuracy", margin=0.05).approve(Score(0.74, 0), Score(0.7, 0))
    assert VoteRule("accuracy", margin=0.05).approve(Score(0.76, 0), Score(0.7, 0))


def test_vote_rule_loss_is_lower_is_better():
    rule = VoteRule("loss")
    assert rule.approve(Score(0.1, 0.4), Score(0.9, 0.5))
    assert not rule.approve(Score(0.9, 0.6), Score(0.1, 0.5))


@pytest.mark.parametrize("n,bps,expected", [(2, 5000, 1), (3, 5000, 1), (5, 5000, 2), (5, 10000, 4), (5, 0, 0), (4, 5000, 2)])
def test_required_approvals(n, bps, expected):
    assert required_approvals(n, bps) == expected


def test_threshold_and_ppm():
    assert threshold_to_bps(0.5) == 5000
    with pytest.raises(ConfigError):
        threshold_to_bps(1.2)
    assert to_ppm(0.987654321) == 987654
    assert to_ppm(float("nan")) == to_ppm(1e9)


def test_config_load_and_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[experiment]\nlearners = 4\nrounds = 2\n[train]\nepochs = 0.5\n[model]\nname = "mnist_cnn"\n')
    cfg = config.load(p, {"experiment": {"seed": 3}})
    assert cfg.experiment.learners == 4 and cfg.experiment.seed == 3 and cfg.train.epochs == 0.5
    for bad, field in [
        ({"vote": {"threshold": -0.1}}, "vote.threshold"),
        ({"experiment": {"mode": "solo"}}, "experiment.mode"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"lr_schedule": "step"}}, "train.lr_schedule"),
        ({"train": {"lr_floor": 1.5}}, "train.lr_floor"),
        ({"data": {"nope": 1}}, "data.nope"),
        ({"chain": {"vote_window": 0}}, "chain.vote_window"),
        ({"experiment": {"learners": 12}, "chain": {"vote_window": 5}}, "chain.vote_window"),
    ]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            config.from_dict(bad)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[experiment\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(bad_toml)


def test_cosine_schedule_anneals_each_proposal_from_lr_to_its_floor():
    from cohep.frameworks.training import TrainConfig

    flat = TrainConfig(lr=1e-3)
    assert [flat.lr_at(k, 10) for k in range(10)] == [1e-3] * 10
    cos = TrainConfig(lr=1e-3, lr_schedule="cosine", lr_floor=0.1)
    rates = [cos.lr_at(k, 11) for k in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert rates[5] == pytest.approx(0.55e-3)  # half way: the mean of lr and floor
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert cos.lr_at(0, 1) == 1e-3  # a one-step proposal takes the full rate


def test_step_budget_rounds_partial_epochs_and_respects_the_cap():
    from cohep.frameworks.training import TrainConfig

    cfg = TrainConfig(batch_size=32)
    assert cfg.steps_for(2667, 2.0) == 2 * 84  # the last, partial batch counts
    assert cfg.steps_for(100, 0.5) == 2 and cfg.steps_for(1, 0.01) == 1
    assert TrainConfig(batch_size=32, max_steps=5).steps_for(2667, 2.0) == 5
