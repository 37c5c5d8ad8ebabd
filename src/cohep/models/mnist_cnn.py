"""A CNN for MNIST (28 x 28 x 1) in the shape of Keras' classic mnist_convnet example.

Two 3x3 conv blocks (32, 64 channels) with max pooling, dropout and a 128-unit dense layer: about
0.4 M parameters, > 98% accuracy when trained on the full set, a few seconds per epoch on a CPU.
"""
from __future__ import annotations

import torch
from torch import nn


class MnistCNN(nn.Module):
    def __init__(self, n_classes: int = 10, in_channels: int = 1, width: int = 32, dropout: float = 0.25):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width * 7 * 7, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
