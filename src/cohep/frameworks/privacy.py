"""Differential privacy for a proposer's training data: the ``[privacy]`` section and DP-SGD via Opacus.

What is private is the data a member trains its proposals on: the other members see every proposal's
weights, so each proposal is a release of that training set. Training a proposal with DP-SGD (Poisson
sampled batches, each example's gradient clipped to ``max_grad_norm``, Gaussian noise of
``noise_multiplier * max_grad_norm`` added to the sum) makes every release (epsilon, delta)-DP, and the
accountant adds the releases up over the run. Before it trains, a learner asks the accountant what
its epsilon would be *after* this proposal; if that exceeds its budget it does not train
(:class:`BudgetSpent`), so no release ever goes over the budget.

Scoring weights on the member's own vote and test sets releases nothing about its training data
(the vote is computed on data that was never trained on), so it is not accounted.

Opacus is imported only when a private learner is built (the ``dp`` extra); a ``[privacy]`` budget on
a Keras model or without Opacus fails at config time with one line.
"""
from __future__ import annotations

import copy
import math
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from cohep.core.errors import CohepError, ConfigError
from cohep.core.settings import Section, from_mapping, setting

#: fields a ``[privacy.learners.N]`` table may override
PER_LEARNER = ("epsilon", "delta", "max_grad_norm", "noise_multiplier", "proposals")


class BudgetSpent(CohepError):
    """The learner's next proposal would take its epsilon over its budget: it does not train."""


def require_opacus() -> None:
    """Fail with one line naming the extra when Opacus is not installed."""
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise ConfigError("[privacy] needs Opacus: install the dp extra (pip install 'cohep[dp]')") from None


@dataclass(frozen=True)
class Budget:
    """One learner's privacy settings, resolved from ``[privacy]`` and its ``[privacy.learners.N]`` table."""

    epsilon: float
    delta: float | None  #: None: min(1e-5, 1 / n_train), set when the learner knows its train set
    max_grad_norm: float
    noise_multiplier: float | None  #: None: derived from epsilon, delta and the planned proposals
    accountant: str
    proposals: int  #: proposals planned for this learner (what the derived noise is sized for)
    #: draw the batch sampling and the noise from OS entropy: a deployed member's must be secret, since
    #: the experiment seed is public (anyone could regenerate seeded noise and subtract it). False: from
    #: the learner's seed, so in-process research runs reproduce (a simulation of DP, not DP)
    secret: bool = False


@dataclass(frozen=True)
class PrivacySection(Section):
    """``[privacy]``: DP-SGD for every learner's proposals, with a per-learner (epsilon, delta) budget.

    ``epsilon`` unset: no differential privacy. ``[privacy.learners]`` overrides any of
    ``epsilon, delta, max_grad_norm, noise_multiplier, proposals`` for one learner, keyed by its index
    (``[privacy.learners.2] epsilon = 1.0``).
    """

    section: ClassVar[str] = "privacy"

    epsilon: float | None = setting(
        None, gt=0, help="Each learner's epsilon budget for DP-SGD, needs opacus (unset: no differential privacy).")
    #: None: min(1e-5, 1 / the learner's train-set size)
    delta: float | None = setting(None, gt=0, lt=1, help="Each learner's delta (default: min(1e-5, 1/n_train)).")
    max_grad_norm: float = setting(1.0, gt=0, help="Per-example gradient clipping norm.")
    #: None: the smallest noise that keeps ``proposals`` proposals within (epsilon, delta)
    noise_multiplier: float | None = setting(None, gt=0, help="Noise std / clipping norm (default: derived from the budget).")
    #: None: ceil(experiment.rounds / experiment.learners), one proposal per learner per n rounds
    proposals: int | None = setting(None, ge=1, help="Proposals per learner the derived noise is planned for.")
    accountant: Literal["rdp", "prv"] = setting("rdp", help="Opacus privacy accountant (Renyi DP or the PRV accountant).")
    learners: dict = setting(factory=dict)  #: learner index -> a table overriding PER_LEARNER fields

    @property
    def active(self) -> bool:
        return self.epsilon is not None

    def check(self) -> None:
        if not self.active and (self.learners or self.noise_multiplier is not None or self.delta is not None
                                or self.proposals is not None):
            raise ConfigError("privacy.epsilon is required when any other privacy setting is given")
        for key, table in self.learners.items():
            where = f"privacy.learners.{key}"
            if not str(key).isdigit():
                raise ConfigError(f"{where}: keys of privacy.learners are learner indices (0, 1, ...)")
            if not isinstance(table, dict):
                raise ConfigError(f"{where} must be a table, got {table!r}")
            unknown = sorted(set(table) - set(PER_LEARNER))
            if unknown:
                raise ConfigError(f"unknown field {where}.{unknown[0]} (known: {', '.join(PER_LEARNER)})")
            self._override(int(key))  # each table validates like the section itself

    def check_learners(self, n: int) -> None:
        """Every ``[privacy.learners.N]`` names a learner of the experiment."""
        for key in self.learners:
            if int(key) >= n:
                raise ConfigError(f"privacy.learners.{key}: the experiment has learners 0..{n - 1}")

    def _override(self, index: int) -> PrivacySection:
        table = self.learners.get(str(index), self.learners.get(index, {}))  # TOML keys are strings
        try:
            return from_mapping(PrivacySection, {**table, "learners": {}}, base=self, where="privacy")
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("privacy.", f"privacy.learners.{index}.", 1)) from None

    def budget(self, index: int, *, learners: int, rounds: int, proposers: int = 1) -> Budget | None:
        """Learner ``index``'s budget in an experiment of ``learners`` members and ``rounds`` rounds of
        ``proposers`` slots each: it plans for its share of the slots (every round, when all propose)."""
        if not self.active:
            return None
        own = self._override(index)
        planned = own.proposals if own.proposals is not None else max(1, math.ceil(rounds * proposers / learners))
        return Budget(own.epsilon, own.delta, own.max_grad_norm, own.noise_multiplier, own.accountant, planned)


