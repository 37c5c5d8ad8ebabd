"""Byzantine members, for research: what a malicious proposer sends and how colluding voters vote.

The protocol's claim is that a member's vote on its private vote set stops bad proposals. This
module is the other side of that claim: a small registry of named attacks, each a pure function
(weights in, weights out, randomness from the caller's generator), so benches (``bench/byzantine.py``),
``cohep run --attack`` and the Flower baseline all attack the same way. Nothing here is used by an
honest member.

Weight-space attacks (:func:`craft`), on a proposal whose honest version is ``honest`` and whose
starting point is the adopted ``current`` weights (update ``u = honest - current``):

- ``sign_flip``: ``current - scale * u`` (the update negated; Blanchard et al. 2017, Fang et al. 2020).
- ``noise``: ``honest + N(0, sigma^2)`` on every float value (the Gaussian attack, Fang et al. 2020).
- ``scaled``: ``current + factor * u``, ``factor = 10`` (model replacement's boosting,
  Bagdasaryan et al. 2020, without a backdoor).
- ``stale``: weights this member adopted ``age`` acceptances ago (default: the oldest it kept):
  a replay of an old model.
- ``random``: every float tensor re-drawn from a normal with the mean and standard deviation of the
  current tensor (a re-initialised model of the same scale).
- ``nan``: the honest weights with every float value NaN (a gross attack the checks must catch).
- ``free_rider``: the current weights unchanged (claims a round without training).
- ``little_is_enough``: ``current + mu - z * sigma``, with ``mu`` and ``sigma`` the per-coordinate
  mean and standard deviation of the honest updates the attacker knows (its own and the accepted
  ones in ``history``); ``z`` small enough to stay within the spread of honest updates
  (Baruch, Baruch and Goldberg, "A Little Is Enough", NeurIPS 2019; :func:`baruch_z`).

Data-space attacks train honestly on poisoned data (:func:`poison`); the proposal is then the
honest training result:

- ``label_flip``: every training label ``l`` becomes ``K - 1 - l`` (Tolpegin et al. 2020).
- ``backdoor``: a share of the training images gets a trigger patch (:func:`apply_trigger`, a solid
  square in the bottom-right corner) and the label ``target`` (BadNets, Gu et al. 2017;
  Bagdasaryan et al. 2020). Clean accuracy barely moves, so a vote on accuracy is not expected to
  stop it; :func:`attack_success` measures it.

Vote-space attack: ``collude``: coalition members approve every proposal from the coalition and
reject everyone else's, whatever they score (see :class:`Behaviour`).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, ClassVar, Literal

import numpy as np

from .errors import ConfigError
from .learner import Weights
from .settings import Section, setting

Kind = Literal["weights", "data", "vote"]


@dataclass(frozen=True)
class Attack:
    """A named attack: where it acts, whether it is gross (the checks or any vote must stop it), its
    parameters with their defaults, and its reference."""

    name: str
    kind: Kind
    gross: bool
    params: dict
    reference: str
    summary: str


ATTACKS: dict[str, Attack] = {a.name: a for a in (
    Attack("sign_flip", "weights", True, {"scale": 1.0}, "Blanchard et al. 2017; Fang et al. 2020",
           "the update negated: current - scale * (honest - current)"),
    Attack("noise", "weights", True, {"sigma": 1.0}, "Fang et al. 2020 (Gaussian attack)",
           "honest + N(0, sigma^2) on every float value"),
    Attack("scaled", "weights", True, {"factor": 10.0}, "Bagdasaryan et al. 2020 (boosting)",
           "current + factor * (honest - current)"),
    Attack("stale", "weights", False, {"age": None}, "replay",
           "weights adopted `age` acceptances ago (default: the oldest kept)"),
    Attack("random", "weights", True, {}, "re-initialisation",
           "every float tensor re-drawn with the current tensor's mean and std"),
    Attack("nan", "weights", True, {}, "gross",
           "every float value NaN"),
    Attack("free_rider", "weights", False, {}, "free-riding (Lin et al. 2019)",
           "the current weights unchanged"),
    Attack("little_is_enough", "weights", False, {"z": 1.0}, "Baruch et al. 2019",
           "current + mean - z * std of the known honest updates, per coordinate"),
    Attack("label_flip", "data", False, {}, "Tolpegin et al. 2020",
           "trains on labels l -> K - 1 - l"),
    Attack("backdoor", "data", False, {"target": 0, "share": 0.3, "size": 4, "value": 1.0},
           "BadNets (Gu et al. 2017); Bagdasaryan et al. 2020",
           "trains with a trigger patch mapped to class `target` on a share of its images"),
    Attack("collude", "vote", False, {}, "collusion",
           "approve the coalition's proposals, reject everyone else's"),
)}

#: the attacks any check or vote must stop: a proposal of these accepted is a failure of the protocol
GROSS = tuple(name for name, a in ATTACKS.items() if a.gross)
WEIGHT_ATTACKS = tuple(name for name, a in ATTACKS.items() if a.kind == "weights")
DATA_ATTACKS = tuple(name for name, a in ATTACKS.items() if a.kind == "data")


def get(name: str) -> Attack:
    """The attack called ``name``; a ValueError naming the known ones otherwise."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r} (known: {', '.join(ATTACKS)})")
    return ATTACKS[name]


