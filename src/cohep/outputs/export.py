"""A saved model as a file any inference stack runs without cohep: ONNX, TorchScript, or the Keras format.

``cohep export SOURCE --onnx model.onnx`` (SOURCE: a ``cohep train`` checkpoint or a run directory,
:func:`cohep.outputs.checkpoint.resolve`, its weights' sha256 checked) writes a graph that takes what
an event file stores and gives what ``cohep evaluate`` scores:

* input ``images``: float32 ``[N, C, H, W]``, the stored charge (``image_unit`` of the file, ke- for
  ``cohep simulate`` output) of every view in the file's view order, any batch size N;
* output ``probabilities``: float32 ``[N, classes]``, softmax class probabilities in the order of
  ``class_names``.

The model's input normalisation (``model.params.normalise``: ``log1p`` or per-event, the planes it
reads, :mod:`cohep.frameworks.normalise`) is part of every torch model's forward pass, so it is inside
the exported graph: nothing is to be done to the images before. The convention above is written into
the file: the ONNX ``metadata_props`` (key ``cohep``, a JSON object: input and output names, shape,
dtype, unit, class names, view names, normalisation, the model spec, the weights' sha256) and the
TorchScript archive's extra file ``cohep.json`` (the same object).

Keras models (the paper's ResNet-50 V2 and DenseNet-169) are saved in the Keras format (``--keras
model.keras``): Keras' own ``.keras`` archive loads offline with nothing but Keras; ONNX from Keras
needs tf2onnx and TensorFlow, which cohep does not install. A ``.keras`` model takes channels-last
images ``[N, H, W, C]`` already normalised: cohep's adapter normalises before Keras sees them (the
convention, in ``model.json`` beside ``model.keras``, names the mode).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cohep.core.errors import CohepError, DataError
from cohep.core.files import atomic_path
from cohep.outputs import checkpoint

FORMAT = "cohep-export-1"
INPUT = "images"
OUTPUT = "probabilities"
STORED = "stored charge of the event file (its image_unit; ke- for cohep simulate)"
#: the ONNX opset of the exported graphs
OPSET = 18


@dataclass
class Exported:
    """What ``cohep export`` wrote and the convention it wrote into the files."""

    source: str
    convention: dict
    files: dict[str, Path] = field(default_factory=dict)

    def lines(self) -> list[str]:
        c = self.convention
        return [f"model {c['model']['name']} ({c['framework']}): input {c['input']['name']} {c['input']['shape']} "
                f"{c['input']['dtype']} ({c['input']['unit']}), output {c['output']['name']} {c['output']['shape']}",
                *(f"{kind} written to {path}" for kind, path in self.files.items())]


def _build(src, data_attrs: dict | None = None):
    """The model with its saved weights loaded (checked against the model's own shapes), on CPU, in eval mode."""
    from cohep import models
    from cohep.frameworks.training import TrainConfig
    from cohep.wire.weights import mismatch

    models.get(src.spec.name)
    weights = src.load_weights()
    reason = mismatch(weights, models.initial_weights(src.spec, 0))
    if reason is not None:
        raise DataError(f"{src.weights_path}: weights do not fit model {src.spec.name}: {reason}")
    learner = models.build_learner(src.spec, None, None, None, TrainConfig(device="cpu"), seed=0, initial=weights)
    return learner


def convention(src, framework: str, model=None) -> dict:
    """The input/output convention written into the exported file."""
    spec = src.spec
    params = dict(spec.params or {})
    if framework == "keras":
        from cohep.models.keras_apps import DEFAULT_NORMALISE

        mode = params.get("normalise", DEFAULT_NORMALISE)
    else:
        mode = params.get("normalise") or getattr(model, "mode", None) or "none (the images enter as they are)"
    info = src.info or {}
    class_names = info.get("class_names") or (info.get("data") or {}).get("class_names") or \
        [str(i) for i in range(spec.n_classes)]
    keras = framework == "keras"
    c, h, w = (list(spec.input_shape) + [None, None, None])[:3]
    return {
        "format": FORMAT,
        "framework": framework,
        "input": {"name": INPUT, "dtype": "float32",
                  "shape": ["N", h, w, c] if keras else ["N", *spec.input_shape],
                  "layout": "NHWC" if keras else "NCHW",
                  "unit": "normalised charge" if keras else STORED,
                  "normalisation": (f"before the model: {mode} (cohep.frameworks.normalise), then NCHW -> NHWC" if keras
                                    else f"inside the model: {mode}")},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["N", spec.n_classes], "meaning": "softmax probabilities"},
        "class_names": list(class_names),
        "model": spec.to_dict(),
        "weights_sha256": src.digest,
    }


