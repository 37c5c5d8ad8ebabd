"""In-process research mode: N learners in one process, coordinated by the contract.

Every round the contract names the proposer; the proposer trains and announces its digest on chain;
every other learner fetches the weights by digest (verified), scores them on its private vote set and
votes on chain; the contract finalises. The runner only reads the outcome from the chain's
``Finalized`` event, it never decides acceptance itself. ``individual`` and ``centralised`` modes
run the same learners without sharing, as baselines.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import models
from .config import ExperimentConfig
from .datasets.source import LabelledData, holdout_indices, load_data
from .datasets.splits import LearnerIndices, assign
from .errors import ConfigError
from .files import atomic_write_bytes, atomic_write_text
from .learner import Learner, Scores
from .manifest import write_manifest
from .models import ModelSpec
from .progress import progress
from .protocol import VoteRule, threshold_to_bps, to_ppm
from .results import RoundRecord, accepted_per_learner, final_test_accuracy, write_csv
from .store import WeightStore
from .weights import digest as weights_digest
from .weights import encode

STAGES = ("training", "evaluation", "chain", "store")


@dataclass
class RoundTiming:
    round: int
    training: float = 0.0
    evaluation: float = 0.0
    chain: float = 0.0
    store: float = 0.0

    @property
    def total(self) -> float:
        return self.training + self.evaluation + self.chain + self.store


@dataclass
class RunResult:
    out_dir: Path
    mode: str
    records: list[RoundRecord]
    timings: list[RoundTiming]
    final_accuracy: float
    accepted: list[int]
    chain_id: int | None = None
    contract: str | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def time_shares(self) -> dict[str, float]:
        total = sum(t.total for t in self.timings) or 1.0
        return {s: sum(getattr(t, s) for t in self.timings) / total for s in STAGES}


def seed_bytes(seed: int) -> bytes:
    """The 32-byte on-chain seed derived from the experiment seed (public, reproducible)."""
    return hashlib.sha256(f"cohep-seed:{seed}".encode()).digest()


def learner_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, 1000 + index]).generate_state(1)[0])


def prepare(cfg: ExperimentConfig) -> tuple[LabelledData, list[LearnerIndices], ModelSpec]:
    """Load the data, deal it out to learners and fix the model spec."""
    data = load_data(cfg.data.kind, cfg.data.path, limit=cfg.data.limit)
    hold = holdout_indices(len(data), cfg.data.holdout)
    n = cfg.experiment.learners
    if len(data) - len(hold) < 2 * n:
        raise ConfigError(
            f"more learners ({n}) than the data set can serve: {len(data) - len(hold)} samples "
            f"outside the held-out set, each learner needs at least 2"
        )
    parts = assign(
        data.labels, n, holdout=hold, method=cfg.data.split, alpha=cfg.data.alpha,
        vote_fraction=cfg.data.vote_fraction, seed=cfg.experiment.seed,
    )
    spec = ModelSpec(cfg.model.name, data.input_shape, len(data.class_names), dict(cfg.model.params))
    models.get(spec.name)  # unknown model names fail here, before any work
    return data, parts, spec


def _build_learners(cfg, data, parts, spec, initial) -> list[Learner]:
    return [
        models.build_learner(
            spec, data.subset(p.train), data.subset(p.vote),
            data.subset(p.test) if len(p.test) else None, cfg.train,
            seed=learner_seed(cfg.experiment.seed, i), initial=initial,
        )
        for i, p in enumerate(parts)
    ]


def _row(rnd, i, proposer, vote, accepted, void, rule, s_new: Scores | None, s_cur: Scores, s_after: Scores, digest):
    return RoundRecord(
        round=rnd, learner=i, proposer=proposer, is_proposer=(i == proposer), vote=vote,
        accepted=accepted, void=void,
        vote_score=rule.score(s_new.vote) if s_new else math.nan,
        current_vote_score=rule.score(s_cur.vote),
        proposal_test_accuracy=s_new.test.accuracy if s_new else math.nan,
        test_accuracy=s_after.test.accuracy, test_loss=s_after.test.loss, digest=digest,
    )


def _initial_rows(learners, rule) -> tuple[list[Scores], list[RoundRecord]]:
    current = [lr.evaluate(lr.current()) for lr in learners]
    rows = [_row(0, i, -1, "", False, False, rule, None, s, s, "") for i, s in enumerate(current)]
    return current, rows


def run_colearn(cfg, learners, spec, initial, store: WeightStore, bar=None):
    """The protocol proper, driven entirely through the contract."""
    from .ledger import Chain, Coordinator

    n, rule = len(learners), VoteRule(cfg.vote.metric, cfg.vote.margin)
    chain = Chain.embedded(n) if cfg.chain.rpc is None else Chain.connect(cfg.chain.rpc, n)
    members = list(chain.accounts[:n])
    init_digest, _ = store.put(initial)
    coord = Coordinator.deploy(
        chain, members, threshold_bps=threshold_to_bps(cfg.vote.threshold),
        proposal_window=cfg.chain.proposal_window, vote_window=cfg.chain.vote_window,
        seed=seed_bytes(cfg.experiment.seed), initial_digest=init_digest, model_digest=spec.digest(),
    )
    current, records = _initial_rows(learners, rule)
    timings: list[RoundTiming] = []
    for _ in range(cfg.experiment.rounds):
        chain0, store0 = coord.seconds, store.seconds
        r = coord.round()
        t = RoundTiming(round=r + 1)
        proposer_addr = coord.proposer(r)
        p = members.index(proposer_addr)
        start = time.perf_counter()
        proposal = learners[p].propose()
        t.training = time.perf_counter() - start
        digest, uri = store.put(proposal)
        coord.propose(proposer_addr, r, digest, uri)
        scores: list[Scores] = []
        votes: list[str] = []
        for i, lr in enumerate(learners):
            weights_i = proposal if i == p else store.get(digest)  # each voter verifies what it scores
            start = time.perf_counter()
            s = lr.evaluate(weights_i)
            t.evaluation += time.perf_counter() - start
            scores.append(s)
            if i == p:
                votes.append("")
                continue
            approve = rule.approve(s.vote, current[i].vote)
            votes.append("approve" if approve else "reject")
            coord.vote(members[i], r, approve, to_ppm(rule.score(s.vote)))
        outcome = coord.finalize(members[p], r)
        if outcome.accepted:
            adopted = store.get(outcome.digest)  # adopt what the chain accepted, verified again
            for lr in learners:
                lr.accept(adopted)
        for i in range(n):
            after = scores[i] if outcome.accepted else current[i]
            records.append(_row(r + 1, i, p, votes[i], outcome.accepted, outcome.void, rule,
                                scores[i], current[i], after, digest.hex()))
            current[i] = after
        t.chain, t.store = coord.seconds - chain0, store.seconds - store0
        timings.append(t)
        if bar is not None:
            bar.advance(1)
    return records, timings, {"chain_id": chain.chain_id, "contract": coord.address,
                              "chain": chain.kind, "accepted_digest": coord.accepted_digest().hex(),
                              "initial_digest": init_digest.hex()}


def run_alone(cfg, learners, store: WeightStore, bar=None):
    """Baselines: each learner improves its own model, judged only by its own vote set."""
    rule = VoteRule(cfg.vote.metric, cfg.vote.margin)
    current, records = _initial_rows(learners, rule)
    timings = []
    for rnd in range(1, cfg.experiment.rounds + 1):
        t = RoundTiming(round=rnd)
        for i, lr in enumerate(learners):
            start = time.perf_counter()
            proposal = lr.propose()
            t.training += time.perf_counter() - start
            start = time.perf_counter()
            s = lr.evaluate(proposal)
            t.evaluation += time.perf_counter() - start
            approve = rule.approve(s.vote, current[i].vote)
            if approve:
                lr.accept(proposal)
            after = s if approve else current[i]
            records.append(_row(rnd, i, i, "approve" if approve else "reject", approve, False, rule,
                                s, current[i], after, weights_digest(proposal).hex()))
            current[i] = after
        timings.append(t)
        if bar is not None:
            bar.advance(1)
    return records, timings, {}


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, *, figure: bool = True) -> RunResult:
    """Run one experiment and write its records, timings, manifest, figure, weights and report."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {out}: {exc.strerror or exc}") from None
    data, parts, spec = prepare(cfg)
    mode = cfg.experiment.mode
    if mode == "centralised":
        pooled = LearnerIndices(
            np.sort(np.concatenate([p.train for p in parts])),
            np.sort(np.concatenate([p.vote for p in parts])),
            np.sort(np.concatenate([p.test for p in parts])),
        )
        parts = [pooled]
    store = WeightStore(cfg.store.url or str((out / "weights").resolve()))
    initial = models.initial_weights(spec, cfg.experiment.seed)
    learners = _build_learners(cfg, data, parts, spec, initial)
    with progress() as bars:
        bar = bars.add_task(f"{mode}: {len(learners)} learner(s)", total=cfg.experiment.rounds)
        task = _Advance(bars, bar)
        if mode == "colearn":
            records, timings, chain_info = run_colearn(cfg, learners, spec, initial, store, task)
        else:
            records, timings, chain_info = run_alone(cfg, learners, store, task)
    result = RunResult(
        out_dir=out, mode=mode, records=records, timings=timings,
        final_accuracy=final_test_accuracy(records),
        accepted=accepted_per_learner(records, len(learners)),
        chain_id=chain_info.get("chain_id"), contract=chain_info.get("contract"),
    )
    _write_outputs(cfg, result, spec, data, parts, learners, chain_info, figure)
    return result


