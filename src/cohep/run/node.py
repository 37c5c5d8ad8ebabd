"""``cohep node``: one autonomous member, driven by the chain.

A node holds one key (from an encrypted keystore) and its own private data (which never leaves it);
all else it knows the chain and the stores rebuild, but for the state files below. It polls the
contract, does its duty in the current round through a :class:`~cohep.protocol.participant.Participant`
(the same code the in-process runner uses), closes rounds once the contract allows, and adopts what
the chain accepted. Killed and restarted at any moment, it reads the round, its ballot and the
accepted digest back from the chain and carries on; if the chain's node goes away, it retries until
it is back.

It writes ``<out>/records.csv`` (its own row per round), ``node.json`` (who, where, what), for a
private learner ``privacy.json`` (its accountant's history: a restarted node goes on from the epsilon
it has spent, since forgetting it would let it release past its budget), with ``vote.strikes``
``strikes.json`` (the rounds in which it screened each member out, so a restart does not give a struck
member the benefit of the doubt again) and, when the experiment ends, ``final_weights.safetensors``.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Callable

from cohep import models
from cohep.core.errors import ConfigError, ChainError, CohepError, DataError, IntegrityError
from cohep.run.experiment_file import Experiment, redact_url
from cohep.run.pace import judge_margin
from cohep.core.files import atomic_write_bytes, read_json, write_json
from cohep.outputs.manifest import write_manifest
from cohep.protocol.member import MemberWiring
from cohep.protocol.participant import Participant, initial_record
from cohep.protocol.records import RoundRecord, read_csv, write_csv
from cohep.protocol.strikes import Strikes
from cohep.protocol.view import Decided, RoundView

if TYPE_CHECKING:
    from cohep.wire.ballotbox import BallotBox
    from cohep.wire.fetch import Fetcher

#: a private learner's accountant history in the node's folder (``keep_privacy_state``)
PRIVACY_STATE = "privacy.json"
#: ``vote.strikes``: the rounds in which this node screened each member's slot out (``keep_strikes``)
STRIKES_STATE = "strikes.json"
#: sealed votes committed and not yet revealed: what and the salt, per round (``keep_pending_votes``)
PENDING_VOTES = "pending_votes.json"
#: seconds between looks at the chain
POLL_S = 0.3
#: how long a node keeps retrying a transient fault (an unreachable chain, an accepted blob that no
#: store gives) before it gives up with one line
RECONNECT_S = 300.0
#: seconds between two log lines of the same transient fault
RETRY_LOG_S = 15.0


class NodeFault(CohepError):
    """A fault no retry can mend, or a transient one past its retry deadline: one line, exit 2."""


@dataclass
class NodeOptions:
    poll_s: float = POLL_S
    reconnect_s: float = RECONNECT_S
    store: str | None = None  #: where this node puts its proposals (default: its store in the experiment)
    serve: str | None = None  #: HOST:PORT to serve its own store folder over HTTP (read-only)
    public_url: str | None = None  #: the URL its proposals are announced under (default: the store's)
    quiet: bool = False


@dataclass
class NodeResult:
    out_dir: Path
    address: str
    index: int
    rounds: int
    records: list[RoundRecord] = field(default_factory=list)
    final_digest: str = ""


def _log(opts: NodeOptions, text: str) -> None:
    """One line on stderr, after the local time (``HH:MM:SS``)."""
    if not opts.quiet:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def local_split(data, experiment: Experiment, index: int):
    """This member's private train / vote / test sets from its own file, seeded by the experiment."""
    from cohep.datasets.source import holdout_indices
    from cohep.datasets.splits import assign

    cfg = experiment.config
    part = assign(data.labels, 1, holdout=holdout_indices(len(data), cfg.data.holdout), method="iid",
                  vote_fraction=cfg.data.vote_fraction, seed=cfg.experiment.seed + 7919 * (index + 1))[0]
    return data.subset(part.train), data.subset(part.vote), data.subset(part.test) if len(part.test) else None


@dataclass
class NodeMember:
    """A node's member, and what the node reads beside it: its fetcher's traffic, its ballot box
    (``[chain] ballots = "signed"``: where its ballots go and the others' are collected from)."""

    participant: Participant
    fetcher: Fetcher
    ballot_box: BallotBox | None = None


