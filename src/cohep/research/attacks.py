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
from typing import Any

import numpy as np

from cohep.frameworks.batches import as_tensors
from cohep.protocol.screens import apply_trigger
from cohep.frameworks.learner import Weights
from cohep.config.research import AttackSection, get, parameters

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
    x, y = as_tensors(dataset)
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
    """What makes a member malicious: a :class:`cohep.protocol.misbehaviour.Misbehaviour`, the one seam
    a :class:`~cohep.protocol.participant.Participant` consults (an honest member's is ``HONEST``).

    ``propose`` turns the honest proposal into the attack's (weight-space attacks; data attacks
    already trained on poisoned data, so they propose what they trained); ``vote`` overrides the
    honest verdict for colluders (every malicious member of the coalition approves the coalition's
    proposals and rejects the others'); ``adopted`` keeps the history ``stale`` and
    ``little_is_enough`` need.
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

    def propose(self, adopted: Callable[[], Weights], honest: Weights) -> Weights:
        """The attack's weights instead of ``honest``; ``adopted()``: a copy of the weights it holds."""
        if get(self.attack).kind != "weights":
            return honest
        current = adopted()
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


# -- what [attack] makes of members ---------------------------------------------------------------


def behaviours(section: AttackSection, members: Sequence[str], seed: int) -> list[Behaviour | None]:
    """One entry per member of an ``[attack]`` run: its Behaviour if malicious, else None."""
    bad = section.malicious(len(members))
    coalition = frozenset(members[i] for i in bad)
    return [Behaviour(section.kind, coalition, dict(section.params),
                      seed=int(np.random.SeedSequence([seed, i]).generate_state(1)[0]),
                      collude=section.collude) if i in bad else None
            for i in range(len(members))]


def train_set(section: AttackSection, index: int, dataset, *, n: int, seed: int, num_classes: int):
    """Member ``index``'s training set: poisoned if it is malicious with a data attack."""
    if section.kind is None or get(section.kind).kind != "data" or index not in section.malicious(n):
        return dataset
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9015, index]))
    return poison(section.kind, dataset, rng=rng, num_classes=num_classes, **section.params)
