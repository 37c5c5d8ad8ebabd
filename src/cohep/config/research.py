"""The research sections, ``[attack]`` and ``[degrade]``: data only, so the experiment file can be read
without the mechanisms that act on them (cohep.research.attacks and cohep.research.degrade).

The attack catalogue lives here too: its names and parameters are what ``[attack]`` is checked against.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from cohep.core.errors import ConfigError
from cohep.core.settings import Section, setting

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



# -- [attack] ----------------------------------------------------------------------


@dataclass(frozen=True)
class AttackSection(Section):
    """``[attack]`` (research only): which members are malicious and what they do; none by default.

    ``members`` is a count (the first N members) or a list of member indices. The manifest records
    the section with the rest of the config, and every row of a malicious member in records.csv
    names its attack.
    """

    section: ClassVar[str] = "attack"

    kind: str | None = setting(None, help="Research only: the attack malicious members run (see docs/attacks.md; "
                                          "none: everyone is honest); the manifest and records.csv say so.")
    members: int | tuple[int, ...] = setting(
        1, help="Research only: the malicious members, a count (the first N) or a list of indices.")
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


# -- [degrade] ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradeSection(Section):
    """``[degrade]``: which learner gets worse data, and how (no learner: nothing changes)."""

    section: ClassVar[str] = "degrade"

    learner: int | None = setting(None, ge=0, help="Index of the degraded learner (none: no degradation).")
    label_flip: float = setting(0.0, ge=0, le=1, help="Share of its train and vote labels flipped to another class.")
    keep: float = setting(1.0, gt=0, le=1, help="Share of its train and vote items it keeps (0.1: a tenth).")
    path: str | None = setting(None, help="Its own data file (same kind, shape and classes), instead of its share.")

    @property
    def active(self) -> bool:
        return self.learner is not None and (self.label_flip > 0 or self.keep < 1 or self.path is not None)

    def check(self) -> None:
        if self.learner is None and (self.label_flip > 0 or self.keep < 1 or self.path is not None):
            raise ConfigError("degrade.learner is required when degrade.label_flip, keep or path is set")