def build_node_member(experiment: Experiment, key, data_path: str, chain, opts: NodeOptions) -> NodeMember:
    """Everything a node needs, checked: its data fits the model, the contract is the one named."""
    from cohep.datasets.source import load_data
    from cohep.ledger import Coordinator
    from cohep.run.tasks import learner_seed
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    index = experiment.index_of(key.address)
    if chain.chain_id != experiment.chain_id:
        raise CohepError(f"the RPC node is on chain {chain.chain_id}, the experiment on {experiment.chain_id}")
    cfg = experiment.config
    mine = dataclasses.replace(cfg.data, path=str(data_path))  # this member's own file: its kind follows it
    data = load_data(mine.resolved_kind(), data_path, limit=cfg.data.limit)
    if list(data.class_names) != list(experiment.class_names):
        raise DataError(f"{data_path}: classes {list(data.class_names)} differ from the experiment's "
                        f"{list(experiment.class_names)}")
    if tuple(data.input_shape) != tuple(experiment.model.input_shape):
        raise DataError(f"{data_path}: images {list(data.input_shape)} differ from the experiment's "
                        f"{list(experiment.model.input_shape)}")
    models.check_fits(experiment.model, data.source)
    coord = Coordinator.at(chain, experiment.contract)
    settings = coord.settings()
    if settings.initial_digest.hex() != experiment.initial_digest:
        raise CohepError(f"contract {experiment.contract} holds another experiment (initial digest differs)")
    store_url = opts.store or experiment.store_of(index)
    store = WeightStore(store_url, public_url=opts.public_url)
    # every blob this node verifies goes into its own store, which its server serves: what it adopted
    # outlives its proposer; a proposal's URI must name its proposer's own store (or the shared one)
    probe = Fetcher(allowed=experiment.allowed_stores(), max_bytes=experiment.max_bytes, keep=store.keep)
    initial = _retrying(opts, "initial weights", lambda: probe.fetch_any(
        experiment.initial_uri, bytes.fromhex(experiment.initial_digest)))
    fetch = Fetcher(allowed=experiment.allowed_stores(), max_bytes=experiment.max_bytes, reference=initial,
                    owners=experiment.owners(), keep=store.keep)
    train, vote, test = local_split(data, experiment, index)
    budget = cfg.privacy.budget(index, learners=len(experiment.members), rounds=cfg.experiment.rounds,
                                proposers=cfg.round.proposers)
    learner = models.build_learner(experiment.model, train, vote, test, cfg.train,
                                   seed=learner_seed(cfg.experiment.seed, index), initial=initial,
                                   privacy=budget and dataclasses.replace(budget, secret=True))  # seed is public
    box = None
    if cfg.chain.ballots == "aggregate":  # the in-process runner only, so far (docs/contract.md)
        raise ConfigError("chain.ballots = \"aggregate\" is played by `cohep run` only; a node relays "
                          "\"signed\" or \"transactions\" ballots")
    if cfg.chain.ballots == "signed":
        from cohep.wire.ballotbox import BallotBox

        stores = {m.address: experiment.store_of(i) for i, m in enumerate(experiment.members)}
        box = BallotBox(store_url, stores, coord.ballot_domain())
    wiring = MemberWiring(coord, store, fetch, cfg.vote, cfg.round.policy(), experiment.initial_uri)
    p = wiring.member(index, key.address, learner, post_ballot=box.post if box is not None else None)
    return NodeMember(p, fetch, box)