def parameters(name: str, params: dict | None = None) -> dict:
    """The attack's parameters: its defaults overridden by ``params``; unknown names are an error."""
    attack = get(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(attack.params))
    if unknown:
        known = ", ".join(attack.params) or "none"
        raise ValueError(f"attack {name} has no parameter {unknown[0]!r} (known: {known})")
    return {**attack.params, **params}


def _floats(w: np.ndarray) -> bool:
    return np.asarray(w).dtype.kind == "f"


def _map(fn: Callable[[str, np.ndarray], np.ndarray], weights: Weights) -> dict[str, np.ndarray]:
    """Apply ``fn`` to float tensors (same dtype and shape); integer buffers (counters) are copied."""
    out = {}
    for name, value in weights.items():
        value = np.asarray(value)
        out[name] = np.asarray(fn(name, value), dtype=value.dtype).reshape(value.shape) if _floats(value) \
            else value.copy()
    return out


def baruch_z(n: int, m: int) -> float:
    """Baruch et al.'s z_max for ``n`` members of which ``m`` malicious: the largest deviation (in
    standard deviations) that still leaves the malicious value closer to the mean than enough honest
    ones, ``s = floor(n / 2 + 1) - m``, ``z = Phi^-1((n - s) / n)``."""
    if not 0 <= m < n:
        raise ValueError(f"need 0 <= malicious < members, got {m} of {n}")
    s = math.floor(n / 2 + 1) - m
    p = (n - s) / n
    return float(NormalDist().inv_cdf(min(max(p, 1e-6), 1 - 1e-6)))


def craft(name: str, current: Weights, honest: Weights, *, rng: np.random.Generator,
          history: Sequence[Weights] = (), **params: Any) -> Weights:
    """The malicious proposal of weight-space attack ``name``.

    ``current``: the weights the round starts from (adopted by everyone); ``honest``: what honest
    training proposed from them; ``history``: weights adopted before (oldest first), for ``stale``
    and ``little_is_enough``. ``params`` override the attack's defaults (:data:`ATTACKS`). The
    result has the names, order, shapes and dtypes of ``current``; the inputs are not changed.
    """
    attack = get(name)
    if attack.kind != "weights":
        raise ValueError(f"attack {name} is a {attack.kind} attack, not a weight-space one (see poison / Behaviour)")
    p = parameters(name, params)
    if list(current) != list(honest):
        raise ValueError("current and honest weights must name the same tensors in the same order")
    if name == "sign_flip":
        return _map(lambda k, c: c - p["scale"] * (np.asarray(honest[k]) - c), current)
    if name == "scaled":
        return _map(lambda k, c: c + p["factor"] * (np.asarray(honest[k]) - c), current)
    if name == "noise":
        return _map(lambda k, h: h + rng.normal(0.0, p["sigma"], size=h.shape), honest)
    if name == "nan":
        return _map(lambda k, h: np.full(h.shape, np.nan), honest)
    if name == "free_rider":
        return _map(lambda k, c: c.copy(), current)
    if name == "random":
        return _map(lambda k, c: rng.normal(float(c.mean()) if c.size else 0.0,
                                            float(c.std()) if c.size > 1 else 1.0, size=c.shape), current)
    if name == "stale":
        if not history:
            raise ValueError("attack stale needs a history of adopted weights")
        age = p["age"]
        if age is not None and not 1 <= int(age) <= len(history):
            raise ValueError(f"attack stale: age must be in 1..{len(history)}, got {age}")
        old = history[0] if age is None else history[-int(age)]
        return {k: np.array(old[k], copy=True) for k in current}  # counters included: a replay is whole
    if name == "little_is_enough":
        chain = list(history) + [current]
        updates = [{k: np.asarray(b[k], np.float64) - np.asarray(a[k], np.float64) for k in current}
                   for a, b in itertools.pairwise(chain)]
        updates.append({k: np.asarray(honest[k], np.float64) - np.asarray(current[k], np.float64) for k in current})

        def lie(k, c):
            stack = np.stack([u[k] for u in updates])
            return c + stack.mean(0) - p["z"] * stack.std(0)

        return _map(lie, current)
    raise AssertionError(f"attack {name} is registered but has no crafting rule")  # pragma: no cover


