"""A whole decentralised experiment on one machine: a real Anvil node and one ``cohep node`` process
per member, each serving its own store over HTTP; plus the fault drills the tests and
``bench/nodes.py`` run against it, and the dishonest members of ``tests/test_member_attacks.py`` and
``bench/member_attacks.py``.

Nothing here is a shortcut through the protocol: members are separate processes that know only the
experiment file, their keystore and their data, and reach each other through the chain and the
stores. The :class:`Adversary` is a dishonest member with a real key that proposes crafted blobs
when the contract draws it (or copies the others' votes); a :class:`DishonestNode` is a real ``cohep
node`` whose store is served by a ``cohep.testing.dishonest_store.DishonestStore`` (slowly, to some
voters only, or not at all once its proposal is accepted); the drills kill and restart nodes and the
chain itself.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cohep.core.errors import ChainError, CohepError, IntegrityError
from cohep.run.experiment_file import Experiment
from cohep.ledger.anvil import Anvil, dev_private_keys, free_port
from cohep.testing.dishonest_store import DishonestStore

PASSWORD = "localnet"  #: keystore password of the throw-away dev keys


@dataclass
class Drill:
    """One fault case and what came of it."""

    case: str
    expect: str
    rounds: list[int] = field(default_factory=list)  #: 1-based rounds it touched
    outcome: str = ""
    survived: bool = False


def split_npz(images: np.ndarray, labels: np.ndarray, folder: Path, parts: int) -> list[Path]:
    """Deal a labelled image set into ``parts`` private files (``x`` / ``y`` npz), one per member."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, idx in enumerate(np.array_split(np.arange(len(labels)), parts)):
        path = folder / f"member{i}.npz"
        np.savez(path, x=images[idx], y=labels[idx])
        out.append(path)
    return out


