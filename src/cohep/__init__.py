"""cohep: decentralised collaborative learning for particle physics.

Learners holding private data train one shared model through a propose / vote / accept protocol
whose every outcome is decided by a smart contract on an Ethereum-compatible chain.
"""
import os as _os

# Keras 3 runs on the torch backend so one torch install serves both frameworks.
_os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"
