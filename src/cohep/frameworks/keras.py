"""Keras 3 adapter: any Keras classifier becomes a Learner, on the torch backend.

It mirrors :class:`cohep.frameworks.torch.TorchLearner` so Keras and torch models take part in
collaborative learning on equal terms:

* **Data**: the same torch ``Dataset``s (``(x [C, H, W], label)`` items), batched by
  :func:`cohep.frameworks.batches.iterate_batches`. A ``preprocess`` callable turns each
  ``[N, C, H, W]`` batch into the model's input (by default: channels-last ``[N, H, W, C]``, Keras'
  convention).
* **Training**: on the torch backend a Keras model *is* a ``torch.nn.Module`` whose trainable variables
  are ``torch.nn.Parameter``s, so a proposal runs the shared torch loop of
  :class:`~cohep.frameworks.base.FrameworkLearner` over the Keras forward pass with the same optimizers
  as the torch adapter (:func:`cohep.frameworks.training.make_optimizer`), fresh for every proposal.
  This is as fast as ``model.train_on_batch`` (the convolutions dominate; measured within 3% on
  ResNet-50 V2) and gives both frameworks identical optimizer semantics. Batch-norm moving statistics
  update as in ``fit`` (``model(x, training=True)``); regularisation losses (``model.losses``) are added.
* **Weights**: an ordered mapping ``variable.path -> numpy`` over ``model.weights`` (trainable and
  non-trainable, e.g. batch-norm moving mean / variance), in the model's own order. Paths are stable
  for models whose layers are named explicitly (the Keras applications are); they must be unique.
  ``load_weights`` is strict on names and shapes. Weights travel through the same safetensors path
  (:mod:`cohep.wire.weights`) as torch ones.
* **Determinism**: ``keras.utils.set_random_seed`` (Python, numpy, torch and Keras' global seed) before
  each proposal, plus a seeded torch generator for the batch order.
* **Outputs**: softmax probabilities (Keras applications' default) or logits; detected from the last
  layer's activation unless ``from_logits`` is given.

Keras itself is imported only when a Keras learner or model is built (:func:`build_model`), so
importing this module, or cohep, never imports Keras.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from cohep.core.errors import ConfigError
from cohep.frameworks.learner import Weights
from cohep.wire.weights import mismatch
from cohep.frameworks.base import FrameworkLearner
from cohep.frameworks.training import TrainConfig

_EPS = 1e-7  # Keras' epsilon for cross-entropy on probabilities


def _keras():
    import keras

    if keras.backend.backend() != "torch":
        raise ConfigError(
            f"cohep runs Keras on the torch backend, but KERAS_BACKEND={keras.backend.backend()!r}; "
            "unset it or set KERAS_BACKEND=torch before importing keras"
        )
    return keras


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, H, W, C]`` (other ranks pass through)."""
    x = x.float()
    return x.permute(0, 2, 3, 1).contiguous() if x.dim() == 4 else x


def variable_names(model) -> list[str]:
    """Stable unique names of every model variable (Keras 3 ``variable.path``), model order."""
    names = [v.path for v in model.weights]
    if len(set(names)) != len(names):
        seen, dup = set(), []
        for n in names:
            if n in seen:
                dup.append(n)
            seen.add(n)
        raise ConfigError(
            f"Keras model {model.name!r} has duplicate variable paths ({', '.join(sorted(set(dup))[:5])}); "
            "name its layers explicitly"
        )
    return names


def model_to_weights(model) -> dict[str, np.ndarray]:
    """The model's variables as an ordered ``path -> numpy`` mapping (copies)."""
    names = variable_names(model)
    return {name: np.array(v.value.detach().cpu().numpy(), copy=True) for name, v in zip(names, model.weights)}


def load_weights(model, weights: Weights) -> None:
    """Assign ``weights`` to the model's variables in place; strict on names and shapes."""
    variables = dict(zip(variable_names(model), model.weights))
    reason = mismatch({k: np.asarray(v) for k, v in weights.items()}, variables)
    if reason is not None:
        raise ConfigError(f"weights do not fit Keras model {model.name!r}: {reason}")
    with torch.no_grad():
        for name, var in variables.items():
            target = var.value
            target.copy_(torch.from_numpy(np.ascontiguousarray(weights[name])).to(target.device, target.dtype))