# -- data-space attacks --------------------------------------------------------------------------


def apply_trigger(images, *, size: int = 4, value: float = 1.0):
    """A copy of ``images`` ``[N, C, H, W]`` (numpy or torch) with the trigger: a ``size`` x ``size``
    square of ``value`` in the bottom-right corner of every channel (BadNets' pixel pattern)."""
    out = images.clone() if hasattr(images, "clone") else np.array(images, copy=True)
    if out.ndim != 4 or out.shape[-1] < size or out.shape[-2] < size:
        raise ValueError(f"apply_trigger needs images [N, C, H, W] of at least {size}x{size}, got {tuple(out.shape)}")
    out[..., -size:, -size:] = value
    return out


def poison(name: str, dataset, *, rng: np.random.Generator, num_classes: int, **params: Any):
    """A poisoned copy of a learner's training set (a torch ``TensorDataset``) for data attack ``name``.

    ``label_flip`` maps every label ``l`` to ``num_classes - 1 - l``; ``backdoor`` stamps the trigger
    on a ``share`` of the items drawn with ``rng`` and labels them ``target``. The input is not changed.
    """
    import torch
    from torch.utils.data import TensorDataset

    attack = get(name)
    if attack.kind != "data":
        raise ValueError(f"attack {name} is a {attack.kind} attack, not a data one")
    p = parameters(name, params)
    x, y = _tensors(dataset)
    x, y = x.clone(), y.clone().to(torch.long)
    if name == "label_flip":
        y = (num_classes - 1) - y
    else:
        if not 0 <= int(p["target"]) < num_classes:
            raise ValueError(f"attack backdoor: target must be a class in 0..{num_classes - 1}, got {p['target']}")
        k = round(float(p["share"]) * len(y))
        chosen = torch.from_numpy(np.sort(rng.choice(len(y), size=k, replace=False)).astype(np.int64))
        if k:
            x[chosen] = apply_trigger(x[chosen], size=int(p["size"]), value=float(p["value"]))
            y[chosen] = int(p["target"])
    return TensorDataset(x, y)


def _tensors(dataset):
    import torch

    if hasattr(dataset, "tensors"):
        return dataset.tensors[0], dataset.tensors[1]
    xs, ys = zip(*(dataset[j] for j in range(len(dataset))))
    return torch.stack([torch.as_tensor(v) for v in xs]), torch.as_tensor(np.asarray(ys))


def attack_success(predict: Callable[[Any], np.ndarray], images, labels, *, target: int = 0, size: int = 4,
                   value: float = 1.0) -> float:
    """The backdoor's success rate: the share of test images not of class ``target`` that the model
    puts in ``target`` once triggered. ``predict(images) -> class indices``."""
    labels = np.asarray(labels)
    keep = labels != target
    if not keep.any():
        return math.nan
    idx = np.flatnonzero(keep)
    triggered = apply_trigger(images[idx], size=size, value=value)
    return float((np.asarray(predict(triggered)) == target).mean())


# -- a member's behaviour ----------------------------------------------------------------------


