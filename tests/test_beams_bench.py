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
    assert np.isfinite(beams.logits_of(probs)).all()
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
    last = beams.mix_lines(mixed, m)[-1]
    assert last.startswith("mix: worst loss against a cell's own model 3.0 pts; NC - numu CC FD/dune +8;"), last
