"""Model zoo: a registry name -> builder (torch and Keras architectures on equal terms).

The registry comes first; importing each model module after it registers that module's models
(Keras itself is imported only when a Keras model is built).
"""
from cohep.models import registry
from cohep.models.fit import DataFit
from cohep.models.registry import (
    ModelEntry,
    available,
    build_learner,
    check_fits,
    default_for,
    get,
    initial_weights,
    register_model,
)
from cohep.models.spec import ModelSpec

from cohep.models import compact
from cohep.models import image_cnn
from cohep.models import keras_apps
from cohep.models import mnist_cnn  # noqa: E402,F401  (they register themselves)

__all__ = [
    "DataFit", "ModelEntry", "ModelSpec", "available", "build_learner", "check_fits", "default_for",
    "get", "initial_weights", "register_model", "registry",
]