def check_model(model: str, framework: str) -> None:
    """Private training needs a torch model and Opacus: one line otherwise."""
    if framework != "torch":
        raise ConfigError(f"privacy: model {model} is a {framework} model; differential privacy (Opacus) "
                          "needs a torch model")
    require_opacus()


# -- the model ------------------------------------------------------------------------------------
def dp_compatible(model: torch.nn.Module) -> torch.nn.Module:
    """The model with what per-example gradients cannot handle replaced, in place.

    BatchNorm mixes the examples of a batch (one example's output, hence its gradient, depends on the
    others) and its running statistics would publish un-noised averages of the private data. Each
    ``BatchNormNd(C)``, with or without affine parameters (Opacus' own fixer only visits layers with
    parameters), becomes ``GroupNorm(gcd(32, C), C)`` with the same ``eps`` and affine shapes, weight 1
    and bias 0 as built, so the initial weights still follow from the spec and seed alone. In-place
    activations (``ReLU(inplace=True)``) compute out of place (same values). Anything
    else Opacus knows how to fix is fixed by ``ModuleValidator.fix``; anything left fails in one line.
    Models without such layers come back unchanged.
    """
    from opacus.validators import ModuleValidator

    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            group = torch.nn.GroupNorm(math.gcd(32, module.num_features), module.num_features, eps=module.eps,
                                       affine=module.affine)
            setattr(parent, name.rpartition(".")[2], group)
        elif getattr(module, "inplace", False) is True:  # Opacus' hooks forbid in-place ops on their outputs
            module.inplace = False
    if not ModuleValidator.is_valid(model):
        model = ModuleValidator.fix(model)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"privacy: the model has layers Opacus cannot train privately: {errors[0]}")
    return model


def dp_builder(build):
    """``build(spec)`` followed by :func:`dp_compatible`: what every learner of a private experiment trains."""

    def build_private(spec):
        return dp_compatible(build(spec))

    return build_private