class _Probabilities:
    """Built lazily (torch imported only here): the model followed by a softmax."""

    @staticmethod
    def wrap(module):
        import torch

        class Probabilities(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, images: torch.Tensor) -> torch.Tensor:
                return torch.softmax(self.net(images).float(), dim=1)

        return Probabilities(module).eval()


def export(source: str | Path, *, onnx: str | Path | None = None, torchscript: str | Path | None = None,
           keras: str | Path | None = None) -> Exported:
    """Export a checkpoint or a run's final weights to the formats named; at least one is needed."""
    if onnx is None and torchscript is None and keras is None:
        raise CohepError("name at least one of --onnx, --torchscript, --keras")
    src = checkpoint.resolve(source)
    from cohep import models

    framework = models.get(src.spec.name).framework
    if framework == "keras" and (onnx is not None or torchscript is not None):
        raise CohepError(f"model {src.spec.name} is a Keras model: export it with --keras model.keras "
                         "(ONNX from Keras needs tf2onnx and TensorFlow; docs/physics_outputs.md)")
    if framework != "keras" and keras is not None:
        raise CohepError(f"model {src.spec.name} is a torch model: export it with --onnx or --torchscript")
    learner = _build(src)
    conv = convention(src, framework, learner.model)
    result = Exported(str(source), conv)
    if framework == "keras":
        result.files["keras"] = _write_keras(learner.model, Path(keras), conv)
        return result
    module = _Probabilities.wrap(learner.model.cpu().eval())
    if onnx is not None:
        result.files["onnx"] = _write_onnx(module, Path(onnx), conv, src.spec.input_shape)
    if torchscript is not None:
        result.files["torchscript"] = _write_torchscript(module, Path(torchscript), conv, src.spec.input_shape)
    return result


def _example(input_shape, n: int = 2):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.rand((n, *input_shape), generator=g) * 50


def _write_onnx(module, path: Path, conv: dict, input_shape) -> Path:
    import warnings

    import torch

    try:
        import onnx
    except ImportError:
        raise CohepError("--onnx needs the onnx and onnxscript packages: pip install -e .[export]") from None
    import logging

    batch = torch.export.Dim("N", min=1)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" for every torchvision op: none is used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (_example(input_shape),), dynamo=True, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=({0: batch},), opset_version=OPSET,
                                    verbose=False)
    quiet.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "cohep", json.dumps(conv, sort_keys=True)
    proto.doc_string = "cohep classifier: input images [N, C, H, W] stored charge, output softmax probabilities"
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path


def _write_torchscript(module, path: Path, conv: dict, input_shape) -> Path:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, _example(input_shape), check_trace=False)
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={"cohep.json": json.dumps(conv, sort_keys=True)})
    return path


def _write_keras(model, path: Path, conv: dict) -> Path:
    if path.suffix != ".keras":
        raise CohepError(f"--keras {path}: the Keras format's file name ends in .keras")
    model.save(str(path))  # Keras writes the archive whole; the convention goes beside it
    (path.with_suffix(".json")).write_text(json.dumps(conv, indent=2, sort_keys=True) + "\n")
    return path


def read_convention(path: str | Path) -> dict:
    """The convention written into an exported ONNX or TorchScript file (or beside a ``.keras`` one)."""
    p = Path(path)
    if p.suffix == ".onnx":
        import onnx

        props = {e.key: e.value for e in onnx.load(str(p), load_external_data=False).metadata_props}
        return json.loads(props["cohep"])
    if p.suffix == ".keras":
        return json.loads(p.with_suffix(".json").read_text())
    import torch

    extra = {"cohep.json": ""}
    torch.jit.load(str(p), _extra_files=extra)
    return json.loads(extra["cohep.json"])


def onnx_predict(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Class probabilities of ``images`` [N, C, H, W] from an exported ONNX file, run by onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.ascontiguousarray(images, dtype=np.float32)})[0]
