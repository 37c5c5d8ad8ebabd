"""``[train] class_weight``: "balanced" weights each training event's cross-entropy by its class's
inverse frequency in the learner's own train set (issue 28: NC against numu CC)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from cohep.config import experiment as config
from cohep.core.errors import ConfigError
from cohep.frameworks.augment import AugmentConfig
from cohep.frameworks.batches import labels_of
from cohep.frameworks.torch import TorchLearner
from cohep.frameworks.training import TrainConfig, class_weights


def test_balanced_weights_are_inverse_class_frequency_averaging_one_over_the_events():
    labels = np.array([0, 0, 0, 1, 2, 2])  # counts 3 / 1 / 2 of 6 events, 3 classes: 6 / (3 n_c)
    w = class_weights(labels)
    assert w == pytest.approx([2 / 3, 2.0, 1.0])
    assert w[labels].mean() == pytest.approx(1.0)
    # a class the train set lacks: 1 (never trained on), and the mean over the 2 classes present
    assert class_weights(np.array([0, 0, 2]), 3) == pytest.approx([3 / 4, 1.0, 3 / 2])
    assert class_weights(np.array([1, 1, 1, 1]), 3) == pytest.approx([1.0, 1.0, 1.0])  # balanced already


def _learner(class_weight: str, x: torch.Tensor, y: torch.Tensor, **train) -> TorchLearner:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    cfg = TrainConfig(class_weight=class_weight, augment=AugmentConfig(enabled=False), **train)
    data = TensorDataset(x, y)
    return TorchLearner(model, data, data, None, cfg, seed=0)


def _hand_weighted_cross_entropy(logits: np.ndarray, labels: np.ndarray, weights: list[float]) -> float:
    """(1 / B) sum_i w[y_i] * (log sum_c exp z_ic - z_iy_i), written out."""
    total = 0.0
    for z, label in zip(logits.tolist(), labels.tolist()):
        log_norm = math.log(sum(math.exp(v) for v in z))
        total += weights[label] * (log_norm - z[label])
    return total / len(labels)


def test_balanced_loss_is_the_hand_computed_weighted_cross_entropy_and_none_the_plain_one():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 1, 2, 2, generator=g)
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    balanced = _learner("balanced", x, y)
    out = balanced.model(x)
    logits = out.detach().numpy().astype(np.float64)
    expected = _hand_weighted_cross_entropy(logits, y.numpy(), [2 / 3, 2.0, 1.0])
    assert float(balanced._loss(out, y).detach()) == pytest.approx(expected, rel=1e-6)

    plain = _learner("none", x, y)
    out = plain.model(x)
    assert float(plain._loss(out, y).detach()) == pytest.approx(_hand_weighted_cross_entropy(logits, y.numpy(), [1.0] * 3),
                                                       rel=1e-6)
    assert torch.equal(plain._loss(out, y), nn.functional.cross_entropy(out, y))  # the same bits as before
    assert abs(expected - float(plain._loss(out, y).detach())) > 1e-3  # the weights change this batch's loss

    # the training loop uses it: one full-batch step reports the weighted loss at the starting weights
    stepped = _learner("balanced", x, y, batch_size=6)
    losses = stepped.train_steps(stepped.train_set, 1.0, seed=1)
    assert losses == pytest.approx([expected], rel=1e-6)


def test_the_weights_come_from_the_learners_own_train_set_not_the_batch():
    x = torch.zeros(8, 1, 2, 2)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])  # 6 / 1 / 1
    learner = _learner("balanced", x, y)
    assert learner._class_weights(3).tolist() == pytest.approx([8 / 18, 8 / 3, 8 / 3])
    batch = torch.tensor([1, 2])  # a batch of the two rare classes alone still carries their weights
    out = torch.zeros(2, 3)
    assert float(learner._loss(out, batch)) == pytest.approx(8 / 3 * math.log(3), rel=1e-6)


def test_labels_are_read_without_the_images():
    y = torch.tensor([2, 0, 1, 1])
    data = TensorDataset(torch.zeros(4, 1, 2, 2), y)
    assert labels_of(data).tolist() == [2, 0, 1, 1]
    assert labels_of(Subset(data, [3, 0])).tolist() == [1, 2]


def test_class_weight_is_validated_in_one_line_naming_the_field():
    assert config.load(None).train.class_weight == "none"  # the default
    assert config.load(None, {"train": {"class_weight": "balanced"}}).train.class_weight == "balanced"
    with pytest.raises(ConfigError, match=r"^train\.class_weight must be one of none, balanced, got 'inverse'$"):
        config.load(None, {"train": {"class_weight": "inverse"}})
    with pytest.raises(ConfigError, match=r"^train\.class_weight = \"balanced\" .*privacy"):
        config.load(None, {"train": {"class_weight": "balanced"}, "privacy": {"epsilon": 8.0}})


def test_keras_learners_weight_the_same_way_and_still_add_their_regularisation():
    keras = pytest.importorskip("keras")
    from cohep.frameworks.keras import KerasLearner

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(2, 2, 1), name="images")
    flat = keras.layers.Flatten(name="flat")(inputs)
    out = keras.layers.Dense(3, activation="softmax", kernel_regularizer=keras.regularizers.L2(0.1), name="head")(flat)
    model = keras.Model(inputs, out, name="tiny")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 1, 2, 2, generator=g)
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    cfg = TrainConfig(class_weight="balanced", augment=AugmentConfig(enabled=False))
    learner = KerasLearner(model, TensorDataset(x, y), TensorDataset(x, y), None, cfg, seed=0)
    probs = learner._forward(learner._prepare(x), training=True)
    regularisation = float(sum(model.losses).detach())
    assert regularisation > 0
    logits = np.log(probs.detach().numpy().astype(np.float64))  # softmax of log p is p itself
    expected = _hand_weighted_cross_entropy(logits, y.numpy(), [2 / 3, 2.0, 1.0]) + regularisation
    assert float(learner._loss(probs, y).detach()) == pytest.approx(expected, rel=1e-5)
