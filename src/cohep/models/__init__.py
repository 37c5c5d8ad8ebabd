"""Model zoo: a registry name -> builder (torch and Keras architectures on equal terms)."""
from .registry import ModelSpec, available, build_learner, check_fits, default_for, get, initial_weights

__all__ = ["ModelSpec", "available", "build_learner", "check_fits", "default_for", "get", "initial_weights"]
