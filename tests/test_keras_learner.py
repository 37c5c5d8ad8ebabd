"""The Keras adapter behaves like the torch one: weights round-trip bit-exactly, proposals are pure,
training is deterministic from the seed; both run the one loop of FrameworkLearner."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.core.errors import ConfigError
from cohep.frameworks.base import FrameworkLearner
from cohep.frameworks.torch import TorchLearner
from cohep.frameworks.training import TrainConfig
from cohep.frameworks.learner import TrainableLearner
from cohep.models import ModelSpec, build_learner, initial_weights
from cohep.wire.store import WeightStore
from cohep.wire.weights import decode, encode, equal

keras = pytest.importorskip("keras")

from cohep.frameworks.keras import KerasLearner, load_weights, model_to_weights  # noqa: E402

CONFIG = TrainConfig(batch_size=8, lr=1e-2, max_steps=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(shape=(3, 16, 16), n=24, seed=0, n_classes=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_classes
    x = torch.rand((n, *shape), generator=g) * 100 + y.view(-1, 1, 1, 1) * 50.0
    return TensorDataset(x, y)


def small_keras_model(seed: int, shape=(16, 16, 3), n_classes=3, softmax=True):
    """A small named-layer Keras model with batch norm (moving statistics are weights too)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=shape, name="images")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(n_classes, activation="softmax" if softmax else None, name="head")(x)
    return keras.Model(inputs, out, name="small")


def _keras_learner(seed=0, **kw):
    train, vote = _data(seed=1), _data(seed=2)
    return KerasLearner(small_keras_model(seed), train, vote, None, CONFIG, seed=seed, **kw)


def _torch_learner(seed=0):
    train, vote = _data(seed=1), _data(seed=2)
    return build_learner(ModelSpec("compact", (3, 16, 16), 3), train, vote, None, CONFIG, seed=seed)


def test_keras_weights_are_named_by_variable_path_including_bn_statistics():
    learner = _keras_learner()
    names = list(learner.current())
    assert names == ["conv/kernel", "conv/bias", "bn/gamma", "bn/beta", "bn/moving_mean",
                     "bn/moving_variance", "head/kernel", "head/bias"]
    proposal = learner.propose()
    # training moves the batch-norm moving statistics, and they travel with the weights
    assert not np.array_equal(proposal["bn/moving_mean"], learner.current()["bn/moving_mean"])


@pytest.mark.parametrize("make", [_keras_learner, _torch_learner], ids=["keras", "torch"])
def test_weights_round_trip_bit_exactly_through_the_store(make, tmp_path):
    store = WeightStore(f"file://{tmp_path}/store")
    proposer, other = make(seed=0), make(seed=5)
    proposal = proposer.propose()
    digest, uri = store.put(proposal)
    fetched = store.get(digest)
    assert list(fetched) == list(proposal) and equal(fetched, proposal)
    # a second learner loads the fetched weights into its own model and gives back the same bits
    other.accept(fetched)
    assert equal(other.current(), proposal)
    if isinstance(other, KerasLearner):
        load_weights(other.model, fetched)
        assert equal(model_to_weights(other.model), proposal)
    # and scoring the same weights gives the same verdict on both learners' shared data
    assert proposer.evaluate(proposal).vote == other.evaluate(fetched).vote


@pytest.mark.slow
def test_registry_keras_learner_round_trips_through_safetensors():
    spec = ModelSpec("resnet50v2", (3, 32, 32), 3)
    init = initial_weights(spec, 7)
    learner = build_learner(spec, None, None, None, CONFIG, seed=7)
    assert equal(learner.current(), init)  # initial weights from (spec, seed) alone
    back = decode(encode(init))
    assert equal(back, init)
    other = build_learner(spec, None, None, None, CONFIG, seed=8, initial=back)
    assert equal(other.current(), init)
    # Keras documents 25,568,360 trainable parameters with the 1000-class top (2048 features)
    assert isinstance(learner, TrainableLearner)
    assert learner.n_parameters() == 25_568_360 - (2048 * 1000 + 1000) + (2048 * 3 + 3) == 23_525_507


@pytest.mark.parametrize("make", [_keras_learner, _torch_learner], ids=["keras", "torch"])
def test_propose_leaves_current_unchanged_and_accept_adopts(make):
    learner = make()
    before = learner.current()
    proposal = learner.propose()
    assert not equal(proposal, before)
    assert equal(learner.current(), before)
    learner.accept(proposal)
    assert equal(learner.current(), proposal)
    # current() is a copy: mutating it does not touch the learner
    first = next(iter(learner.current()))
    copy = learner.current()
    copy[first][...] = 0
    assert equal(learner.current(), proposal)