class LocalNet:
    """Anvil plus member processes under ``root``; ``honest`` members run ``cohep node``."""

    def __init__(self, root: Path, data: list[Path], *, adversary: bool | Callable[[LocalNet, int], Adversary] = False,
                 block_time: float = 0.25, settings: dict | None = None, python: str = sys.executable,
                 dishonest: DishonestNode | None = None):
        """``adversary``: True for the crafted-proposal :class:`Adversary` as the last member, or a
        function ``net, index -> Adversary`` for another one; ``dishonest``: a :class:`DishonestNode`
        as the last member instead, which trains on the last of ``data`` (the others' are the honest
        members')."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = list(data)
        self.dishonest = dishonest
        self.honest = len(self.data) - (1 if dishonest is not None else 0)
        self.n = len(self.data) + (1 if adversary else 0)
        self.python = python
        self.settings = settings or {}
        self.anvil = Anvil(block_time=block_time, accounts=self.n + 3, state=self.root / "anvil_state.json",
                           log=self.root / "anvil.log")
        keys = dev_private_keys(self.n + 3)  # 0 deploys, 1..n are members, n+1 is an outsider
        self.deployer_key, self.member_keys, self.outsider_key = keys[0], keys[1:self.n + 1], keys[self.n + 1]
        self.ports = [free_port() for _ in range(self.n)]
        self.procs: dict[int, subprocess.Popen] = {}
        self.experiment: Experiment | None = None
        self.adversary: Adversary | None = None
        self._wants_adversary = adversary

    # -- set-up ------------------------------------------------------------------------------
    def store_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def start(self) -> "LocalNet":
        from cohep.run import keys

        self.anvil.start()
        for i, key in enumerate([self.deployer_key, *self.member_keys]):
            path = self.root / f"key{i}.json"
            if not path.exists():
                keys.create(path, PASSWORD, private_key=key, kdf_n=2**10)
        self.experiment = self._deploy()
        for i in range(self.honest):
            self.start_node(i)
        if self.dishonest is not None:
            self.dishonest.start(self, self.n - 1)
        if self._wants_adversary:
            make = self._wants_adversary if callable(self._wants_adversary) else Adversary
            self.adversary = make(self, self.n - 1)
            self.adversary.start()
        return self

    def _deploy(self) -> Experiment:
        from cohep.config import experiment as config
        from cohep.run.deploy import MemberSpec, deploy
        from cohep.run.keys import address_of

        # the paper round (one proposer, every other member fetches and votes): each drill's dishonest
        # proposal meets every honest voter; ``settings`` may name another protocol
        cfg = config.load(None, config.merge({"experiment": {"name": "localnet", "rounds": 8, "seed": 0,
                                                             "protocol": "paper"},
                                              "chain": {"proposal_window": 40, "vote_window": 40}},
                                             self.settings))
        members = [MemberSpec(address_of(self.root / f"key{i + 1}.json"), self.store_url(i)) for i in range(self.n)]
        return deploy(cfg, data_path=str(self.data[0]), members=members, rpc=self.anvil.url,
                      deployer_key=self.deployer_key, store=str(self.root / "shared"),
                      shared_store=str(self.root / "shared"), out=self.root / "experiment.json")

    def start_node(self, i: int, *, serve: bool = True) -> subprocess.Popen:
        """Member ``i``'s ``cohep node`` (an honest one is kept in ``procs``); ``serve=False``: the
        node serves no store itself (a :class:`DishonestStore` serves its folder instead)."""
        env = dict(os.environ, COHEP_KEYSTORE_PASSWORD=PASSWORD, COHEP_PROGRESS="0", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", KERAS_BACKEND="torch")
        log = open(self.root / f"node{i}.log", "ab")
        args = [self.python, "-m", "cohep", "node", "--experiment", str(self.root / "experiment.json"),
                "--keystore", str(self.root / f"key{i + 1}.json"), "--data", str(self.data[i]),
                "--rpc", self.anvil.url, "--store", str(self.root / f"store{i}"),
                *(["--serve", f"127.0.0.1:{self.ports[i]}"] if serve else []), "--public-url", self.store_url(i),
                "--out", str(self.root / f"node{i}"), "--poll", "0.2"]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if i < self.honest:
            self.procs[i] = proc
        return proc

    def kill_node(self, i: int) -> None:
        """SIGKILL: no clean-up, as a crash or a pulled plug."""
        p = self.procs.pop(i, None)
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def stop(self) -> None:
        """Stop everything, whatever fails on the way (no process may outlive the network)."""
        try:
            if self.adversary is not None:
                self.adversary.stop()
            if self.dishonest is not None:
                self.dishonest.stop()
        finally:
            try:
                for i in list(self.procs):
                    self.kill_node(i)
            finally:
                self.anvil.stop()

    def __enter__(self) -> "LocalNet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- watching ------------------------------------------------------------------------------
    def coordinator(self):
        from cohep.ledger import Chain, Coordinator

        return Coordinator.at(Chain.connect(self.anvil.url, 0), self.experiment.contract)

    def wait(self, condition, timeout_s: float, what: str, poll_s: float = 0.2):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                value = condition()
            except ChainError:
                value = None
            if value:
                return value
            for i, p in self.procs.items():
                if p.poll() not in (None, 0):
                    raise CohepError(f"node {i} exited with {p.returncode} while waiting for {what}: "
                                     f"see {self.root / f'node{i}.log'}")
            time.sleep(poll_s)
        raise CohepError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def wait_finished(self, timeout_s: float) -> None:
        """Every honest node exits 0 once the last round is decided and adopted."""
        deadline = time.monotonic() + timeout_s
        for i, p in self.procs.items():
            try:
                code = p.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise CohepError(f"node {i} still running after {timeout_s:.0f} s: see {self.root / f'node{i}.log'}") from None
            if code != 0:
                raise CohepError(f"node {i} exited with {code}: see {self.root / f'node{i}.log'}")

    def node_records(self, i: int):
        from cohep.protocol.records import read_csv

        return read_csv(self.root / f"node{i}" / "records.csv")

    def final_digests(self) -> list[str]:
        from cohep.wire.weights import digest_bytes

        return [digest_bytes((self.root / f"node{i}" / "final_weights.safetensors").read_bytes()).hex()
                for i in range(self.honest)]

    def audit(self):
        from cohep.run.audit import audit_chain

        mirrors = [str(self.root / f"store{i}") for i in range(self.honest)]
        if self.adversary is not None:
            mirrors.append(str(self.adversary.folder))
        return audit_chain(self.root / "experiment.json", self.anvil.url, mirrors)


class Adversary(threading.Thread):
    """A dishonest member: when drawn it proposes the next crafted blob of ``script``; otherwise it
    approves everything (so it is never suspended for missing votes), or with ``votes="copy"`` it
    fetches nothing and votes as another voter did once that vote can be read (its Voted event)."""

    CASES = {
        "digest mismatch": "the blob under the announced name is other bytes",
        "NaN weights": "a well-formed blob whose values are NaN",
        "wrong shapes": "a tensor of another shape",
        "oversized blob": "a blob far over the size cap",
        "URI outside the stores": "a URI no allowed store contains",
        "re-encoded blob": "the current weights with padding metadata (the v1 re-picking attack)",
    }

    #: cases of tests/test_member_attacks.py beside CASES (not in the node drills' script)
    MEMBER_CASES = {
        "another member's file": "the digest and URI of an honest member's latest proposal, in that member's store",
    }

    def __init__(self, net: LocalNet, index: int, script: list[str] | None = None, votes: str = "approve"):
        super().__init__(daemon=True, name="adversary")
        from cohep.wire.server import BlobServer
        from cohep.ledger import Chain, Coordinator

        self.net, self.index = net, index
        self.script = list(self.CASES if script is None else script)
        self.votes = votes
        self.done: list[tuple[str, int]] = []  #: (case, 0-based round) proposed
        self.copied: list[int] = []  #: 0-based rounds in which it cast a copied vote
        self._sealed: dict[int, tuple] = {}  #: sealed votes: round -> (approvals, scores, salt) to reveal
        self.folder = net.root / "adversary_store"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.server = BlobServer(self.folder, port=net.ports[index]).start()
        self.chain = Chain.connect(net.anvil.url, 1, private_keys=[net.member_keys[index]])
        self.coord = Coordinator.at(self.chain, net.experiment.contract)
        self.address = self.chain.accounts[0]
        self._halt = threading.Event()
        self._up = False  #: every honest member has acted on chain (see _voters_up)
        self.errors: list[str] = []

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.server.stop()

    def run(self) -> None:
        from cohep.run.node import finalizable

        rounds = self.net.experiment.config.experiment.rounds
        while not self._halt.is_set():
            try:
                r = self.coord.round()
                if r >= rounds:
                    return
                state = self.coord.round_state(r)
                block = self.chain.block_number()
                if state.proposer == self.address and not state.proposed and self.script and self._voters_up():
                    case = self.script[0]
                    crafted = self.craft(case)
                    if crafted is None:  # nothing to propose this turn (another member's file: none yet)
                        time.sleep(0.2)
                        continue
                    try:
                        self.coord.propose(self.address, r, *crafted)
                    except ChainError:  # the chain went away: did the proposal land before it did?
                        if not self.coord.round_state(r).proposed:
                            raise
                    self.script.pop(0)  # only once it is on chain: a lost turn keeps the case for the next
                    self.done.append((case, r))
                elif (state.proposed and self.address in state.voters and self.coord.ballot(r, self.address) is None
                      and block <= state.vote_deadline and not self._committed(state)):
                    if self.votes == "copy":
                        self._copy_vote(state)
                    else:
                        self._cast(state, 1, [0])
                elif r in self._sealed and getattr(state, "reveal_block", None) is not None \
                        and self.coord.ballot(r, self.address) is None and block <= state.reveal_deadline:
                    self.coord.reveal_vote(self.address, r, *self._sealed.pop(r))
                elif finalizable(state, block):
                    self.coord.finalize(self.address, r)
            except ChainError:
                time.sleep(0.5)
                continue
            except Exception as exc:  # noqa: BLE001 - a broken adversary must show in the results
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)
            time.sleep(0.2)

    def _voters_up(self) -> bool:
        """Whether every honest member has acted on chain (proposed, committed or voted) in some round: a
        case proposed before that may meet voters still starting (four nodes on two busy cores can miss
        the first vote window), and it must meet every honest voter. Until then a turn is left silent
        (the round voids; the case waits for the next turn)."""
        if not self._up:
            honest = {m.address.lower() for m in self.net.experiment.members[:self.net.honest]}
            acted = {str(e.args.get("voter", e.args.get("proposer", ""))).lower() for e in self.coord.events()
                     if e.name in ("Proposed", "Committed", "Voted")}
            self._up = honest <= acted
        return self._up

    def _committed(self, state) -> bool:
        return getattr(state, "sealed", False) and self.coord.commitment(state.round, self.address) is not None

    def _cast(self, state, approvals: int, scores: list[int]) -> None:
        """Vote as the contract takes votes: at once, or (sealed votes) commit now and reveal later."""
        if not getattr(state, "sealed", False):
            self.coord.vote_slots(self.address, state.round, approvals, scores)
            return
        from cohep.ledger import ballots

        salt = ballots.new_salt()
        self.coord.commit_vote(self.address, state.round, ballots.commitment(
            self.coord.ballot_domain(), state.round, self.address, approvals, scores, salt))
        self._sealed[state.round] = (approvals, scores, salt)

    def _copy_vote(self, state) -> None:
        """Vote as the first other voter of the round whose vote can be read, without fetching anything
        (while its own vote is still due: with sealed votes no vote can be read by then)."""
        r = state.round
        for e in self.coord.events(from_block=state.start_block):
            if e.name == "Voted" and int(e.args["round"]) == r and e.args["voter"].lower() != self.address.lower():
                self._cast(state, int(e.args["approvals"]), [int(x) for x in e.args["scores_ppm"]])
                self.copied.append(r)
                return

    def _current(self) -> dict:
        from cohep.wire.fetch import Fetcher

        exp = self.net.experiment
        return Fetcher(allowed=exp.allowed_stores(), max_bytes=exp.max_bytes).fetch(
            exp.initial_uri, bytes.fromhex(exp.initial_digest))

    def _put(self, name_digest: bytes, blob: bytes) -> tuple[bytes, str]:
        (self.folder / f"{name_digest.hex()}.safetensors").write_bytes(blob)
        return name_digest, f"{self.net.store_url(self.index)}/{name_digest.hex()}.safetensors"

    def craft(self, case: str) -> tuple[bytes, str] | None:
        """(digest, URI) of a crafted proposal, its blob placed in this member's served store; None
        when the case has nothing to propose yet."""
        import hashlib

        from safetensors.numpy import save

        from cohep.wire.weights import digest_bytes, encode

        if case == "another member's file":
            theirs = [e for e in self.coord.events() if e.name == "Proposed" and e.args["proposer"] != self.address]
            return (bytes(theirs[-1].args["digest"]), theirs[-1].args["uri"]) if theirs else None

        weights = {k: np.array(v) for k, v in self._current().items()}
        if case == "digest mismatch":
            honest = encode(weights)
            other = encode({k: v + np.float32(0.01) if v.dtype.kind == "f" else v for k, v in weights.items()})
            return self._put(digest_bytes(honest), other)
        if case == "NaN weights":
            bad = {k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in weights.items()}
            blob = encode(bad)
            return self._put(digest_bytes(blob), blob)
        if case == "wrong shapes":
            name = next(iter(weights))
            bad = dict(weights, **{name: np.zeros((3, 3), dtype=weights[name].dtype)})
            blob = encode(bad)
            return self._put(digest_bytes(blob), blob)
        if case == "oversized blob":
            blob = encode(dict(weights, padding=np.zeros(4 * self.net.experiment.max_bytes // 4 + 1024, np.uint8)))
            return self._put(digest_bytes(blob), blob)
        if case == "URI outside the stores":
            blob = encode(weights)
            d = digest_bytes(blob)
            (self.folder / f"{d.hex()}.safetensors").write_bytes(blob)
            return d, f"http://127.0.0.1:{free_port()}/{d.hex()}.safetensors"
        if case == "re-encoded blob":
            meta = {"cohep": json.dumps({"format": "cohep-weights-1", "order": list(weights)}, separators=(",", ":")),
                    "pad": hashlib.sha256(b"try again").hexdigest()}
            blob = save(weights, metadata=meta)
            return self._put(digest_bytes(blob), blob)
        raise ValueError(f"unknown case {case!r}")


class DishonestNode:
    """A dishonest member that runs a real ``cohep node`` (its own key, data and training: its proposals
    are good weights) whose store is served by a :class:`DishonestStore` in one of the ways of ``CASES``.
    ``accepted_round``: the 0-based round in which its first proposal was accepted, once it was."""

    CASES = {
        "slow drip": "its blobs are served at 1 byte every drip_s seconds",
        "serves some voters only": "each of its blobs goes to the first two requests, 404 to every later one",
        "withholds after acceptance": "its server answers 404 to everything once a proposal of its is accepted",
        "offline after acceptance": "its node and its server go for good once a proposal of its is accepted",
    }
    _MODES = {"slow drip": "drip", "serves some voters only": "first"}

    def __init__(self, case: str, *, drip_s: float = 1.0, serve_first: int = 2):
        if case not in self.CASES:
            raise ValueError(f"unknown case {case!r}")
        self.case, self.drip_s, self.serve_first = case, drip_s, serve_first
        self.proc: subprocess.Popen | None = None
        self.store: DishonestStore | None = None
        self.accepted_round: int | None = None
        self.gone = threading.Event()  #: set once it withheld or went offline
        self._halt = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, net: LocalNet, index: int) -> None:
        self.net, self.index = net, index
        self.address = net.experiment.members[index].address
        self.folder = net.root / f"store{index}"
        self.store = DishonestStore(self.folder, net.ports[index], mode=self._MODES.get(self.case, "honest"),
                                    drip_s=self.drip_s, serve_first=self.serve_first).start()
        self.proc = net.start_node(index, serve=False)
        if self.case in ("withholds after acceptance", "offline after acceptance"):
            self._watcher = threading.Thread(target=self._watch, daemon=True, name="dishonest-watch")
            self._watcher.start()

    def _watch(self) -> None:
        coord = self.net.coordinator()
        while not self._halt.wait(0.2):
            try:
                mine = [e for e in coord.events() if e.name == "Finalized" and e.args["accepted"]
                        and e.args["proposer"].lower() == self.address.lower()]
            except ChainError:
                continue
            if mine:
                self.accepted_round = int(mine[0].args["round"])
                if self.case == "offline after acceptance":
                    self._kill()
                    self.store.stop()
                else:
                    self.store.mode = "withhold"
                self.gone.set()
                return

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self._halt.set()
        self._kill()
        if self.store is not None:
            self.store.stop()


@dataclass
class Duties:
    """What the honest members owed and did, read from the chain's events alone."""

    due: int = 0  #: votes due: each honest voter of each round that had a proposal
    cast: int = 0  #: of those, votes the contract counted (in time: it counts nothing late)
    missing: list[str] = field(default_factory=list)  #: "round R: member I" per vote due and not counted
    suspended: list[str] = field(default_factory=list)  #: "member I in round R" per honest suspension


