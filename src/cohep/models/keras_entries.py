"""Registry glue for Keras models: seed Keras -> build the model on the chosen device -> KerasLearner.

Nothing here imports Keras at module level: the import happens when a Keras model is first built, so
``import cohep`` and torch-only experiments never pay for it.
"""
from __future__ import annotations

from typing import Callable

from ..frameworks.training import TrainConfig
from ..learner import Weights
from .registry import ModelEntry, ModelSpec, register


def _device_name(device: str) -> str | None:
    """None keeps Keras' own choice (CUDA when present), like the torch adapter's "auto"."""
    return None if device == "auto" else device


def keras_entry(
    name: str,
    description: str,
    factory: Callable[[ModelSpec], object],
    *,
    preprocess: Callable[[ModelSpec], Callable] | None = None,
    from_logits: bool | None = None,
) -> ModelEntry:
    """Register a Keras architecture given a factory spec -> keras.Model (built, random weights).

    ``preprocess(spec)`` gives the batch transform the learner applies to ``[N, C, H, W]`` inputs
    (default: channels-last transpose).
    """

    def make_model(spec: ModelSpec, seed: int, device: str = "auto"):
        import keras

        from ..frameworks.keras import _keras

        _keras()  # checks the backend
        keras.utils.set_random_seed(int(seed) % 2**32)
        dev = _device_name(device)
        if dev is None:
            return factory(spec)
        with keras.device(dev):
            return factory(spec)

    def make_initial(spec: ModelSpec, seed: int) -> Weights:
        from ..frameworks.keras import model_to_weights

        return model_to_weights(make_model(spec, seed, "cpu"))

    def make_learner(spec, train, vote, test, config: TrainConfig, *, seed: int, initial=None):
        from ..frameworks.keras import KerasLearner

        model = make_model(spec, seed, config.device)
        if initial is None and model.weights and model.weights[0].value.device.type != "cpu":
            # Keras draws initial values with a per-device generator; the CPU draw is the reference,
            # so the initial weights depend on (spec, seed) alone, whatever the device.
            initial = make_initial(spec, seed)
        return KerasLearner(
            model,
            train,
            vote,
            test,
            config,
            seed=seed,
            initial=initial,
            preprocess=preprocess(spec) if preprocess is not None else None,
            from_logits=from_logits,
        )

    return register(ModelEntry(name, "keras", description, make_learner, make_initial))