def _final_activation_is_softmax(model) -> bool:
    activation = getattr(model.layers[-1], "activation", None) if model.layers else None
    return getattr(activation, "__name__", "") == "softmax"


class KerasLearner(FrameworkLearner):
    """A Keras 3 classifier (torch backend) with private train / vote / test sets."""

    def eval_batch_size(self) -> int:
        """Keras applications at 200 x 200 hold ~10 MB per event in flight: twice the batch, at most 128."""
        return self.config.eval_batch_size or min(128, 2 * self.config.batch_size)

    def __init__(
        self,
        model,
        train: Dataset | None,
        vote: Dataset | None,
        test: Dataset | None,
        config: TrainConfig = TrainConfig(),
        *,
        seed: int = 0,
        initial: Weights | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        from_logits: bool | None = None,
    ):
        self.keras = _keras()
        self.model = model
        self.preprocess = preprocess or to_channels_last
        self.from_logits = (not _final_activation_is_softmax(model)) if from_logits is None else from_logits
        variable_names(model)  # fail early on ambiguous names
        # Keras places variables when the model is built; run everything on that device.
        self.device = model.weights[0].value.device if model.weights else torch.device("cpu")
        super().__init__(train, vote, test, config, seed=seed, initial=initial)

    # -- weights ------------------------------------------------------------------------------
    def live_weights(self) -> dict[str, np.ndarray]:
        return model_to_weights(self.model)

    def load_live(self, weights: Weights) -> None:
        load_weights(self.model, weights)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [v.value for v in self.model.trainable_variables]

    # -- loop hooks ---------------------------------------------------------------------------
    def _seed_rng(self, seed: int) -> None:
        # Python, numpy, torch and Keras' own seed generator (dropout and friends)
        self.keras.utils.set_random_seed(int(seed) % 2**32)

    def _scope(self, *, training: bool):
        return self.keras.device(str(self.device))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocess(x.to(self.device, non_blocking=True))

    def _forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        return self.model(x, training=training)

    def _losses(self, out: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        """Keras' categorical cross-entropy (on logits, or on clipped probabilities)."""
        out = out.float()
        if self.from_logits:
            return F.cross_entropy(out, y, reduction=reduction)
        probs = out / out.sum(dim=1, keepdim=True)
        return F.nll_loss(torch.log(probs.clamp(_EPS, 1.0 - _EPS)), y, reduction=reduction)

    def _extra_loss(self) -> torch.Tensor | None:
        """``model.losses`` (the layers' regularisation), added to every step's loss."""
        regularisation = self.model.losses
        return sum(regularisation) if regularisation else None

    def _probabilities(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float()
        return torch.softmax(out, dim=1) if self.from_logits else out / out.sum(dim=1, keepdim=True)


# -- building registered Keras models -------------------------------------------------------------
def build_model(build: Callable, spec, seed: int, device: str = "auto"):
    """``build(spec)`` with Keras seeded first, on ``device`` ("auto": Keras' own choice, CUDA when present)."""
    keras = _keras()
    keras.utils.set_random_seed(int(seed) % 2**32)
    if device == "auto":
        return build(spec)
    with keras.device(device):
        return build(spec)


def initial_weights(build: Callable, spec, seed: int) -> dict[str, np.ndarray]:
    """The weights ``build_model`` draws on the CPU: the reference for every device."""
    return model_to_weights(build_model(build, spec, seed, "cpu"))


def make_learner(
    build: Callable,
    spec,
    train,
    vote,
    test,
    config: TrainConfig,
    *,
    seed: int,
    initial: Weights | None = None,
    preprocess: Callable | None = None,
) -> KerasLearner:
    """A KerasLearner over ``build(spec)``; ``preprocess(spec)`` gives its batch transform."""
    model = build_model(build, spec, seed, config.device)
    if initial is None and model.weights and model.weights[0].value.device.type != "cpu":
        # Keras draws initial values with a per-device generator; the CPU draw is the reference,
        # so the initial weights depend on (spec, seed) alone, whatever the device.
        initial = initial_weights(build, spec, seed)
    return KerasLearner(
        model, train, vote, test, config, seed=seed, initial=initial,
        preprocess=preprocess(spec) if preprocess is not None else None,
    )