def honest_duties(net: LocalNet) -> Duties:
    """Every honest member's vote in every round with a proposal, and every honest suspension."""
    events = net.coordinator().events()
    members = [m.address.lower() for m in net.experiment.members]
    honest = set(members[:net.honest])
    proposers: dict[int, set[str]] = {}
    proposed: set[int] = set()
    voted: dict[int, set[str]] = {}
    out = Duties()
    for e in events:
        a = e.args
        if e.name == "RoundStarted":
            proposers[int(a["round"])] = {p.lower() for p in a.get("proposers") or [a["proposer"]]}
        elif e.name == "Proposed":
            proposed.add(int(a["round"]))
        elif e.name == "Voted":
            voted.setdefault(int(a["round"]), set()).add(a["voter"].lower())
        elif e.name == "Suspended" and a["member"].lower() in honest:
            out.suspended.append(f"member {members.index(a['member'].lower())} in round {int(a['round']) + 1}")
    for r in sorted(proposed):
        due = sorted(honest - proposers.get(r, set()))
        out.due += len(due)
        for m in due:
            if m in voted.get(r, set()):
                out.cast += 1
            else:
                out.missing.append(f"round {r + 1}: member {members.index(m)}")
    return out


def final_accuracy(net: LocalNet) -> float:
    """The honest members' mean test accuracy after the last round (their own records)."""
    rows = [net.node_records(i)[-1].test_accuracy for i in range(net.honest)]
    return float(np.mean(rows))