class _Advance:
    def __init__(self, bars, task):
        self.bars, self.task = bars, task

    def advance(self, k: int) -> None:
        self.bars.advance(self.task, k)


def _write_outputs(cfg, result: RunResult, spec, data, parts, learners, chain_info, figure) -> None:
    out = result.out_dir
    files = result.files
    files["records"] = write_csv(result.records, out / "records.csv")
    lines = ["round,training_s,evaluation_s,chain_s,store_s,total_s"]
    lines += [f"{t.round},{t.training:.4f},{t.evaluation:.4f},{t.chain:.4f},{t.store:.4f},{t.total:.4f}"
              for t in result.timings]
    atomic_write_text(out / "timings.csv", "\n".join(lines) + "\n")
    files["timings"] = out / "timings.csv"
    final = learners[0].current()
    atomic_write_bytes(out / "final_weights.safetensors", encode(final))
    files["weights"] = out / "final_weights.safetensors"
    accepted = sorted({r.digest for r in result.records if r.accepted and r.round > 0},
                      key=lambda d: min(r.round for r in result.records if r.digest == d))
    files["manifest"] = write_manifest(
        out / "manifest.json",
        config=cfg.to_dict(), seed=cfg.experiment.seed, mode=result.mode,
        chain_id=result.chain_id, contract_address=result.contract, chain=chain_info.get("chain"),
        model=spec.to_dict(), model_digest=spec.digest().hex(),
        data={"kind": data.kind, "source": data.source, "n_items": len(data),
              "class_names": data.class_names,
              "learners": [{"train": len(p.train), "vote": len(p.vote), "test": len(p.test)} for p in parts]},
        digests={"initial": chain_info.get("initial_digest"), "final": weights_digest(final).hex(),
                 "accepted": accepted, "chain_accepted": chain_info.get("accepted_digest")},
        final_test_accuracy=result.final_accuracy, accepted_per_learner=result.accepted,
        time_shares=result.time_shares(),
        files={"records": "records.csv", "timings": "timings.csv", "weights": "final_weights.safetensors",
               "figure": "figure.png" if figure else None, "report": "report.md"},
    )
    if figure:
        from .plots.rounds import round_figure

        files["figure"] = round_figure(result.records, out / "figure.png",
                                       title=f"{cfg.experiment.name}: {result.mode}, {spec.name}",
                                       metric=cfg.vote.metric)
    from .report import write_report

    files["report"] = write_report(cfg, result, out / "report.md")