# -- one learner's private training ---------------------------------------------------------------
class PrivateTraining:
    """A learner's DP-SGD state: its budget, the sampling rate and noise, and the Opacus accountant."""

    def __init__(self, budget: Budget, *, n_train: int, batch_size: int, steps_per_proposal: int):
        require_opacus()
        from opacus.accountants import create_accountant

        if n_train < 1:
            raise ConfigError("privacy: a private learner needs a non-empty train set")
        self.budget = budget
        self.n_train = n_train
        self.sample_rate = min(1.0, batch_size / n_train)
        self.expected_batch_size = max(1, round(self.sample_rate * n_train))
        self.steps_per_proposal = steps_per_proposal
        self.delta = budget.delta if budget.delta is not None else min(1e-5, 1.0 / n_train)
        self.accountant = create_accountant(mechanism=budget.accountant)
        self.noise_multiplier = (
            budget.noise_multiplier if budget.noise_multiplier is not None else self._derive_noise()
        )
        self.proposals = 0
        self.stopped = ""  #: the reason the learner stopped proposing ("" while it still may)

    def _derive_noise(self) -> float:
        from opacus.accountants.utils import get_noise_multiplier

        steps = self.budget.proposals * self.steps_per_proposal
        with warnings.catch_warnings():  # the search visits sigmas whose best RDP order is at the range's edge
            warnings.filterwarnings("ignore", message="Optimal order is the")
            return float(get_noise_multiplier(
                target_epsilon=self.budget.epsilon, target_delta=self.delta, sample_rate=self.sample_rate,
                steps=steps, accountant=self.budget.accountant, epsilon_tolerance=0.01,
            ))

    # -- accounting ---------------------------------------------------------------------------------
    def epsilon(self, extra_steps: int = 0) -> float:
        """Epsilon spent so far (at ``delta``), or what it would be after ``extra_steps`` more steps."""
        accountant = self.accountant
        if extra_steps:
            accountant = copy.deepcopy(accountant)
            accountant.history.append((self.noise_multiplier, self.sample_rate, int(extra_steps)))
        if not accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the")
            return float(accountant.get_epsilon(delta=self.delta))

    def check(self, steps: int) -> None:
        """Raise :class:`BudgetSpent` (and remember why) if ``steps`` more steps would exceed the budget."""
        after = self.epsilon(steps)
        if after > self.budget.epsilon:
            self.stopped = f"privacy budget spent: eps {after:.2f} > {self.budget.epsilon:.2f}"
            raise BudgetSpent(self.stopped)

    def step(self) -> None:
        """Account one noisy optimizer step (what Opacus' optimizer hook does)."""
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    # -- training -----------------------------------------------------------------------------------
    def _generator(self, seed: int, stream: int) -> torch.Generator:
        """A generator for one proposal's sampling (stream 0) or noise (stream 1): secret or seeded."""
        if self.budget.secret:
            return torch.Generator().manual_seed(secrets.randbits(63))
        return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0xD9, stream]).generate_state(1)[0]))

    def optimizer(self, optimizer: torch.optim.Optimizer, seed: int):
        """``optimizer`` made DP: per-example clipping to ``max_grad_norm``, then Gaussian noise."""
        from opacus.optimizers import DPOptimizer

        return DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier, max_grad_norm=self.budget.max_grad_norm,
                           expected_batch_size=self.expected_batch_size, loss_reduction="mean",
                           generator=self._generator(seed, 1))

    def batches(self, dataset, steps: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``steps`` Poisson-sampled batches: each example joins each batch with probability ``sample_rate``.

        A batch may be empty; it is still a step (noise only), since skipping it would reveal it.
        """
        from torch.utils.data import TensorDataset

        generator = self._generator(seed, 0)
        for _ in range(steps):
            idx = torch.nonzero(torch.rand(len(dataset), generator=generator) < self.sample_rate).flatten()
            if isinstance(dataset, TensorDataset):
                yield torch.index_select(dataset.tensors[0], 0, idx), torch.index_select(dataset.tensors[1], 0, idx)
                continue
            items = [dataset[int(j)] for j in idx]
            if not items:
                x0, _ = dataset[0]
                x0 = torch.as_tensor(x0)
                yield x0.new_zeros((0, *x0.shape)), torch.zeros(0, dtype=torch.long)
                continue
            yield torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items])

    # -- surviving a restart ------------------------------------------------------------------------
    def state(self) -> dict:
        """What a restarted member needs to go on spending from where it stopped: the accountant's
        history of (noise multiplier, sample rate, steps), plain JSON (never a pickle), and the
        proposals trained."""
        return {"accountant": self.budget.accountant, "proposals": self.proposals,
                "history": [[float(nm), float(rate), int(steps)] for nm, rate, steps in self.accountant.history]}

    def restore(self, state: dict, where: str) -> None:
        """Take up a saved :meth:`state`; anything malformed is a DataError naming ``where``."""
        from cohep.core.errors import DataError

        def bad(why: str):
            return DataError(f"{where}: {why}")

        if not isinstance(state, dict) or state.get("accountant") != self.budget.accountant:
            raise bad(f"accountant {state.get('accountant') if isinstance(state, dict) else state!r} is not this "
                      f"learner's ({self.budget.accountant})")
        history, proposals = state.get("history"), state.get("proposals")
        if not isinstance(proposals, int) or isinstance(proposals, bool) or proposals < 0:
            raise bad(f"proposals must be a count >= 0, got {proposals!r}")
        if not isinstance(history, list):
            raise bad("history must be a list of [noise_multiplier, sample_rate, steps]")
        steps = []
        for i, entry in enumerate(history):
            ok = (isinstance(entry, list) and len(entry) == 3
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry))
            if not ok or not (math.isfinite(entry[0]) and entry[0] > 0 and 0 < entry[1] <= 1
                              and float(entry[2]).is_integer() and entry[2] >= 1):
                raise bad(f"history[{i}] is not [noise_multiplier > 0, sample_rate in (0, 1], steps >= 1]: {entry!r}")
            steps.append((float(entry[0]), float(entry[1]), int(entry[2])))
        self.accountant.history = steps
        self.proposals = proposals

    def summary(self) -> dict:
        """What the manifest and report say about this learner's privacy."""
        return {
            "epsilon_budget": self.budget.epsilon, "epsilon_spent": round(self.epsilon(), 4), "delta": self.delta,
            "noise_multiplier": round(self.noise_multiplier, 4), "max_grad_norm": self.budget.max_grad_norm,
            "sample_rate": round(self.sample_rate, 6), "accountant": self.budget.accountant,
            "planned_proposals": self.budget.proposals, "proposals": self.proposals, "stopped": self.stopped,
        }


__all__ = ["Budget", "BudgetSpent", "PrivacySection", "PrivateTraining", "check_model", "dp_builder",
           "dp_compatible", "require_opacus"]