def relay_ballots(p: Participant, box: BallotBox, state, block: int):
    """Submit the round's signed ballots (read from the members' stores) that the chain has not
    counted yet. Slot 0's proposer does as soon as every voter's ballot is in; any member does once half
    the vote window has passed with ballots still uncounted (the proposer may be gone), so a few
    duplicate ballots may reach the contract, which skips them (``box``: this node's ballot box).
    Returns the BallotBatch or None. Sealed votes: the signed commitments while voting is open, then the
    reveals (those that match the commitment on chain) once the reveal phase has opened, the same way."""
    if state.finalized or not state.proposed:
        return None
    if state.sealed:
        return _relay_sealed(p, box, state, block)
    if state.votes >= state.eligible or block > state.vote_deadline:
        return None
    coord = p.coordinator
    found = box.collect(state.round, state.voters)
    fresh = [b for b in found if not state.votes or coord.ballot_bits(state.round, b.voter) is None]
    if not fresh:
        return None
    complete = state.votes + len(fresh) >= state.eligible
    late = block >= state.vote_deadline - (state.vote_deadline - state.proposed_block) // 2
    if (p.address == state.proposer and (complete or late)) or late:
        return coord.submit_ballots(p.address, state.round, fresh)
    return None


def _relay_sealed(p: Participant, box: BallotBox, state, block: int):
    """relay_ballots for sealed votes: commitments in the commit phase, reveals in the reveal phase."""
    coord, r = p.coordinator, state.round
    if state.reveal_block is None:  # commit phase
        if state.commits >= state.eligible or block > state.vote_deadline:
            return None
        found = box.collect_commits(r, state.voters)
        fresh = [c for c in found if not state.commits or coord.commitment(r, c.voter) is None]
        done, due, opened, deadline = state.commits, state.eligible, state.proposed_block, state.vote_deadline
        submit = coord.submit_commits
    else:
        if state.votes >= state.commits or block > state.reveal_deadline:
            return None
        domain = coord.ballot_domain()
        fresh = [v for v in box.collect_reveals(r, state.voters)
                 if (not state.votes or coord.ballot_bits(r, v.voter) is None)
                 and coord.commitment(r, v.voter) == v.commitment(domain)]  # another's or a changed vote: dropped
        done, due, opened, deadline = state.votes, state.commits, state.reveal_block, state.reveal_deadline
        submit = coord.submit_reveals
    if not fresh:
        return None
    complete = done + len(fresh) >= due
    late = block >= deadline - (deadline - opened) // 2
    if (p.address == state.proposer and (complete or late)) or late:
        return submit(p.address, r, fresh)
    return None


def round_moved_on(coord, r: int) -> bool:
    """Whether round ``r`` is decided, or its finalize waits in the next block: a transaction of this
    node's for it (a ballot batch, a finalize) was then refused for the round, not for a fault of the
    chain's, and the node goes on to the next round without retrying. False when the chain cannot say."""
    try:
        return coord.closed(r)
    except ChainError:
        return False


def finalizable(state, block: int) -> bool:
    """Whether the contract would accept ``finalize`` for this round now."""
    if state.finalized:
        return False
    if not state.proposed:
        return block > state.proposal_deadline
    if state.sealed:  # every commitment revealed (once the reveal phase is open), or the reveal window over
        return state.reveal_block is not None and (state.votes >= state.commits or block > state.reveal_deadline)
    return state.votes >= state.eligible or block > state.vote_deadline


def run_node(experiment_path: str | Path, key, data_path: str, rpc: str, out_dir: str | Path,
             opts: NodeOptions = NodeOptions()) -> NodeResult:
    """Take part in the experiment until its last round is decided and adopted."""

    experiment = Experiment.read(experiment_path)
    out = Path(out_dir)
    chain = _connect(rpc, key, opts, experiment, known=(out / "node.json").exists())
    server = None
    if opts.serve:
        from cohep.wire.server import BlobServer

        host, _, port = opts.serve.rpartition(":")
        folder = opts.store or experiment.store_of(experiment.index_of(key.address))
        server = BlobServer(folder, host=host or "127.0.0.1", port=int(port)).start()
        _log(opts, f"serving {folder} at {server.url}")
    try:
        node = build_node_member(experiment, key, data_path, chain, opts)
        out.mkdir(parents=True, exist_ok=True)
        keep_privacy_state(node.participant, out / PRIVACY_STATE)
        keep_pending_votes(node.participant, out / PENDING_VOTES)
        save_strikes = keep_strikes(node.participant, out / STRIKES_STATE)
        write_manifest(out / "node.json", experiment=str(experiment_path), contract=experiment.contract,
                       chain_id=experiment.chain_id, rpc=redact_url(rpc), address=key.address,
                       member_index=node.participant.index, data=str(data_path))
        return _follow(experiment, node, chain, out, opts, save_strikes)
    finally:
        if server is not None:
            server.stop()


