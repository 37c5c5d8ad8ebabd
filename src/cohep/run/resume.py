"""Ctrl-C in ``cohep run`` and ``cohep run --resume DIR``: what a run keeps, and how it continues.

Why replay, not snapshots. A run's state is spread over many objects: the embedded py-evm chain
(its database, pending block and nonce per account), every participant (its adopted weights, held
proposals, strikes, pending sealed votes), the attacks' generators, each learner's proposal counter
(which seeds its training) and, for private learners, the privacy accountant. Saving all of that
and loading it back is one missed field away from a resumed run that differs silently from an
uninterrupted one. Instead a resume runs the *same code from round 1 with the same seed*: the chain
gets the same transactions in the same order from a fixed genesis with 12 s blocks, so it ends in the
same state, and so does everything else. What makes this cheap is a journal of the two expensive,
deterministic calls of every learner: ``propose()`` (its trained weights: the blob the run's store
already holds when they went there unchanged, else a copy under ``resume/`` named by its sha256, so
an honest run's journal costs no second copy of its proposals) and ``evaluate()`` (the scores, with a fingerprint of the weights
scored). During the replay of the finished rounds each call is answered from the journal in the
order it was made (a proposal's blob re-verified against its digest, an evaluation's weights against
their fingerprint: any difference means the directory does not belong to this run, and the resume
stops with one line); the learner's proposal counter still advances, so the next live proposal draws
the seed an uninterrupted run would. Private learners retrain on replay (their accountant must
count every step). The replayed rounds' records must equal the kept ``records.csv`` row for row.

What is kept on Ctrl-C (``save_interrupted``, every file written whole and renamed into place, with
SIGINT ignored meanwhile): ``records.csv`` and ``timings.csv`` up to the last finished round (a half
finished round is discarded), ``final_weights.safetensors`` holding the weights learner 0 held after
that round, ``resume/state.json`` (the journal up to that round) and a ``manifest.json`` that says
``"interrupted"``. ``weights/`` keeps every blob its rounds stored.

What a resumed run equals, byte for byte, when it is resumed where it was interrupted: ``records.csv``,
``final_weights.safetensors``, ``chain_events.jsonl`` (chain URIs name the store's folder, so after a
move only these URIs and the transaction hashes they feed differ), every blob in ``weights/``, and the
manifest except its wall-clock fields (``created``, ``time_shares``) and ``resumed``, which records
that it was resumed and from which round. ``timings.csv`` keeps the interrupted run's timings for the
replayed rounds. A run with ``experiment.max_seconds`` may end at another round (its budget is wall
time).

A run on an external chain (``chain.rpc``) is resumed on that chain without sending it any round
again. The chain already holds the kept rounds (and whatever part of the interrupted round reached
it), so the replay runs against a throwaway Anvil *fork* of it, taken at the block where the run's
setup ended (``ChainLink``): the same code sends the same transactions to the fork, and after each
one (and each block mined) the fork's events and block number are compared with the real chain's.
A prefix that differs, or a fork that runs past the real chain, refuses the resume in one line;
once the fork holds exactly the real chain's events at its block, the run's connection is pointed
at the real chain and the rest of the run goes there, as the uninterrupted run would have sent it.
Before any of that, the real chain must still hold the contract, its chain id and, event for event,
what the journal recorded after each kept round (``chain_position``): a chain that is gone, reset or
another one is refused in one line. What this needs: Anvil (``cohep.ledger.anvil``) to fork with,
a node that serves the state at the setup block (an Anvil dev chain does; a pruned node does not),
blocks that come only from the run's transactions (a chain that mines on a clock gives the replay
other block numbers, and is refused at the first event that differs), and the run's accounts
usable on the fork (Anvil's dev accounts; others are impersonated, which signed ballots cannot be).
An RPC URL recorded redacted (it held a key) cannot be reconnected to. Two fresh chains differ in
their block hashes, so the draw (which mixes in the deployment block's) and everything after it are
the chain's own: what a resumed --rpc run is held to is the same contract, each round on it once,
the kept rows unchanged and a clean ``cohep audit``. The manifest's ``traffic`` counts the fork's
replayed transactions too.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cohep.core.errors import DataError, RunInterrupted
from cohep.core.files import atomic_write_bytes, atomic_write_text
from cohep.frameworks.learner import Score, Scores, TrainableLearner, Weights
from cohep.outputs import rundir
from cohep.protocol.records import RoundRecord, RoundTiming, csv_text
from cohep.wire import weights as wts

FORMAT = "cohep-resume-1"
STATE = "state.json"

__all__ = ["FORMAT", "Journal", "Kept", "config_digest", "interrupted_line", "load", "sigint_deferred"]


def config_digest(config: dict) -> str:
    """sha256 of a config as the manifest records it: what ties a journal to its run's settings."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(weights: Weights) -> str:
    """sha256 over every array's name, dtype, shape and bytes: which weights a score belongs to."""
    h = hashlib.sha256()
    for name, value in weights.items():
        a = np.ascontiguousarray(value)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def interrupted_line(out_dir: Path, stopped_in: int, rounds: int, resumable: bool = True) -> str:
    """The one line Ctrl-C prints: where the run stopped, what is kept, how to go on."""
    done = stopped_in - 1
    kept = f"no round finished, the setup kept in {out_dir}" if done < 1 else \
        f"{'round 1' if done == 1 else f'rounds 1-{done}'} kept in {out_dir}"
    tail = f"resume with: cohep run --resume {out_dir}" if resumable else \
        "its chain.rpc URL was recorded redacted (it held a key), so it cannot be resumed"
    return f"interrupted in round {stopped_in} of {rounds}; {kept}; {tail}"


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """SIGINT ignored for the block (a second Ctrl-C while the kept files are written), main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


class Kept:
    """What an interrupted run directory holds for its resume (``load``)."""

    def __init__(self, out_dir: Path, state: dict, records: list[str], timings: list[RoundTiming]):
        self.out_dir, self.state = out_dir, state
        self.rounds_done = int(state["rounds_done"])
        self.records = records  #: the kept records.csv lines after the header, rounds 0..rounds_done
        self.timings = timings
        self.learners: list[dict] = state["learners"]


def load(out_dir: str | Path, config: dict) -> Kept:
    """The kept state of an interrupted run in ``out_dir`` whose manifest's config is ``config``;
    one line (DataError) for a finished run, a corrupted directory or a journal of another config."""
    out = Path(out_dir)
    manifest = rundir.read_manifest(out)
    where = out / rundir.RESUME / STATE
    info = manifest.get("interrupted")
    if not isinstance(info, dict):
        rounds = (manifest.get("config") or {}).get("experiment", {}).get("rounds", "?")
        raise DataError(f"{out} holds a finished run ({rounds} rounds): nothing to resume")
    try:
        state = json.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{where}: cannot read the resume state ({exc.strerror or exc}): not resumable") from None
    except ValueError as exc:
        raise DataError(f"{where}: malformed resume state ({exc}): not resumable") from None
    try:
        ok = state["format"] == FORMAT and isinstance(state["learners"], list) and int(state["rounds_done"]) >= 0
        ok = ok and all(isinstance(x["proposals"], list) and isinstance(x["evaluations"], list)
                        for x in state["learners"])
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"{where}: not a {FORMAT} resume state: not resumable")
    if state.get("config") != config_digest(config) or int(info.get("rounds_done", -1)) != int(state["rounds_done"]):
        raise DataError(f"{where}: written for another config than {out / rundir.MANIFEST} records: not resumable")
    try:
        text = (out / rundir.RECORDS).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {out / rundir.RECORDS}: {exc.strerror or exc}") from None
    try:
        timings = [RoundTiming(**t) for t in state.get("timings", [])]
    except TypeError:
        raise DataError(f"{where}: malformed timings: not resumable") from None
    return Kept(out, state, text[1:], timings)


class Journal:
    """Every learner's ``propose`` and ``evaluate`` results in call order, marked at each round's end,
    for the run's resume; given ``kept``, answers the calls of the kept rounds from it (``wrap``)."""

    def __init__(self, folder: Path, kept: Kept | None = None, store_dir: Path | None = None):
        self.folder, self.kept, self.store_dir = folder, kept, store_dir
        #: proposal sha256 -> the sha256 of the store's blob holding the same weights (with a declared
        #: example count, or as they are): the journal's copy of an unchanged proposal is the store's
        self.aliases: dict[str, str] = dict(kept.state.get("aliases") or {}) if kept is not None else {}
        self.pending: list[tuple[str, Weights, int | None]] = []  #: this round's proposals, not yet kept
        self.entries: list[dict[str, list]] = []
        self.marks: list[list[tuple[int, int]]] = []  #: after round r (0: the setup): per learner (proposals, evaluations)
        self.rows: list[int] = []  #: records after round r
        self.timings: list[RoundTiming] = []
        self.held: Weights | None = None  #: learner 0's weights after the last finished round
        self.records: list[RoundRecord] = []  #: the run's records (those after the last mark are discarded)
        self.replayed = 0  #: rounds answered from ``kept``
        #: an external chain's run: contract, chain id, setup block (``ChainLink``) and, after each
        #: mark, ``position()`` (``chain_position``): what the journal says the chain held then
        self.chain: dict | None = None
        self.position: Any = None
        self.chain_marks: list[list] = []

    def wrap(self, learners: list[TrainableLearner]) -> list[TrainableLearner]:
        self.learners = learners
        self.entries = [{"proposals": [], "evaluations": []} for _ in learners]
        if self.kept is not None and len(self.kept.learners) != len(learners):
            raise DataError(f"{self.folder / STATE}: {len(self.kept.learners)} learners, the config has "
                            f"{len(learners)}: not resumable")
        return [Journalled(lr, i, self) for i, lr in enumerate(learners)]

    def kept_call(self, index: int, kind: str, k: int) -> Any:
        if self.kept is None:
            return None
        calls = self.kept.learners[index][kind]
        return calls[k] if k < len(calls) else None

    def blob_path(self, hexdigest: str) -> Path:
        return self.folder / f"{hexdigest}.safetensors"

    def round_done(self, r: int, records: list[RoundRecord], timings: list[RoundTiming], held: Weights) -> None:
        """Round ``r`` (0: the setup before round 1) is finished: mark it; a replayed round's rows must
        be the kept ones, and its timing is the kept one."""
        self._keep_proposals()
        self.marks.append([(len(e["proposals"]), len(e["evaluations"])) for e in self.entries])
        self.rows.append(len(records))
        self.records = records
        self.held = held
        kept = self.kept
        if self.position is not None:
            self.chain_marks.append(self.position())
            theirs = (kept.state.get("chain") or {}).get("marks", []) if kept is not None else []
            if r < len(theirs) and self.chain_marks[-1] != theirs[r]:
                raise DataError(f"{kept.out_dir if kept else self.folder}: round {r} replays to other chain "  # type: ignore[union-attr]
                                "events than the journal recorded: not resumable")
        if kept is not None and r <= kept.rounds_done:
            start = self.rows[-2] if len(self.rows) > 1 else 0
            mine = csv_text(records[start:]).splitlines()[1:]
            theirs = kept.records[start:len(records)]
            if mine != theirs:
                raise DataError(f"{kept.out_dir}: round {r} replays differently from its records.csv "
                                "(another config, data or code version): not resumable")
            if r >= 1 and r - 1 < len(kept.timings):
                timings[-1] = kept.timings[r - 1]
            self.replayed = r
        self.timings = list(timings)

    def _keep_proposals(self) -> None:
        """Keep the round's proposals for a replay: as an alias of the store's blob that holds them
        unchanged, else as a blob of their own under ``resume/``."""
        for hexdigest, weights, examples in self.pending:
            if hexdigest in self.aliases or self.blob_path(hexdigest).exists():
                continue
            for declared in dict.fromkeys((None, examples)):
                held = hashlib.sha256(wts.encode(weights, declared)).hexdigest()
                if self.store_dir is not None and (self.store_dir / f"{held}.safetensors").is_file():
                    self.aliases[hexdigest] = held
                    break
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self.blob_path(hexdigest), wts.encode(weights))
        self.pending.clear()

    def read_proposal(self, hexdigest: str) -> Weights:
        """A kept proposal, checked against its sha256 (one line naming the file if it is not there)."""
        alias = self.aliases.get(hexdigest)
        path = self.store_dir / f"{alias}.safetensors" if alias is not None and self.store_dir is not None \
            else self.blob_path(hexdigest)
        try:
            blob = path.read_bytes()
        except OSError:
            raise DataError(f"{path}: a kept proposal is missing: not resumable") from None
        weights: Weights = dict(wts.decode(bytearray(blob)))
        if hashlib.sha256(wts.encode(weights)).hexdigest() != hexdigest:
            raise DataError(f"{path}: a kept proposal does not match its digest: not resumable")
        return weights

    def state(self, config: dict) -> dict:
        done = len(self.marks) - 1
        last = self.marks[-1] if self.marks else [(0, 0)] * len(self.entries)
        learners = [{"proposals": e["proposals"][:p], "evaluations": e["evaluations"][:v]}
                    for e, (p, v) in zip(self.entries, last)]
        kept = {h for x in learners for h in x["proposals"]}
        state = {"format": FORMAT, "config": config_digest(config), "rounds_done": max(done, 0),
                 "learners": learners, "aliases": {h: a for h, a in sorted(self.aliases.items()) if h in kept},
                 "timings": [asdict(t) for t in self.timings]}
        if self.chain is not None:
            state["chain"] = {**self.chain, "marks": self.chain_marks[:len(self.marks)]}
        return state

    def save_interrupted(self, out: Path, manifest: dict, config: dict) -> int:
        """Write what an interrupted run keeps (module docstring); returns the rounds kept."""
        done = max(len(self.marks) - 1, 0)
        rows = self.records[:self.rows[-1]] if self.rows else []
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / STATE, json.dumps(self.state(config)) + "\n")
        from cohep.protocol.records import write_csv, write_timings

        write_csv(rows, out / rundir.RECORDS)
        write_timings(self.timings, out / rundir.TIMINGS)
        files = {"records": rundir.RECORDS, "timings": rundir.TIMINGS, "weights": None}
        digests = {}
        if self.held is not None:
            blob = wts.encode(self.held)
            atomic_write_bytes(out / rundir.WEIGHTS, blob)
            files["weights"], digests["final"] = rundir.WEIGHTS, hashlib.sha256(blob).hexdigest()
        rounds = int(config.get("experiment", {}).get("rounds", 0))
        from cohep.outputs.manifest import write_manifest

        write_manifest(out / rundir.MANIFEST, **manifest, config=config, digests=digests, files=files,
                       interrupted={"rounds_done": done, "stopped_in": done + 1, "rounds": rounds,
                                    "resume": f"cohep run --resume {out}"})
        return done

    def finish(self) -> None:
        """The run ended: its journal is no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)


class Journalled(TrainableLearner):
    """A learner whose ``propose`` and ``evaluate`` go through the journal; everything else is its own."""

    def __init__(self, inner: TrainableLearner, index: int, journal: Journal):
        self.inner, self.index, self.journal = inner, index, journal
        self.config = inner.config
        self._proposals = 0
        self._evaluations = 0

    def __getattr__(self, name: str) -> Any:  # privacy, seed... of the learner itself
        return getattr(self.inner, name)

    def propose(self) -> Weights:
        j, k = self.journal, self._proposals
        kept = j.kept_call(self.index, "proposals", k)
        replay = kept is not None and getattr(self.inner, "privacy", None) is None and hasattr(self.inner, "_next_seed")
        if replay:
            weights = j.read_proposal(kept)
            self.inner._next_seed()  # type: ignore[attr-defined]  # the seed the live proposal drew
            hexdigest = kept
        else:
            weights = self.inner.propose()
            hexdigest = hashlib.sha256(wts.encode(weights)).hexdigest()
            if kept is not None and hexdigest != kept:
                raise DataError(f"{j.folder}: learner {self.index}'s proposal {k + 1} replays differently: "
                                "not resumable")
            j.pending.append((hexdigest, weights, self.inner.examples()))
        j.entries[self.index]["proposals"].append(hexdigest)
        self._proposals += 1
        return weights

    def evaluate(self, weights: Weights) -> Scores:
        j, k = self.journal, self._evaluations
        kept = j.kept_call(self.index, "evaluations", k)
        seen = fingerprint(weights)
        if kept is not None:
            if kept[0] != seen:
                raise DataError(f"{j.folder}: learner {self.index}'s evaluation {k + 1} replays other weights: "
                                "not resumable")
            scores = Scores(Score(_float(kept[1]), _float(kept[2])), Score(_float(kept[3]), _float(kept[4])))
        else:
            scores = self.inner.evaluate(weights)
        j.entries[self.index]["evaluations"].append(
            [seen, _json_float(scores.vote.accuracy), _json_float(scores.vote.loss),
             _json_float(scores.test.accuracy), _json_float(scores.test.loss)])
        self._evaluations += 1
        return scores

    # -- the rest is the learner's own ---------------------------------------------------------
    def accept(self, weights: Weights) -> None:
        self.inner.accept(weights)

    def current(self) -> Weights:
        return self.inner.current()

    def examples(self) -> int | None:
        return self.inner.examples()

    def close(self) -> None:
        self.inner.close()

    def train_steps(self, dataset, epochs: float, *, seed: int, optimizer: Any = None, on_batch=None) -> list[float]:
        return self.inner.train_steps(dataset, epochs, seed=seed, optimizer=optimizer, on_batch=on_batch)

    def make_optimizer(self) -> Any:
        return self.inner.make_optimizer()

    def predict(self, dataset):
        return self.inner.predict(dataset)

    def live_weights(self) -> dict:
        return self.inner.live_weights()

    def load_live(self, weights: Weights) -> None:
        self.inner.load_live(weights)

    def n_parameters(self) -> int:
        return self.inner.n_parameters()


def _json_float(x: float) -> float | str:
    """Floats as JSON keeps them exactly (repr round-trips); non-finite ones as text."""
    return x if math.isfinite(x) else repr(float(x))


def _float(x: float | str) -> float:
    return float(x)


def not_resumable_chain(url: str) -> DataError:
    return DataError(f"this run's chain.rpc URL was recorded redacted ({url}: it held a key), so its chain "
                     "cannot be reconnected to: not resumed")


def _event_key(e) -> list:
    return [e.name, int(e.block), int(e.log_index), e.args]


def _events_digest(events) -> str:
    text = json.dumps([_event_key(e) for e in events], sort_keys=True,
                      default=lambda x: "0x" + x.hex() if isinstance(x, (bytes, bytearray)) else str(x))
    return hashlib.sha256(text.encode()).hexdigest()


def chain_position(coord, chain) -> list:
    """What the chain holds of a run now: its contract's event count, their sha256 (name, block,
    log index, arguments: not transaction hashes, which a fork's impersonated senders change) and
    the block number."""
    events = coord.events()
    return [len(events), _events_digest(events), int(chain.block_number())]


class ChainLink:
    """A resume of a run on an external chain (module docstring): the real chain checked against the
    journal, a fork of it to replay on, and the switch to the real chain once the fork has caught up."""

    def __init__(self, chain, real_provider, real_events: list, real_block: int, fork, where: str):
        self.chain, self.real_provider, self.fork, self.where = chain, real_provider, fork, where
        self.real_events, self.real_block = real_events, real_block
        self.coord: Any = None
        self.switched = False

    @classmethod
    def open(cls, url: str, n: int, kept: Kept) -> ChainLink:
        """Check the real chain at ``url`` against ``kept`` (one line if it is gone, reset or another
        chain) and start the fork the replay runs on; the returned link's ``chain`` points at the fork."""
        from cohep.core.errors import ChainError
        from cohep.ledger import Chain, Coordinator
        from cohep.ledger.anvil import Anvil

        info = kept.state.get("chain")
        where = f"{kept.out_dir / rundir.RESUME / STATE}"
        if not isinstance(info, dict) or not info.get("marks"):
            raise DataError(f"{where}: no chain position kept for this chain.rpc run: not resumable")
        try:
            chain = Chain.connect(url, n)
        except ChainError as exc:
            raise DataError(f"{exc}: the run's chain is gone, not resumed") from None
        if chain.chain_id != int(info["chain_id"]):
            raise DataError(f"{url} is chain {chain.chain_id}, the run was on chain {info['chain_id']}: not resumed")
        try:
            coord = Coordinator.at(chain, info["contract"])
            events = coord.events()
        except ChainError:
            raise DataError(f"{url} holds no cohep contract at {info['contract']} any more (the chain was reset?): "
                            "not resumed") from None
        count, digest, block = info["marks"][kept.rounds_done] if kept.rounds_done < len(info["marks"]) \
            else info["marks"][-1]
        real_block = int(chain.block_number())
        if len(events) < count or _events_digest(events[:count]) != digest or real_block < block:
            raise DataError(f"{url}: the contract at {info['contract']} does not hold the {kept.rounds_done} "
                            f"round(s) the journal kept ({len(events)} events, the journal {count}): "
                            "reset or changed since, not resumed")
        if sum(e.name == "Finalized" for e in events[count:]) > 1:  # more than the round it stopped in
            raise DataError(f"{url}: the contract at {info['contract']} went on past round {kept.rounds_done + 1} "
                            "after this directory was kept (resumed from another copy?): not resumed")
        fork = Anvil(chain_id=chain.chain_id, fork=(url, int(info["setup_block"]))).start()
        real = chain.w3.provider
        try:
            from web3 import Web3

            chain.w3.provider = Web3.HTTPProvider(fork.url, request_kwargs={"timeout": 60})
        except BaseException:
            fork.stop()
            raise
        return cls(chain, real, events, real_block, fork, url)

    def follow(self, coord) -> None:
        """The run's coordinator on the fork: check now (a resume at the setup switches at once)."""
        self.coord = coord
        self.check()

    def check(self) -> None:
        """After a transaction or blocks mined on the fork: refuse a fork that left the real chain's
        history, switch to the real chain once the fork holds all of it."""
        if self.switched or self.coord is None:
            return
        mine = self.coord.events()
        theirs = self.real_events[:len(mine)]
        if [_event_key(e) for e in mine] != [_event_key(e) for e in theirs] or len(mine) > len(self.real_events):
            at = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if _event_key(a) != _event_key(b)),
                      min(len(mine), len(theirs)))
            raise DataError(f"{self.where}: the replay's chain event {at + 1} differs from the chain's "
                            f"({mine[at].name if at < len(mine) else 'none'} where the chain has "
                            f"{theirs[at].name if at < len(theirs) else 'none'}): not resumable")
        if len(mine) < len(self.real_events):
            return
        block = int(self.chain.block_number())
        if block < self.real_block:
            return  # the interrupted run mined blocks after its last transaction: the fork is mining them
        self.chain.w3.provider = self.real_provider
        if block > self.real_block:  # it was interrupted while mining them: mine the rest
            self.chain.mine(block - self.real_block)
        self.switched = True
        self.close()

    def close(self) -> None:
        """Stop the fork; before the switch, point the connection back at the real chain (nothing sent)."""
        if not self.switched:
            self.chain.w3.provider = self.real_provider
        if self.fork is not None:
            self.fork.stop()
            self.fork = None


__all__ += ["ChainLink", "RunInterrupted", "chain_position", "fingerprint", "not_resumable_chain"]
