"""The Flower baseline: Flower's real simulation engine and strategies on cohep's own task.

Two runs go through Flower 1.41's Ray engine on a tiny synthetic split (one Ray start, ~10 s on two
idle cores, then a few seconds each), and each is checked against the same clients computed here, in
process: FedAvg's global weights are the sample-weighted mean of cohep-trained client updates, and
Krum under a sign-flip attacker picks an honest client's update. The rest needs no engine.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from cohep.config import experiment as config
from cohep import models
from cohep.studies.baselines import flower
from cohep.studies.baselines.flower import FlowerPlan, client_task, client_update, run_flower
from cohep.core.errors import CohepError, ConfigError
from cohep.run.tasks import prepare


def tiny_cfg(mnist_dir, learners=3, rounds=1, **sections):
    raw = {
        "experiment": {"learners": learners, "rounds": rounds, "seed": 3},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 400, "holdout": 100, "split": "dirichlet"},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
    }
    return config.load(None, config.merge(raw, sections))


def local_updates(cfg):
    """Every client's round-1 update computed here, from the same task the Flower clients get."""
    cfg, data, parts, spec = prepare(cfg)
    initial = models.initial_weights(spec, cfg.experiment.seed)
    task = client_task(cfg, data, parts, spec, tuple(initial))
    params = [initial[k] for k in task.names]
    return task, initial, [client_update(task, i, params, 1) for i in range(len(parts))]


@pytest.fixture(scope="module")
def ray_up():
    """One Ray runtime for the module's Flower runs (starting it is most of their time)."""
    flower.start_ray(2)
    yield
    flower.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_fedavg_through_flower_averages_cohep_trained_clients(mnist_dir, one_torch_thread, ray_up):
    cfg = tiny_cfg(mnist_dir, learners=3, rounds=1)
    res = run_flower(cfg, FlowerPlan(clients=None), cpus=2, keep_initialised=True)
    task, initial, updates = local_updates(cfg)
    sizes = np.array([len(s) for s in task.shares], dtype=np.float64)
    expected = [sum(w * u[j] for w, u in zip(sizes, updates)) / sizes.sum() for j in range(len(task.names))]
    assert list(res.final_weights) == list(initial)
    for j, name in enumerate(task.names):
        np.testing.assert_allclose(res.final_weights[name], expected[j], rtol=1e-4, atol=1e-6, err_msg=name)
    moved = sum(np.asarray(w).nbytes for w in initial.values())
    assert res.fitted == [3] and res.failures == [0]
    # Flower's serialisation adds a small header per tensor; the arrays themselves dominate
    assert res.bytes_down == res.bytes_up and moved * 3 <= res.bytes_down[0] < moved * 3 * 1.01
    assert len(res.accuracy) == 2 and len(res.round_seconds) == 1
    assert all(0.0 <= a <= 1.0 for a in res.accuracy)


@pytest.mark.ray
@pytest.mark.slow
def test_krum_through_flower_keeps_an_honest_update_against_sign_flip(mnist_dir, one_torch_thread, ray_up):
    # Krum needs n > 2f + 2: five clients, one of them (member 0) sends its update negated ten times over
    cfg = tiny_cfg(mnist_dir, learners=5, rounds=1,
                   attack={"kind": "sign_flip", "members": 1, "params": {"scale": 10.0}})
    res = run_flower(cfg, FlowerPlan(strategy="krum"), cpus=2, keep_initialised=True)
    task, _, updates = local_updates(cfg)
    assert task.attack.malicious(5) == (0,) and res.fitted == [5]
    picked = [i for i, u in enumerate(updates)
              if all(np.allclose(res.final_weights[k], u[j], rtol=1e-5, atol=1e-7) for j, k in enumerate(task.names))]
    assert len(picked) == 1 and picked[0] != 0
    # the attacker's update really was the crafted one: far from every honest update
    assert np.abs(updates[0][0] - updates[picked[0]][0]).max() > 2 * np.abs(updates[1][0] - updates[2][0]).max()