def keep_privacy_state(p: Participant, path: Path) -> None:
    """A private learner's spent budget survives restarts: restored from ``path`` if it is there, and
    saved there after every proposal is trained, before the proposal leaves the node."""
    privacy = getattr(p.learner, "privacy", None)
    if privacy is None:
        return
    if path.exists():
        privacy.restore(read_json(path), str(path))

    def save() -> None:
        write_json(path, privacy.state())

    p.before_release = save


def keep_pending_votes(p: Participant, path: Path) -> None:
    """Sealed votes survive restarts: what this node committed to and the salt, per round, restored from
    ``path`` and written there (atomically) before each commitment leaves the node, so a node killed
    between its commitment and its reveal can still reveal (without the salt its commitment is a
    missed vote). The file is secret until the round's reveal: it stays in the node's own folder."""
    from cohep.protocol.duty import PendingVote

    if path.exists():
        try:
            p.pending = {int(r): PendingVote.from_json(v) for r, v in read_json(path).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path}: not a pending-votes file ({exc.__class__.__name__}: {exc})") from None

    def save(pending: dict) -> None:
        write_json(path, {str(r): v.to_json() for r, v in pending.items()})

    p.save_pending = save


def keep_strikes(p: Participant, path: Path) -> Callable[[], None]:
    """``vote.strikes`` survive restarts: restored from ``path`` if it is there; the function returned
    saves them there when they changed (the node calls it after each of its turns)."""
    if p.rule.strikes is None:
        return lambda: None
    saved: dict = {}  # what the file holds
    if path.exists():
        p.strikes = Strikes.from_json(read_json(path), str(path))
        saved = p.strikes.to_json()

    def save() -> None:
        nonlocal saved
        now = p.strikes.to_json()
        if now != saved:
            write_json(path, now)
            saved = now

    return save


def _connect(rpc: str, key, opts: NodeOptions, experiment: Experiment | None = None, *, known: bool = False):
    """The chain, checked before the node does anything: a URL where no Ethereum node answers fails
    at once in one line (a chain that was up and goes away later is retried by ``_follow``, until a
    stated time; so is the first connect of a node restarted in a folder that has followed this chain
    before, ``known``); with ``experiment``, a chain without a block clock and a key that cannot pay
    for the rounds left are refused in one line too."""
    from cohep.ledger import Chain, Coordinator
    from cohep.ledger.chain import NODE_GAS_PER_ROUND, block_clock_problem, check_funds

    retry = _Retry(opts)
    while True:
        try:
            chain = Chain.connect(rpc, 1, private_keys=[key.private_key])
            break
        except ChainError as exc:
            if not known:
                raise
            retry.failed("chain", exc)  # a restart: logged with its deadline, a NodeFault past it
            time.sleep(1.0)
    if experiment is None or chain.chain_id != experiment.chain_id:
        return chain  # build_node_member names a chain mismatch
    if problem := block_clock_problem(chain):
        raise ChainError(problem)
    rounds = experiment.config.experiment.rounds
    try:
        left = max(0, rounds - Coordinator.at(chain, experiment.contract).round())
    except ChainError:
        left = rounds  # build_node_member names a missing contract
    if left:
        check_funds(chain, key.address, left * NODE_GAS_PER_ROUND,
                    f"the {left} round(s) left (up to {NODE_GAS_PER_ROUND:,} gas a round)")
    return chain


_CALL_ROUND = re.compile(r"\b([a-z_]+)\(round (\d+)\)")


def one_based(text: str) -> str:
    """A chain client's message with its calls' rounds as a node shows rounds (from 1): the contract
    counts from 0 (``propose(round 1)`` is the second round), a user reads "round 2 of 12"."""
    return _CALL_ROUND.sub(lambda m: f"{m.group(1)} in round {int(m.group(2)) + 1}", text)


