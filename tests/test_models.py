"""The model zoo: every registered model builds and trains one step through the TrainableLearner
interface; the paper's models are exact; models register themselves; the spec reads itself back."""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep import models
from cohep.core.errors import CohepError, ConfigError
from cohep.frameworks.training import TrainConfig
from cohep.frameworks.learner import TrainableLearner
from cohep.models import DataFit, ModelSpec, available, build_learner, default_for, get, initial_weights, register_model
from cohep.wire.weights import equal

#: small input shapes so every model trains a step in seconds (the Keras giants need >= 32 px);
#: image_cnn gets an odd one: 5 views, 13 x 37, 2 classes
TINY = {
    "mnist_cnn": ((1, 28, 28), 10),
    "compact": ((3, 32, 32), 3),
    "image_cnn": ((5, 13, 37), 2),
    "resnet50v2": ((3, 32, 32), 3),
    "densenet169": ((3, 32, 32), 3),
}


def _tiny_data(shape, n_classes, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g) * 50  # ke-, like simulated files
    y = torch.arange(n) % n_classes
    return TensorDataset(x, y)


def test_registry_covers_the_issue_models():
    assert {"compact", "resnet50v2", "densenet169", "mnist_cnn", "image_cnn"} <= set(available())
    assert get("resnet50v2").framework == "keras" and get("densenet169").framework == "keras"
    assert get("compact").framework == "torch" and get("image_cnn").framework == "torch"