def adopted_digests(root: Path) -> list[str]:
    """The digest honest member 0 adopted after each round of the run under ``root`` (index 0 = round 1)."""
    from cohep.protocol.records import read_csv

    rows = sorted((r for r in read_csv(Path(root) / "node0" / "records.csv") if r.round >= 1), key=lambda r: r.round)
    return [r.adopted or r.digest for r in rows]


def honest_turns(root: Path, honest: int = 3) -> int:
    """Rounds of the run under ``root`` whose drawn proposer was an honest member (index below
    ``honest``; the dishonest member is the last), from honest member 0's records: how many rounds of
    honest work the run had, whatever came of them."""
    from cohep.protocol.records import read_csv

    return sum(1 for r in read_csv(Path(root) / "node0" / "records.csv") if r.round >= 1 and 0 <= r.proposer < honest)


def accuracy_on(root: Path, test: Path, digests: list[str]) -> list[float]:
    """Accuracy of each digest adopted in the run under ``root`` on one fixed test file common to every
    run (``x``/``y`` npz), so that runs compare on the same images rather than on each member's small
    private test split. The blobs come from honest member 0's store, which keeps every digest it
    adopted; each is verified against its digest."""
    from cohep.datasets.source import load_data
    from cohep.models import build_learner
    from cohep.wire.weights import check_digest, decode, digest_bytes

    experiment = Experiment.read(Path(root) / "experiment.json")
    data = load_data("mnist", str(test))
    dataset = data.subset(np.arange(len(data)))
    out = []
    for d in digests:
        blob = (Path(root) / "store0" / f"{d}.safetensors").read_bytes()
        check_digest(digest_bytes(blob), bytes.fromhex(d))
        learner = build_learner(experiment.model, None, None, None, experiment.config.train, seed=0,
                                initial=decode(blob))
        probs, labels = learner.predict(dataset)
        out.append(float(np.mean(np.argmax(np.asarray(probs), axis=1) == np.asarray(labels))))
    return out


