"""``[train] average_tail``: a proposal is the mean of its last iterates (stochastic weight averaging)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.config import experiment as config
from cohep.core.errors import ConfigError
from cohep.frameworks.base import IterateMean
from cohep.frameworks.training import TrainConfig
from cohep.models import ModelSpec, build_learner, initial_weights


def _data(n: int = 16, shape=(3, 16, 16), seed: int = 0) -> TensorDataset:
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.3, 20.0, size=(n, *shape)).astype(np.float32) * (rng.random((n, *shape)) < 0.2)
    return TensorDataset(torch.from_numpy(x), torch.tensor(rng.integers(0, 3, n)))


@pytest.mark.parametrize("name", ["compact", "resnet50v2"])
def test_the_proposal_is_the_mean_of_the_last_iterates(name, one_torch_thread):
    """With 6 steps and average_tail 0.5 the trained weights are the mean of those after steps 4, 5 and 6,
    each found by training the same batches for 4, 5 and 6 steps without averaging (torch and Keras)."""
    data, spec = _data(shape=(3, 32, 32)), ModelSpec(name, (3, 32, 32), 3)
    start = initial_weights(spec, 0)

    def trained(steps: int, tail: float):
        learner = build_learner(spec, data, data, None, TrainConfig(batch_size=4, max_steps=steps, average_tail=tail),
                                seed=0, initial=start)
        learner.train_steps(data, 2.0, seed=5)
        return learner.live_weights()

    iterates = [trained(k, 0.0) for k in (4, 5, 6)]
    averaged = trained(6, 0.5)
    assert set(averaged) == set(iterates[-1])
    moved = 0
    for k, v in averaged.items():
        assert v.dtype == iterates[-1][k].dtype and v.shape == iterates[-1][k].shape
        if np.issubdtype(v.dtype, np.floating):
            np.testing.assert_allclose(v, np.mean([w[k].astype(np.float64) for w in iterates], axis=0),
                                       rtol=1e-5, atol=1e-6, err_msg=k)
            moved += not np.allclose(v, iterates[-1][k])
        else:
            np.testing.assert_array_equal(v, iterates[-1][k])  # counters keep their last value
    assert moved  # the mean is not simply the last weights


def test_off_by_default_and_a_passed_optimizer_is_never_averaged(one_torch_thread):
    """average_tail = 0 leaves training as it was; central training (a passed optimizer) is never averaged."""
    data, spec = _data(), ModelSpec("compact", (3, 16, 16), 3)
    start = initial_weights(spec, 0)
    out = []
    for tail in (0.0, 0.5):
        learner = build_learner(spec, data, data, None, TrainConfig(batch_size=4, max_steps=4, average_tail=tail),
                                seed=0, initial=start)
        learner.train_steps(data, 1.0, seed=5, optimizer=learner.make_optimizer())
        out.append(learner.live_weights())
    assert all(np.array_equal(out[0][k], out[1][k]) for k in out[0])
    assert TrainConfig().average_tail == 0.0 and TrainConfig().averaged_steps(100) == 0


def test_the_tail_counts_at_least_one_step():
    cfg = TrainConfig(average_tail=0.25)
    assert [cfg.averaged_steps(n) for n in (1, 4, 10, 100)] == [1, 1, 2, 25]


def test_iterate_mean_reads_weights_only_in_the_tail():
    calls = []

    def read():
        calls.append(1)
        return {"w": np.full(2, float(len(calls)), dtype=np.float32), "n": np.array(len(calls))}

    mean = IterateMean(start=3)
    for step in range(5):
        mean.add(step, read)
    assert len(calls) == 2 and mean.count == 2
    out = mean.weights()
    assert out["w"].dtype == np.float32 and out["w"].tolist() == [1.5, 1.5] and int(out["n"]) == 2


@pytest.mark.parametrize("value", [-0.1, 1.0, 2])
def test_a_bad_tail_is_one_line_naming_the_field(value):
    with pytest.raises(ConfigError, match="train.average_tail"):
        config.load(None, {"train": {"average_tail": value}})
