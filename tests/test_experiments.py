"""The shipped experiment configs are valid and name registered models and the paper's settings."""
from pathlib import Path

import pytest

from cohep.config import experiment as config
from cohep import models

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))
FIG4 = [p for p in EXPERIMENTS if p.stem.startswith("fig4")]
FIG5 = [p for p in EXPERIMENTS if p.stem.startswith("fig5")]


def test_there_are_configs_for_each_paper_model():
    names = {p.stem for p in EXPERIMENTS}
    for m in ("compact", "resnet50v2", "densenet169"):
        assert f"fig4_{m}" in names and f"fig5_{m}" in names
    for m in ("resnet50v2", "densenet169"):
        assert f"fig4_{m}_cpu" in names and f"fig5_{m}_cpu" in names


@pytest.mark.parametrize("path", FIG4, ids=lambda p: p.stem)
def test_central_config_is_valid(path):
    """Figure 4: a registered model trained on the 12k-event file, 2,000 events validate (CPU: 50 of 200)."""
    cfg = config.load(path)
    assert cfg.model.name in models.available() and path.stem.split("_")[1] == cfg.model.name
    assert cfg.data.path == "data/events-12k.h5" and cfg.data.resolved_kind() == "events"
    assert cfg.central.out == f"runs/{path.stem}"
    if path.stem.endswith("_cpu"):
        assert cfg.train.device == "cpu" and cfg.data.limit == 200 and cfg.central.val_fraction == 50
    else:
        assert cfg.central.val_fraction == 2000 and cfg.data.limit is None


@pytest.mark.parametrize("path", FIG5, ids=lambda p: p.stem)
def test_collaborative_config_is_valid(path):
    """Figure 5: 3 learners, an IID split of events; full size is 15 rounds with 2,000 held out."""
    cfg = config.load(path)
    assert cfg.model.name in models.available() and path.stem.split("_")[1] == cfg.model.name
    assert cfg.experiment.mode == "colearn" and cfg.experiment.learners == 3
    assert cfg.data.split == "iid" and cfg.data.resolved_kind() == "events"
    if path.stem.endswith("_cpu"):  # the same protocol on fewer events
        assert cfg.data.limit is not None and cfg.data.limit < 12_000
    else:
        assert cfg.experiment.rounds == 15 and cfg.data.holdout == 2000 and cfg.data.limit is None


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "experiments").glob("quality_*_sim.toml")),
                         ids=lambda p: p.stem)
def test_degraded_simulations_are_valid(path):
    """Each degraded learner's simulation (a mis-configured detector, another flux) differs from the reference."""
    from cohep.lartpc import SimulationConfig, load_config

    cfg, ref = load_config(path), SimulationConfig()
    assert cfg.detector != ref.detector or cfg.flux != ref.flux


def test_the_guarded_full_participation_config_is_the_measured_shape():
    """experiments/guarded_full_participation.toml is the shape measured level with FedAvg-5 with no gross
    attack accepted (bench/variants.py's each5-ex-scr0.1h0.5k3-either-tol0.005)."""
    cfg = config.load(Path(__file__).resolve().parents[1] / "experiments" / "guarded_full_participation.toml")
    assert (cfg.experiment.learners, cfg.round.proposers, cfg.round.combine, cfg.round.weighting) == (5, 5, "each", "examples")
    v = cfg.vote
    assert (v.metric, v.margin, v.judge) == ("accuracy_or_loss", -0.005, "screened_average")
    assert (v.norm_bound, v.peer_margin, v.direction_floor, v.direction_share, v.strikes) == (3.0, 0.3, -0.1, 0.5, 3)
    assert cfg.train.epochs == 1.0 and cfg.data.split == "dirichlet"
