"""Every registered architecture. Importing this module fills the registry (Keras stays unimported)."""
from __future__ import annotations

from .compact import build_compact
from .keras_apps import build_application, normalise_input
from .keras_entries import keras_entry
from .mnist_cnn import MnistCNN
from .torch_entries import torch_entry

#: the default model for neutrino event images
DEFAULT_EVENT_MODEL = "compact"

torch_entry(
    "mnist_cnn",
    "small 2-conv CNN for 28 x 28 digit images",
    lambda spec: MnistCNN(n_classes=spec.n_classes, in_channels=spec.input_shape[0]),
)

torch_entry(
    "compact",
    "compact multi-view CNN for sparse wire-plane images (default; 0.32 M parameters, log1p input)",
    build_compact,
)

keras_entry(
    "resnet50v2",
    "Keras applications ResNet50V2, weights=None (the paper's model; 23.6 M parameters at 200x200x3)",
    build_application,
    preprocess=normalise_input,
)

keras_entry(
    "densenet169",
    "Keras applications DenseNet169, weights=None (the paper's model; 12.6 M parameters at 200x200x3)",
    build_application,
    preprocess=normalise_input,
)
