"""bench/beams.py's figures and its --set overrides (issue 28's transfer matrix)."""
import argparse

import numpy as np
import pytest

from cohep.config import experiment as config
from cohep.core.errors import ConfigError
from cohep.testing import bench as harness

BENCH = harness.Home.of(__file__).root / "bench" / "beams.py"
CELLS = ("FD/dune", "FD/paper", "uB/bnb", "uB/numi")
#: the accuracies of docs/benchmarks/beams.md's 2,400-event run (rows: trained on, columns: tested on)
ACC = ((0.747, 0.732, 0.580, 0.617), (0.760, 0.750, 0.615, 0.638),
       (0.695, 0.715, 0.632, 0.647), (0.700, 0.732, 0.598, 0.625))


@pytest.fixture(scope="module")
def beams():
    return harness.load_script(BENCH)


def _matrix():
    return {a: {b: {"acc": ACC[i][j], "nc": 0.5, "numu": 0.5, "nue": 0.5, "nc_as_numu": 0.2}
                for j, b in enumerate(CELLS)} for i, a in enumerate(CELLS)}


def test_drop_is_against_the_home_cell_and_loss_against_the_test_cells_own_model(beams):
    m = _matrix()
    assert beams.worst_drop(m) == pytest.approx(16.7)  # FD/dune at home 0.747, on uB/bnb 0.580
    assert beams.worst_loss(m) == pytest.approx(5.2)  # uB/bnb's own model 0.632 (and FD/dune's 0.747 vs 0.695)
    assert beams.report(m)[-1].endswith(": 5.2 pts.")


def test_set_overrides_reach_the_config_and_bad_ones_are_refused(beams):
    args = beams.parser().parse_args(["--set", "train.augment.cosmics=1", "--set", "model.params.floor=0.1",
                                      "--set", "model.params.normalise=log1p"])
    cfg = config.load(None, beams.overrides({"model": {"name": "compact"}, "train": {"lr": 0.002}}, args.set))
    assert cfg.train.augment.cosmics == 1.0 and cfg.train.lr == 0.002
    assert cfg.model.params == {"floor": 0.1, "normalise": "log1p"}
    for bad in ("cosmics=1", "train.=1", "train.augment.cosmics"):
        with pytest.raises(argparse.ArgumentTypeError, match="section.key=value"):
            beams.setting(bad)
    with pytest.raises(ConfigError, match="cosmics"):
        config.load(None, beams.overrides({}, [beams.setting("train.augment.cosmics=-1")]))


def test_working_point_defaults_to_the_argmax_and_the_offset_moves_only_nc_vs_numu(beams):
    assert beams.parser().parse_args([]).working_point == "argmax"
    assert beams.parser().parse_args(["--working-point", "equal_nc_numu"]).working_point == "equal_nc_numu"
    with pytest.raises(SystemExit):
        beams.parser().parse_args(["--working-point", "cut"])
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=400).astype(np.float32)
    probs[:5] = [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]]
    assert np.isfinite(beams.working_point.logits_of(probs)).all()
    assert np.array_equal(beams.predicted(probs, None), probs.argmax(1))
    assert np.array_equal(beams.predicted(probs, 0.0), probs.argmax(1))  # zeros and ties read as the arg-max
    moved = beams.predicted(probs, 0.7) != probs.argmax(1)
    assert moved.any() and set(probs.argmax(1)[moved]) == {beams.NUMU}


def test_the_mix_row_is_judged_against_each_cells_own_model(beams):
    """The mixed model's line: its worst loss is against the diagonal (each cell's own model), and its
    NC - numu CC per cell in points."""
    m = _matrix()
    mixed = {b: {"acc": m[b][b]["acc"] - (0.03 if b == "uB/bnb" else 0.0), "nc": 0.70, "numu": 0.62, "nue": 0.8}
             for b in CELLS}
    lines = beams.shared_lines("One model trained on the mix of all four cells", "mix", mixed, m)
    assert lines[0] == "### One model trained on the mix of all four cells"
    assert lines[-1].startswith("mix: worst loss against a cell's own model 3.0 pts; NC - numu CC FD/dune +8;"), lines


def test_colearn_takes_its_rounds_and_each_member_fits_its_own_working_point(beams):
    """--colearn ROUNDS (0: not run); per_beam scores each cell with that cell's member, its offset fitted
    on that cell's vote split only (a member's vote set never leaves it)."""
    assert beams.parser().parse_args([]).colearn == 0 and beams.parser().parse_args(["--colearn", "32"]).colearn == 32
    from cohep.config.experiment import ExperimentSection
    assert beams.parser().parse_args([]).colearn_protocol == ExperimentSection.protocol  # what a user gets
    assert beams.parser().parse_args(["--colearn-protocol", "paper"]).colearn_protocol == "paper"

    import torch
    from torch.utils.data import TensorDataset

    from cohep import models
    from cohep.frameworks.training import TrainConfig
    from cohep.models import ModelSpec

    spec = ModelSpec("mnist_cnn", (1, 28, 28), 3, {"width": 4})
    g = torch.Generator().manual_seed(0)
    sets = {}
    for c in CELLS:  # 150 events of three classes a cell; the vote split is also scored, to check the balance
        events = TensorDataset(torch.rand(150, 1, 28, 28, generator=g), torch.arange(150) % 3)
        sets[c] = (None, events, events)
    learners = [models.build_learner(spec, None, None, None, TrainConfig(), seed=k,
                                     initial=models.initial_weights(spec, k)) for k in range(4)]
    each = beams.per_beam(learners, sets, True)
    plain = beams.per_beam(learners[:1], sets, False)
    probs, labels = learners[0].predict(sets["FD/dune"][2])
    assert plain["FD/dune"]["acc"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert each["FD/dune"]["nue"] == pytest.approx(plain["FD/dune"]["nue"])  # the offset leaves nue CC alone
    argmax = beams.per_beam(learners, sets, False)  # these untrained members are far from balanced
    assert max(abs(argmax[c]["nc"] - argmax[c]["numu"]) for c in CELLS) > 0.5
    for c in CELLS:  # fitted and scored on the same events here: balanced to within a step
        assert abs(each[c]["nc"] - each[c]["numu"]) <= 0.02 + 1e-9, (c, each[c])
