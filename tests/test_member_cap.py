"""Issue 29: ``cohep run`` takes as many learners as the chosen ballot mode's contract bound allows
(256 for per-vote transactions and aggregated bundles; 64 for signed ballots, one batch a round)."""
from __future__ import annotations

import json

import pytest

from cohep.config import experiment as config
from cohep.core.errors import ConfigError
from cohep.config.experiment import MAX_MEMBERS_BY_BALLOTS
from cohep.ledger.coordinator import MAX_BATCH, MAX_MEMBERS


def test_each_ballot_mode_has_its_contracts_bound():
    assert MAX_MEMBERS_BY_BALLOTS == {"transactions": MAX_MEMBERS, "signed": MAX_BATCH, "aggregate": MAX_MEMBERS}
    assert (MAX_MEMBERS, MAX_BATCH) == (256, 64)


@pytest.mark.parametrize("ballots, bound", [("transactions", 256), ("signed", 64), ("aggregate", 256)])
def test_the_learner_cap_follows_the_ballot_mode(ballots, bound):
    ok = config.from_dict({"experiment": {"learners": bound, "protocol": "paper"}, "chain": {"ballots": ballots}})
    assert ok.experiment.learners == bound
    with pytest.raises(ConfigError) as err:
        config.from_dict({"experiment": {"learners": bound + 1, "protocol": "paper"}, "chain": {"ballots": ballots}})
    msg = str(err.value)
    assert "\n" not in msg and "experiment.learners" in msg and f"at most {bound}" in msg and ballots in msg
    # the cap is colearn's (the contract's members); a run of each learner alone has none
    alone = config.from_dict({"experiment": {"learners": bound + 1, "mode": "individual"}, "chain": {"ballots": ballots}})
    assert alone.experiment.learners == bound + 1


def test_an_aggregate_run_past_64_learners_decides_its_round(tmp_path, mnist_dir, one_torch_thread):
    """72 learners on aggregated ballots, one round of tiny synthetic data: every voter's vote counts."""
    from cohep.run.local import run_experiment

    n = 72
    cfg = config.load(None, {
        "experiment": {"learners": n, "rounds": 1, "seed": 0, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 1200, "holdout": 200},
        "model": {"name": "mnist_cnn"}, "train": {"epochs": 1.0, "batch_size": 32},
        "chain": {"ballots": "aggregate"}})
    run = run_experiment(cfg, tmp_path / "run", figure=False)
    assert len(run.timings) == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["traffic"]["transactions"] == 4
    events = [json.loads(line) for line in (tmp_path / "run" / "chain_events.jsonl").read_text().splitlines()]
    finalized = [e["args"] for e in events if e["name"] == "Finalized"]
    assert len(finalized) == 1 and finalized[0]["votes"] == n - 1
