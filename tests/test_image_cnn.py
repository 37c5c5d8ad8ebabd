"""``image_cnn``: a group's own images train without writing a model, whatever their shape and unit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.frameworks.training import TrainConfig
from cohep.frameworks.learner import TrainableLearner
from cohep.models import ModelSpec, build_learner, initial_weights
from cohep.models.image_cnn import ImageCNN, default_stages
from cohep.wire.weights import equal

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digits_like(n: int, seed: int, *, scale: float = 1.0, offset: float = 0.0, noise: float = 0.6):
    """1 x 8 x 8 images of 10 classes: a fixed random pattern per class, random brightness, noise.

    ``scale`` and ``offset`` put the pixels in some other unit (ADC counts on a pedestal, say).
    """
    patterns = torch.rand((10, 1, 8, 8), generator=torch.Generator().manual_seed(1234)) < 0.3
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    brightness = 0.7 + 0.6 * torch.rand((n, 1, 1, 1), generator=g)
    x = patterns[y].float() * brightness + noise * torch.randn((n, 1, 8, 8), generator=g)
    return TensorDataset(x * scale + offset, y)


@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (800.0, 3000.0), (1e-3, 0.0)], ids=["unit", "adc", "small"])
def test_learns_small_single_view_images_in_any_unit(scale, offset):
    train = digits_like(400, seed=1, scale=scale, offset=offset)
    test = digits_like(200, seed=2, scale=scale, offset=offset)
    spec = ModelSpec("image_cnn", (1, 8, 8), 10)
    learner = build_learner(spec, train, test, None, TrainConfig(batch_size=32, lr=3e-3), seed=0)
    assert isinstance(learner, TrainableLearner)
    before = learner.score(test).accuracy
    for epoch in range(4):
        losses = learner.train_steps(train, 1.0, seed=epoch)
        assert len(losses) == 13 and np.isfinite(losses).all()
    after = learner.score(test).accuracy
    assert before < 0.3  # chance is 0.1
    assert after > 0.8, after


def test_builds_and_steps_on_odd_shapes():
    data = TensorDataset(torch.randn(6, 5, 13, 37) * 100, torch.tensor([0, 1, 0, 1, 1, 0]))
    spec = ModelSpec("image_cnn", (5, 13, 37), 2)
    learner = build_learner(spec, data, data, None, TrainConfig(batch_size=6, max_steps=1), seed=0)
    before = learner.live_weights()
    assert len(learner.train_steps(data, 1.0, seed=0)) == 1
    assert not equal(learner.live_weights(), before)
    probs, labels = learner.predict(data)
    assert probs.shape == (6, 2) and labels.tolist() == [0, 1, 0, 1, 1, 0]
    # down to single pixels: padding and global pooling need no minimum size
    tiny = ImageCNN(3, 2, stages=default_stages(1, 1)).eval()
    assert tiny(torch.randn(4, 2, 1, 1)).shape == (4, 3)


def test_stages_follow_the_image_size():
    assert [default_stages(s, s) for s in (1, 5, 8, 13, 16, 28, 64, 200)] == [2, 2, 2, 2, 2, 3, 4, 6]
    assert default_stages(13, 37) == 2  # the shorter side decides
    # the last map is 4 x 4 or less, so the pooled features see the whole image
    model = ImageCNN(10, 1, stages=default_stages(28, 28))
    assert model.features(torch.zeros(1, 1, 28, 28)).shape[-2:] == (4, 4)
    small = initial_weights(ModelSpec("image_cnn", (1, 8, 8), 10), 0)
    large = initial_weights(ModelSpec("image_cnn", (1, 64, 64), 10), 0)
    assert len(large) > len(small)
    assert initial_weights(ModelSpec("image_cnn", (1, 64, 64), 10, {"stages": 2}), 0).keys() == small.keys()


def test_input_normalisation_is_exact_from_the_first_batch():
    """A cumulative average of the input statistics: no lag behind an exponential average."""
    model = ImageCNN(2, 1, stages=2)
    x = torch.randn(64, 1, 8, 8) * 500 + 3000
    model.train()(x)
    assert torch.allclose(model.normalise.running_mean, x.mean().reshape(1), rtol=1e-5)
    assert model.normalise.weight is None  # a pure normaliser: nothing learned
    assert "normalise.running_var" in initial_weights(ModelSpec("image_cnn", (1, 8, 8), 2), 0)


def test_rejects_bad_params():
    from cohep.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown params depth"):
        initial_weights(ModelSpec("image_cnn", (1, 8, 8), 2, {"depth": 3}), 0)
    with pytest.raises(ConfigError, match="params.width must be a positive integer, got 0"):
        initial_weights(ModelSpec("image_cnn", (1, 8, 8), 2, {"width": 0}), 0)
    with pytest.raises(ConfigError, match=r"params.dropout must be in \[0, 1\)"):
        initial_weights(ModelSpec("image_cnn", (1, 8, 8), 2, {"dropout": 1.5}), 0)
