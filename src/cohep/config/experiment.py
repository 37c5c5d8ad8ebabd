"""The experiment file: one TOML file read by ``cohep run``, ``train``, ``deploy`` and ``compete``.

Each table of the file is a :class:`~cohep.core.settings.Section`. The sections of the mechanisms
are declared next to them (``[train]`` in frameworks/training.py, ``[vote]`` in protocol/vote.py,
``[round]`` in protocol/combine.py, ``[privacy]`` in frameworks/privacy.py, ``[attack]`` and
``[degrade]`` in config/research.py); the ones that belong to no mechanism (``[experiment]``,
``[data]``, ``[model]``, ``[chain]``, ``[store]``, ``[central]``, ``[competition]``) are declared
here, and :class:`ExperimentConfig` assembles them all with the rules that span sections. CLI flags
are overrides of ``section.field`` (the ``*_FLAGS`` tables in cli.py), and their help is the
fields' help; every value is validated once, when its section is built.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from cohep.protocol.combine import RoundSection
from cohep.core.errors import ConfigError
from cohep.frameworks.privacy import PrivacySection
from cohep.frameworks.training import TrainConfig
from cohep.protocol.vote import VoteRule
from cohep.config.protocols import protocol_tables
from cohep.config.research import AttackSection, DegradeSection
from cohep.config.tracking import TrackingSection
from cohep.core.settings import Section, Share, from_mapping, merge, read_toml, setting

__all__ = ["ExperimentConfig", "load", "from_dict", "merge"]


@dataclass(frozen=True)
class ExperimentSection(Section):
    """``[experiment]``: what runs and how it is seeded."""

    section: ClassVar[str] = "experiment"

    name: str = setting("experiment", help="Experiment name (a local run's default directory is runs/<name>).")
    mode: Literal["colearn", "individual", "centralised"] = setting(
        "colearn", help="What runs: the protocol, each learner alone, or one model on the pooled data.")
    learners: int = setting(3, ge=1, help="Number of learners.")
    rounds: int = setting(10, ge=1, help="Number of rounds.")
    seed: int = setting(0, ge=0, help="Seed: the same seed and config give the same records.")
    #: a named round shape (config/protocols.py) filled in beneath the file's and the flags' own values
    protocol: Literal["paper", "guarded", "averaged"] = setting(
        "guarded", help="Named protocol: paper (one proposer), guarded (all propose, screened), "
                      "averaged (all propose 1/n epoch, one vote on the average).")
    #: stop after the round that passes this many seconds of wall time (a budget; None: all rounds)
    max_seconds: float | None = setting(None, gt=0, help="Wall-clock budget: no round starts after it.")

    def check(self) -> None:
        if self.mode == "colearn" and self.learners < 2:
            raise ConfigError("experiment.learners must be at least 2 for colearn mode")


@dataclass(frozen=True)
class DataSection(Section):
    """``[data]``: the pooled data set and how it is dealt out to learners."""

    section: ClassVar[str] = "data"

    #: ``auto``: an ``.h5`` / ``.hdf5`` path is an event file, anything else MNIST (IDX folder or npz)
    kind: Literal["auto", "mnist", "events"] = setting("auto", help="Data kind (auto: by the file name).")
    path: str | None = setting(None, help="Data path: MNIST folder or npz, or an HDF5 event file.")
    #: items at the end held out for testing: a fraction, or a count
    holdout: Share = setting(0.2, help="Held-out test items: a count, or a fraction < 1.")
    split: Literal["iid", "dirichlet"] = setting("iid", help="How items are dealt out: iid, or class-skewed (see alpha).")
    alpha: float = setting(0.5, gt=0, help="Dirichlet alpha for class-skewed splits.")
    vote_fraction: float = setting(0.2, gt=0, lt=1, help="Share of each learner's data kept as its vote set.")
    limit: int | None = setting(None, ge=1, help="Use only the first N items.")

    def resolved_kind(self) -> str:
        """The data kind, with ``auto`` decided by the path (:func:`kind_of_path`)."""
        if self.kind != "auto":
            return self.kind
        return kind_of_path(self.path)


#: file name endings ``data.kind = "auto"`` reads as HDF5 event files, and as MNIST (no ending: a folder)
EVENT_SUFFIXES = (".h5", ".hdf5", ".hdf")
MNIST_SUFFIXES = ("", ".npz", ".gz")


def kind_of_path(path: str | None) -> str:
    """``events`` for an HDF5 file, ``mnist`` for no path (the download), a folder, an ``.npz`` or an
    IDX file; any other name is one line naming it and what cohep reads, not a misleading parse error."""
    if not path:
        return "mnist"
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in EVENT_SUFFIXES:
        return "events"
    if suffix in MNIST_SUFFIXES or p.is_dir() or "idx" in p.name.lower():
        return "mnist"
    raise ConfigError(f"{path}: cohep cannot tell the data kind from the name; it reads HDF5 event files "
                      f"({', '.join(EVENT_SUFFIXES)}) and MNIST (an IDX folder or file, or an .npz): convert "
                      "other data with `cohep import`, or give data.kind (--data-kind)")


@dataclass(frozen=True)
class ModelSection(Section):
    """``[model]``: the architecture every learner trains (``cohep models`` lists them)."""

    section: ClassVar[str] = "model"

    #: None: the registry's default for the data's shape (compact for event images)
    name: str | None = setting(None, help="Model name (see `cohep models`; default: the one that fits the data).")
    params: dict = setting(factory=dict)


#: the vote window's floor in blocks when it follows the member count
DEFAULT_VOTE_WINDOW = 50
#: members a colearn run takes per ``[chain] ballots`` mode: the contracts' MAX_MEMBERS (256, a bit a
#: member in a word) for per-vote transactions and aggregated bundles; signed ballots go in one batch a
#: round, which Coordinator.vy caps at MAX_BATCH (64) entries
MAX_MEMBERS_BY_BALLOTS = {"transactions": 256, "signed": 64, "aggregate": 256}
MAX_MEMBERS = max(MAX_MEMBERS_BY_BALLOTS.values())


@dataclass(frozen=True)
class ChainSection(Section):
    """``[chain]``: where the coordinator contract runs."""

    section: ClassVar[str] = "chain"

    rpc: str | None = setting(None, help="Ethereum JSON-RPC URL (default: embedded chain).")  #: None: in-process EVM
    proposal_window: int = setting(50, ge=1, le=1_000_000, help="Blocks a proposer has to propose.")  #: the contract's bound
    #: blocks; None: follows the member count (:meth:`resolved_vote_window`)
    vote_window: int | None = setting(None, ge=1, le=1_000_000,
                                      help="Blocks voters have to vote (default: max(50, 2 (members - 1))).")
    max_missed: int = setting(3, ge=1, help="Duties a member may miss in a row before the contract suspends it.")
    #: "transactions": each voter sends vote(); "signed": EIP-712 ballots, one submit_ballots per round;
    #: "aggregate": one post a phase whose chain cost does not grow with the members, challengeable
    #: (an AggregateCoordinator; docs/contract.md, Aggregated ballots)
    ballots: Literal["transactions", "signed", "aggregate"] = setting(
        "transactions", help="How votes reach the chain: a transaction each, EIP-712 ballots in one transaction a "
                             "phase, or one aggregated post a phase (challengeable).")
    #: ballots = "aggregate": blocks after a post in which a member can prove it wrong
    challenge_window: int = setting(2, ge=2, le=100_000, help="Blocks a member has to challenge an aggregated post.")

    def resolved_vote_window(self, members: int) -> int:
        """The vote window, by default twice the voters' count (at least 50 blocks): on an
        auto-mining chain each vote transaction takes a block, and the rest is slack for retries."""
        if self.vote_window is not None:
            return self.vote_window
        return max(DEFAULT_VOTE_WINDOW, 2 * (members - 1))


@dataclass(frozen=True)
class StoreSection(Section):
    """``[store]``: where proposed weights are kept, by digest."""

    section: ClassVar[str] = "store"

    url: str | None = setting(None, help="Weight store URL (default: <run dir>/weights).")


@dataclass(frozen=True)
class CentralSection(Section):
    """``[central]``: what ``cohep train`` adds: epochs, the validation split, the output folder."""

    section: ClassVar[str] = "central"

    epochs: int = setting(10, ge=1, help="Training epochs.")
    val_fraction: Share = setting(0.2, help="Validation share (< 1) or count (>= 1), stratified.")
    val: str | None = setting(None, help="Separate validation HDF5 file (instead of --val-fraction).")
    #: training-set events re-scored after each epoch (comparable with validation); None: all
    train_eval: int | None = setting(2000, ge=1)
    out: str | None = setting(None, help="Output folder (default: runs/train-<model>).")


@dataclass(frozen=True)
class CompetitionSection(Section):
    """``[competition]``: entries (a registered model with params, each owned by a member) compete on
    the experiment's task at an equal budget, and every other member scores every entry."""

    section: ClassVar[str] = "competition"

    #: ``[[competition.entries]]`` tables: name, model, params (optional), owner (member index)
    entries: tuple[dict, ...] = ()
    #: "colearn": each entry is trained through the protocol by all members; "owner": by its owner alone
    training: Literal["colearn", "owner"] = setting(
        "colearn", help="Who trains each entry: every member through the protocol, or its owner alone.")
    bootstrap: int = setting(1000, ge=10)  #: resamples of the vote events for each entry's interval


