import inspect

import pytest

from cohep.config import experiment as config
from cohep.core.errors import ConfigError
from cohep.frameworks.learner import Score
from fractions import Fraction

from cohep.protocol.vote import VoteRule, threshold_fraction, to_ppm


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


def test_vote_rule_accuracy_or_loss_approves_when_either_improves_and_records_accuracy():
    rule = VoteRule("accuracy_or_loss")
    assert rule.approve(Score(0.80, 0.9), Score(0.79, 0.5))  # accuracy up, loss up: the late-round case
    assert rule.approve(Score(0.79, 0.4), Score(0.79, 0.5))  # accuracy tied, loss down
    assert not rule.approve(Score(0.79, 0.5), Score(0.79, 0.5))  # neither improves
    assert not rule.approve(Score(0.10, 9.0), Score(0.79, 0.5))  # a gross update worsens both
    assert not VoteRule("accuracy_or_loss", margin=0.05).approve(Score(0.82, 0.47), Score(0.79, 0.5))
    assert rule.score(Score(0.8, 0.3)) == 0.8  # what goes on chain: higher is better
    assert not rule.finite(Score(0.8, float("nan")))  # a NaN loss is a reject with a reason, not an approval
    assert VoteRule("accuracy").finite(Score(0.8, float("nan")))


def test_a_negative_margin_tolerates_a_small_regression_and_still_rejects_a_gross_one():
    tol = VoteRule("accuracy_or_loss", margin=-0.005)
    assert tol.approve(Score(0.979, 0.070), Score(0.982, 0.068))  # 0.3 points down, loss up 0.002: neutral
    assert tol.approve(Score(0.982, 0.068), Score(0.982, 0.068))  # a tie (the strict rule rejects it)
    assert not tol.approve(Score(0.970, 0.090), Score(0.982, 0.068))  # beyond the tolerance on both
    assert not tol.approve(Score(0.10, 9.0), Score(0.982, 0.068))  # gross
    assert VoteRule("loss", margin=-0.01).approve(Score(0, 0.509), Score(0, 0.5))
    assert not VoteRule("loss", margin=-0.01).approve(Score(0, 0.511), Score(0, 0.5))
    assert not VoteRule("accuracy", margin=-0.01).approve(Score(0.689, 0), Score(0.7, 0))
    with pytest.raises(ConfigError, match="margin"):
        config.from_dict({"vote": {"margin": -2}})


def test_threshold_and_ppm():
    assert threshold_fraction(0.5) == Fraction(1, 2) and threshold_fraction(2 / 3) == Fraction(2, 3)
    with pytest.raises(ConfigError, match=r"vote\.threshold"):
        VoteRule(threshold=1.2)  # validated where it is declared, once
    with pytest.raises(ConfigError, match=r"vote\.metric"):
        VoteRule("f1")
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
    bad_toml.write_text("[vote]\nthreshold = 7\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: vote\.threshold must be <= 1, got 7"):
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


def test_one_default_per_setting():
    """The experiment file, ``cohep train`` and the adapters agree on every default."""
    from cohep.frameworks.training import TrainConfig

    cfg = config.load(None)
    assert cfg.train == TrainConfig() and cfg.train.batch_size == 32
    assert cfg.model.name is None  # resolved from the data: compact for event images
    assert cfg.data.kind == "auto" and cfg.central.epochs == 10 and cfg.central.val_fraction == 0.2


@pytest.mark.parametrize("value, expected", [(0.2, 0.2), (0, 0), (2000, 2000), (2000.0, 2000), (0.999, 0.999)])
def test_a_share_is_a_fraction_or_a_count_parsed_in_one_place(value, expected):
    from cohep.core.settings import share_count

    cfg = config.from_dict({"data": {"holdout": value}, "central": {"val_fraction": value}})
    assert cfg.data.holdout == expected and type(cfg.data.holdout) is type(expected)
    assert cfg.central.val_fraction == expected
    assert share_count(value, 10_000, "x") == (round(value * 10_000) if value < 1 else int(value))