@dataclass
class Behaviour:
    """What makes a member malicious: the seam a :class:`~cohep.participant.Participant` consults.

    ``propose`` turns the honest proposal into the attack's (weight-space attacks; data attacks
    already trained on poisoned data, so they propose what they trained); ``vote`` overrides the
    honest verdict for colluders (every malicious member of the coalition approves the coalition's
    proposals and rejects the others'); ``adopted`` keeps the history ``stale`` and
    ``little_is_enough`` need. An honest member has no behaviour at all.
    """

    attack: str
    coalition: frozenset  #: addresses of every malicious member (this one included)
    params: dict = field(default_factory=dict)
    seed: int = 0
    collude: bool = False  #: also vote for the coalition and against everyone else (always for "collude")
    keep: int = 8  #: adopted weights kept for history
    history: list = field(default_factory=list, repr=False)
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parameters(self.attack, self.params)  # unknown attack or parameter: fail at construction
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xBAD]))

    def adopted(self, weights: Weights) -> None:
        self.history.append({k: np.array(v, copy=True) for k, v in weights.items()})
        del self.history[:-self.keep]

    def propose(self, current: Weights, honest: Weights) -> Weights:
        if get(self.attack).kind != "weights":
            return honest
        past = self.history[:-1] if self.history and _same(self.history[-1], current) else self.history
        if self.attack == "stale" and not past:
            return honest  # nothing old to replay yet: behave until there is
        return craft(self.attack, current, honest, rng=self.rng, history=past, **self.params)

    def vote(self, proposer: str, approve: bool) -> bool:
        if not (self.collude or self.attack == "collude"):
            return approve
        return proposer in self.coalition


def _same(a: Weights, b: Weights) -> bool:
    return list(a) == list(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


# -- the [attack] section ----------------------------------------------------------------------


@dataclass(frozen=True)
class AttackSection(Section):
    """``[attack]`` (research only): which members are malicious and what they do; none by default.

    ``members`` is a count (the first N members) or a list of member indices. The manifest records
    the section with the rest of the config, and every row of a malicious member in records.csv
    names its attack.
    """

    section: ClassVar[str] = "attack"

    kind: str | None = setting(None, help="Research only: the malicious members' attack (none: everyone is honest).")
    members: int | tuple[int, ...] = setting(1, help="Malicious members: a count (the first N) or a list of indices.")
    params: dict = setting(factory=dict)
    collude: bool = setting(False, help="Malicious voters approve the coalition and reject everyone else.")

    @property
    def active(self) -> bool:
        return self.kind is not None

    def check(self) -> None:
        if self.kind is None:
            return
        try:
            parameters(self.kind, self.params)
        except ValueError as exc:
            where = "attack.kind" if self.kind not in ATTACKS else "attack.params"
            raise ConfigError(f"{where}: {exc}") from None
        if isinstance(self.members, int):
            if self.members < 1:
                raise ConfigError(f"attack.members must be a count >= 1 or a list of indices, got {self.members}")
        elif not self.members or any(i < 0 for i in self.members) or len(set(self.members)) != len(self.members):
            raise ConfigError(f"attack.members must list distinct member indices >= 0, got {list(self.members)}")

    def malicious(self, n: int) -> tuple[int, ...]:
        """The malicious members' indices among ``n`` members (none without an attack)."""
        if self.kind is None:
            return ()
        chosen = tuple(range(self.members)) if isinstance(self.members, int) else tuple(sorted(self.members))
        if len(chosen) >= n or chosen[-1] >= n:
            raise ConfigError(f"attack.members ({list(chosen)}) must leave at least one of the {n} members honest "
                              f"and name members below {n}")
        return chosen

    def behaviours(self, members: Sequence[str], seed: int) -> list[Behaviour | None]:
        """One entry per member: its Behaviour if malicious, else None."""
        bad = self.malicious(len(members))
        coalition = frozenset(members[i] for i in bad)
        return [Behaviour(self.kind, coalition, dict(self.params), seed=int(np.random.SeedSequence([seed, i]).generate_state(1)[0]),
                          collude=self.collude) if i in bad else None
                for i in range(len(members))]

    def train_set(self, index: int, dataset, *, n: int, seed: int, num_classes: int):
        """Member ``index``'s training set: poisoned if it is malicious with a data attack."""
        if self.kind is None or get(self.kind).kind != "data" or index not in self.malicious(n):
            return dataset
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9015, index]))
        return poison(self.kind, dataset, rng=rng, num_classes=num_classes, **self.params)
