"""A whole decentralised experiment on one machine: a real Anvil node and one ``cohep node`` process
per member, each serving its own store over HTTP; plus the fault drills the tests and
``bench/nodes.py`` run against it.

Nothing here is a shortcut through the protocol: members are separate processes that know only the
experiment file, their keystore and their data, and reach each other through the chain and the
stores. The :class:`Adversary` is a dishonest member with a real key that proposes crafted blobs
when the contract draws it; the drills kill and restart nodes and the chain itself.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cohep.core.errors import ChainError, CohepError
from cohep.run.experiment_file import Experiment
from cohep.ledger.anvil import Anvil, dev_private_keys, free_port

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

    def __init__(self, root: Path, data: list[Path], *, adversary: bool = False, block_time: float = 0.25,
                 settings: dict | None = None, python: str = sys.executable):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = list(data)
        self.honest = len(self.data)
        self.n = self.honest + (1 if adversary else 0)
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
        if self._wants_adversary:
            self.adversary = Adversary(self, self.n - 1)
            self.adversary.start()
        return self

    def _deploy(self) -> Experiment:
        from cohep.config import experiment as config
        from cohep.run.deploy import MemberSpec, deploy
        from cohep.run.keys import address_of

        cfg = config.load(None, config.merge({"experiment": {"name": "localnet", "rounds": 8, "seed": 0},
                                              "chain": {"proposal_window": 40, "vote_window": 40}},
                                             self.settings))
        members = [MemberSpec(address_of(self.root / f"key{i + 1}.json"), self.store_url(i)) for i in range(self.n)]
        return deploy(cfg, data_path=str(self.data[0]), members=members, rpc=self.anvil.url,
                      deployer_key=self.deployer_key, store=str(self.root / "shared"),
                      shared_store=str(self.root / "shared"), out=self.root / "experiment.json")

    def start_node(self, i: int) -> subprocess.Popen:
        env = dict(os.environ, COHEP_KEYSTORE_PASSWORD=PASSWORD, COHEP_PROGRESS="0", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", KERAS_BACKEND="torch")
        log = open(self.root / f"node{i}.log", "ab")
        args = [self.python, "-m", "cohep", "node", "--experiment", str(self.root / "experiment.json"),
                "--keystore", str(self.root / f"key{i + 1}.json"), "--data", str(self.data[i]),
                "--rpc", self.anvil.url, "--store", str(self.root / f"store{i}"),
                "--serve", f"127.0.0.1:{self.ports[i]}", "--public-url", self.store_url(i),
                "--out", str(self.root / f"node{i}"), "--poll", "0.2"]
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return self.procs[i]

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
    approves everything (so it is never suspended for missing votes)."""

    CASES = {
        "digest mismatch": "the blob under the announced name is other bytes",
        "NaN weights": "a well-formed blob whose values are NaN",
        "wrong shapes": "a tensor of another shape",
        "oversized blob": "a blob far over the size cap",
        "URI outside the stores": "a URI no allowed store contains",
        "re-encoded blob": "the current weights with padding metadata (the v1 re-picking attack)",
    }

    def __init__(self, net: LocalNet, index: int, script: list[str] | None = None):
        super().__init__(daemon=True, name="adversary")
        from cohep.wire.server import BlobServer
        from cohep.ledger import Chain, Coordinator

        self.net, self.index = net, index
        self.script = list(script or self.CASES)
        self.done: list[tuple[str, int]] = []  #: (case, 0-based round) proposed
        self.folder = net.root / "adversary_store"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.server = BlobServer(self.folder, port=net.ports[index]).start()
        self.chain = Chain.connect(net.anvil.url, 1, private_keys=[net.member_keys[index]])
        self.coord = Coordinator.at(self.chain, net.experiment.contract)
        self.address = self.chain.accounts[0]
        self._halt = threading.Event()
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
                if state.proposer == self.address and not state.proposed and self.script:
                    case = self.script[0]
                    try:
                        self.coord.propose(self.address, r, *self.craft(case))
                    except ChainError:  # the chain went away: did the proposal land before it did?
                        if not self.coord.round_state(r).proposed:
                            raise
                    self.script.pop(0)  # only once it is on chain: a lost turn keeps the case for the next
                    self.done.append((case, r))
                elif (state.proposed and self.address in state.voters
                      and self.coord.ballot(r, self.address) is None and block <= state.vote_deadline):
                    self.coord.vote(self.address, r, True, 0)
                elif finalizable(state, block):
                    self.coord.finalize(self.address, r)
            except ChainError:
                time.sleep(0.5)
                continue
            except Exception as exc:  # noqa: BLE001 - a broken adversary must show in the results
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)
            time.sleep(0.2)

    def _current(self) -> dict:
        from cohep.wire.fetch import Fetcher

        exp = self.net.experiment
        return Fetcher(allowed=exp.allowed_stores(), max_bytes=exp.max_bytes).fetch(
            exp.initial_uri, bytes.fromhex(exp.initial_digest))

    def _put(self, name_digest: bytes, blob: bytes) -> tuple[bytes, str]:
        (self.folder / f"{name_digest.hex()}.safetensors").write_bytes(blob)
        return name_digest, f"{self.net.store_url(self.index)}/{name_digest.hex()}.safetensors"

    def craft(self, case: str) -> tuple[bytes, str]:
        """(digest, URI) of a crafted proposal, its blob placed in this member's served store."""
        import hashlib

        from safetensors.numpy import save

        from cohep.wire.weights import digest_bytes, encode

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
    for what, call in (("propose", lambda: outsider.propose(outsider.chain.accounts[0], r, b"\x01" * 32, "http://x/y")),
                       ("vote", lambda: outsider.vote(outsider.chain.accounts[0], r, True, 0))):
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
    predicted = [members[proposer_index(coord.settings().seed, n, q, [True] * n)].address for q in range(rounds)]
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
