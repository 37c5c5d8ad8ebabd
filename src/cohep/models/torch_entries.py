"""Registry glue for torch models: build module -> seed its init -> wrap in a TorchLearner."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..frameworks.torch import TorchLearner, state_to_weights
from ..frameworks.training import TrainConfig
from ..learner import Weights
from .registry import ModelEntry, ModelSpec, register


def torch_entry(name: str, description: str, factory: Callable[[ModelSpec], nn.Module]) -> ModelEntry:
    """Register a torch architecture given a factory spec -> nn.Module."""

    def make_module(spec: ModelSpec, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return factory(spec)

    def initial(spec: ModelSpec, seed: int) -> Weights:
        return state_to_weights(make_module(spec, seed))

    def make_learner(spec, train, vote, test, config: TrainConfig, *, seed: int, initial=None):
        module = make_module(spec, seed)
        return TorchLearner(module, train, vote, test, config, seed=seed, initial=initial)

    return register(ModelEntry(name, "torch", description, make_learner, initial))