#: what the audit must say about the dishonest member, per case (tests/test_member_attacks.py checks the same)
AUDIT_NAMES = {
    "slow drip": "from no store",
    "serves some voters only": "could not obtain",
    "withholds after acceptance": "withheld",
    "offline after acceptance": "suspended",
    "copies votes": ("copied", "missed"),
    "another member's file": "store of member",
    **{case: "rejected by every voter" for case in Adversary.CASES},
}


@dataclass
class AttackResult:
    """One dishonest member's run (``member_attack``): did the honest members come out unharmed."""

    case: str
    held: bool = False
    duties: Duties = field(default_factory=Duties)
    finished: bool = False
    accuracy: float = float("nan")  #: the honest members' mean final test accuracy (their own test splits)
    #: round -> accuracy of the weights adopted after it on the common test file (``member_attack(test=)``)
    common: dict[int, float] = field(default_factory=dict)
    honest_turns: int = 0  #: rounds whose drawn proposer was an honest member (``honest_turns``)
    audit_exit: int | None = None
    audit_lines: list[str] = field(default_factory=list)  #: what the audit said about the dishonest member
    why: str = ""  #: what failed, if anything
    seconds: float = 0.0


def _audit_cli(net: LocalNet, store: int = 0, timeout_s: float = 180.0) -> tuple[int, list[str], str]:
    """``cohep audit`` from member ``store``'s folder only: (exit code, lines about the dishonest member, stdout)."""
    proc = subprocess.run([net.python, "-m", "cohep", "audit", "--experiment", str(net.root / "experiment.json"),
                           "--rpc", net.anvil.url, "--mirror", str(net.root / f"store{store}")],
                          capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(f"member {net.n - 1} ")]
    return proc.returncode, lines, proc.stdout + proc.stderr


