"""PyTorch adapter: any ``nn.Module`` classifier (logits out) becomes a Learner.

Data sets are ``torch.utils.data.Dataset`` objects yielding ``(x, label)`` (see :mod:`.batches`). The
training loop is :class:`~cohep.frameworks.base.FrameworkLearner`'s; this module fills in its hooks
and builds registered torch models (:func:`build_model`, :func:`initial_weights`, :func:`make_learner`).
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cohep.core.errors import ConfigError
from cohep.frameworks.learner import Weights
from cohep.frameworks.base import FrameworkLearner
from cohep.frameworks.batches import iterate_batches  # noqa: F401  (re-exported: callers batch through here)
from cohep.frameworks.privacy import Budget, PrivateTraining
from cohep.frameworks.training import TrainConfig, make_optimizer  # noqa: F401  (make_optimizer re-exported)


def check_device(name: str) -> None:
    """A CUDA device asked for where torch has none is one line naming the flag, before any model is built."""
    kind, _, index = name.partition(":")
    if kind != "cuda":
        return
    if not torch.cuda.is_available():
        why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise ConfigError(f"train.device: {name!r} is not available ({why}); use --device cpu or auto")
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"train.device: {name!r}: there are {torch.cuda.device_count()} CUDA devices")


def resolve_device(name: str = "auto") -> torch.device:
    """``train.device`` as a torch device ("auto": CUDA when present); one that torch cannot use is one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name)
    return torch.device(name)


def state_to_weights(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's state (parameters and buffers) as an ordered name -> numpy mapping."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_weights(module: nn.Module, weights: Weights) -> None:
    """Load weights (strictly: same names and shapes) into the module in place."""
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}
    module.load_state_dict(state, strict=True)


class TorchLearner(FrameworkLearner):
    """A torch classifier with private train / vote / test sets."""

    def __init__(
        self,
        model: nn.Module,
        train: Dataset,
        vote: Dataset,
        test: Dataset | None,
        config: TrainConfig = TrainConfig(),
        *,
        seed: int = 0,
        initial: Weights | None = None,
        privacy: Budget | None = None,
    ):
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.loss_fn = nn.CrossEntropyLoss()
        self.losses_fn = nn.CrossEntropyLoss(reduction="none")  # each event's, for [train] class_weight
        self._grad_sample = None
        if privacy is not None:  # the model must come from dp_builder (every member trains the same one)
            from opacus import GradSampleModule

            self.privacy = PrivateTraining(privacy, n_train=len(train), batch_size=config.batch_size,
                                           steps_per_proposal=config.steps_for(len(train), config.epochs))
            self._grad_sample = GradSampleModule(self.model, loss_reduction="mean")
            self._grad_sample.disable_hooks()  # per-example gradients only while a proposal trains
        super().__init__(train, vote, test, config, seed=seed, initial=initial)

    # -- weights ------------------------------------------------------------------------------
    def live_weights(self) -> dict[str, np.ndarray]:
        return state_to_weights(self.model)

    def load_live(self, weights: Weights) -> None:
        load_weights(self.model, weights)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    # -- loop hooks ---------------------------------------------------------------------------
    def _seed_rng(self, seed: int) -> None:
        torch.manual_seed(seed)  # dropout and in-model augmentation draw from the global generator

    @contextlib.contextmanager
    def _scope(self, *, training: bool):
        self.model.train(training)
        yield

    @contextlib.contextmanager
    def _private_scope(self, private: bool):
        if not private:
            yield
            return
        self._grad_sample.enable_hooks()
        try:
            with warnings.catch_warnings():  # Opacus' per-example hooks fire on outputs, as designed
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                yield
        finally:
            self._grad_sample.disable_hooks()
            self._grad_sample.zero_grad(set_to_none=True)  # drops the per-example gradients too

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True).float()

    def _forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        return self.model(x)

    def _losses(self, out: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        # under autocast too, as torch's recipe has it: bf16 logits, float32 cross-entropy
        with self._autocast():
            return (self.loss_fn if reduction == "mean" else self.losses_fn)(out, y)

    def _probabilities(self, out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out.float(), dim=1)


# -- building registered torch models -------------------------------------------------------------
def build_model(build: Callable, spec, seed: int) -> nn.Module:
    """``build(spec)`` with torch's generator seeded first: the initial weights follow (spec, seed)."""
    torch.manual_seed(seed)
    return build(spec)


def initial_weights(build: Callable, spec, seed: int) -> dict[str, np.ndarray]:
    return state_to_weights(build_model(build, spec, seed))


def make_learner(build: Callable, spec, train, vote, test, config: TrainConfig, *, seed: int,
                 initial: Weights | None = None, privacy: Budget | None = None) -> TorchLearner:
    return TorchLearner(build_model(build, spec, seed), train, vote, test, config, seed=seed, initial=initial,
                        privacy=privacy)