def test_client_update_is_cohep_training_and_reproducible(mnist_dir, one_torch_thread):
    cfg = tiny_cfg(mnist_dir)
    task, initial, updates = local_updates(cfg)
    again = client_update(task, 1, [initial[k] for k in task.names], 1)
    other_round = client_update(task, 1, [initial[k] for k in task.names], 2)
    assert all(np.array_equal(a, b) for a, b in zip(updates[1], again))
    assert not all(np.array_equal(a, b) for a, b in zip(updates[1], other_round))
    assert not all(np.array_equal(a, np.asarray(initial[k])) for a, k in zip(updates[1], task.names))
    # the same training a cohep proposer does: its learner, seeded per round, from these weights
    cfg_, data, parts, spec = prepare(cfg)
    learner = models.build_learner(spec, data.subset(parts[1].train), data.subset(parts[1].vote), None, cfg_.train,
                                   seed=task.seeds[1], initial=initial)
    learner.train_steps(learner.train_set, 1.0, seed=flower.fit_seed(task.seeds[1], 1))
    assert all(np.array_equal(learner.live_weights()[k], u) for k, u in zip(task.names, updates[1]))


def test_weight_attack_crafts_from_the_honest_update(mnist_dir, one_torch_thread):
    _, initial, honest = local_updates(tiny_cfg(mnist_dir))
    task, _, crafted = local_updates(tiny_cfg(mnist_dir, attack={"kind": "free_rider", "members": [2]}))
    assert all(np.array_equal(a, b) for a, b in zip(honest[0], crafted[0]))  # learner 0 honest in both
    assert all(np.array_equal(np.asarray(initial[k]), c) for k, c in zip(task.names, crafted[2]))


def test_missing_flower_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "flwr", None)
    with pytest.raises(CohepError, match=r"^Flower is not installed: pip install -e \.\[bench\]$"):
        flower.require_flwr()


@pytest.mark.parametrize(("plan", "message"), [
    (FlowerPlan(strategy="fedprox"), "flower.strategy"),
    (FlowerPlan(clients=0), "flower.clients"),
    (FlowerPlan(clients=4), "flower.clients"),
    (FlowerPlan(strategy="krum", clients=1), "krum compares updates"),
])
def test_plan_errors_name_the_field(plan, message):
    with pytest.raises(ConfigError, match=message):
        plan.check(3)


@pytest.mark.parametrize(("attack", "message"), [
    ({"kind": "stale"}, "attack.kind: stale needs the history"),
    ({"kind": "sign_flip", "collude": True}, "attack.collude"),
])
def test_attacks_flower_cannot_play_fail_before_any_work(mnist_dir, attack, message):
    with pytest.raises(ConfigError, match=message):
        run_flower(tiny_cfg(mnist_dir, attack=attack), FlowerPlan())


def test_coordinator_counts_the_calldata_it_sends():
    """cohep's chain share of the bench's traffic: what the transactions carried, as mined."""
    import hashlib

    from cohep.ledger import Chain, Coordinator

    chain = Chain.embedded(3)
    h = hashlib.sha256
    c = Coordinator.deploy(chain, chain.accounts[:3], seed=h(b"s").digest(), initial_digest=h(b"i").digest(),
                           model_digest=h(b"m").digest(), sealed=False)
    start = chain.block_number()
    p = c.proposer(0)
    c.propose(p, 0, h(b"r0").digest(), "file:///store/r0")
    for m in c.members():
        if m != p:
            c.vote(m, 0, True, 10)
    c.finalize(p, 0)
    mined = [tx for b in range(start + 1, chain.block_number() + 1)
             for tx in chain.w3.eth.get_block(b, full_transactions=True)["transactions"] if tx["to"] == c.address]
    assert len(mined) == c.transactions == 4
    assert c.calldata_bytes == sum(len(tx.get("input", tx.get("data"))) for tx in mined) == 196 + 2 * 164 + 36
    # propose(r, slot, digest, uri): 4 + 5 words + the uri padded to a word; vote(r, approvals,
    # scores_ppm[1]): 4 + 5 words; finalize(r): 4 + 1 word