def test_keras_learner_is_deterministic_from_seed():
    a, b, c = _keras_learner(seed=3), _keras_learner(seed=3), _keras_learner(seed=4)
    assert equal(a.current(), b.current())
    assert not equal(a.current(), c.current())
    pa, pb = a.propose(), b.propose()
    assert equal(pa, pb)
    # successive proposals use fresh seeds (different batch order), still reproducible
    assert equal(a.propose(), b.propose())


def test_keras_load_weights_is_strict():
    learner = _keras_learner()
    good = learner.current()
    missing = dict(good)
    missing.pop("bn/gamma")
    with pytest.raises(ConfigError, match="missing tensor bn/gamma"):
        learner.evaluate(missing)
    extra = dict(good, **{"bogus/kernel": np.zeros(1, np.float32)})
    with pytest.raises(ConfigError, match="unexpected tensor bogus/kernel"):
        learner.evaluate(extra)
    wrong = dict(good, **{"head/bias": np.zeros(5, np.float32)})
    with pytest.raises(ConfigError, match="head/bias has shape"):
        learner.evaluate(wrong)


def test_keras_logits_and_probability_models_score_alike():
    probs_model = _keras_learner()
    logits = KerasLearner(small_keras_model(0, softmax=False), _data(seed=1), _data(seed=2), None, CONFIG, seed=0)
    assert probs_model.from_logits is False and logits.from_logits is True
    p, _ = logits.predict(_data(seed=2))
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.isfinite(logits.train_steps(_data(seed=1), 1.0, seed=0)).all()


@pytest.mark.parametrize("make", [_keras_learner, _torch_learner], ids=["keras", "torch"])
def test_train_steps_accepts_a_persistent_optimizer_and_reports_batches(make):
    learner = make()
    seen = []
    opt = learner.make_optimizer()
    losses = learner.train_steps(learner.train_set, 1.0, seed=0, optimizer=opt,
                                 on_batch=lambda p, y, loss: seen.append((p, y, loss)))
    assert len(losses) == len(seen) == 3
    assert [loss for _, _, loss in seen] == losses
    probs, labels, _ = seen[0]
    assert probs.shape == (8, 3) and probs.device.type == "cpu" and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(8)) and labels.dtype == torch.int64 and len(labels) == 8
    assert opt.state  # the passed optimizer did the steps


def test_both_adapters_are_trainable_learners_sharing_one_loop():
    keras_learner, torch_learner = _keras_learner(), _torch_learner()
    for learner in (keras_learner, torch_learner):
        assert isinstance(learner, TrainableLearner) and isinstance(learner, FrameworkLearner)
    for method in ("train_steps", "predict", "score", "make_optimizer", "n_parameters", "propose", "evaluate"):
        assert getattr(KerasLearner, method) is getattr(FrameworkLearner, method), method
        assert getattr(TorchLearner, method) is getattr(FrameworkLearner, method), method
    # conv 3*3*3*4 + 4, batch-norm gamma and beta 2*4 (not the moving statistics), head 4*3 + 3
    assert keras_learner.n_parameters() == 112 + 8 + 15
    assert torch_learner.n_parameters() == sum(p.numel() for p in torch_learner.model.parameters())


def test_an_adapter_must_set_up_its_model_before_the_base_init():
    class Late(TorchLearner):
        def __init__(self, model, *args, **kwargs):
            FrameworkLearner.__init__(self, *args, **kwargs)  # too early: no model to load or adopt yet
            self.model = model

    with pytest.raises(TypeError, match="Late must set self.model and self.device before calling FrameworkLearner.__init__"):
        Late(torch.nn.Linear(2, 2), None, None, None, CONFIG, seed=0)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        KerasLearner(small_keras_model(0), None, None, None, {"lr": 1e-3})


@pytest.mark.parametrize("make", [_keras_learner, _torch_learner], ids=["keras", "torch"])
def test_proposals_follow_the_cosine_schedule_and_central_optimizers_keep_their_rate(make):
    from dataclasses import replace

    learner = make()
    learner.config = replace(CONFIG, lr_schedule="cosine", lr_floor=0.0)
    seen = []
    fresh = learner.make_optimizer

    def recording():
        opt = fresh()
        step = opt.step
        opt.step = lambda *a, **k: (seen.append(opt.param_groups[0]["lr"]), step(*a, **k))[1]
        return opt

    learner.make_optimizer = recording
    learner.propose()
    assert seen == pytest.approx([1e-2, 5e-3, 0.0])  # 3 steps: lr, half way, floor
    seen.clear()
    learner.train_steps(learner.train_set, 1.0, seed=0, optimizer=recording())
    assert seen == pytest.approx([1e-2] * 3)  # a passed optimizer is central training's own