@pytest.fixture
def one_thread():
    """One torch thread: a tiny step of a ~600-op network is all OpenMP barriers, which stall for
    seconds each when other jobs share the cores (measured 2 s quiet, 60 s with a busy neighbour)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if get(n).framework == "keras" else n
                                  for n in sorted(TINY)])
def test_every_model_builds_and_trains_one_step(name, one_thread):
    assert name in available()
    shape, n_classes = TINY[name]
    data = _tiny_data(shape, n_classes)
    spec = ModelSpec(name, shape, n_classes)
    learner = build_learner(spec, data, data, None, TrainConfig(batch_size=4, max_steps=1), seed=0)
    assert isinstance(learner, TrainableLearner)
    assert learner.n_parameters() > 0
    before = learner.current()
    losses = learner.train_steps(data, 1.0, seed=1)
    assert len(losses) == 1 and np.isfinite(losses[0])
    # the step changed the live weights (same names, model order); the adopted weights are untouched
    after = learner.live_weights()
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


@pytest.mark.slow
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
    assert learner.n_parameters() == 128_339 < 1_000_000  # the collection plane alone (the default)
    assert build_learner(ModelSpec("compact", (3, 200, 200), 3, {"planes": "all"}), None, None, None, TrainConfig(),
                         seed=0).n_parameters() == 317_939
    with torch.no_grad():
        out = learner.model.eval()(torch.rand(2, 3, 200, 200) * 100)
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_compact_normalises_inside_the_model():
    from cohep.models.compact import CompactMultiViewCNN

    model = CompactMultiViewCNN(normalise="log1p", planes="all")  # input_scale 1 charge unit (ke- for simulated files)
    x = torch.tensor([[-50.0, 0.0, 17.0, 3000.0]])
    expected = torch.log1p(torch.tensor([[0.0, 0.0, 17.0, 3000.0]]))
    assert torch.allclose(model.normalise(x), expected)
    scaled = CompactMultiViewCNN(input_scale=1000.0, normalise="log1p", planes="all")
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


def test_models_reject_bad_shapes_and_params_before_building():
    with pytest.raises(ConfigError, match="needs images of at least 16 x 16, got 8 x 8"):
        initial_weights(ModelSpec("compact", (3, 8, 8), 3), 0)
    with pytest.raises(ConfigError, match="unknown params depth"):
        initial_weights(ModelSpec("compact", (3, 64, 64), 3, {"depth": 9}), 0)
    with pytest.raises(ConfigError, match="at least 32 x 32, got 16 x 16"):
        initial_weights(ModelSpec("resnet50v2", (3, 16, 16), 3), 0)
    with pytest.raises(ConfigError, match="unknown params depth"):
        initial_weights(ModelSpec("mnist_cnn", (1, 28, 28), 10, {"depth": 9}), 0)
    with pytest.raises(ConfigError, match="params.patch must be a positive integer"):
        initial_weights(ModelSpec("compact", (3, 64, 64), 3, {"patch": "big"}), 0)
    # a learner is never built for data its model cannot take: one line, not a shape traceback
    with pytest.raises(ConfigError, match=r"^data: model mnist_cnn needs 28 x 28 images, got 8 x 8"):
        build_learner(ModelSpec("mnist_cnn", (1, 8, 8), 10), None, None, None, TrainConfig(), seed=0)


def test_initial_weights_depend_on_seed_only():
    spec = ModelSpec("compact", (3, 32, 32), 3)
    assert equal(initial_weights(spec, 3), initial_weights(spec, 3))
    assert not equal(initial_weights(spec, 3), initial_weights(spec, 4))


@pytest.mark.slow
def test_importing_cohep_models_does_not_import_keras():
    code = (
        "import sys, cohep, cohep.models as m; m.available(); m.get('resnet50v2');"
        "m.check_fits(m.ModelSpec('resnet50v2', (3, 32, 32), 3));"
        "m.initial_weights(m.ModelSpec('image_cnn', (1, 8, 8), 2), 0);"
        "import cohep.cli, cohep.central.train, cohep.central.evaluation;"
        "sys.exit(1 if 'keras' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    # and building a Keras model does import it (the check above can fail)
    code = "import sys, cohep.models as m; m.initial_weights(m.ModelSpec('resnet50v2', (3, 32, 32), 3), 0);" \
           "sys.exit(0 if 'keras' in sys.modules else 1)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_learner_interface_is_framework_free():
    code = "import sys, cohep.frameworks.learner; sys.exit(1 if 'torch' in sys.modules or 'keras' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- registration --------------------------------------------------------------------------------
MODEL_MODULES = {"compact", "mnist_cnn", "image_cnn", "keras_apps"}


def test_the_registry_imports_no_model_module():
    """No import circle: the registry is a leaf; model modules import it and register themselves."""
    from cohep.models import registry

    tree = ast.parse(Path(inspect.getfile(registry)).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module or ''}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    parts = {p for name in imported for p in name.split(".")}
    assert "spec" in parts and "fit" in parts  # the parse saw the registry's own imports
    assert not parts & (MODEL_MODULES | {"catalog"}), parts & MODEL_MODULES
    for name in MODEL_MODULES:  # and every model module registers through the decorator
        source = Path(inspect.getfile(registry)).with_name(f"{name}.py").read_text()
        assert "@register_model(" in source


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations in a test go to a copy of the registry, so the zoo stays as shipped."""
    from cohep.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_a_decorated_builder_is_registered_and_builds_learners(scratch_registry, one_thread):
    from cohep.models.mnist_cnn import MnistCNN

    def build(spec):
        return MnistCNN(n_classes=spec.n_classes, in_channels=spec.input_shape[0], width=4)

    decorated = register_model("tiny_digits", framework="torch", description="4-wide digit CNN",
                               fits=DataFit(size=(28, 28), classes=10))(build)
    assert decorated is build  # the builder stays a plain function
    assert "tiny_digits" in available() and models.get("tiny_digits").fits.classes == 10
    spec = ModelSpec("tiny_digits", (1, 28, 28), 10)
    learner = build_learner(spec, None, None, None, TrainConfig(), seed=3)
    assert isinstance(learner, TrainableLearner)
    assert equal(learner.current(), initial_weights(spec, 3))
    assert learner.n_parameters() == sum(p.numel() for p in build(spec).parameters())
    with pytest.raises(ConfigError, match="needs 10 classes, got 3"):
        build_learner(ModelSpec("tiny_digits", (1, 28, 28), 3), None, None, None, TrainConfig(), seed=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="compact"), "'compact' is already registered"),
    (dict(framework="jax"), "unknown framework 'jax' (known: torch, keras)"),
    (dict(fits=(28, 28)), "fits must be a DataFit, got tuple"),
    (dict(description=""), "a description is required"),
    (dict(name="not a name"), "identifier-like"),
    (dict(preprocess=lambda spec: None), "for Keras models only"),
])
def test_registration_checks_the_declaration(scratch_registry, kwargs, message):
    declared = dict(name="fresh", framework="torch", description="a model", fits=DataFit())
    declared.update(kwargs)
    before = available()
    with pytest.raises(ValueError) as err:
        register_model(declared.pop("name"), **declared)(lambda spec: None)
    assert message in str(err.value)
    assert available() == before


def test_registration_rejects_a_non_callable_builder(scratch_registry):
    with pytest.raises(TypeError, match="builder function"):
        register_model("fresh", framework="torch", description="a model", fits=DataFit())("not a function")
    assert "fresh" not in available()


