"""The shipped experiment configs are valid and name registered models and the paper's settings."""
from pathlib import Path

import pytest

from cohep import config, models

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))


def test_there_are_configs_for_each_paper_model():
    names = {p.stem for p in EXPERIMENTS}
    for m in ("compact", "resnet50v2", "densenet169"):
        assert f"fig4_{m}" in names and f"fig5_{m}" in names
    for m in ("resnet50v2", "densenet169"):
        assert f"fig4_{m}_cpu" in names and f"fig5_{m}_cpu" in names


@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if p.stem.startswith("fig4")], ids=lambda p: p.stem)
def test_central_config_is_valid(path):
    from cohep.train import load_central_config

    settings = load_central_config(path)
    assert settings["model"] in models.available()
    if not path.stem.endswith("_cpu"):
        assert settings["val_fraction"] == 2000 and settings.get("limit") is None


@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if p.stem.startswith("fig5")], ids=lambda p: p.stem)
def test_config_is_valid(path):
    cfg = config.load(path)
    assert cfg.model.name in models.available()
    if path.stem.startswith("fig5"):
        assert cfg.experiment.mode == "colearn" and cfg.experiment.learners == 3
        assert cfg.data.split == "iid" and cfg.data.kind == "events"
        if not path.stem.endswith("_cpu"):
            assert cfg.experiment.rounds == 15 and cfg.data.holdout == 2000
