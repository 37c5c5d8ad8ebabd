"""What every framework adapter shares: the protocol half of a learner and the one training loop.

An adapter sets up its live model, then calls ``FrameworkLearner.__init__``, and fills in a few hooks:

* ``live_weights()`` / ``load_live(weights)``: read and write the live model's weights;
* ``trainable_parameters()``: what the optimizer updates;
* ``_seed_rng(seed)``: seed the framework's global random state (dropout, augmentation);
* ``_prepare(x)``: a ``[N, C, H, W]`` batch from the data set -> the model's input on ``self.device``;
* ``_forward(x, training=...)``: the model's output (run under ``_autocast()`` by the loop);
* ``_losses(out, y, reduction)`` and ``_probabilities(out)``: the training loss (the batch's mean, or
  each event's, which ``_loss`` weights per class where ``config.class_weight`` asks) and the class
  probabilities; optionally ``_extra_loss()``: terms added to every step's loss;
* optionally ``_scope(training=...)``: a context around a whole loop (a device scope, the module mode).

The loop itself (:meth:`FrameworkLearner.train_steps`, :meth:`FrameworkLearner.predict`) lives here
once: batch order, learning-rate schedule, optimizer steps and ``on_batch`` reports are the same for
every framework. Proposing from the adopted weights, scoring without adopting and accepting are too.
A private learner (``self.privacy``, see :mod:`.privacy`) trains its proposals in the same loop with
three changes: Poisson-sampled batches, Opacus' DP optimizer, one accountant step per optimizer step.
Batches come from torch ``Dataset``s and optimizers are torch's for every adapter: the Keras adapter
runs on the torch backend.
"""
from __future__ import annotations

import abc
import contextlib
import math
from typing import TYPE_CHECKING
from collections.abc import Callable

import numpy as np
import torch

from cohep.frameworks.learner import BatchCallback, Score, Scores, TrainableLearner, Weights, copy_weights
from cohep.frameworks.augment import augment
from cohep.frameworks.batches import iterate_batches, labels_of
from cohep.frameworks.training import TrainConfig, class_weights, make_optimizer, set_lr

if TYPE_CHECKING:
    from cohep.frameworks.privacy import PrivateTraining


class IterateMean:
    """The running mean of the weights after each step from ``start`` on (``[train] average_tail``).

    Float arrays (parameters, and batch-norm running statistics, whose mean approximates the
    statistics of the mean weights) are averaged in float64; other arrays (step counters) keep their
    last value."""

    def __init__(self, start: int) -> None:
        self.start, self.count = start, 0
        self._sum: dict[str, np.ndarray] = {}
        self._dtypes: dict[str, np.dtype] = {}

    def add(self, step: int, read: Callable[[], Weights]) -> None:
        """Count the weights after ``step`` (0-based) if it is in the tail; ``read`` is only called then."""
        if step < self.start:
            return
        self.count += 1
        for k, v in read().items():
            if np.issubdtype(v.dtype, np.floating):
                self._dtypes[k] = v.dtype
                self._sum[k] = self._sum[k] + v if k in self._sum else v.astype(np.float64)
            else:
                self._sum[k] = np.array(v, copy=True)

    def weights(self) -> dict[str, np.ndarray]:
        """The mean, each float array in its own dtype (the last value of the others)."""
        return {k: (s / self.count).astype(self._dtypes[k]) if k in self._dtypes else s
                for k, s in self._sum.items()}