@dataclass(frozen=True)
class ExperimentConfig(Section):
    """Every section of an experiment file."""

    section: ClassVar[str] = ""  # file level: its tables are named bare

    experiment: ExperimentSection = setting(factory=ExperimentSection)
    data: DataSection = setting(factory=DataSection)
    model: ModelSection = setting(factory=ModelSection)
    train: TrainConfig = setting(factory=TrainConfig)
    vote: VoteRule = setting(factory=VoteRule)
    round: RoundSection = setting(factory=RoundSection)
    chain: ChainSection = setting(factory=ChainSection)
    store: StoreSection = setting(factory=StoreSection)
    central: CentralSection = setting(factory=CentralSection)
    degrade: DegradeSection = setting(factory=DegradeSection)
    competition: CompetitionSection = setting(factory=CompetitionSection)
    privacy: PrivacySection = setting(factory=PrivacySection)
    attack: AttackSection = setting(factory=AttackSection)
    tracking: TrackingSection = setting(factory=TrackingSection)

    def check(self) -> None:
        n = self.experiment.learners
        if self.privacy.active and self.experiment.mode != "colearn":
            raise ConfigError(f"privacy: only colearn proposals are trained privately, experiment.mode is "
                              f"{self.experiment.mode}")
        self.privacy.check_learners(n)
        if self.privacy.active and self.train.class_weight != "none":
            raise ConfigError("train.class_weight = \"balanced\" weights the loss by the private train set's class "
                              "counts, which the privacy accountant does not cover: use \"none\" with [privacy]")
        if self.attack.active:
            if self.experiment.mode != "colearn":
                raise ConfigError(f"attack.kind needs experiment.mode colearn, got {self.experiment.mode}")
            self.attack.malicious(n)
        bound = MAX_MEMBERS_BY_BALLOTS[self.chain.ballots]
        if self.experiment.mode == "colearn" and n > bound:
            raise ConfigError(f"experiment.learners must be at most {bound} for colearn mode with chain.ballots = "
                              f"\"{self.chain.ballots}\", got {n}")
        if self.experiment.mode == "colearn" and self.round.proposers > n:
            raise ConfigError(f"round.proposers ({self.round.proposers}) must be at most experiment.learners ({n})")
        if self.vote.norm_bound is not None and self.round.proposers < 3:
            raise ConfigError(f"vote.norm_bound compares the proposals of one round: it needs round.proposers "
                              f">= 3, got {self.round.proposers}")
        if self.vote.direction_floor is not None and self.round.proposers < 3:
            raise ConfigError(f"vote.direction_floor compares the proposals of one round: it needs round.proposers "
                              f">= 3, got {self.round.proposers}")
        if self.vote.direction_share and self.vote.direction_floor is None:
            raise ConfigError("vote.direction_share raises vote.direction_floor: set the floor too")
        if self.vote.strikes is not None and (self.vote.direction_floor is None or self.vote.direction_floor >= 0):
            raise ConfigError("vote.strikes holds a struck member to a direction floor of 0: it needs a negative "
                              "vote.direction_floor")
        if self.vote.peer_margin is not None and (self.round.proposers < 3 or self.round.combine != "each"):
            raise ConfigError(f"vote.peer_margin compares the proposals of one round voted on one by one: it needs "
                              f"round.proposers >= 3 and round.combine = \"each\", got {self.round.proposers} "
                              f"and {self.round.combine!r}")
        if self.vote.judge == "screened_average" and (self.round.proposers < 2 or self.round.combine != "each"):
            raise ConfigError(f"vote.judge = \"screened_average\" judges the slots of one round voted on one by one: "
                              f"it needs round.proposers >= 2 and round.combine = \"each\", got {self.round.proposers} "
                              f"and {self.round.combine!r}")
        if (self.experiment.mode == "colearn" and self.chain.ballots == "aggregate"
                and self.round.proposers > 1 and self.round.combine != "average"):
            raise ConfigError(f"chain.ballots = \"aggregate\" claims one verdict a round: it needs round.proposers = 1 "
                              f"or round.combine = \"average\", got {self.round.proposers} and {self.round.combine!r} "
                              "(protocol = \"paper\" or \"averaged\")")
        if (self.experiment.mode == "colearn" and self.chain.ballots == "aggregate"
                and 2 * self.chain.challenge_window >= self.chain.resolved_vote_window(n)):
            raise ConfigError(f"chain.challenge_window ({self.chain.challenge_window}) must be under half the vote "
                              f"window ({self.chain.resolved_vote_window(n)} blocks)")
        voters = n if self.round.proposers > 1 else n - 1  # with several slots the proposers vote too
        if (self.experiment.mode == "colearn" and self.chain.ballots == "transactions"
                and self.chain.resolved_vote_window(n) < voters):
            # each vote is its own transaction; on an auto-mining chain each takes a block
            raise ConfigError(
                f"chain.vote_window ({self.chain.vote_window} blocks) must be at least the voters "
                f"({voters}: learners{' - 1' if voters < n else ''})"
            )

    def replace(self, **sections: dict) -> "ExperimentConfig":
        """A copy with some fields overridden: ``replace(train={"epochs": 2})``. A new protocol or member
        count re-shapes the round: a value still equal to what the old protocol implied, or to the
        setting's default where the new protocol sets it, is the new one's to set, unless ``sections``
        names it. (The copy holds every setting, so without the second rule a switch from a baseline
        or the paper round to "guarded" kept the paper's defaults beneath its proposers: no screens.)"""
        old = self.to_dict()
        new = merge(old, sections)
        before, after = old["experiment"], new["experiment"]
        if (before["protocol"], before["learners"], before["mode"]) != (after["protocol"], after["learners"],
                                                                         after["mode"]):
            # what each side's protocol shaped (only a colearn run's round is shaped: with_protocol)
            implied = protocol_tables(before["protocol"], before["learners"]) if before["mode"] == "colearn" else {}
            coming = protocol_tables(after["protocol"], after["learners"]) if after["mode"] == "colearn" else {}
            defaults = ExperimentConfig().to_dict()
            for name in set(implied) | set(coming):
                for key in set(implied.get(name, {})) | set(coming.get(name, {})):
                    value = new[name].get(key)
                    if key in sections.get(name, {}) or key not in new[name]:
                        continue
                    if value == implied.get(name, {}).get(key, _UNSET) or (
                            key in coming.get(name, {}) and value == defaults[name].get(key, _UNSET)):
                        del new[name][key]
        return from_dict(new)