class _Retry:
    """The retries of one transient fault: logged with the time they go on until (every
    ``RETRY_LOG_S`` at most), given up after ``opts.reconnect_s`` with a NodeFault."""

    def __init__(self, opts: NodeOptions):
        self.opts, self.since, self.what, self.logged = opts, None, "", -float("inf")

    def failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        until = self.since + self.opts.reconnect_s
        if now > until:
            raise NodeFault(f"{what}: {one_based(str(exc))} (gave up after {self.opts.reconnect_s:.0f} s of "
                            "retrying)") from None
        if what != self.what or now - self.logged >= RETRY_LOG_S:
            wall = time.strftime("%H:%M:%S", time.localtime(time.time() + until - now))
            _log(self.opts, f"{what}: {one_based(str(exc))} (retrying until {wall})")
            self.what, self.logged = what, now

    def ok(self) -> None:
        self.since, self.what, self.logged = None, "", -float("inf")


def _retrying(opts: NodeOptions, what: str, fn: Callable):
    """``fn()``, retried while it fails transiently (``Unavailable``, ChainError) until the stated time."""
    from cohep.wire.checks import Unavailable

    from cohep.ledger.chain import InsufficientFunds

    retry = _Retry(opts)
    while True:
        try:
            return fn()
        except InsufficientFunds:
            raise  # only someone sending the key ETH mends it: no retry
        except (Unavailable, ChainError) as exc:
            retry.failed(what, exc)
        time.sleep(1.0)


#: what a node whose funds ran out is told to do once its key is funded again
_REFUND = ", then start the node again: it resumes from its folder and rejoins if it was suspended"


def _check_round_funds(chain, address: str, r: int, rounds: int) -> None:
    """At each round's start: can this member pay for the round's transactions (a proposal or a
    finalize, a commitment and a reveal, a rejoin)? If not, the one line of ``check_funds``.

    Funds that run out mid-run are permanent for the node (NodeFault, exit 2), not a transient fault
    retried until a deadline: nothing the node does mends them, every duty missed while it waited
    counts against it all the same, and a node started again in its folder resumes (records, sealed
    votes, rejoin) once someone has sent its key ETH."""
    from cohep.ledger.chain import NODE_GAS_PER_ROUND, check_funds

    check_funds(chain, address, NODE_GAS_PER_ROUND, "its transactions this round", then=_REFUND)


def _funds_fault(chain, address: str, exc: BaseException, r: int, rounds: int) -> NodeFault | None:
    """A transaction refused for want of funds (the RPC node's raw 'insufficient funds') as the node's
    one line naming the address and how much it needs; None for any other failure."""
    from cohep.ledger.chain import InsufficientFunds, funds_error

    raw = funds_error(exc, address)
    if raw is None:
        return None
    try:
        _check_round_funds(chain, address, r, rounds)
    except InsufficientFunds as short:  # the amount, where the balance is below the round's bound
        return NodeFault(f"round {r + 1} of {rounds}: {short}")
    except ChainError:
        pass
    return NodeFault(f"round {r + 1} of {rounds}: {raw}{_REFUND}")


def _prefetch(p: Participant, todo: list, stop: float) -> list:
    """The round's proposals this member judges (``todo``: their slots), fetched before it judges any,
    side by side when there are several (each ends by ``stop``), so a slow slot cannot use up the time
    another slot's proposal needs. Failures stay with the round's blobs (``Adoption``) and become
    reject votes with their reasons when the member judges. Returns the slots whose blob it holds."""
    import threading

    held: list = []

    def one(s) -> None:
        try:
            p.adoption.proposal(s.uri, s.digest, s.proposer)
            held.append(s)
        except IntegrityError:
            pass  # remembered for the round: the verdict rejects it with this reason

    if len(todo) < 2:
        for s in todo:
            one(s)
        return held
    threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in todo]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, stop - time.monotonic()) + 1.0)
    return list(held)


