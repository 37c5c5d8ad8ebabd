"""Flower's federated averaging and robust strategies on cohep's own task: the yardstick.

cohep is compared with the federated learning most readers know. For the comparison to be fair, only
the protocol differs: the task comes from the same experiment config through ``runner.prepare`` (data,
split indices, model spec), the initial weights are ``models.initial_weights``, and a Flower client
trains like a cohep proposer: the same registered model and framework adapter, ``train.epochs`` passes
over its own train share with the ``[train]`` optimizer, batch size and learning rate. Flower's own
code does the rest, untouched: its simulation engine (Ray actors) samples and runs the clients and its
strategies (FedAvg, FedMedian, FedTrimmedAvg, Krum) aggregate. The malicious members of ``[attack]``
are malicious clients: a data attack trains on the same poisoned set as cohep's attacker, a weight
attack sends what ``cohep.research.attacks.craft`` makes of the honest update, as cohep's attacker proposes it.

flwr is a benchmark extra, imported only here and only when a run starts.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cohep.config.research import AttackSection
from cohep.research import attacks
from cohep.research.attacks import craft
from cohep.research.attacks import get as get_attack
from cohep.config.experiment import ExperimentConfig
from cohep.core.errors import CohepError, ConfigError
from cohep.frameworks.training import TrainConfig
from cohep.frameworks.learner import Score
from cohep.models import ModelSpec

__all__ = ["STRATEGIES", "FlowerPlan", "FlowerResult", "client_task", "client_update", "require_flwr", "run_flower",
           "shutdown"]

#: Flower strategies this baseline runs, by the name a plan gives
STRATEGIES = ("fedavg", "fedmedian", "fedtrimmedavg", "krum")
#: weight attacks that replay adopted weights: a Flower client is rebuilt every round and keeps none
STATEFUL_ATTACKS = ("stale", "little_is_enough")


def require_flwr():
    """The flwr package, or one line saying how to install it."""
    try:
        import flwr
        import flwr.simulation  # the Ray engine comes with the simulation extra
    except ImportError:
        raise CohepError("Flower is not installed: pip install -e .[bench]") from None
    return flwr


@dataclass(frozen=True)
class FlowerPlan:
    """One Flower system: which strategy, and how many clients train per round (attackers: ``[attack]``)."""

    strategy: str = "fedavg"
    #: clients sampled to train each round (None: all learners; 1: cohep's compute, one proposer a round)
    clients: int | None = None
    trim: float = 0.2  #: FedTrimmedAvg: the share cut at each end
    #: Krum: the number of attackers it assumes (None: as many as there are, at least one)
    krum_f: int | None = None

    def check(self, n: int) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"flower.strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.clients is not None and not 1 <= self.clients <= n:
            raise ConfigError(f"flower.clients must be within 1..{n} (the learners), got {self.clients}")
        if self.strategy != "fedavg" and self.clients not in (None, n):
            raise ConfigError(f"flower.clients: {self.strategy} compares updates, it needs every client a round")


@dataclass
class FlowerResult:
    """A Flower run, round by round (index 0: the initial weights)."""

    accuracy: list[float]  #: on the pooled held-out test items (what cohep's per-learner mean equals)
    loss: list[float]
    round_seconds: list[float]  #: wall time of each round's fit phase (sampling, training, aggregation)
    bytes_down: list[int]  #: weights sent to the round's clients
    bytes_up: list[int]  #: updates the clients sent back
    fitted: list[int]  #: clients that returned an update
    failures: list[int]  #: clients that failed
    final_weights: dict[str, np.ndarray]

    @property
    def bytes_per_round(self) -> list[int]:
        return [d + u for d, u in zip(self.bytes_down, self.bytes_up)]


# -- the client side (runs in Flower's Ray actors) -----------------------------------------------


@dataclass(frozen=True)
class _Task:
    """What a client needs to rebuild its learner in an actor: small, picklable, no data in it."""

    kind: str
    path: str | None
    limit: int | None
    spec: ModelSpec
    train: TrainConfig
    names: tuple[str, ...]
    shares: tuple[np.ndarray, ...]  #: each learner's train indices (cohep's split)
    seeds: tuple[int, ...]  #: each learner's seed (cohep's ``learner_seed``)
    seed: int  #: the experiment's seed
    attack: AttackSection
    num_classes: int
    threads: int


#: pooled data per actor process, keyed by (kind, path, limit): read once, not once per fit
_DATA: dict = {}


def _data(task: _Task):
    from cohep.datasets.source import load_data

    key = (task.kind, task.path, task.limit)
    if key not in _DATA:
        _DATA[key] = load_data(task.kind, task.path, limit=task.limit)
    return _DATA[key]


def fit_seed(learner_seed: int, server_round: int) -> int:
    """The batch order and framework seed of one client's training in one round (reproducible)."""
    return int(np.random.SeedSequence([learner_seed, server_round]).generate_state(1)[0])


