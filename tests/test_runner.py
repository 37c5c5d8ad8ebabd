"""End-to-end runs on a small MNIST subset, driven through the contract on the embedded chain."""
import json

import numpy as np
import pytest

from cohep import config
from cohep.results import read_csv
from cohep.runner import run_experiment
from cohep.weights import decode, digest_bytes


def small_cfg(mnist_dir, **over):
    base = {
        "experiment": {"learners": 3, "rounds": 3, "seed": 7},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 900, "holdout": 300},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
    }
    return config.load(None, config.merge(base, over))


@pytest.fixture(scope="module")
def colearn_run(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("run")
    return run_experiment(small_cfg(mnist_dir), out), out


def test_colearn_run_writes_everything(colearn_run):
    result, out = colearn_run
    for name in ("records.csv", "timings.csv", "manifest.json", "figure.png", "final_weights.safetensors", "report.md"):
        assert (out / name).stat().st_size > 0, name
    recs = read_csv(out / "records.csv")
    assert len(recs) == 3 * (3 + 1)  # rounds 0..3 x learners
    for rnd in (1, 2, 3):
        rows = [r for r in recs if r.round == rnd]
        proposers = {r.proposer for r in rows}
        assert len(proposers) == 1
        assert sum(r.is_proposer for r in rows) == 1
        assert all(r.vote in ("approve", "reject") for r in rows if not r.is_proposer)
        assert len({r.accepted for r in rows}) == 1
    initial = np.mean([r.test_accuracy for r in recs if r.round == 0])
    assert initial < 0.2  # untrained: chance level
    assert result.final_accuracy > initial + 0.15  # 3 proposals of ~160 digits each already help


def test_manifest_and_chain_agree(colearn_run):
    result, out = colearn_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == 7 and m["chain_id"] == result.chain_id
    assert m["contract_address"].startswith("0x") and len(m["contract_address"]) == 42
    assert m["versions"]["torch"] and m["config"]["experiment"]["learners"] == 3
    blob = (out / "final_weights.safetensors").read_bytes()
    assert digest_bytes(blob).hex() == m["digests"]["final"]
    if any(r.accepted for r in result.records if r.round > 0):
        # the weights every learner holds are the last digest the contract accepted
        assert m["digests"]["final"] == m["digests"]["chain_accepted"]
    assert list(decode(blob))[0].startswith("features")


def test_outcomes_follow_votes_at_default_threshold(colearn_run):
    result, _ = colearn_run
    for rnd in {r.round for r in result.records if r.round > 0}:
        rows = [r for r in result.records if r.round == rnd]
        approvals = sum(r.vote == "approve" for r in rows)
        assert rows[0].accepted == (approvals >= 1)  # ceil(0.5 * 2) = 1 of the 2 voters


def test_same_seed_same_records(tmp_path, mnist_dir, colearn_run):
    _, out = colearn_run
    cfg = small_cfg(mnist_dir)
    run_experiment(cfg, tmp_path / "again", figure=False)
    assert (tmp_path / "again" / "records.csv").read_bytes() == (out / "records.csv").read_bytes()


def test_different_seed_differs(tmp_path, mnist_dir, colearn_run):
    _, out = colearn_run
    run_experiment(small_cfg(mnist_dir, experiment={"seed": 8}), tmp_path / "other", figure=False)
    assert (tmp_path / "other" / "records.csv").read_bytes() != (out / "records.csv").read_bytes()


@pytest.mark.parametrize("mode", ["individual", "centralised"])
def test_baseline_modes(tmp_path, mnist_dir, mode):
    res = run_experiment(small_cfg(mnist_dir, experiment={"mode": mode, "rounds": 2}), tmp_path / mode, figure=False)
    n = 1 if mode == "centralised" else 3
    assert len({r.learner for r in res.records}) == n
    assert res.contract is None
    assert 0.0 <= res.final_accuracy <= 1.0