@pytest.mark.parametrize("value", [2.5, -1, "half", True, float("nan")])
def test_a_bad_share_names_the_field(value):
    with pytest.raises(ConfigError, match=r"data\.holdout"):
        config.from_dict({"data": {"holdout": value}})


def test_wrong_types_name_section_and_field():
    for raw, field in [
        ({"experiment": {"learners": "three"}}, "experiment.learners must be an integer"),
        ({"experiment": {"learners": 2.5}}, "experiment.learners must be an integer"),
        ({"train": {"mixed_precision": 1}}, "train.mixed_precision must be true or false"),
        ({"model": {"params": [1, 2]}}, "model.params must be a table"),
        ({"data": {"split": "by_source"}}, "data.split must be one of iid, dirichlet"),
        ({"central": {"epochs": 0}}, "central.epochs must be >= 1"),
        ({"store": {"url": 5}}, "store.url must be a string"),
        ({"nope": {}}, "unknown section [nope]"),
        ({"train": 3}, "[train] must be a table"),
    ]:
        with pytest.raises(ConfigError) as err:
            config.from_dict(raw)
        assert field in str(err.value) and "\n" not in str(err.value)


def test_a_config_round_trips_through_its_manifest_form():
    cfg = config.from_dict({"experiment": {"learners": 4, "seed": 9}, "data": {"holdout": 300, "path": "x.h5"},
                            "model": {"name": "compact", "params": {"joint": 32}}, "vote": {"threshold": 0.75}})
    import json

    again = config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.data.resolved_kind() == "events"
    assert cfg.replace(train={"lr": 0.1}).train.lr == 0.1 and cfg.replace(train={"lr": 0.1}).experiment.seed == 9


def test_cli_flags_map_to_settings_declaratively():
    """Every entry of every ``*_FLAGS`` table of cli.py names a real field under its command's
    sections, and a flag cli.py does not declare itself takes one plain value."""
    from cohep import cli
    from cohep.core.settings import describe

    commands = {id(info.cls.table): info for info in cli.app.registered_commands
                if issubclass(info.cls or object, cli._SettingsCommand)}
    tables = {name: table for name, table in vars(cli).items() if name.endswith("_FLAGS")}
    assert {"RUN_FLAGS", "TRAIN_FLAGS", "DEPLOY_FLAGS"} <= set(tables)
    for name, table in tables.items():
        info = commands[id(table)]  # each table belongs to a command
        declared = inspect.signature(info.callback).parameters
        for flag, target in table.items():
            doc = describe(info.cls.sections(), target)  # a KeyError names a path that is no field
            assert flag in declared or doc.kind in (int, float, str), (name, flag, target)
    with pytest.raises(KeyError):
        describe(config.ExperimentConfig, "vote.no_such_field")
    with pytest.raises(KeyError):
        describe(config.ExperimentConfig, "votes.threshold")


def test_simulation_and_demo_settings_use_the_same_loader():
    from cohep.run.demo import DemoSettings
    from cohep.lartpc import SimulationConfig

    with pytest.raises(ConfigError, match=r"^detector\.wires_per_pixel must be an integer"):
        SimulationConfig.from_dict({"detector": {"wires_per_pixel": "two"}})
    with pytest.raises(ConfigError, match=r"^image_dtype must be one of float16, float32"):
        SimulationConfig.from_dict({"image_dtype": "int8"})
    with pytest.raises(ConfigError, match=r"^flux\.mean_gev must be a number"):
        SimulationConfig.from_dict({"flux": {"mean_gev": "high"}})
    assert SimulationConfig.from_dict({"detector": {"noise_enc": [500, 500, 600]}}).detector.noise_enc == (500.0, 500.0, 600.0)
    with pytest.raises(ConfigError, match=r"demo\.events: need at least 30 events for 3 learners"):
        DemoSettings(events=20)
    with pytest.raises(ConfigError, match=r"demo\.learners must be >= 2"):
        DemoSettings(learners=1)
