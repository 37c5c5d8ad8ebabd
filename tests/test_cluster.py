"""Simulation and retraining on a real Dask LocalCluster (2 worker processes, one thread each), each
compared with the same work done in this process: the same file bytes, the same values."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cohep.cli import main
from cohep.config import experiment as config
from cohep.core.errors import CohepError
from cohep.core.executor import DaskExecutor, SerialExecutor, connect, local_workers
from cohep.lartpc.simulate import simulate
from cohep.run.local import run_experiment
from cohep.studies import quality
from cohep.studies.competition import run_competition

distributed = pytest.importorskip("distributed")

# worker processes start, import torch and load the simulator's kernels: seconds, not a unit test
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread_module")]

N, SEED = 70, 5


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    old = os.environ.pop("SOURCE_DATE_EPOCH", None)
    try:
        return simulate(N, tmp_path_factory.mktemp("one") / "one.h5", seed=SEED, workers=1, progress=False)
    finally:
        if old is not None:
            os.environ["SOURCE_DATE_EPOCH"] = old


def test_executors_return_results_in_task_order(client):
    ex = DaskExecutor(client)
    assert ex.workers == 2
    tasks = [(x,) for x in range(12)]
    # later tasks finish first (shorter sleeps): the results still come back in the tasks' order
    assert list(ex.map(SLEEP_THEN_SQUARE, tasks, window=12)) == [x * x for x in range(12)]
    assert list(SerialExecutor().map(SLEEP_THEN_SQUARE, tasks[:3])) == [0, 1, 4]


#: a lambda travels by value (the workers need not import this test module)
SLEEP_THEN_SQUARE = lambda x: (__import__("time").sleep(0.02 * (12 - x)), x * x)[1]  # noqa: E731


def test_dask_simulation_writes_the_one_process_file(client, whole, tmp_path):
    out = simulate(N, tmp_path / "dask.h5", seed=SEED, client=client, progress=False)
    assert out.read_bytes() == Path(whole).read_bytes()
    # a shard made on the cluster is the same shard
    a = simulate(N, tmp_path / "s1.h5", seed=SEED, client=client, shard=(1, 3), progress=False)
    b = simulate(N, tmp_path / "s1_local.h5", seed=SEED, shard=(1, 3), progress=False)
    assert a.read_bytes() == b.read_bytes()


def test_cli_scheduler_address(client, whole, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    assert main(["simulate", "--events", str(N), "--seed", str(SEED), "--scheduler", client.scheduler.address,
                 "--out", str(out)]) == 0
    assert out.read_bytes() == Path(whole).read_bytes()
    # local:K starts (and closes) a LocalCluster of its own: 1 worker process keeps this short
    own = tmp_path / "own.h5"
    assert main(["simulate", "--events", "20", "--seed", str(SEED), "--scheduler", "local:1", "--out", str(own)]) == 0
    assert own.read_bytes() == simulate(20, tmp_path / "here.h5", seed=SEED, progress=False).read_bytes()
    capsys.readouterr()
    assert main(["simulate", "--events", "3", "--scheduler", "local:0", "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected local:K" in err
    assert local_workers("local:3") == 3 and local_workers("tcp://h:1") is None
    with pytest.raises(CohepError, match="cannot connect"):
        connect("tcp://127.0.0.1:9", timeout_s=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mnist_dir, one_torch_thread_module):
    """3 learners, 2 one-proposer rounds on 300 digits: a run to retrain coalitions of, in seconds."""
    cfg = config.load(None, {
        "experiment": {"learners": 3, "rounds": 2, "seed": 0, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 300, "holdout": 60},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
    })
    out = tmp_path_factory.mktemp("tiny") / "run"
    run_experiment(cfg, out, figure=False)
    return out


@pytest.fixture(scope="module")
def shapley_here(tiny_run):
    """Leave-one-out and exact Shapley by retraining, in this process."""
    return quality.contributions_of_run(tiny_run)


def test_shapley_on_dask_equals_in_process(client, tiny_run, shapley_here):
    there = quality.contributions_of_run(tiny_run, executor=DaskExecutor(client))
    assert set(shapley_here.values) == {"leave_one_out", "shapley_exact"}
    assert there.values == shapley_here.values  # exactly: each coalition's training is seeded on its own
    assert [c["trainings"] for c in there.cost.values()] == [c["trainings"] for c in shapley_here.cost.values()] == [4, 7]


def test_cli_quality_shapley_with_scheduler(client, tiny_run, tmp_path, capsys):
    """Monte-Carlo Shapley: the permutations' coalitions are sent ahead; the same values and trainings."""
    here = quality.contributions_of_run(tiny_run, permutations=1)
    out = tmp_path / "q.json"
    assert main(["quality", str(tiny_run), "--shapley", "--permutations", "1", "--scheduler", client.scheduler.address,
                 "--json", str(out)]) == 0
    there = json.loads(out.read_text())["contributions"]
    assert there["values"] == here.values
    assert {m: c["trainings"] for m, c in there["cost"].items()} == {m: c["trainings"] for m, c in here.cost.items()}
    capsys.readouterr()
    assert main(["quality", str(tiny_run), "--scheduler", "local:2"]) == 2  # nothing to run on it
    assert "--scheduler needs --shapley" in capsys.readouterr().err


def test_competition_on_dask_equals_in_process(client, mnist_dir, tmp_path):
    cfg = config.load(None, {
        "experiment": {"name": "duel", "learners": 3, "rounds": 1, "seed": 0},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 300, "holdout": 60},
        "competition": {"entries": [{"name": "good", "model": "mnist_cnn", "owner": 0},
                                    {"name": "poor", "model": "mnist_cnn", "params": {"width": 1}, "owner": 1}]},
    })
    here = run_competition(cfg, tmp_path / "here", figure=False)
    there = run_competition(cfg, tmp_path / "there", figure=False, executor=DaskExecutor(client))

    def board(b):
        return [(s.name, s.scores, s.mean, s.low, s.high, s.rounds, s.wins) for s in b.standings], b.winner

    assert board(there) == board(here)
    ja, jb = (json.loads((tmp_path / d / "leaderboard.json").read_text()) for d in ("here", "there"))
    assert ja["matrix"] == jb["matrix"]
