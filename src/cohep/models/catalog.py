"""Every registered architecture. Importing this module fills the registry."""
from __future__ import annotations

from .mnist_cnn import MnistCNN
from .torch_entries import torch_entry

torch_entry(
    "mnist_cnn",
    "small 2-conv CNN for 28 x 28 digit images",
    lambda spec: MnistCNN(n_classes=spec.n_classes, in_channels=spec.input_shape[0]),
)