def test_a_duplicate_model_module_fails_at_import():
    """Registration runs at import: executing a model module a second time hits its own name."""
    code = (
        "import runpy, cohep.models;"
        "runpy.run_module('cohep.models.mnist_cnn')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "register_model('mnist_cnn'): model 'mnist_cnn' is already registered" in done.stderr


# -- the spec ------------------------------------------------------------------------------------
def test_spec_digest_and_dict_are_unchanged():
    """The digest is recorded on chain: these hex values were computed before the spec moved modules."""
    paper = ModelSpec("compact", (3, 200, 200), 3)
    assert paper.to_dict() == {"name": "compact", "input_shape": [3, 200, 200], "n_classes": 3, "params": {}}
    assert paper.digest().hex() == "68fa5a80ed50ba45cab7aa7e9f90c3b1ecad6f71a61a4bee719de892e197452d"
    digits = ModelSpec("mnist_cnn", (1, 28, 28), 10, {"a": [1, 2], "b": "x"})
    assert digits.digest().hex() == "2f96c7cf8aea37fe67860107fb1a3b0baf56ec7c3c3627d460b1b01bd684d623"


def test_spec_reads_its_own_dict_back():
    spec = ModelSpec("compact", (3, 64, 48), 4, {"patch": 2, "widths": [4, 8, 16]})
    back = ModelSpec.from_dict(spec.to_dict())
    assert back == spec and back.digest() == spec.digest()
    assert back.input_shape == (3, 64, 48)  # a tuple again, as built
    assert ModelSpec.from_dict({"name": "x", "input_shape": [1, 2, 3], "n_classes": 2}).params == {}
    assert ModelSpec.from_dict({"name": "x", "input_shape": [1, 2, 3], "n_classes": 2, "params": None}).params == {}


@pytest.mark.parametrize("data, problem", [
    ({"input_shape": [3, 8, 8], "n_classes": 3}, "missing name"),
    ({"name": "compact", "n_classes": 3}, "missing input_shape"),
    ({"name": "compact", "input_shape": [3, 8, 8]}, "missing n_classes"),
    ({"name": 7, "input_shape": [3, 8, 8], "n_classes": 3}, "name must be a non-empty string, got 7"),
    ({"name": "compact", "input_shape": "3x8x8", "n_classes": 3}, "input_shape must be a list of positive integers"),
    ({"name": "compact", "input_shape": [3, 0, 8], "n_classes": 3},
     "input_shape must be a list of positive integers, got [3, 0, 8]"),
    ({"name": "compact", "input_shape": [3, 8.5, 8], "n_classes": 3}, "input_shape must be a list of positive integers"),
    ({"name": "compact", "input_shape": [], "n_classes": 3}, "input_shape must be a list of positive integers, got []"),
    ({"name": "compact", "input_shape": [3, 8, 8], "n_classes": 0}, "n_classes must be a positive integer, got 0"),
    ({"name": "compact", "input_shape": [3, 8, 8], "n_classes": True}, "n_classes must be a positive integer, got True"),
    ({"name": "compact", "input_shape": [3, 8, 8], "n_classes": 3, "params": [1]}, "params must be a table, got list"),
    (["compact"], "expected a table"),
])
def test_a_malformed_spec_is_one_line_naming_where(data, problem):
    with pytest.raises(ConfigError) as err:
        ModelSpec.from_dict(data, where="run/manifest.json")
    message = str(err.value)
    assert isinstance(err.value, CohepError) and "\n" not in message
    assert message.startswith("run/manifest.json: malformed model spec: ")
    assert problem in message


# -- default model -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, name", [
    ((3, 200, 200), "compact"),  # wire-plane events
    ((2, 16, 16), "compact"),  # the smallest multi-view images compact takes
    ((3, 8, 8), "image_cnn"),  # multi-view but too small for compact
    ((1, 28, 28), "mnist_cnn"),
    ((3, 28, 28), "compact"),
    ((1, 8, 8), "image_cnn"),  # the imported digits
    ((1, 200, 200), "image_cnn"),  # one view: not compact's kind of data
    ((4, 7), "image_cnn"),
])
def test_default_model_for_a_shape(shape, name):
    chosen = default_for(shape)
    assert chosen == name
    if len(shape) == 3:  # the default always takes the data it was chosen for
        models.check_fits(ModelSpec(chosen, shape, 3))
