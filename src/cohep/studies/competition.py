"""Model competition: architectures compete on one task, judged impartially by every member.

Each entry is a registered model with its parameters, owned by a member. Every entry trains at the
same budget (the experiment's rounds, or ``experiment.max_seconds`` of wall time), through the
protocol by all members (``training = "colearn"``) or by its owner alone (``"owner"``). Then every
member scores every other member's finished entry on its private vote set and records the score on
a Competition contract (members only, once per entry, never one's own). The leaderboard comes from
the recorded scores: each entry's mean with a bootstrap interval over the vote events, the
cross-evaluation matrix (member x entry) and the winner: the entry a majority of members prefer to
each other entry (members compare two entries only when they scored both; no one scores its own).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cohep import models
from cohep.outputs import rundir
from cohep.config.experiment import ExperimentConfig
from cohep.core.errors import ConfigError
from cohep.core.files import atomic_write_text, write_json

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True)
class EntrySpec:
    """One entry as configured: ``[[competition.entries]]``."""

    name: str
    model: str
    params: dict
    owner: int


def parse_entries(raw, n_members: int) -> list[EntrySpec]:
    """Check the configured entries; a malformed one is one line naming ``competition.entries[i].field``."""
    if not raw or len(raw) < 2:
        raise ConfigError("competition.entries: a competition needs at least 2 entries")
    out, names = [], set()
    for i, e in enumerate(raw):
        where = f"competition.entries[{i}]"
        unknown = sorted(set(e) - {"name", "model", "params", "owner"})
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]} (known: name, model, params, owner)")
        name = e.get("name")
        if not isinstance(name, str) or not name or not set(name) <= _NAME_OK:
            raise ConfigError(f"{where}.name must be a non-empty name of letters, digits, '_', '-' or '.', got {name!r}")
        if name in names:
            raise ConfigError(f"{where}.name {name!r} is used twice")
        names.add(name)
        model = e.get("model")
        if not isinstance(model, str):
            raise ConfigError(f"{where}.model must name a registered model, got {model!r}")
        models.get(model)  # unknown models list the known ones
        params = e.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"{where}.params must be a table, got {params!r}")
        owner = e.get("owner")
        if isinstance(owner, bool) or not isinstance(owner, int) or not 0 <= owner < n_members:
            raise ConfigError(f"{where}.owner must be a member index 0..{n_members - 1}, got {owner!r}")
        out.append(EntrySpec(name, model, dict(params), owner))
    return out


@dataclass
class Standing:
    """One entry on the leaderboard."""

    name: str
    model: str
    owner: int
    fits: bool = True
    reason: str = ""  #: why it could not take part (it does not fit the task)
    mean: float = math.nan  #: mean of the recorded scores (other members' vote-set accuracy)
    low: float = math.nan  #: 95 % bootstrap interval over the pooled vote events
    high: float = math.nan
    wins: int = 0  #: entries it beats by the majority of the members that scored both
    scores: dict = field(default_factory=dict)  #: member index -> recorded score
    rounds: int = 0  #: training rounds it got within the budget


@dataclass
class Leaderboard:
    standings: list[Standing]
    winner: str | None
    tied: list[str]
    contract: str
    chain_id: int
    files: dict = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"{'rank':>4}  {'entry':<16} {'model':<12} {'owner':>5} {'mean':>7}  {'95% interval':<15} "
                 f"{'beats':>5}"]
        ranked = [s for s in self.standings if s.fits]
        for k, s in enumerate(ranked, 1):
            lines.append(f"{k:>4}  {s.name:<16} {s.model:<12} {s.owner:>5} {s.mean:>7.4f}  "
                         f"[{s.low:.4f}, {s.high:.4f}] {s.wins:>5}")
        for s in self.standings:
            if not s.fits:
                lines.append(f"   -  {s.name:<16} {s.model:<12} {s.owner:>5} did not take part: {s.reason}")
        if self.winner:
            lines.append(f"winner: {self.winner} (preferred to every other entry by a majority of the members "
                         "that scored both)")
        else:
            lines.append(f"no winner: no entry is preferred to every other by a majority of members; "
                         f"{' and '.join(self.tied)} lead")
        return "\n".join(lines)


def rank(standings: list[Standing]) -> tuple[list[Standing], str | None, list[str]]:
    """Order the entries that took part and find the winner: the entry a majority of the members
    that scored both prefers to each other entry (a Condorcet winner). Without one, no winner is
    named and the entries with the most pairwise wins lead (ties on mean score stay listed)."""
    fitting = [s for s in standings if s.fits]
    for a in fitting:
        a.wins = 0
        for b in fitting:
            both = [i for i in a.scores if i in b.scores]
            if a is not b and sum(a.scores[i] > b.scores[i] for i in both) > sum(a.scores[i] < b.scores[i] for i in both):
                a.wins += 1
    fitting.sort(key=lambda s: (-s.wins, -s.mean, s.name))
    winner = fitting[0].name if fitting and fitting[0].wins == len(fitting) - 1 else None
    lead = [] if winner else [s.name for s in fitting if s.wins == fitting[0].wins]
    return fitting, winner, lead


def _task_digest(cfg: ExperimentConfig, spec_shape, n_classes: int) -> bytes:
    task = {"data": {"kind": cfg.data.resolved_kind(), "shape": list(spec_shape), "classes": n_classes},
            "budget": {"rounds": cfg.experiment.rounds, "seconds": cfg.experiment.max_seconds},
            "training": cfg.competition.training}
    return hashlib.sha256(json.dumps(task, sort_keys=True).encode()).digest()


def _entry_config(cfg: ExperimentConfig, e: EntrySpec) -> ExperimentConfig:
    return cfg.replace(model={"name": e.model, "params": e.params}, experiment={"name": e.name})


def run_competition(cfg: ExperimentConfig, out_dir: str | Path, *, figure: bool = True,
                    executor=None) -> Leaderboard:
    """Train every entry at the same budget, have every member score the others' entries on chain,
    and write the leaderboard (text, JSON, heat map) into ``out_dir``.

    ``executor`` (:mod:`cohep.core.executor`, e.g. Dask): the entries train there as parallel tasks
    (each seeded by the configuration alone, results taken in entry order: the same leaderboard);
    scoring and the chain stay in this process. A Dask worker reads the data and, for ``colearn``
    entries, writes their run directories under ``out_dir``: both must be reachable from it."""
    from cohep.run.tasks import prepare

    n = cfg.experiment.learners
    entries = parse_entries(cfg.competition.entries, n)
    prepared, standings = {}, []
    for e in entries:
        standing = Standing(e.name, e.model, e.owner)
        try:
            prepared[e.name] = prepare(_entry_config(cfg, e))
        except ConfigError as exc:  # the entry does not fit the task: it takes no part, and says why
            standing.fits, standing.reason = False, str(exc)
        standings.append(standing)
    if sum(s.fits for s in standings) < 2:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in standings if not s.fits)
        raise ConfigError(f"competition: fewer than 2 entries fit the task ({reasons})")
    with rundir.created(out_dir) as out:
        return _compete(cfg, entries, prepared, standings, out, figure, executor)


def train_entry(cfg: ExperimentConfig, e: EntrySpec, out: Path):
    """One entry's training as a task: prepares its task here (a worker) and trains it (see :func:`_train`)."""
    from cohep.run.tasks import prepare

    return _train(cfg, e, prepare(_entry_config(cfg, e)), out)