class FrameworkLearner(TrainableLearner):
    """Keeps the adopted weights apart from the live model that trains and scores.

    Subclasses set ``self.model`` and ``self.device`` (and anything their hooks need) *before* calling
    ``super().__init__``, which loads the agreed initial weights into that model and adopts them.
    """

    model: object
    device: torch.device
    #: inference batch when ``config.eval_batch_size`` is unset
    default_eval_batch_size: int = 512
    #: DP-SGD state of a private learner (``frameworks/privacy.py``); None: proposals train without DP
    privacy: PrivateTraining | None = None

    def __init__(
        self,
        train,
        vote,
        test,
        config: TrainConfig,
        *,
        seed: int,
        initial: Weights | None = None,
    ):
        missing = [name for name in ("model", "device") if not hasattr(self, name)]
        if missing:
            raise TypeError(
                f"{type(self).__name__} must set self.{' and self.'.join(missing)} before calling "
                "FrameworkLearner.__init__ (which loads and adopts the initial weights)"
            )
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.train_set, self.vote_set, self.test_set = train, vote, test
        self.config = config
        self.seed = seed
        self._proposals = 0
        self._weight_of_class: torch.Tensor | None = None  # [train] class_weight = "balanced", made once
        if initial is not None:
            self.load_live(initial)
        self._current = self.live_weights()

    # -- framework hooks -----------------------------------------------------------------------
    @abc.abstractmethod
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The tensors the optimizer updates, in the model's order."""

    @abc.abstractmethod
    def _seed_rng(self, seed: int) -> None:
        """Seed the framework's global random state before a training pass."""

    @abc.abstractmethod
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the data set gives it -> the model's input on ``self.device``."""

    @abc.abstractmethod
    def _forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        """The model's raw output (logits or probabilities) for a prepared batch."""

    @abc.abstractmethod
    def _losses(self, out: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        """The training loss of one step's output against int64 labels: their mean (``reduction =
        "mean"``, a scalar) or each event's (``"none"``, ``[B]``, float32)."""

    def _extra_loss(self) -> torch.Tensor | None:
        """Terms the model adds to every step's loss (Keras' ``model.losses``); None: none."""
        return None

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step's scalar loss. With ``config.class_weight = "balanced"`` the mean over the batch of
        each event's loss times its class's weight (:func:`class_weights` of the learner's own train
        set); otherwise the adapter's own mean, so the unweighted loss is the same bits as ever."""
        if self.config.class_weight == "balanced":
            loss = (self._losses(out, y, "none") * self._class_weights(int(out.shape[1]))[y]).mean()
        else:
            loss = self._losses(out, y, "mean")
        extra = self._extra_loss()
        return loss if extra is None else loss + extra

    def _class_weights(self, n_classes: int) -> torch.Tensor:
        """The per-class weights of the train set's labels, on ``self.device`` (computed on first use)."""
        if self._weight_of_class is None or len(self._weight_of_class) < n_classes:
            weights = class_weights(labels_of(self.train_set), n_classes)
            self._weight_of_class = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        return self._weight_of_class

    @abc.abstractmethod
    def _probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """Float class probabilities ``[B, C]`` from the model's output."""

    def _scope(self, *, training: bool) -> contextlib.AbstractContextManager:
        """The context a whole training or prediction loop runs in (none by default)."""
        return contextlib.nullcontext()

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when ``config.mixed_precision``; the forward pass runs inside it."""
        if self.config.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- TrainableLearner ----------------------------------------------------------------------
    def make_optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimizer over ``trainable_parameters()`` (central training keeps one across epochs)."""
        return make_optimizer(self.trainable_parameters(), self.config)

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.trainable_parameters() if p.requires_grad))

    def train_steps(
        self,
        dataset,
        epochs: float,
        *,
        seed: int,
        optimizer: torch.optim.Optimizer | None = None,
        on_batch: BatchCallback | None = None,
    ) -> list[float]:
        """Train in place for ``epochs`` passes; returns the per-step losses.

        ``seed`` fixes the framework's random state, the batch order and the ``config.augment`` draws
        (generators of their own, so they do not interfere). Without ``optimizer`` this is a
        proposal: a fresh optimizer and ``config.lr_schedule`` over its steps; a passed optimizer
        keeps its learning rate.
        ``on_batch(probabilities, labels, loss)`` sees every step's outputs, as CPU tensors.
        """
        cfg = self.config
        self._seed_rng(seed)
        generator = torch.Generator().manual_seed(int(seed))
        variations = cfg.augment if cfg.augment.active else None
        if variations is not None:
            draws = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 3]).generate_state(1)[0]))
        scheduled = optimizer is None
        private = scheduled and self.privacy is not None  # only proposals are released, so only they are DP
        if optimizer is None:
            optimizer = self.make_optimizer()
        total = cfg.steps_for(len(dataset), epochs)
        if private:
            optimizer = self.privacy.optimizer(optimizer, seed)
            batches = self.privacy.batches(dataset, total, seed)
        else:
            batches = self._epochs(dataset, total, generator)
        losses: list[float] = []
        # FedProx: a proposal's objective adds mu/2 ||w - w_start||^2 (under DP-SGD, Opacus clips and
        # noises the per-example gradients of the loss only, so the proximal pull does not reach it)
        anchor = self._anchor() if scheduled and cfg.proximal_mu > 0 else None
        mean = IterateMean(total - cfg.averaged_steps(total)) if scheduled and cfg.average_tail > 0 else None
        with self._scope(training=True), self._private_scope(private):
            for x, y in batches:
                if variations is not None and variations.applies_to(x):  # training batches only
                    x = augment(x.to(self.device, non_blocking=True), variations, draws)
                x = self._prepare(x)
                y = y.to(self.device, non_blocking=True).long()
                optimizer.zero_grad(set_to_none=True)
                if scheduled:
                    set_lr(optimizer, cfg.lr_at(len(losses), total))
                with self._autocast():
                    out = self._forward(x, training=True)
                loss = self._loss(out, y)
                objective = loss if anchor is None else loss + self._proximal(anchor)
                objective.backward()
                optimizer.step()
                if private:
                    self.privacy.step()
                losses.append(float(loss.detach()))
                if mean is not None:
                    mean.add(len(losses) - 1, self.live_weights)
                if on_batch is not None:
                    on_batch(self._probabilities(out.detach()).cpu(), y.cpu(), losses[-1])
        if mean is not None and mean.count:
            self.load_live(mean.weights())
        return losses

    def _anchor(self) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        """The trainable parameters and a frozen copy of their values at the proposal's start."""
        return [(p, p.detach().clone()) for p in self.trainable_parameters() if p.requires_grad]

    def _proximal(self, anchor) -> torch.Tensor:
        """FedProx's mu/2 * ||w - w_start||^2: added to what is minimised, not to the reported losses."""
        total = sum(((p - p0) ** 2).sum() for p, p0 in anchor)
        return 0.5 * self.config.proximal_mu * total

    def _epochs(self, dataset, total: int, generator: torch.Generator):
        """``total`` batches of shuffled passes over ``dataset`` (the last pass cut short)."""
        steps = 0
        while steps < total:
            for batch in iterate_batches(dataset, self.config.batch_size, shuffle=True, generator=generator):
                yield batch
                steps += 1
                if steps >= total:
                    return

    def _private_scope(self, private: bool) -> contextlib.AbstractContextManager:
        """Per-example gradients on for a private proposal (adapters that support privacy override it)."""
        if private:
            raise TypeError(f"{type(self).__name__} cannot train with differential privacy")
        return contextlib.nullcontext()

    def eval_batch_size(self) -> int:
        """The inference batch: the configured one, else the adapter's default."""
        return self.config.eval_batch_size or self.default_eval_batch_size

    @torch.no_grad()
    def predict(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and true labels over a data set, in order."""
        probs, labels = [], []
        with self._scope(training=False):
            for x, y in iterate_batches(dataset, self.eval_batch_size(), shuffle=False):
                x = self._prepare(x)
                with self._autocast():
                    out = self._forward(x, training=False)
                probs.append(self._probabilities(out).cpu().numpy())
                labels.append(torch.as_tensor(y).cpu().numpy())
        if not probs:
            return np.zeros((0, 0)), np.zeros((0,), dtype=np.int64)
        return np.concatenate(probs), np.concatenate(labels).astype(np.int64)

    # -- Learner -------------------------------------------------------------------------------
    def propose(self) -> Weights:
        """Train a proposal from the adopted weights; a private learner first checks its budget
        (raises :class:`~cohep.frameworks.privacy.BudgetSpent` without training if it would be exceeded)."""
        if self.privacy is not None:
            self.privacy.check(self.config.steps_for(len(self.train_set), self.config.epochs))
        self.load_live(self._current)
        self.train_steps(self.train_set, self.config.epochs, seed=self._next_seed())
        if self.privacy is not None:
            self.privacy.proposals += 1
        return self.live_weights()

    def examples(self) -> int | None:
        return len(self.train_set) or None

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
