"""The protocol half of a learner, shared by every framework adapter.

An adapter only says how to read and write its live model's weights, how to train and how to score;
proposing from the adopted weights, scoring without adopting and accepting are the same for all.
"""
from __future__ import annotations

import abc
import math

import numpy as np

from ..learner import Learner, Score, Scores, Weights, copy_weights


class FrameworkLearner(Learner):
    """Keeps the adopted weights apart from the live model that trains and scores."""

    seed: int
    train_set: object
    vote_set: object
    test_set: object | None

    def _start(self, initial: Weights | None) -> None:
        """Call at the end of ``__init__``: load the agreed initial weights, if any, and adopt them."""
        self._proposals = 0
        if initial is not None:
            self.load_live(initial)
        self._current = self.live_weights()

    @abc.abstractmethod
    def live_weights(self) -> dict[str, np.ndarray]:
        """The live model's weights as they are now."""

    @abc.abstractmethod
    def load_live(self, weights: Weights) -> None:
        """Load weights into the live model (strict on names and shapes)."""

    @abc.abstractmethod
    def train_steps(self, dataset, epochs: float, *, seed: int, **kwargs) -> list[float]:
        """Train the live model in place."""

    @abc.abstractmethod
    def predict(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of the live model and the true labels, in data-set order."""

    def score(self, dataset) -> Score:
        """Accuracy and cross-entropy of the live model on a data set (NaN when it is empty)."""
        probs, labels = self.predict(dataset)
        if len(labels) == 0:
            return Score(math.nan, math.nan)
        accuracy = float((probs.argmax(1) == labels).mean())
        p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
        return Score(accuracy=accuracy, loss=float(-np.log(p).mean()))

    def n_parameters(self) -> int:  # TEMPORARY shim until the models branch lands
        import torch

        model = self.model
        if isinstance(model, torch.nn.Module) and not hasattr(model, "trainable_variables"):
            return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
        return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))

    # -- Learner interface -------------------------------------------------------------------
    def propose(self) -> Weights:
        self.load_live(self._current)
        self.train_steps(self.train_set, self.config.epochs, seed=self._next_seed())
        return self.live_weights()

    def evaluate(self, weights: Weights) -> Scores:
        self.load_live(weights)
        vote = self.score(self.vote_set)
        test = self.score(self.test_set) if self.test_set is not None else Score(math.nan, math.nan)
        return Scores(vote=vote, test=test)

    def accept(self, weights: Weights) -> None:
        self._current = copy_weights(weights)

    def current(self) -> Weights:
        return copy_weights(self._current)

    def _next_seed(self) -> int:
        """A fresh, reproducible seed per proposal."""
        self._proposals += 1
        return int(np.random.SeedSequence([self.seed, self._proposals]).generate_state(1)[0])
