"""Named protocols (config/protocols.py): one word fills in a whole round shape, explicit values win."""
import tomllib

import pytest

from cohep.config import experiment as config
from cohep.config.protocols import PROTOCOLS
from cohep.core.errors import ConfigError


def test_every_named_protocol_builds_a_valid_config_for_two_to_many_members():
    for name in PROTOCOLS:
        for n in (2, 3, 5, 16):
            cfg = config.from_dict({"experiment": {"protocol": name, "learners": n}})
            assert cfg.experiment.protocol == name
            assert 1 <= cfg.round.proposers <= n


def test_guarded_is_the_full_participation_file_in_one_word():
    with open("experiments/guarded_full_participation.toml", "rb") as fh:
        raw = tomllib.load(fh)
    by_file = config.from_dict({k: v for k, v in raw.items()})
    by_name = config.from_dict({"experiment": {**raw["experiment"], "protocol": "guarded"},
                                "data": raw["data"]})
    assert by_name.round == by_file.round
    assert by_name.vote == by_file.vote


def test_an_explicit_setting_beats_the_protocols_own():
    cfg = config.from_dict({"experiment": {"protocol": "guarded", "learners": 5}, "round": {"proposers": 3},
                            "vote": {"margin": 0.01}})
    assert (cfg.round.proposers, cfg.vote.margin, cfg.vote.judge) == (3, 0.01, "screened_average")


def test_averaged_protocol_spends_one_client_epoch_a_round():
    cfg = config.from_dict({"experiment": {"protocol": "averaged", "learners": 5}})
    assert cfg.round.combine == "average"
    assert cfg.round.proposers * cfg.train.epochs == pytest.approx(1.0)


def test_unknown_protocol_is_one_line_naming_the_field():
    with pytest.raises(ConfigError, match=r"experiment.protocol must be one of paper, guarded, averaged"):
        config.from_dict({"experiment": {"protocol": "fedavg"}})


def test_run_start_line_names_the_protocol():
    from cohep.outputs.report import start_line

    cfg = config.from_dict({"experiment": {"protocol": "guarded", "learners": 4}})
    assert "protocol guarded" in start_line(cfg, model_auto=True)


def test_an_explicit_round_shape_keeps_the_guards_that_still_fit_it():
    one = config.from_dict({"experiment": {"protocol": "guarded", "learners": 5}, "round": {"proposers": 1}})
    assert (one.round.proposers, one.vote.judge, one.vote.norm_bound, one.vote.strikes) == (1, "alone", None, None)
    two = config.from_dict({"experiment": {"protocol": "guarded", "learners": 5}, "round": {"proposers": 2}})
    assert (two.vote.judge, two.vote.norm_bound) == ("screened_average", None)
    avg = config.from_dict({"experiment": {"protocol": "guarded", "learners": 5}, "round": {"combine": "average"}})
    assert (avg.vote.judge, avg.vote.peer_margin, avg.vote.norm_bound) == ("alone", None, 3.0)


def test_the_protocol_shapes_colearn_only_and_fits_explicit_floors_and_sizes():
    alone = config.from_dict({"experiment": {"protocol": "guarded", "learners": 5, "mode": "individual"}})
    assert alone.round.proposers == 1
    flat = config.from_dict({"experiment": {"protocol": "guarded", "learners": 5}, "vote": {"direction_floor": 0.0}})
    assert (flat.vote.direction_floor, flat.vote.strikes) == (0.0, None)
    with pytest.raises(ConfigError, match="experiment.learners must be at most 256"):
        config.from_dict({"experiment": {"protocol": "guarded", "learners": 257}})


def test_replace_with_another_member_count_reshapes_the_round_but_keeps_explicit_values():
    cfg = config.from_dict({"experiment": {"learners": 5}, "vote": {"margin": 0.01}})
    two = cfg.replace(experiment={"learners": 2})
    assert (two.round.proposers, two.vote.norm_bound, two.vote.margin) == (2, None, 0.01)
    assert cfg.replace(experiment={"learners": 4}, round={"proposers": 5 - 1}).round.proposers == 4
    paper = cfg.replace(experiment={"protocol": "paper"})
    assert (paper.round.proposers, paper.vote.judge, paper.vote.metric) == (1, "alone", "accuracy")


def test_replace_from_a_baseline_to_a_protocol_gives_the_whole_shape():
    """A one-member baseline copied into a four-member colearn run gets the protocol's whole round
    (screens, judge, metric, weighting), the same as a config built for it, explicit values kept."""
    base = {"model": {"name": "compact"}, "train": {"batch_size": 32, "lr": 2e-3}}
    alone = config.from_dict({"experiment": {"protocol": "paper", "learners": 1, "mode": "individual"}, **base})
    for name in ("paper", "guarded", "averaged"):
        shape = {"mode": "colearn", "learners": 4, "protocol": name}
        copied = alone.replace(experiment=shape)
        built = config.from_dict({"experiment": shape, **base})
        assert (copied.round, copied.vote, copied.train) == (built.round, built.vote, built.train), name
    guarded = alone.replace(experiment={"mode": "colearn", "learners": 4, "protocol": "guarded"})
    assert (guarded.vote.judge, guarded.vote.strikes, guarded.round.weighting) == ("screened_average", 3, "examples")
    kept = alone.replace(experiment={"mode": "colearn", "learners": 4, "protocol": "guarded"}, vote={"metric": "accuracy"})
    assert (kept.vote.metric, kept.vote.judge) == ("accuracy", "screened_average")
