"""Model zoo: a registry name -> builder (torch and Keras architectures on equal terms).

The registry comes first; importing each model module after it registers that module's models
(Keras itself is imported only when a Keras model is built).
"""
from . import registry
from .fit import DataFit
from .registry import (
    ModelEntry,
    available,
    build_learner,
    check_fits,
    default_for,
    get,
    initial_weights,
    register_model,
)
from .spec import ModelSpec

from . import compact, image_cnn, keras_apps, mnist_cnn  # noqa: E402,F401  (they register themselves)

__all__ = [
    "DataFit", "ModelEntry", "ModelSpec", "available", "build_learner", "check_fits", "default_for",
    "get", "initial_weights", "register_model", "registry",
]