_UNSET = object()  # no value: equal to nothing

#: table name -> section class, for every table an experiment file may hold
SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(ExperimentConfig)[f.name] for f in fields(ExperimentConfig)}


def from_dict(raw: dict) -> ExperimentConfig:
    """Build and validate from nested tables (a parsed TOML file, or a manifest's ``config``)."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a table of sections")
    for key, value in raw.items():
        if key not in SECTIONS:
            raise ConfigError(f"unknown section [{key}] (known: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table, got {value!r}")
    return from_mapping(ExperimentConfig, with_protocol(raw))


def with_protocol(raw: dict) -> dict:
    """``raw`` over the settings its ``experiment.protocol`` names: an explicit value always wins."""
    experiment = raw.get("experiment", {})
    name = experiment.get("protocol", ExperimentSection.protocol)
    learners = experiment.get("learners", ExperimentSection.learners)
    if not isinstance(name, str) or isinstance(learners, bool) or not isinstance(learners, int) or learners < 1:
        return raw  # the section's own checks name the bad value
    if experiment.get("mode", ExperimentSection.mode) != "colearn":
        return raw  # the baselines have no round to shape
    return merge(protocol_tables(name, learners, raw), raw)


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a TOML file (optional), apply overrides (nested dict), validate; errors name the file."""
    raw = read_toml(path) if path is not None else {}
    if path is None:
        return from_dict(merge(raw, overrides or {}))
    try:
        from_dict(raw)  # the file alone first, so its own mistakes are reported against it
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return from_dict(merge(raw, overrides or {}))


def to_toml_dict(cfg: ExperimentConfig) -> dict:
    """The config as plain nested tables without None values (TOML has no null)."""

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if v is not None}
        if isinstance(obj, tuple):
            return list(obj)
        return obj

    return strip(dataclasses.asdict(cfg))
