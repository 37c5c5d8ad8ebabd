"""In-process research mode: N learners in one process, coordinated by the contract.

Every round the contract names the proposer; the proposer trains and announces its digest on chain;
every other learner fetches the weights by digest (verified), scores them on its private vote set and
votes on chain (sealed votes, the default: commits to its vote, and reveals it once every voter has
committed); the contract finalises. The runner only reads the outcome from the chain's
``Finalized`` event, it never decides acceptance itself. A proposer whose training diverges
(non-finite weights) does not propose, and the contract voids the round once its proposal window
has passed. ``individual`` and ``centralised`` modes run the same learners without sharing, as
baselines.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cohep import models
from cohep.outputs import rundir
from cohep.research import attacks
from cohep.run.tasks import build_learners, learner_seed, prepare, privacy_spent, seed_bytes
from cohep.config.experiment import ExperimentConfig
from cohep.datasets.splits import LearnerIndices
from cohep.frameworks.learner import Scores
from cohep.core.progress import elapsed, line, progress
from cohep.protocol.member import MemberWiring
from cohep.protocol.judge import all_finite
from cohep.protocol.participant import initial_record
from cohep.protocol.view import Decided, RoundView
from cohep.protocol.vote import VoteRule
from cohep.wire.checks import default_max_bytes
from cohep.protocol.records import STAGES, RoundRecord, RoundTiming, accepted_per_learner, final_test_accuracy, time_shares
from cohep.core.errors import ChainError
from cohep.core.files import replace_output
from cohep.run.experiment_file import redact_url
from cohep.wire.fetch import Fetcher
from cohep.wire.store import WeightStore
from cohep.wire.weights import digest as weights_digest
from cohep.wire.weights import encode

__all__ = ["RunResult", "STAGES", "all_finite", "prepare", "run_experiment", "learner_seed", "seed_bytes"]


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
    #: per private learner: budget, noise, spent epsilon, proposals, why it stopped (None: not private)
    privacy: list[dict] | None = None
    #: the data's classes (chance is 1 / num_classes) and whether the data picked the model
    num_classes: int = 0
    model_auto: bool = False

    def time_shares(self) -> dict[str, float]:
        return time_shares(self.timings)


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
    rows = [initial_record(i, rule, s) for i, s in enumerate(current)]
    return current, rows


def run_colearn(cfg, learners, spec, initial, store: WeightStore, bar=None, journal=None, on_round=None,
                link=None):
    """The protocol proper: every member is a Participant (built by ``MemberWiring``), the same code an
    autonomous node runs.

    The loop only sequences the members of one process (the proposer, then the voters, then anyone
    closes the round); each participant reads its duty from the chain and votes on the digest and URI
    the chain recorded, fetched and checked like any other member's blob. ``link``: the resume of a
    chain.rpc run (:class:`cohep.run.resume.ChainLink`): the contract is the run's, not a new one, and
    the rounds replay on a fork of its chain until it has caught up with the chain itself.
    """
    from cohep.run.audit import ContractRules
    from cohep.ledger import Chain, Coordinator
    from cohep.protocol.vote import threshold_fraction

    n, rule = len(learners), cfg.vote
    if link is not None:
        chain = link.chain
    else:
        chain = Chain.embedded(n) if cfg.chain.rpc is None else Chain.connect(cfg.chain.rpc, n)
    members = list(chain.accounts[:n])
    init_digest, init_uri = store.put(initial)
    after = link.check if link is not None else _nothing
    coord = _attach(chain, journal, after) if link is not None else Coordinator.deploy(
        chain, members, threshold=threshold_fraction(rule.threshold),
        proposal_window=cfg.chain.proposal_window, vote_window=cfg.chain.resolved_vote_window(n),
        seed=seed_bytes(cfg.experiment.seed), initial_digest=init_digest, model_digest=spec.digest(),
        max_missed=cfg.chain.max_missed, proposers=cfg.round.proposers, combine=cfg.round.combine,
        challenge_window=cfg.chain.challenge_window if cfg.chain.ballots == "aggregate" else None,
    )
    if journal is not None and cfg.chain.rpc is not None:  # what a resume checks the chain against
        from cohep.run import resume

        journal.chain = dict(journal.kept.state["chain"], marks=[]) if link is not None else \
            {"contract": coord.address, "chain_id": chain.chain_id, "setup_block": chain.block_number()}
        journal.chain.pop("marks", None)
        journal.position = lambda: resume.chain_position(coord, chain)
    if link is not None:
        link.follow(coord)
    fetch = Fetcher(allowed=[store.base_uri], max_bytes=default_max_bytes(initial), reference=initial)
    behaviours = attacks.behaviours(cfg.attack, members, cfg.experiment.seed)  # research only: [attack]
    ballots: list = []  # signed mode: this round's ballots (sealed: commitments, then reveals), one transaction each
    post = ballots.append if cfg.chain.ballots in ("signed", "aggregate") else None
    wiring = MemberWiring(coord, store, fetch, rule, cfg.round.policy(), init_uri)
    members_ = [wiring.member(i, members[i], lr, misbehaviour=behaviours[i], post_ballot=post)
                for i, lr in enumerate(learners)]
    for m in members_:  # sealed-vote salts from the seed: the run replays byte for byte (cohep.run.resume)
        m.salt = _seeded_salt(seed_bytes(cfg.experiment.seed), m.address)
    accepted = coord.accepted_digest()
    for m in members_:
        m.sync(accepted)
    records = [initial_record(m.index, rule, m.current, m.conduct.attack) for m in members_]
    timings: list[RoundTiming] = []
    _round_done(journal, 0, records, timings, members_[0].learner)
    start = time.perf_counter()
    r = coord.round()
    for _ in range(cfg.experiment.rounds):
        if _out_of_time(cfg, start):
            break
        chain0, store0 = coord.seconds, store.seconds
        spent0 = [dict(m.seconds) for m in members_]
        state = coord.round_state(r)
        holders = [members.index(slot.proposer) for slot in state.slots]
        before = [m.current for m in members_]
        for p in holders:  # each reads the block: the proposals before its own mined theirs
            members_[p].act(RoundView(state, chain.block_number()))
        state = coord.round_state(r)  # one read of the proposals for all voters
        if not state.proposed:  # a proposer stayed silent: voting opens (or the round voids) after the window
            _pass_block(chain, state.proposal_deadline)
            after()
            state = coord.round_state(r)
        if state.proposed:
            _vote_pass(chain, coord, members_, state, ballots, members[holders[0]])
            if state.sealed:  # the reveal phase opens once every voter has committed (or the window passed)
                state = coord.round_state(r)
                if state.reveal_block is None:
                    _pass_block(chain, state.vote_deadline)
                    after()
                    state = coord.round_state(r)
                _vote_pass(chain, coord, members_, state, ballots, members[holders[0]])
        outcome = members_[holders[0]].finalize(r)  # its Finalized event names the digest the contract accepted
        if outcome.accepted:
            accepted = outcome.digest
        decided = Decided.of(outcome)
        for m in members_:
            m.sync(accepted)
            records.append(m.record(decided, before[m.index]))
        t = RoundTiming(round=r + 1, chain=coord.seconds - chain0, store=store.seconds - store0)
        for m, spent in zip(members_, spent0):
            t.training += m.seconds["training"] - spent["training"]
            t.evaluation += m.seconds["evaluation"] - spent["evaluation"]
        timings.append(t)
        r += 1  # finalize started the next round
        _round_done(journal, t.round, records, timings, members_[0].learner)  # kept before it is shown
        _log_round(t.round, cfg.experiment.rounds, outcome.accepted, records[-n:], start, bar)
        if on_round is not None:
            on_round(t.round)
    return records, timings, {"chain_id": chain.chain_id, "contract": coord.address,
                              "chain": chain.kind, "accepted_digest": coord.accepted_digest().hex(),
                              "adopted_digest": members_[0].digest.hex(),
                              "initial_digest": init_digest.hex(), "events": coord.events(),
                              "contract_settings": ContractRules.of(coord.settings()).to_dict(),
                              "max_bytes": fetch.max_bytes,
                              # the contract's count: with several slots a round's acceptance is not its proposers'
                              "accepted_per_member": [coord.member_stats(a).accepted for a in members],
                              "traffic": {"transactions": coord.transactions, "gas_used": coord.gas_used,
                                          "calldata_bytes": coord.calldata_bytes,
                                          "bytes_fetched": fetch.bytes}}


def _nothing() -> None:
    return None


def _attach(chain, journal, after: Callable[[], None]):
    """The resumed chain.rpc run's own contract, ``after()`` called after each transaction it sends and
    each challenge window it mines (:meth:`cohep.run.resume.ChainLink.check`)."""
    from cohep.ledger import Coordinator

    class Followed(Coordinator):
        def _transact(self, *args, **kwargs):
            receipt = super()._transact(*args, **kwargs)
            after()
            return receipt

        def pass_challenge_window(self) -> None:
            super().pass_challenge_window()
            after()

    return Followed.at(chain, journal.kept.state["chain"]["contract"])


def _seeded_salt(seed: bytes, address: str) -> Callable[[int], bytes]:
    """Member ``address``'s sealed-vote salt of round r, from the experiment's seed: not secret (the
    seed is in the manifest), which in one process hides nothing anyway, and the same in every replay."""
    import hashlib

    return lambda r: hashlib.sha256(b"cohep salt" + seed + address.lower().encode() + r.to_bytes(8, "big")).digest()


def _vote_pass(chain, coord, members_, state, ballots: list, relay: str) -> None:
    """Every voter does its part of the vote (vote, or commit, or reveal: what the round's state shows).

    On the embedded chain only these transactions mine blocks (within the window, which the config
    checks): one read serves every voter. A node's blocks come at its own pace: read each time. In
    signed mode ``relay`` (slot 0's proposer) submits what they handed on, in one transaction; aggregated
    (an AggregateCoordinator), it posts them as one bundle, and the post's challenge window passes (in
    this process every member sees the bundle the relay built, which it signed or revealed itself)."""
    view = RoundView(state, chain.block_number())
    for m in members_:
        if m.address in state.voters:
            m.act(view if chain.kind == "embedded" else RoundView(state, chain.block_number()))
    if not ballots:
        return
    from cohep.ledger.ballots import Reveal, SignedCommit

    if coord.aggregated:
        (coord.post_commits if isinstance(ballots[0], SignedCommit) else coord.post_reveals)(relay, state.round, ballots)
        coord.pass_challenge_window()
    elif isinstance(ballots[0], SignedCommit):
        coord.submit_commits(relay, state.round, ballots)
    elif isinstance(ballots[0], Reveal):
        coord.submit_reveals(relay, state.round, ballots)
    else:
        coord.submit_ballots(relay, state.round, ballots)
    ballots.clear()


def _out_of_time(cfg, start: float) -> bool:
    """A wall-clock budget (``experiment.max_seconds``) is spent: no further round starts."""
    limit = cfg.experiment.max_seconds
    return limit is not None and time.perf_counter() - start >= limit


def _pass_block(chain, deadline: int) -> None:
    """Let the chain pass ``deadline``: mine on the embedded chain or a dev node, else wait."""
    missing = deadline + 1 - chain.block_number()
    if missing <= 0:
        return
    try:
        chain.mine(missing)
    except ChainError:  # a node that cannot mine on demand: blocks come at its own pace
        chain.wait_blocks(missing)


def _log_round(rnd: int, rounds: int, accepted: bool | None, rows: list[RoundRecord], start: float,
               bar=None) -> None:
    """A round is done: its outcome and mean test accuracy, one line with ``COHEP_PROGRESS=lines``, and
    the bar (if any) one step on, showing that accuracy."""
    mean = sum(r.test_accuracy for r in rows) / max(1, len(rows))
    verdict = "" if accepted is None else ("accepted, " if accepted else "rejected, ")
    line(f"round {rnd}/{rounds}: {verdict}mean test accuracy {mean:.4f}, {elapsed(start)}")
    if bar is not None:
        bar.advance(1, f"mean test acc {mean:.4f}")


def _round_done(journal, rnd: int, records, timings, learner) -> None:
    """Round ``rnd`` (0: the setup) is finished: the journal marks it (what Ctrl-C keeps). Called
    before the round is shown, so a Ctrl-C after its line always keeps it; ``on_round`` is told after."""
    if journal is not None:
        journal.round_done(rnd, records, timings, learner.current())


def run_alone(cfg, learners, bar=None, journal=None, on_round=None):
    """Baselines: each learner improves its own model, judged only by its own vote set."""
    rule: VoteRule = cfg.vote
    current, records = _initial_rows(learners, rule)
    timings: list[RoundTiming] = []
    _round_done(journal, 0, records, timings, learners[0])
    started = time.perf_counter()
    for rnd in range(1, cfg.experiment.rounds + 1):
        if _out_of_time(cfg, started):
            break
        t = RoundTiming(round=rnd)
        for i, lr in enumerate(learners):
            start = time.perf_counter()
            proposal = lr.propose()
            t.training += time.perf_counter() - start
            start = time.perf_counter()
            s = lr.evaluate(proposal)
            t.evaluation += time.perf_counter() - start
            approve = all_finite(proposal) and rule.approve(s.vote, current[i].vote)
            if approve:
                lr.accept(proposal)
            after = s if approve else current[i]
            records.append(_row(rnd, i, i, "approve" if approve else "reject", approve, False, rule,
                                s, current[i], after, weights_digest(proposal).hex()))
            current[i] = after
        timings.append(t)
        _round_done(journal, rnd, records, timings, learners[0])  # kept before it is shown
        _log_round(rnd, cfg.experiment.rounds, None, records[-len(learners):], started, bar)
        if on_round is not None:
            on_round(rnd)
    return records, timings, {}


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, *, figure: bool = True,
                   announce: Callable[[str], None] | None = None, replace: bool = False,
                   on_round: Callable[[int], None] | None = None) -> RunResult:
    """Run one experiment and write its records, timings, manifest, figure, weights and report.

    Everything is checked (data, model fit, split) before the run directory is made, and a run that
    fails part-way leaves no directory behind, except on Ctrl-C once the run has begun: then its
    finished rounds are kept and ``RunInterrupted`` says how to resume (:mod:`cohep.run.resume`).
    ``announce`` gets one line once the model is known (the CLI prints it), before any training.
    ``replace``: an earlier run in ``out_dir`` (it holds a manifest) is removed once the task has been
    checked, just before the new run is written. ``on_round(r)``: called after each finished round.
    """
    from cohep.outputs.report import start_line

    model_auto = cfg.model.name is None
    cfg, data, parts, spec = prepare(cfg)
    if announce is not None:
        announce(start_line(cfg, model_auto=model_auto))
    if replace:
        replace_output(out_dir, marker=rundir.MANIFEST)
    with rundir.created(out_dir) as out:
        return _run(cfg, data, parts, spec, out, figure, model_auto, on_round=on_round)


def resume_experiment(out_dir: str | Path, cfg: ExperimentConfig | None = None, *, figure: bool = True,
                      announce: Callable[[str], None] | None = None,
                      on_round: Callable[[int], None] | None = None) -> RunResult:
    """Continue the interrupted run in ``out_dir`` to the result an uninterrupted run would have
    (:mod:`cohep.run.resume`). ``cfg``: the settings the caller expects (refused, in one line, if they
    are not the run's); None: the run's own, from its manifest."""
    from cohep.config.experiment import from_dict
    from cohep.core.errors import CohepError, DataError
    from cohep.outputs.report import start_line
    from cohep.run import resume

    out = Path(out_dir)
    manifest = rundir.read_manifest(out)
    recorded = manifest.get("config")
    if not isinstance(recorded, dict):
        raise DataError(f"{out / rundir.MANIFEST}: no config recorded: not resumable")
    kept = resume.load(out, recorded)
    try:
        run_cfg = from_dict(recorded)
    except CohepError as exc:
        raise DataError(f"{out / rundir.MANIFEST}: {exc}: not resumable") from None
    if not _reconnectable(run_cfg):
        raise resume.not_resumable_chain(str(run_cfg.chain.rpc))
    if cfg is not None:
        given = _recorded_config(prepare(cfg)[0])
        if given != recorded:
            raise DataError(f"{out} was run with another config (differs in {_first_difference(given, recorded)}): "
                            "not resumed; give no config to resume it with its own")
    model_auto = bool(manifest.get("model_auto", False))
    run_cfg, data, parts, spec = prepare(run_cfg)
    if _recorded_config(run_cfg) != recorded:
        raise DataError(f"{out / rundir.MANIFEST}: its config does not prepare to itself "
                        f"(differs in {_first_difference(_recorded_config(run_cfg), recorded)}): not resumable")
    if announce is not None:
        announce(start_line(run_cfg, model_auto=model_auto))
        announce(f"resuming {out}: replaying rounds 1-{kept.rounds_done} from its journal")
    with rundir.created(out) as run_dir:
        return _run(run_cfg, data, parts, spec, run_dir, figure, model_auto, on_round=on_round, kept=kept,
                    resumed={"from_round": kept.rounds_done + 1,
                             "interrupted_manifest_created": manifest.get("created")})


def _reconnectable(cfg: ExperimentConfig) -> bool:
    """The run's chain can be found again from its manifest: embedded, or an RPC URL written down whole."""
    url = cfg.chain.rpc
    return url is None or (redact_url(url) == url and "<redacted>" not in url)


def _recorded_config(cfg: ExperimentConfig) -> dict:
    """The config as a run's manifest records it (JSON round trip included)."""
    import json

    return json.loads(json.dumps(cfg.replace(chain={"rpc": redact_url(cfg.chain.rpc)}).to_dict(), default=str))


def _first_difference(a, b, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
    return path or "the whole config"


def _run(cfg, data, parts, spec, out: Path, figure: bool, model_auto: bool = False, *, on_round=None,
         kept=None, resumed: dict | None = None) -> RunResult:
    mode = cfg.experiment.mode
    if mode == "centralised":
        parts = [LearnerIndices(
            np.sort(np.concatenate([p.train for p in parts])),
            np.sort(np.concatenate([p.vote for p in parts])),
            np.sort(np.concatenate([p.test for p in parts])),
        )]
    store = WeightStore(cfg.store.url or rundir.store_url(out))
    initial = models.initial_weights(spec, cfg.experiment.seed, private=cfg.privacy.active)
    learners = build_learners(cfg, data, parts, spec, initial)
    from cohep.run import resume

    own = Path(store.base_uri)  # the journal keeps an unchanged proposal as the store's blob of it
    journal = resume.Journal(out / rundir.RESUME, kept, own if own.is_absolute() and own.is_dir() else None)
    players = journal.wrap(learners)
    config = _recorded_config(cfg)
    link = resume.ChainLink.open(cfg.chain.rpc, len(learners), kept) \
        if kept is not None and cfg.chain.rpc is not None and mode == "colearn" else None
    try:
        with progress() as bars:
            label = f"{mode}: {len(learners)} learner(s)"
            bar = _Advance(bars, bars.add_task(label, total=cfg.experiment.rounds), label)
            if mode == "colearn":
                records, timings, chain_info = run_colearn(cfg, players, spec, initial, store, bar, journal, on_round,
                                                           link)
            else:
                records, timings, chain_info = run_alone(cfg, players, bar, journal, on_round)
        if link is not None and not link.switched:
            from cohep.core.errors import DataError

            raise DataError(f"{cfg.chain.rpc}: the chain holds more of this run than its replay sends: not resumable")
    except KeyboardInterrupt:
        if not journal.marks:  # before the setup ended: nothing worth keeping
            raise
        if kept is not None and journal.replayed < kept.rounds_done:  # still replaying: what was kept stands
            raise resume.RunInterrupted(resume.interrupted_line(out, kept.rounds_done + 1, cfg.experiment.rounds),
                                        out, kept.rounds_done) from None
        with resume.sigint_deferred():
            done = journal.save_interrupted(out, {
                "mode": mode, "seed": cfg.experiment.seed, "model": spec.to_dict(),
                "model_digest": spec.digest().hex(), "model_auto": model_auto,
                "store": rundir.store_ref(out, store.base_uri)}, config)
        raise resume.RunInterrupted(resume.interrupted_line(out, done + 1, cfg.experiment.rounds,
                                                            resumable=_reconnectable(cfg)),
                                    out, done) from None
    finally:
        if link is not None:
            link.close()
    if kept is not None and journal.replayed < kept.rounds_done:
        from cohep.core.errors import DataError

        raise DataError(f"{out}: the replay ended after round {journal.replayed}, before the "
                        f"{kept.rounds_done} rounds kept: not resumable")
    with resume.sigint_deferred():
        return _finish(cfg, out, figure, model_auto, mode, spec, data, parts, learners, records, timings,
                       chain_info, store, journal, config, resumed)


def _finish(cfg, out, figure, model_auto, mode, spec, data, parts, learners, records, timings, chain_info, store,
            journal, config, resumed) -> RunResult:
    """Write the finished run's files (Ctrl-C is held off meanwhile), then drop its journal."""
    result = RunResult(
        out_dir=out, mode=mode, records=records, timings=timings,
        final_accuracy=final_test_accuracy(records),
        accepted=chain_info.pop("accepted_per_member", None) or accepted_per_learner(records, len(learners)),
        chain_id=chain_info.get("chain_id"), contract=chain_info.get("contract"),
        privacy=privacy_spent(learners), num_classes=spec.n_classes, model_auto=model_auto,
    )
    final = learners[0].current()
    accepted = sorted({r.digest for r in records if r.accepted and r.round > 0},
                      key=lambda d: min(r.round for r in records if r.digest == d))
    outputs = rundir.RunOutputs(
        mode=mode, records=records, timings=timings, final_weights_blob=encode(final),
        events=chain_info.pop("events", None),
        final_digest=weights_digest(final).hex(),
        manifest=dict(
            config=config, seed=cfg.experiment.seed, model_auto=model_auto,
            chain_id=result.chain_id, contract_address=result.contract, chain=redact_url(chain_info.get("chain")),
            model=spec.to_dict(), model_digest=spec.digest().hex(),
            data={"kind": data.kind, "source": data.source, "n_items": len(data),
                  "class_names": data.class_names,
                  "learners": [{"train": len(p.train), "vote": len(p.vote), "test": len(p.test)} for p in parts]},
            digests={"initial": chain_info.get("initial_digest"), "accepted": accepted,
                     "chain_accepted": chain_info.get("accepted_digest"),
                     "adopted": chain_info.get("adopted_digest")},
            store=rundir.store_ref(out, store.base_uri), store_uri=store.base_uri,
            contract_settings=chain_info.get("contract_settings"),
            max_bytes=chain_info.get("max_bytes"), traffic=chain_info.get("traffic"),
            final_test_accuracy=result.final_accuracy, accepted_per_learner=result.accepted,
            privacy=result.privacy,
            attack={"kind": cfg.attack.kind, "malicious": list(cfg.attack.malicious(len(learners))),
                    "collude": cfg.attack.collude} if cfg.attack.active else None,
            **({"resumed": resumed} if resumed is not None else {}),
        ),
    )
    title = f"{cfg.experiment.name}: {mode}, {spec.name}" if figure else None
    result.files.update(rundir.write(out, outputs, figure_title=title, metric=cfg.vote.metric))
    from cohep.outputs.report import write_report

    result.files["report"] = write_report(cfg, result, out / rundir.REPORT)
    from cohep.run.tracking import log_run  # [tracking]: issue 27's one hook, off by default

    result.files.update(log_run(cfg.tracking, result, out, name=cfg.experiment.name))
    journal.finish()
    return result


class _Advance:
    def __init__(self, bars, task, label: str):
        self.bars, self.task, self.label = bars, task, label

    def advance(self, k: int, note: str | None = None) -> None:
        """Step the bar on by ``k``; ``note`` (the last round's accuracy) follows the task's label."""
        description = f"{self.label}, {note}" if note else self.label
        self.bars.update(self.task, advance=k, description=description)
