"""cohep: decentralised collaborative learning for particle physics.

Learners holding private data train one shared model through a propose / vote / accept protocol
whose every outcome is decided by a smart contract on an Ethereum-compatible chain.

From Python (docs/api.md): ``cohep.simulate``, ``cohep.run_experiment``, ``cohep.train``,
``cohep.evaluate``, ``cohep.quality`` and ``cohep.settings``, from :mod:`cohep.api`. They load on
first use, so ``import cohep`` imports neither torch nor the settings.
"""
import importlib as _importlib
import os as _os

# Keras 3 runs on the torch backend so one torch install serves both frameworks.
_os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"

#: the names :mod:`cohep.api` lends the package (``cohep.run`` stays the package of runners)
_API = ("simulate", "merge", "run_experiment", "train", "evaluate", "quality", "settings", "scores", "export",
       "Experiment", "Training", "Evaluation", "Quality")


def __getattr__(name: str):
    if name in _API:
        # imported by name, not by an import statement: every floor imports this package (for
        # __version__), and the API on the top floor is only loaded when one of its names is read
        return getattr(_importlib.import_module("cohep.api"), name)
    raise AttributeError(f"module 'cohep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
