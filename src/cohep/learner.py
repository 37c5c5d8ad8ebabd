"""The framework-free learner interface (after Flower's small client interface).

A learner holds private train, vote and test sets and one current set of weights. The protocol only
ever sees ``Weights`` (an ordered mapping name -> numpy array) and ``Scores``; how a learner trains is
its own business, so torch and Keras models take part on equal terms.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping

import numpy as np

#: Ordered mapping parameter name -> array. Order matters: it is the model's own order.
Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Score:
    """Quality of one set of weights on one data set."""

    accuracy: float
    loss: float

    def metric(self, name: str) -> float:
        if name == "accuracy":
            return self.accuracy
        if name == "loss":
            return self.loss
        raise ValueError(f"unknown metric {name!r} (known: accuracy, loss)")


@dataclass(frozen=True)
class Scores:
    """A learner's verdict material: score on its private vote set and on its private test set."""

    vote: Score
    test: Score


class Learner(abc.ABC):
    """One participant's model and private data."""

    @abc.abstractmethod
    def propose(self) -> Weights:
        """Train from the current weights on the private train set and return new weights.

        The learner's current weights are left unchanged: a proposal is adopted only through
        ``accept`` once the contract has accepted it.
        """

    @abc.abstractmethod
    def evaluate(self, weights: Weights) -> Scores:
        """Score ``weights`` on the private vote and test sets without adopting them."""

    @abc.abstractmethod
    def accept(self, weights: Weights) -> None:
        """Adopt ``weights`` as the current weights."""

    @abc.abstractmethod
    def current(self) -> Weights:
        """The current weights (a copy the caller may keep)."""

    def close(self) -> None:  # pragma: no cover - optional hook
        """Release resources (open files, devices)."""


def copy_weights(weights: Weights) -> dict[str, np.ndarray]:
    """A deep copy preserving order, so callers never alias a learner's live buffers."""
    return {name: np.array(value, copy=True) for name, value in weights.items()}
