"""A proposer whose training diverges stays silent, and the contract voids the round (not the runner)."""
import json

import numpy as np
import pytest

from cohep.config import experiment as config
from cohep.protocol.records import read_csv
from cohep.run.local import all_finite, run_experiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_all_finite():
    assert all_finite({"a": np.ones(3), "b": np.zeros((2, 2), dtype=np.float16)})
    assert not all_finite({"a": np.ones(3), "b": np.array([0.0, np.nan])})
    assert not all_finite({"a": np.array([np.inf], dtype=np.float32)})


def test_diverging_proposers_void_every_round(tmp_path, mnist_dir):
    """SGD at lr 1e30 drives every proposal to NaN: no proposal reaches the chain, every round voids
    after its proposal window, nobody's weights change, and the chain still holds the initial digest."""
    cfg = config.load(None, {
        "experiment": {"learners": 3, "rounds": 2, "seed": 1},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 300, "holdout": 60},
        "model": {"name": "mnist_cnn"},
        "train": {"optimizer": "sgd", "lr": 1e30, "batch_size": 32},
        "chain": {"proposal_window": 5},
    })
    result = run_experiment(cfg, tmp_path / "run", figure=False)
    records = read_csv(tmp_path / "run" / "records.csv")
    start = {r.learner: r.test_accuracy for r in records if r.round == 0}
    for r in (r for r in records if r.round > 0):
        assert r.void and not r.accepted and r.vote == "" and r.digest == ""
        assert r.test_accuracy == start[r.learner]  # nothing adopted
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["digests"]["chain_accepted"] == manifest["digests"]["initial"] == manifest["digests"]["final"]
    assert result.accepted == [0, 0, 0]
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.count("| void |") == 2