def _train(cfg, e: EntrySpec, prepared, out: Path):
    """The entry's final weights within the budget, and how many rounds it got."""
    from cohep.run.local import run_alone, run_experiment
    from cohep.run.tasks import build_learners

    ecfg, data, parts, spec = prepared
    if cfg.competition.training == "colearn":
        result = run_experiment(ecfg, out / "entries" / e.name, figure=False)
        return rundir.read_model(result.out_dir).load_weights(), len(result.timings)
    initial = models.initial_weights(spec, ecfg.experiment.seed)
    learners = build_learners(ecfg, data, [parts[e.owner]], spec, initial)
    _, timings, _ = run_alone(ecfg, learners)
    return learners[0].current(), len(timings)


def _compete(cfg, entries, prepared, standings, out: Path, figure: bool, executor=None) -> Leaderboard:
    from cohep.ledger import Chain
    from cohep.ledger.competition import CompetitionLedger
    from cohep.protocol.vote import to_ppm
    from cohep.run.tasks import build_learners
    from cohep.wire.store import WeightStore

    n = cfg.experiment.learners
    chain = Chain.embedded(n) if cfg.chain.rpc is None else Chain.connect(cfg.chain.rpc, n)
    members = list(chain.accounts[:n])
    first = next(iter(prepared.values()))
    ledger = CompetitionLedger.deploy(chain, members, _task_digest(cfg, first[3].input_shape, first[3].n_classes))
    store = WeightStore(cfg.store.url or rundir.store_url(out))
    index, finals = {}, {}
    taking_part = [(e, s) for e, s in zip(entries, standings) if s.fits]
    if executor is None:
        trained = (_train(cfg, e, prepared[e.name], out) for e, _ in taking_part)
    else:
        trained = executor.map(train_entry, [(cfg, e, out.resolve()) for e, _ in taking_part])
    for (e, s), (weights, rounds) in zip(taking_part, trained):
        s.rounds = rounds
        digest, uri = store.put(weights)
        index[e.name] = ledger.enter(members[e.owner], prepared[e.name][3].digest(), digest, uri)
        finals[e.name] = digest
    correct: dict[str, list[np.ndarray]] = {name: [] for name in finals}
    matrix = np.full((n, len(entries)), np.nan)
    for i in range(n):
        for k, (e, s) in enumerate(zip(entries, standings)):
            if not s.fits:
                continue
            ecfg, data, parts, spec = prepared[e.name]
            weights = store.get(finals[e.name])  # every member scores the blob the contract names, verified
            learner = build_learners(ecfg, data, [parts[i]], spec, weights)[0]
            probs, labels = learner.predict(learner.vote_set)
            hits = probs.argmax(1) == labels
            matrix[i, k] = float(hits.mean())
            if e.owner != i:  # impartial: an owner never scores its own entry
                ledger.score(members[i], index[e.name], to_ppm(matrix[i, k]))
                correct[e.name].append(hits)
    rng = np.random.default_rng(cfg.experiment.seed)
    for e, s in zip(entries, standings):
        if not s.fits:
            continue
        s.scores = {i: ledger.score_of(index[e.name], members[i]) / 1e6 for i in range(n) if i != e.owner}
        s.mean = float(np.mean(list(s.scores.values())))
        pooled = np.concatenate(correct[e.name]).astype(float)
        boots = pooled[rng.integers(0, len(pooled), (cfg.competition.bootstrap, len(pooled)))].mean(1)
        s.low, s.high = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
    fitting, winner, lead = rank(standings)
    board = Leaderboard(fitting + [s for s in standings if not s.fits], winner, lead, ledger.address, chain.chain_id)
    board.files["leaderboard"] = out / "leaderboard.txt"
    atomic_write_text(out / "leaderboard.txt", board.text() + "\n")
    board.files["json"] = write_json(out / "leaderboard.json", {
        "contract": ledger.address, "chain_id": chain.chain_id, "training": cfg.competition.training,
        "budget": {"rounds": cfg.experiment.rounds, "seconds": cfg.experiment.max_seconds},
        "winner": board.winner, "tied": board.tied,
        "entries": [{**s.__dict__, "scores": {str(k): v for k, v in s.scores.items()}} for s in board.standings],
        "matrix": {"members": list(range(n)), "entries": [e.name for e in entries], "accuracy": matrix.tolist()},
    })
    if figure:
        from cohep.outputs.plots.competition import cross_evaluation

        board.files["figure"] = cross_evaluation(matrix, [e.name for e in entries], [e.owner for e in entries],
                                                 out / "cross_evaluation.png")
    return board
