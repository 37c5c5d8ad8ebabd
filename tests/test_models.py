"""The model zoo: every registered model builds and trains one step; the paper's models are exact."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.errors import ConfigError
from cohep.frameworks.training import TrainConfig
from cohep.models import ModelSpec, available, build_learner, get, initial_weights
from cohep.weights import equal

#: small input shapes so every model trains a step in seconds (the Keras giants need >= 32 px)
TINY = {
    "mnist_cnn": ((1, 28, 28), 10),
    "compact": ((3, 32, 32), 3),
    "resnet50v2": ((3, 32, 32), 3),
    "densenet169": ((3, 32, 32), 3),
}


def _tiny_data(shape, n_classes, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g) * 50  # ke-, like simulated files
    y = torch.arange(n) % n_classes
    return TensorDataset(x, y)


def test_registry_covers_the_issue_models():
    assert {"compact", "resnet50v2", "densenet169", "mnist_cnn"} <= set(available())
    assert get("resnet50v2").framework == "keras" and get("densenet169").framework == "keras"
    assert get("compact").framework == "torch"


@pytest.fixture
def one_thread():
    """One torch thread: a tiny step of a ~600-op network is all OpenMP barriers, which stall for
    seconds each when other jobs share the cores (measured 2 s quiet, 60 s with a busy neighbour)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _live(learner):
    live = getattr(learner, "live_weights", None)
    if live is not None:
        return live()
    from cohep.frameworks.torch import state_to_weights

    return state_to_weights(learner.model)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_builds_and_trains_one_step(name, one_thread):
    assert name in available()
    shape, n_classes = TINY[name]
    data = _tiny_data(shape, n_classes)
    spec = ModelSpec(name, shape, n_classes)
    learner = build_learner(spec, data, data, None, TrainConfig(batch_size=4, max_steps=1), seed=0)
    before = learner.current()
    losses = learner.train_steps(data, 1.0, seed=1)
    assert len(losses) == 1 and np.isfinite(losses[0])
    # the step changed the live weights (same names, model order); the adopted weights are untouched
    after = _live(learner)
    assert list(after) == list(before) and not equal(after, before)
    assert equal(learner.current(), before)
    probs, labels = learner.predict(data)
    assert probs.shape == (4, n_classes) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert labels.tolist() == data.tensors[1].tolist()


def test_every_registered_model_has_a_tiny_test_shape():
    # every registered model must appear in TINY, so none is left without a build-and-train test
    assert set(available()) <= set(TINY)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError) as err:
        get("resnet9000")
    message = str(err.value)
    assert "resnet9000" in message
    for name in ("compact", "resnet50v2", "densenet169", "mnist_cnn"):
        assert name in message


def _n_values(weights) -> int:
    return int(sum(np.prod(v.shape) for v in weights.values()))


def test_keras_applications_have_the_documented_parameter_counts():
    # Keras documents 25,613,800 (ResNet50V2) and 14,307,880 (DenseNet169) parameters for the
    # 1000-class ImageNet top; the convolutional part is independent of the input size, so with a
    # 3-class top the totals are those minus (features x 1000 + 1000) plus (features x 3 + 3).
    def with_three_classes(total, features):
        return total - (features * 1000 + 1000) + (features * 3 + 3)

    resnet = initial_weights(ModelSpec("resnet50v2", (3, 200, 200), 3), 0)
    densenet = initial_weights(ModelSpec("densenet169", (3, 200, 200), 3), 0)
    assert _n_values(resnet) == with_three_classes(25_613_800, 2048) == 23_570_947
    assert _n_values(densenet) == with_three_classes(14_307_880, 1664) == 12_647_875
    # Keras variable paths, BN moving statistics included
    assert "conv1_conv/kernel" in resnet and "post_bn/moving_variance" in resnet
    assert "conv1_conv/kernel" in densenet and "bn/moving_mean" in densenet
    assert resnet["predictions/kernel"].shape == (2048, 3)


def test_compact_model_is_small_and_takes_paper_sized_events():
    spec = ModelSpec("compact", (3, 200, 200), 3)
    learner = build_learner(spec, None, None, None, TrainConfig(), seed=0)
    n_params = sum(p.numel() for p in learner.model.parameters())
    assert n_params == 317_939 < 1_000_000
    with torch.no_grad():
        out = learner.model.eval()(torch.rand(2, 3, 200, 200) * 100)
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_compact_normalises_inside_the_model():
    from cohep.models.compact import CompactMultiViewCNN

    model = CompactMultiViewCNN()  # input_scale 1 charge unit (ke- for simulated files)
    x = torch.tensor([[-50.0, 0.0, 17.0, 3000.0]])
    expected = torch.log1p(torch.tensor([[0.0, 0.0, 17.0, 3000.0]]))
    assert torch.allclose(model.normalise(x), expected)
    scaled = CompactMultiViewCNN(input_scale=1000.0)
    assert torch.allclose(scaled.normalise(x * 1000), expected)


def test_compact_mirrors_drift_time_per_event_and_never_touches_the_callers_batch():
    from cohep.models.compact import CompactMultiViewCNN

    model = CompactMultiViewCNN()
    x = torch.rand(64, 3, 16, 16) * 100
    before = x.clone()
    torch.manual_seed(0)
    z = model.augment(model.normalise(x))
    assert torch.equal(x, before)  # the model works on its own normalised copy
    plain, mirrored = model.normalise(x), model.normalise(x).flip(-1)
    same = (z == plain).flatten(1).all(1)
    flipped = (z == mirrored).flatten(1).all(1)
    assert bool((same | flipped).all())  # each event whole: as it was, or mirrored in drift time
    assert 16 < int(flipped.sum()) < 48  # about half of them mirrored
    model.train()(x)
    assert torch.equal(x, before)


def test_compact_rejects_bad_shapes_and_params():
    with pytest.raises(ConfigError, match="at least"):
        initial_weights(ModelSpec("compact", (3, 8, 8), 3), 0)
    with pytest.raises(ConfigError, match="unknown params"):
        initial_weights(ModelSpec("compact", (3, 64, 64), 3, {"depth": 9}), 0)
    with pytest.raises(ConfigError, match="at least 32"):
        initial_weights(ModelSpec("resnet50v2", (3, 16, 16), 3), 0)


def test_initial_weights_depend_on_seed_only():
    spec = ModelSpec("compact", (3, 32, 32), 3)
    assert equal(initial_weights(spec, 3), initial_weights(spec, 3))
    assert not equal(initial_weights(spec, 3), initial_weights(spec, 4))


def test_importing_cohep_models_does_not_import_keras():
    code = (
        "import sys, cohep, cohep.models as m; m.available(); m.get('resnet50v2');"
        "import cohep.cli, cohep.train, cohep.evaluation;"
        "sys.exit(1 if 'keras' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