def store_holding(net: LocalNet, member: int) -> int:
    """The honest member whose store holds the most of the blobs ``member`` proposed in rounds that were
    not accepted, then the voter that scored (was served) the most of its proposals, then the most of all
    its blobs (the first of the best; 0 if none holds any). Each voter keeps what it verified, and nobody
    adopts a refused proposal, so a store with a refused round's blob is a voter's that was served it; an
    accepted one every member adopts, so there only the records say who was served. The audit of a
    proposal served to some voters only is run from such a store: from a refused voter's, nothing the
    audit can reach still gives the blob (the proposer refuses it, the served voters' servers went home
    with the run), so it could not say the blob verifies. A member that proposes in several rounds may
    serve different voters in each, so that no one store holds every blob."""
    address = net.experiment.members[member].address.lower()
    chain = net.coordinator()
    proposed = [(bytes(e.args["digest"]).hex(), int(e.args["round"])) for e in chain.events()
                if e.name == "Proposed" and e.args["proposer"].lower() == address]
    rounds = {q for _, q in proposed}
    refused = {q for q in rounds if not chain.round_state(q).accepted}
    rows = {q: _rows(net, q) for q in rounds}

    def held(i: int) -> tuple[int, int, int]:
        has = [(net.root / f"store{i}" / f"{d}.safetensors").exists() for d, _ in proposed]
        scored = sum(1 for q in rounds if rows[q][i] is not None and not np.isnan(rows[q][i].vote_score))  # NaN: not served
        return sum(h for h, (_, q) in zip(has, proposed) if q in refused), scored, sum(has)

    score = {i: held(i) for i in range(net.honest)}
    if not score:
        return 0
    best = max(score, key=lambda i: (score[i], -i))
    return best if any(score[best]) else 0


def _rows(net: LocalNet, q: int) -> list:
    return [{r.round: r for r in net.node_records(i)}.get(q + 1) for i in range(net.honest)]


def member_attack(case: str, root: Path, data: list[Path], *, rounds: int, settings: dict | None = None,
                  timeout_s: float = 600.0, drip_s: float = 1.0, test: Path | None = None,
                  test_rounds: tuple[int, ...] = ()) -> AttackResult:
    """Run one dishonest member of ``case`` (a :class:`DishonestNode` case, ``copies votes``, ``another
    member's file`` or one of ``Adversary.CASES``) beside honest nodes on ``data[:3]`` (``data[3]`` is a
    dishonest node's own), stage what the case needs, then judge it: every honest vote due counted,
    no honest suspension, every honest node finished on the chain's weights, what the case itself must
    not achieve, and the audit's lines about the dishonest member. ``None`` for ``case``: the run
    without the attacker (the honest members alone: the accuracy to compare with). ``test``: a test
    file common to every run, on which the weights adopted after each of ``test_rounds`` (1-based; the
    last round always) are scored into ``common``."""
    start = time.monotonic()
    res = AttackResult(case or "no attacker")
    cfg = dict(settings or {}, experiment={**(settings or {}).get("experiment", {}), "rounds": rounds})
    dishonest = DishonestNode(case, drip_s=drip_s) if case in DishonestNode.CASES else None
    adversary: bool | Callable = False
    if case == "copies votes":
        adversary = lambda net, index: Adversary(net, index, script=[], votes="copy")  # noqa: E731
    elif case == "another member's file":
        adversary = lambda net, index: Adversary(net, index, script=[case] * rounds)  # noqa: E731
    elif case in Adversary.CASES:
        adversary = lambda net, index: Adversary(net, index, script=[case] * rounds)  # noqa: E731
    honest = list(data[:3]) + ([data[3]] if dishonest is not None else [])
    problems: list[str] = []
    with LocalNet(root, honest, dishonest=dishonest, adversary=adversary, settings=cfg) as net:
        try:
            if case == "offline after acceptance":
                while not dishonest.gone.wait(0.5):
                    if all(p.poll() is not None for p in net.procs.values()):
                        raise CohepError("its proposal was never accepted")
                victim = 1  # restarted on an empty disk: the accepted weights are only in the others' stores
                net.kill_node(victim)
                for blob in (net.root / f"store{victim}").glob("*.safetensors"):
                    blob.unlink()
                net.start_node(victim)
            net.wait_finished(timeout_s)
            res.finished = set(net.final_digests()) == {net.coordinator().accepted_digest().hex()}
            if not res.finished:
                problems.append("the honest nodes' final weights differ")
        except CohepError as exc:
            problems.append(str(exc))
        try:
            res.duties = honest_duties(net)
            res.accuracy = final_accuracy(net) if res.finished else float("nan")
            if test is not None and res.finished:
                digests = adopted_digests(net.root)
                marks = sorted({*(q for q in test_rounds if 1 <= q <= len(digests)), len(digests)})
                res.common = dict(zip(marks, accuracy_on(net.root, test, [digests[q - 1] for q in marks])))
                res.honest_turns = honest_turns(net.root, net.honest)
        except (ChainError, IntegrityError, OSError, IndexError) as exc:
            problems.append(f"could not read the run: {exc}")
        if case is not None and res.finished:
            problems += _case_problems(case, net, dishonest)
            if dishonest is not None and case == "slow drip":
                dishonest.store.stop()  # the member goes home with the run (the audit would sit in its drip)
            try:
                res.audit_exit, res.audit_lines, text = _audit_cli(
                    net, store_holding(net, net.n - 1) if case == "serves some voters only" else 0)
            except subprocess.TimeoutExpired:
                res.audit_exit, text = None, "timed out"
            named = AUDIT_NAMES[case]
            if res.audit_exit != 0:
                problems.append(f"audit exit {res.audit_exit}: {text.strip().splitlines()[-1:]}")
            elif not any(word in line for line in res.audit_lines
                         for word in (named if isinstance(named, tuple) else (named,))):
                problems.append(f"the audit does not name it ({'; '.join(res.audit_lines) or 'nothing about it'})")
    if res.duties.suspended:
        problems.append(f"honest members suspended: {', '.join(res.duties.suspended)}")
    if res.duties.cast != res.duties.due:
        problems.append(f"honest votes missing: {', '.join(res.duties.missing[:4])}")
    res.held, res.why = not problems, "; ".join(problems)
    res.seconds = time.monotonic() - start
    return res


