"""The framework-free learner interface (after Flower's small client interface).

A learner holds private train, vote and test sets and one current set of weights. The protocol only
ever sees ``Weights`` (an ordered mapping name -> numpy array) and ``Scores``; how a learner trains is
its own business, so torch and Keras models take part on equal terms.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

import numpy as np

from cohep.wire.weights import Weights

if TYPE_CHECKING:  # the settings are plain data; importing them here would only serve annotations
    from cohep.frameworks.training import TrainConfig



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

    def examples(self) -> int | None:
        """The training examples a proposal is trained from: declared with it, for an example-weighted
        average (``[round] weighting = "examples"``). None: not known (nothing is declared)."""
        return None

    def close(self) -> None:  # noqa: B027  # pragma: no cover - optional hook: abstract would break every implementer
        """Release resources (open files, devices)."""


#: ``on_batch(probabilities [B, C], labels [B], loss)``: one training step's outputs, on the CPU.
BatchCallback = Callable[[Any, Any, float], None]


class TrainableLearner(Learner):
    """A learner that central training and evaluation can drive directly, whatever its framework.

    The protocol needs only ``Learner``; ``cohep train`` and ``cohep evaluate`` also train for whole
    epochs with one optimizer, read running metrics, predict and count parameters. Declaring that here
    lets them call one interface instead of probing signatures or framework types.
    """

    config: "TrainConfig"

    @abc.abstractmethod
    def train_steps(
        self,
        dataset,
        epochs: float,
        *,
        seed: int,
        optimizer: Any = None,
        on_batch: BatchCallback | None = None,
    ) -> list[float]:
        """Train the live model in place for ``epochs`` passes; return the per-step losses.

        Without ``optimizer`` it is a proposal: a fresh optimizer whose learning rate follows
        ``config.lr_schedule`` over these steps. A passed optimizer (from ``make_optimizer``, kept
        across epochs by central training) keeps its learning rate.
        """

    @abc.abstractmethod
    def make_optimizer(self) -> Any:
        """A fresh optimizer over the live model's trainable parameters, as ``config`` says."""

    @abc.abstractmethod
    def predict(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities ``[N, C]`` (float) of the live model and true labels ``[N]`` (int64)."""

    def score(self, dataset) -> Score:
        """Accuracy and cross-entropy of the live model on a data set (NaN when it is empty)."""
        probs, labels = self.predict(dataset)
        if len(labels) == 0:
            return Score(math.nan, math.nan)
        accuracy = float((probs.argmax(1) == labels).mean())
        p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
        return Score(accuracy=accuracy, loss=float(-np.log(p).mean()))

    @abc.abstractmethod
    def live_weights(self) -> dict[str, np.ndarray]:
        """The live model's weights as they are now (mid-training), not the adopted ``current()``."""

    @abc.abstractmethod
    def load_live(self, weights: Weights) -> None:
        """Load weights into the live model (strict on names and shapes)."""

    @abc.abstractmethod
    def n_parameters(self) -> int:
        """How many trainable parameters the model has (batch-norm statistics not counted)."""


def copy_weights(weights: Weights) -> dict[str, np.ndarray]:
    """A deep copy preserving order, so callers never alias a learner's live buffers."""
    return {name: np.array(value, copy=True) for name, value in weights.items()}