def act_in_time(p: Participant, fetcher: Fetcher, view: RoundView, pace, scoring_s: float = 0.0, *,
                work: list[float] | None = None, read_at: float | None = None, voted: bool = False):
    """``p.act(view)`` with every fetch of a proposal ending in time for the vote to be mined by the
    round's vote deadline (sealed votes: the commitment's, the same block): the blocks left at the
    chain's pace since ``read_at`` (when the view was read; default: now), less ``pace.vote_margin``
    of this voter's recent ``work`` (seconds from its fetches' end to its vote sent, one a round: the
    measure of this round is appended) and ``scoring_s`` per proposal judged (``cohep.run.pace``).
    If less than ``pace.judge_margin`` is left when the fetches end, the proposals that did arrive are
    rejected at once (``timeout``), not scored: a vote started then would miss the window. ``voted``:
    this node has voted in the round already (nothing to fetch). Returns (duty or None, seconds taken)."""
    state, start = view.state, time.monotonic()
    pace.observe(view.block)
    stop, fetched = None, start
    if view.voting_open() and p.address in state.voters and not voted:
        todo = [s for s in state.slots if s.proposed and s.proposer != p.address]
        read_at = start if read_at is None else read_at
        stop = pace.stop(state.vote_deadline, view.block, work or (), scoring_s, len(todo), read_at=read_at)
        with fetcher.until(stop):
            held = _prefetch(p, todo, stop)
        fetched = time.monotonic()
        left = pace.deadline_at(state.vote_deadline, view.block, read_at) - fetched
        need = judge_margin(work or (), pace.block_seconds(), scoring_s, len(todo))
        if left < need:  # what did arrive came too late to be scored (the rest keeps its own reason)
            why = f"timeout: no time left to judge it ({max(0.0, left):.1f} s to the deadline, {need:.1f} s needed)"
            for s in held:
                p.adoption.give_up(s.uri, s.digest, s.proposer, why)
    with fetcher.until(stop):
        duty = p.act(view)
    end = time.monotonic()
    if work is not None and stop is not None and duty is not None and duty.voted:
        work.append(end - fetched)
    return duty, end - start


def _vote_text(duty) -> str:
    """'approve', 'reject (timeout: 2 bytes of 1.42 kB in 2.0 s)', 'approve/reject' (per slot)..."""
    what = duty.verdicts or ("approve" if duty.approve else "reject")
    return f"{what} ({duty.reason})" if duty.reason else what


def _rejoin(p: Participant, coord, opts: NodeOptions, r: int, rounds: int) -> None:
    """A suspended member that is back calls ``rejoin``; the log says why it was suspended."""
    if not coord.member_stats(p.address).suspended:
        return
    why = ""
    try:
        mine = [e for e in coord.events() if e.name == "Suspended"
                and str(e.args.get("member", "")).lower() == p.address.lower()]
    except ChainError:
        mine = []
    if mine:
        a = mine[-1].args
        reason = a.get("reason", "")
        reason = reason.decode(errors="replace").rstrip("\0") if isinstance(reason, bytes) else str(reason)
        why = f" in round {int(a.get('round', 0)) + 1}" + (f" ({reason})" if reason else "")
    coord.rejoin(p.address)
    _log(opts, f"round {r + 1} of {rounds}: this member was suspended{why}; rejoined "
               f"(active again from round {r + 2})")


