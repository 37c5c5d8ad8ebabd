"""[tracking]: a run logged to TensorBoard, read back with TensorBoard's own reader, equals the run's records."""
from __future__ import annotations

import math
from collections import defaultdict

import pytest

from cohep.config import experiment as config
from cohep.core.errors import ConfigError
from cohep.run.local import run_experiment
from cohep.run.tracking import read_scalars

pytest.importorskip("tensorboard")


def _cfg(mnist_dir, mode, tracking):
    return config.load(None, {
        "experiment": {"learners": 3, "rounds": 2, "seed": 0, "mode": mode},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 450, "holdout": 150},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 0.5, "batch_size": 32},
        "tracking": tracking,
    })


@pytest.mark.slow  # a 2-round run of 3 learners
def test_tensorboard_values_read_back_equal_the_run_records(tmp_path, mnist_dir, one_torch_thread):
    result = run_experiment(_cfg(mnist_dir, "colearn", {"backend": "tensorboard", "dir": str(tmp_path / "tb"),
                                                        "run_name": "mine"}), tmp_path / "run")
    assert result.files["tracking"] == tmp_path / "tb" / "mine"
    scalars = read_scalars(tmp_path / "tb" / "mine")
    rows = defaultdict(list)
    for r in result.records:
        rows[r.round].append(r)
    assert [step for step, _ in scalars["round/mean_test_accuracy"]] == sorted(rows)
    total = 0
    for (step, acc), (_, n), (_, running) in zip(scalars["round/mean_test_accuracy"], scalars["round/accepted"],
                                                 scalars["round/accepted_total"]):
        assert acc == pytest.approx(sum(r.test_accuracy for r in rows[step]) / len(rows[step]), rel=1e-6)
        accepted = sum(1 for r in rows[step] if r.is_proposer and r.accepted) if step > 0 else 0
        total += accepted
        assert (n, running) == (accepted, total)
    for r in result.records:
        assert dict(scalars[f"learner/{r.learner}/test_accuracy"])[r.round] == pytest.approx(r.test_accuracy, rel=1e-6)
        if r.round > 0 and math.isfinite(r.vote_score):
            assert dict(scalars[f"learner/{r.learner}/vote_score"])[r.round] == pytest.approx(r.vote_score, rel=1e-6)
    assert scalars["final/test_accuracy"] == [(2, pytest.approx(result.final_accuracy, rel=1e-6))]
    assert [scalars[f"final/accepted/{i}"][0][1] for i in range(3)] == result.accepted
    assert sum(result.accepted) == total


def test_tracking_is_off_by_default_and_checked(tmp_path, mnist_dir):
    assert not _cfg(mnist_dir, "individual", {}).tracking.active
    with pytest.raises(ConfigError, match="tracking.backend"):
        _cfg(mnist_dir, "individual", {"backend": "mlflow"})
    with pytest.raises(ConfigError, match="tracking"):
        _cfg(mnist_dir, "individual", {"bogus": 1})