def client_update(task: _Task, index: int, parameters: list[np.ndarray], server_round: int) -> list[np.ndarray]:
    """One client's round: train from the global weights like a cohep proposal; an attacker then crafts."""
    import torch

    from cohep import models

    torch.set_num_threads(task.threads)
    current = dict(zip(task.names, (np.asarray(p) for p in parameters)))
    train = _data(task).subset(np.array(task.shares[index]))  # Ray hands arrays over read-only
    n, seed = len(task.shares), task.seed
    train = attacks.train_set(task.attack, index, train, n=n, seed=seed, num_classes=task.num_classes)  # data attacks
    learner = models.build_learner(task.spec, train, train, None, task.train, seed=task.seeds[index],
                                   initial=current)
    learner.train_steps(train, task.train.epochs, seed=fit_seed(task.seeds[index], server_round))
    update = learner.live_weights()
    if task.attack.active and index in task.attack.malicious(n) and get_attack(task.attack.kind).kind == "weights":
        rng = np.random.default_rng([task.seeds[index], server_round, 0xA77])
        update = craft(task.attack.kind, current, update, rng=rng, **task.attack.params)
    return [np.asarray(update[name]) for name in task.names]


def _client_fn(task: _Task, context):
    from flwr.client import NumPyClient

    index = int(context.node_config["partition-id"])

    class Client(NumPyClient):
        def fit(self, parameters, config):
            out = client_update(task, index, parameters, int(config["server_round"]))
            return out, len(task.shares[index]), {}

    return Client().to_client()


# -- the server side ----------------------------------------------------------------------------


def _strategy_class(name: str):
    from flwr.server import strategy

    return {"fedavg": strategy.FedAvg, "fedmedian": strategy.FedMedian,
            "fedtrimmedavg": strategy.FedTrimmedAvg, "krum": strategy.Krum}[name]


def _counted(cls):
    """The strategy as Flower wrote it, with each round's returned updates counted on the way in."""

    class Counted(cls):
        traffic: list[tuple[int, int, int]]  # (fitted, failed, bytes up)

        def aggregate_fit(self, server_round, results, failures):
            up = sum(sum(len(t) for t in res.parameters.tensors) for _, res in results)
            self.traffic.append((len(results), len(failures), up))
            return super().aggregate_fit(server_round, results, failures)

    Counted.__name__ = f"Counted{cls.__name__}"
    return Counted


def client_task(cfg: ExperimentConfig, data, parts, spec: ModelSpec, names: tuple[str, ...]) -> _Task:
    """What every client of this run is rebuilt from (``cfg`` as ``runner.prepare`` returned it)."""
    from cohep.run.tasks import learner_seed

    seed = cfg.experiment.seed
    return _Task(cfg.data.resolved_kind(), cfg.data.path, cfg.data.limit, spec, cfg.train, names,
                 tuple(p.train for p in parts), tuple(learner_seed(seed, i) for i in range(len(parts))), seed,
                 cfg.attack, len(data.class_names), threads=1)