def _follow(experiment: Experiment, node: NodeMember, chain, out: Path, opts: NodeOptions,
            save_strikes: Callable[[], None] = lambda: None) -> NodeResult:
    from cohep.ledger.chain import InsufficientFunds
    from cohep.protocol.adoption import NotTheCombination
    from cohep.run.pace import Pace
    from cohep.wire.checks import Unavailable

    p = node.participant
    coord = p.coordinator
    rounds = experiment.config.experiment.rounds
    records_path = out / "records.csv"
    records = read_csv(records_path) if records_path.exists() else []
    result = NodeResult(out, p.address, p.index, rounds, records)
    next_row = max((r.round for r in records), default=0)  # rows are 1-based rounds; 0 = initial
    before = None
    pace = Pace(chain)
    retry = _Retry(opts)
    scoring_s = 0.0  # one evaluation on the vote set: what judging a proposal costs beside its fetch
    work: list[float] = []  # per vote: seconds from its fetches' end to the vote sent (pace.vote_margin)
    checked = -1  # the round whose start this node last checked its suspension at
    told: set[int] = set()  # the rounds whose vote the log has shown
    r = next_row
    while True:
        try:
            evaluated = p.seconds["evaluation"]
            if p.sync(coord.accepted_digest()):
                scoring_s = max(scoring_s, p.seconds["evaluation"] - evaluated)
            if before is None:
                before = p.current
                if not records:
                    records.append(initial_record(p.index, p.rule, p.current))
            r = coord.round()
            while next_row < min(r, rounds):  # rounds decided since we last looked
                records.append(p.record(Decided.from_state(coord.round_state(next_row)), before))
                before = p.current
                next_row += 1
                write_csv(records, records_path)
                row = records[-1]
                what = row.vote or ("proposer" if row.is_proposer else "-")
                if row.reason:
                    what = f"{what} ({row.reason})"
                _log(opts, f"round {next_row} of {rounds}: {what}; "
                           f"{'accepted' if row.accepted else 'void' if row.void else 'rejected'}")
            if r >= rounds:
                break
            if r != checked:
                _check_round_funds(chain, p.address, r, rounds)
                _rejoin(p, coord, opts, r, rounds)
                checked = r
            read_at = time.monotonic()
            view = RoundView.read(coord, r)
            duty, took = act_in_time(p, node.fetcher, view, pace, scoring_s, work=work, read_at=read_at,
                                     voted=r in told)
            if duty is not None and duty.voted and r not in told:  # once a round (sealed: at the commitment)
                told.add(r)
                left = view.state.vote_deadline - chain.block_number()
                after = f" ({work[-1]:.1f} s of it after the fetch)" if work else ""
                _log(opts, f"round {r + 1} of {rounds}: voted {_vote_text(duty)} after {took:.1f} s{after}, "
                           f"{left} blocks before the deadline")
            save_strikes()
            state = coord.round_state(r)
            box = node.ballot_box
            if box is not None and relay_ballots(p, box, state, chain.block_number()) is not None:
                state = coord.round_state(r)
            if finalizable(state, chain.block_number()):
                p.finalize(r)
            retry.ok()
        except Unavailable as exc:  # an accepted blob no store gives yet: it cannot adopt, so wait
            retry.failed("store", exc)
            time.sleep(1.0)
            continue
        except (NotTheCombination, IntegrityError) as exc:  # the accepted blob itself is bad: no retry mends it
            raise NodeFault(f"cannot adopt the chain's accepted weights: {exc}") from None
        except InsufficientFunds as exc:  # only someone sending the key ETH mends it: one line, exit 2
            raise NodeFault(f"round {min(r, rounds - 1) + 1} of {rounds}: {exc}") from None
        except ChainError as exc:  # the chain's node is gone or a transaction failed: look again later
            if (fault := _funds_fault(chain, p.address, exc, min(r, rounds - 1), rounds)) is not None:
                raise fault from None
            if round_moved_on(coord, r):  # refused because another member closed the round under it: no fault
                time.sleep(opts.poll_s)
                continue
            retry.failed("chain", exc)
            time.sleep(1.0)
            continue
        time.sleep(opts.poll_s)
    _retrying(opts, "store", lambda: p.sync(coord.accepted_digest()))
    final = p.learner.current()
    from cohep.wire.weights import digest, encode

    atomic_write_bytes(out / "final_weights.safetensors", encode(final))
    result.final_digest = digest(final).hex()
    write_csv(records, records_path)
    write_json(out / "node_stats.json", {
        "rounds": rounds, "chain_seconds": coord.seconds, "transactions": coord.transactions,
        "gas_used": coord.gas_used, "bytes_fetched": node.fetcher.bytes,
        "fetch_seconds": node.fetcher.seconds, **{f"{k}_seconds": v for k, v in p.seconds.items()},
        "ballots_dropped": node.ballot_box.dropped if node.ballot_box is not None else None,
        "block_seconds": pace.block_seconds(), "block_seconds_from": pace.measured_from,
    })
    return result


__all__ = ["NodeFault", "NodeMember", "NodeOptions", "NodeResult", "act_in_time", "PRIVACY_STATE", "STRIKES_STATE",
           "build_node_member", "finalizable", "round_moved_on",
           "keep_pending_votes", "keep_privacy_state", "keep_strikes", "local_split", "relay_ballots", "run_node"]
