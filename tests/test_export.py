"""cohep export: the ONNX graph (run by onnxruntime) and the TorchScript archive score as cohep does."""
from __future__ import annotations

import numpy as np
import pytest

from cohep.cli import main
from cohep.models import ModelSpec, initial_weights
from cohep.outputs import checkpoint
from cohep.outputs.export import onnx_predict, read_convention
from cohep.wire.weights import encode

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASS_NAMES = ["NC", "numu_CC", "nue_CC"]
SHAPE = (3, 32, 32)


def _events(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse charge images (ke-) with an empty event among them: the per-event scale's edge case."""
    rng = np.random.default_rng(seed)
    images = np.where(rng.random((n, *SHAPE)) < 0.1, rng.uniform(1, 300, (n, *SHAPE)), 0).astype(np.float32)
    images[1] = 0
    return images, rng.integers(0, 3, n)


@pytest.mark.slow  # two dynamo exports: about 10 s each on a busy core
@pytest.mark.parametrize("normalise", ["event", "log1p"])
def test_onnx_and_torchscript_match_cohep_predictions(tmp_path, capsys, normalise):
    import onnxruntime  # noqa: F401 - the test's point is the real runtime
    import torch

    from cohep.central.evaluation import evaluate
    from cohep.datasets.events import EventWriter

    spec = ModelSpec("compact", SHAPE, 3, {"normalise": normalise})
    checkpoint.write(tmp_path / "ck", encode(initial_weights(spec, 5)), spec=spec, class_names=CLASS_NAMES)
    images, labels = _events(7, 1)
    data = tmp_path / "ev.h5"
    with EventWriter(data, n_events=7, image_shape=SHAPE, dtype="float32") as w:
        w.write(images, labels)
    code = main(["export", str(tmp_path / "ck"), "--onnx", str(tmp_path / "m.onnx"),
                 "--torchscript", str(tmp_path / "m.pt")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "onnx written to" in text and "torchscript written to" in text

    evaluate(tmp_path / "ck", data, scores=tmp_path / "s.h5")
    from cohep.central.scores import read

    ours = read(tmp_path / "s.h5").scores
    onnx_probs = onnx_predict(tmp_path / "m.onnx", images)
    assert onnx_probs.shape == (7, 3)
    np.testing.assert_allclose(onnx_probs, ours, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx_predict(tmp_path / "m.onnx", images[2:3]), ours[2:3], rtol=1e-4, atol=1e-5)
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    np.testing.assert_allclose(scripted(torch.from_numpy(images)).detach().numpy(), ours, rtol=1e-4, atol=1e-5)
    for path in (tmp_path / "m.onnx", tmp_path / "m.pt"):
        conv = read_convention(path)
        assert conv["class_names"] == CLASS_NAMES and conv["input"]["shape"] == ["N", *SHAPE]
        assert conv["input"]["name"] == "images" and normalise in conv["input"]["normalisation"]
        assert conv["weights_sha256"] == checkpoint.read(tmp_path / "ck").digest


def test_export_needs_a_format_and_fits_the_framework(tmp_path, capsys):
    spec = ModelSpec("compact", SHAPE, 3)
    checkpoint.write(tmp_path / "ck", encode(initial_weights(spec, 0)), spec=spec, class_names=CLASS_NAMES)
    for args, needle in ((["export", str(tmp_path / "ck")], "at least one"),
                         (["export", str(tmp_path / "ck"), "--keras", str(tmp_path / "m.keras")], "torch model"),
                         (["export", str(tmp_path / "nowhere"), "--onnx", str(tmp_path / "m.onnx")], "does not exist")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err


@pytest.mark.slow  # a ResNet-50 V2 built, saved (95 MB) and loaded: about 40 s
def test_a_keras_model_exports_to_the_keras_format_and_scores_as_cohep(tmp_path):
    import keras
    import torch

    from cohep import models
    from cohep.frameworks.training import TrainConfig
    from cohep.models.keras_apps import normalise_input
    from cohep.outputs.export import export

    spec = ModelSpec("resnet50v2", SHAPE, 3)
    weights = initial_weights(spec, 2)
    checkpoint.write(tmp_path / "ck", encode(weights), spec=spec, class_names=CLASS_NAMES)
    result = export(tmp_path / "ck", keras=tmp_path / "m.keras")
    conv = read_convention(result.files["keras"])
    assert conv["input"]["layout"] == "NHWC" and "before the model: event" in conv["input"]["normalisation"]
    images, labels = _events(4, 3)
    ours, _ = models.build_learner(spec, None, None, None, TrainConfig(device="cpu"), seed=0, initial=weights).predict(
        torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    x = normalise_input(spec)(torch.from_numpy(images))
    theirs = np.asarray(keras.ops.convert_to_numpy(loaded(x, training=False)))
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)
