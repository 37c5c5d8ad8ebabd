"""Named protocols: whole, tested round shapes a user picks with one word (``[experiment] protocol``).

Each shape is a handful of ``[round]``, ``[vote]`` and ``[train]`` settings that only work together
(the screens need several proposals a round, strikes need a direction floor...). A name fills them in
beneath what the file and the command line set, so every knob stays available for research and an
explicit value always wins; the result is validated like any other config.

Why names and not a file per shape: the guarded round took twelve settings in
``experiments/guarded_full_participation.toml``, and a new user who never opened that file got the
weakest protocol. docs/protocol_variants.md has the measurements behind each shape.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cohep.core.errors import ConfigError

#: the contract's slots per round (its member limit): a larger experiment is refused by its own check
MAX_PROPOSERS = 64


@dataclass(frozen=True)
class Protocol:
    """A named round shape: one line for the user, and its settings for ``learners`` members."""

    name: str
    summary: str
    #: (learners, the settings given explicitly) -> the shape's settings; an explicit round shape
    #: (say ``--proposers 1``) keeps the parts of the protocol that still fit it
    tables: Callable[[int, dict], dict]


def _paper(learners: int, explicit: dict) -> dict:
    return {"round": {"proposers": 1, "combine": "each"}}


def _guarded(learners: int, explicit: dict) -> dict:
    """Every member proposes every round; each proposal is screened (checks, update norm, peer score,
    update direction, the members' record) and the ones that pass are judged by their example-weighted
    average. The screens that compare proposals need three of them voted on one by one: with fewer
    proposers (two members, or an explicit ``round.proposers``) or ``combine = "average"`` only the
    screens that still apply are set, and strikes only over a negative direction floor."""
    shape, vote = explicit.get("round", {}), explicit.get("vote", {})
    k = _int(shape.get("proposers"), learners)
    each = shape.get("combine", "each") == "each"
    tables = {"round": {"proposers": min(learners, MAX_PROPOSERS), "combine": "each", "weighting": "examples"},
              "vote": {"metric": "accuracy_or_loss", "margin": -0.005}}
    if k >= 2 and each:
        tables["vote"]["judge"] = "screened_average"
    if k >= 3:
        tables["vote"].update(norm_bound=3.0, direction_floor=-0.1, direction_share=0.5)
        floor = vote.get("direction_floor", -0.1)
        if isinstance(floor, (int, float)) and floor < 0:
            tables["vote"]["strikes"] = 3
        if each:
            tables["vote"]["peer_margin"] = 0.3
    return tables


def _int(value, default: int) -> int:
    """An explicit count, or the default where it is missing or malformed (its own check names it)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _averaged(learners: int, explicit: dict) -> dict:
    """Every member proposes 1/learners of an epoch from the same start and the voters judge their
    average on the vote-set loss: the paper round's compute (one client-epoch a round) spread over
    all members (``avg5e-loss`` in docs/protocol_variants.md, the best of that family there; a
    server step above 1 diverged)."""
    return {
        "round": {"proposers": min(learners, MAX_PROPOSERS), "combine": "average"},
        "train": {"epochs": round(1.0 / learners, 4)},
        "vote": {"metric": "loss"},
    }


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("paper", "the paper's Colearn round: one drawn proposer, every other member votes", _paper),
    Protocol("guarded", "every member proposes; screened, example-weighted average; strikes", _guarded),
    Protocol("averaged", "every member proposes 1/n epoch; one vote on the average's loss", _averaged),
)}


def protocol_tables(name: str, learners: int, explicit: dict | None = None) -> dict:
    """The settings protocol ``name`` stands for with ``learners`` members (nested tables), fitted to
    the round shape ``explicit`` (the file's and the flags' own settings) gives, if any."""
    if name not in PROTOCOLS:
        raise ConfigError(f"experiment.protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name].tables(learners, explicit or {})


__all__ = ["PROTOCOLS", "Protocol", "protocol_tables"]