def run_flower(cfg: ExperimentConfig, plan: FlowerPlan, *, cpus: int = 2,
               keep_initialised: bool = False) -> FlowerResult:
    """Run ``cfg``'s task (learners, rounds, split, model, ``[train]``) through Flower's simulation.

    ``cpus``: what Ray may use (one client per CPU at a time); ``keep_initialised``: leave Ray up for
    the next run (the bench runs many; call :func:`shutdown` at the end).
    """
    require_flwr()
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerConfig
    from flwr.simulation import start_simulation

    from cohep import models
    from cohep.run.tasks import prepare

    if cfg.degrade.active:
        raise ConfigError("degrade: the Flower baseline reads each learner's share as dealt, without [degrade]")
    cfg, data, parts, spec = prepare(cfg)
    n, rounds, seed = cfg.experiment.learners, cfg.experiment.rounds, cfg.experiment.seed
    plan.check(n)
    malicious = cfg.attack.malicious(n)
    if cfg.attack.active and cfg.attack.kind in STATEFUL_ATTACKS:
        raise ConfigError(f"attack.kind: {cfg.attack.kind} needs the history of adopted weights, which a "
                          "stateless Flower client does not keep")
    if cfg.attack.collude:
        raise ConfigError("attack.collude: Flower clients do not vote")
    initial = models.initial_weights(spec, seed)
    names = tuple(initial)
    task = client_task(cfg, data, parts, spec, names)
    held = np.sort(np.concatenate([p.test for p in parts]))
    if not len(held):
        raise ConfigError("data.holdout: the Flower baseline scores on the held-out items; there are none")
    judge = models.build_learner(spec, data.subset(held), data.subset(held), None, cfg.train, seed=seed,
                                 initial=initial)
    test_set = judge.vote_set

    start_params = ndarrays_to_parameters([initial[k] for k in names])
    down_bytes = sum(len(t) for t in start_params.tensors)
    accuracy, loss, marks, final = [], [], [], {}

    def evaluate(server_round, parameters, config):
        entered = time.perf_counter()
        weights = dict(zip(names, (np.asarray(p) for p in parameters)))
        if all(np.isfinite(w).all() for w in weights.values()):
            judge.load_live(weights)
            s = judge.score(test_set)
        else:  # an aggregate with NaN or inf in it scores nothing (cohep never adopts one)
            s = Score(math.nan, math.nan)
        accuracy.append(s.accuracy)
        loss.append(s.loss)
        final.clear()
        final.update(weights)
        marks.append((entered, time.perf_counter()))
        return (s.loss if math.isfinite(s.loss) else float("inf")), {"accuracy": s.accuracy}

    k = n if plan.clients is None else plan.clients
    kwargs = {"fraction_fit": k / n, "min_fit_clients": k, "min_available_clients": n, "fraction_evaluate": 0.0,
                  "min_evaluate_clients": 0, "initial_parameters": start_params, "evaluate_fn": evaluate,
                  "on_fit_config_fn": lambda r: {"server_round": r}, "accept_failures": True,
                  "fit_metrics_aggregation_fn": lambda metrics: {}}
    if plan.strategy == "fedtrimmedavg":
        kwargs["beta"] = plan.trim
    if plan.strategy == "krum":
        kwargs["num_malicious_clients"] = plan.krum_f if plan.krum_f is not None else max(1, len(malicious))
    strategy = _counted(_strategy_class(plan.strategy))(**kwargs)
    strategy.traffic = []

    logging.getLogger("flwr").setLevel(logging.WARNING)
    init_args = start_ray(cpus)
    try:  # Flower's engine re-initialises Ray unless told to keep it: keep the one started above
        start_simulation(
            client_fn=functools.partial(_client_fn, task), num_clients=n, config=ServerConfig(num_rounds=rounds),
            strategy=strategy, client_resources={"num_cpus": 1, "num_gpus": 0.0},
            ray_init_args=init_args, keep_initialised=True,
        )
    finally:
        if not keep_initialised:
            shutdown()
    if len(accuracy) != rounds + 1 or len(strategy.traffic) != rounds:
        raise CohepError(f"Flower simulation stopped early: {len(strategy.traffic)} of {rounds} rounds "
                         "aggregated (see the Ray log above)")
    failed = [(r, x) for r, (_, x, _) in enumerate(strategy.traffic, start=1) if x]
    if failed:  # a client lost to Ray (killed, out of memory) changes the experiment: no result
        r, x = failed[0]
        raise CohepError(f"Flower round {r}: {x} client(s) failed ({len(failed)} round(s) with failures; "
                         "see the Ray log above)")
    seconds = [marks[r][0] - marks[r - 1][1] for r in range(1, len(marks))]
    return FlowerResult(
        accuracy=accuracy, loss=loss, round_seconds=seconds,
        bytes_down=[(f + x) * down_bytes for f, x, _ in strategy.traffic],
        bytes_up=[u for _, _, u in strategy.traffic],
        fitted=[f for f, _, _ in strategy.traffic], failures=[x for _, x, _ in strategy.traffic],
        final_weights=final,
    )


def start_ray(cpus: int, attempts: int = 3) -> dict:
    """Start Ray (unless it is up) and return the init arguments Flower's engine is then given.

    Ray waits a fixed 30 s for its raylet to register; on an overloaded machine it may not make it,
    so a failed start is tried again before it is an error.
    """
    import ray

    # Ray starts its workers at niceness 15: next to anything else running they would barely move,
    # and the clients must train at the same priority as cohep's members for the times to compare
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Ray kills workers when the machine's memory is 95 % used, whoever uses it: on a shared machine
    # that silently drops clients from rounds (run_flower refuses such a run; this avoids it)
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    args = {"include_dashboard": False, "num_cpus": cpus, "ignore_reinit_error": True}
    for attempt in range(1, attempts + 1):
        if ray.is_initialized():
            break
        before = _children()
        try:
            ray.init(**args)
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for a timed-out start
            ray.shutdown()
            for pid in _children() - before:  # the failed start's GCS, raylet and monitors outlive it
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if attempt == attempts:
                raise CohepError(f"Ray (Flower's simulation engine) did not start in {attempts} tries: {exc}") from None
    return args


def _children() -> set[int]:
    """This process's child processes (Linux ``/proc``; elsewhere none are known)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in task.read_text().split())
    return pids


def shutdown() -> None:
    """Stop the Ray runtime a ``keep_initialised`` run left up."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