def _case_problems(case: str, net: LocalNet, dishonest: DishonestNode | None) -> list[str]:
    """What the case itself must not have achieved."""
    coord = net.coordinator()
    if dishonest is not None:
        mine = [int(e.args["round"]) for e in coord.events()
                if e.name == "Proposed" and e.args["proposer"].lower() == dishonest.address.lower()]
        if not mine:
            return ["it never proposed"]
        if case == "slow drip" and any(coord.round_state(q).accepted for q in mine):
            return ["a dripped proposal was accepted"]
        if case == "serves some voters only" and not any(s == 404 for _, _, s in dishonest.store.requests):
            return ["no voter was refused"]
        if case in ("withholds after acceptance", "offline after acceptance") and dishonest.accepted_round is None:
            return ["its proposal was never accepted"]
        return []
    adv = net.adversary
    if case == "copies votes":
        return [f"copied votes in rounds {', '.join(str(r + 1) for r in adv.copied)}"] if adv.copied else []
    if not adv.done:
        return ["it never proposed"]
    out = []
    for _, q in adv.done:
        if coord.round_state(q).accepted:
            out.append(f"round {q + 1} accepted")
        rows = [row for row in _rows(net, q) if row is not None and row.vote]
        if not rows or any(row.vote != "reject" or not row.reason for row in rows):
            out.append(f"round {q + 1}: not every honest voter rejected it with a reason")
        if case == "another member's file" and any("another member's store" not in row.reason for row in rows):
            out.append(f"round {q + 1}: fetched and judged ({rows[0].reason or 'by its score'})")
    return out


def _first_round_proposed_by(coord, member: str, after: int, rounds: int) -> int | None:
    for q in range(after, rounds):
        if coord.draw(q) == member:
            return q
    return None


def run_drills(net: LocalNet, *, timeout_s: float = 600.0, log=print) -> list[Drill]:
    """Every fault case of the decentralised-nodes issue against a running LocalNet, then the audit.

    Node and chain faults are staged by this controller while the members run; the Adversary's
    crafted proposals happen on its own turns. Returns one Drill per case, the audit last.
    """
    from cohep.ledger import Chain, Coordinator
    from cohep.ledger.draw import proposer_index

    coord = net.coordinator()
    exp = net.experiment
    rounds = exp.config.experiment.rounds
    members = list(exp.members)
    honest = [m.address for m in members[:net.honest]]
    drills: list[Drill] = []
    net.wait(lambda: coord.round() >= 2, timeout_s, "two clean rounds")

    # a voter killed mid-round, restarted at once
    r = coord.round()
    voter = next(i for i in range(net.honest) if honest[i] != coord.round_state(r).proposer)
    net.wait(lambda: coord.round() > r or coord.round_state(r).proposed, timeout_s, f"round {r + 1}'s proposal")
    net.kill_node(voter)
    time.sleep(1.0)
    net.start_node(voter)
    drills.append(Drill("voter killed mid-round, restarted", "catches up, finishes with the same weights", [r + 1]))
    log(f"killed and restarted node {voter} in round {r + 1}")

    # the picked proposer killed before it proposes: the round voids and the next proceeds
    drill = Drill("proposer killed before proposing", "round void, next round proceeds")
    for _ in range(3):
        now = coord.round()
        target = None
        for k in range(net.honest):
            if k == voter:
                continue
            q = _first_round_proposed_by(coord, honest[k], now + 1, rounds - 1)
            if q is not None and (target is None or q < target[1]):
                target = (k, q)
        if target is None:
            break
        k, q = target

        def duty_done(k=k, q=q):
            if coord.round() >= q:
                return True
            s = coord.round_state(q - 1)
            return s.proposed if s.proposer == honest[k] else coord.ballot(q - 1, honest[k]) is not None

        net.wait(duty_done, timeout_s, f"node {k}'s duty in round {q}")
        if coord.round() >= q and coord.round_state(q).proposed:
            continue  # it was quicker than us: try its next turn
        net.kill_node(k)
        net.wait(lambda q=q: coord.round() > q, timeout_s, f"round {q + 1} to close")
        state = coord.round_state(q)
        net.start_node(k)
        drill.rounds, drill.outcome = [q + 1], "void" if state.void else "proposed anyway"
        drill.survived = state.void
        log(f"killed node {k} before its turn in round {q + 1}: {drill.outcome}")
        break
    drills.append(drill)

    # a non-member proposing or voting is reverted
    outsider = Coordinator.at(Chain.connect(net.anvil.url, 1, private_keys=[net.outsider_key]), exp.contract)
    r = coord.round()
    outcomes = []
    sealed = getattr(coord.settings(), "sealed", False)  # sealed votes: a vote starts as a commitment
    vote = (lambda: outsider.commit_vote(outsider.chain.accounts[0], r, b"\x01" * 32)) if sealed else \
        (lambda: outsider.vote(outsider.chain.accounts[0], r, True, 0))
    for what, call in (("propose", lambda: outsider.propose(outsider.chain.accounts[0], r, b"\x01" * 32, "http://x/y")),
                       ("vote", vote)):
        try:
            call()
            outcomes.append(f"{what} accepted")
        except ChainError as exc:
            outcomes.append(f"{what} reverted ({str(exc).split(': ')[-1]})")
    drills.append(Drill("non-member proposes and votes", "both reverted", [r + 1], "; ".join(outcomes),
                        all("reverted" in o and "not a member" in o for o in outcomes)))

    # the chain's node restarted mid-round: members reconnect and carry on
    r = coord.round()
    if r < rounds - 2:
        net.wait(lambda: coord.round() > r or coord.round_state(r).proposed, timeout_s, f"round {r + 1}'s proposal")
        net.anvil.stop()
        time.sleep(2.0)
        net.anvil.start()
        log(f"restarted anvil in round {r + 1}")
        drills.append(Drill("Ethereum node restarted mid-round", "members reconnect, the run completes", [r + 1]))

    net.wait_finished(timeout_s)
    accepted = coord.accepted_digest().hex()
    finals = net.final_digests()
    for d in drills:
        if d.case.startswith(("voter killed", "Ethereum node")):
            d.survived = all(f == accepted for f in finals)
            d.outcome = "all nodes finished on the accepted digest" if d.survived else f"final digests {finals}"

    # the adversary's proposals: each rejected by every honest voter, with a reason
    records = [{r.round: r for r in net.node_records(i)} for i in range(net.honest)]
    for case, q in (net.adversary.done if net.adversary else []):
        state = coord.round_state(q)
        reasons = [recs[q + 1].reason for recs in records if q + 1 in recs and recs[q + 1].vote]
        votes = [recs[q + 1].vote for recs in records if q + 1 in recs and recs[q + 1].vote]
        ok = state.finalized and not state.accepted and votes and all(v == "reject" for v in votes) and all(reasons)
        drills.append(Drill(case, "rejected by every honest member, with a reason", [q + 1],
                            f"{'accepted' if state.accepted else 'rejected'}, {votes.count('reject')}/{len(votes)} "
                            f"rejects: {reasons[0] if reasons else '-'}", bool(ok)))
    if net.adversary is not None and net.adversary.errors:
        drills.append(Drill("adversary ran", "no errors", [], "; ".join(net.adversary.errors[:2]), False))

    # the draw never moved, whatever was proposed or accepted (the re-picking attack)
    n = len(members)
    sequence = [coord.round_state(q).proposer for q in range(rounds)]
    settings = coord.settings()
    seed = getattr(settings, "draw_seed", bytes(32)) or bytes(32)
    seed = seed if seed != bytes(32) else settings.seed  # contract v4 draws from start()'s draw seed
    predicted = [members[proposer_index(seed, n, q, [True] * n)].address for q in range(rounds)]
    suspended = any(coord.member_stats(m.address).suspended for m in members)
    drills.append(Drill("proposer draw under attack", "the seeded draw, unchanged by any proposal", [],
                        "as drawn" if sequence == predicted else "differs (suspensions)" if suspended else "differs",
                        sequence == predicted or suspended))
    report = net.audit()
    drills.append(Drill("audit", "clean", [], "clean" if report.clean else "; ".join(report.findings[:3]), report.clean))
    return drills


def drill_table(drills: list[Drill]) -> str:
    width = max(len(d.case) for d in drills)
    lines = [f"{'case':<{width}}  {'rounds':<8}  {'survived':<8}  outcome"]
    for d in drills:
        rounds = ",".join(map(str, d.rounds)) or "-"
        lines.append(f"{d.case:<{width}}  {rounds:<8}  {'yes' if d.survived else 'NO':<8}  {d.outcome}")
    faults = [d for d in drills if d.case != "audit"]
    audit = next((d for d in drills if d.case == "audit"), None)
    lines.append(f"faults survived: {sum(d.survived for d in faults)}/{len(faults)}, "
                 f"audit: {'clean' if audit and audit.survived else 'FAILED'}")
    return "\n".join(lines)
