"""Tidy per-round, per-learner records of a run (one row per round and learner), and round timings.

Records hold only what the protocol produced (scores, votes, outcomes), never wall times, so two
runs with the same seed and config give byte-identical record files; wall times go to a separate
timings table.
"""
from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from cohep.core.files import atomic_write_text


@dataclass(frozen=True)
class RoundRecord:
    round: int  #: 1-based round number (contract round + 1)
    learner: int
    proposer: int  #: index of the round's proposer
    is_proposer: bool
    vote: str  #: "approve", "reject", or "" for the proposer / void rounds
    accepted: bool
    void: bool
    vote_score: float  #: the proposal's score on this learner's vote set (the vote metric)
    current_vote_score: float  #: this learner's current weights on the same set (before the round)
    proposal_test_accuracy: float
    test_accuracy: float  #: this learner's weights after the round, on its private test set
    test_loss: float
    digest: str  #: proposal digest (hex) as recorded on chain, "" when void
    #: why this member rejected the proposal without judging its scores (a failed check), or why the
    #: proposer offered nothing; "" otherwise
    reason: str = ""
    #: sha256 (hex) of the weights this member holds after the round: the accepted proposal, or the
    #: average of the accepted proposals of a round with several (what ``cohep audit`` recomputes)
    adopted: str = ""
    #: research runs only (``[attack]``): the attack this member ran, "" for an honest member
    attack: str = ""


COLUMNS = [f.name for f in fields(RoundRecord)]

#: where a round's wall time goes
STAGES = ("training", "evaluation", "chain", "store")


@dataclass
class RoundTiming:
    """Wall time of one round by stage (seconds)."""

    round: int
    training: float = 0.0
    evaluation: float = 0.0
    chain: float = 0.0
    store: float = 0.0

    @property
    def total(self) -> float:
        return self.training + self.evaluation + self.chain + self.store


_P = ParamSpec("_P")
_T = TypeVar("_T")


class Stopwatch:
    """One member's wall time by stage (training, evaluation, store): the runner sums the members'
    into each round's timing, a node reports its totals."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"training": 0.0, "evaluation": 0.0, "store": 0.0}

    def timed(self, stage: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)``, its wall time added to ``stage``."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[stage] += time.perf_counter() - start


def time_shares(timings: list[RoundTiming]) -> dict[str, float]:
    """Each stage's share of the total wall time."""
    total = sum(t.total for t in timings) or 1.0
    return {s: sum(getattr(t, s) for t in timings) / total for s in STAGES}


def write_timings(timings: list[RoundTiming], path: str | Path) -> Path:
    lines = ["round," + ",".join(f"{s}_s" for s in STAGES) + ",total_s"]
    lines += [f"{t.round},{t.training:.4f},{t.evaluation:.4f},{t.chain:.4f},{t.store:.4f},{t.total:.4f}"
              for t in timings]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(round(value, 6))
    return str(value)


def csv_text(records: list[RoundRecord]) -> str:
    """The records as records.csv holds them (header first): what two runs compare byte for byte."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in records:
        d = asdict(r)
        w.writerow([_fmt(d[c]) for c in COLUMNS])
    return buf.getvalue()


def write_csv(records: list[RoundRecord], path: str | Path) -> Path:
    atomic_write_text(path, csv_text(records))
    return Path(path)


def read_csv(path: str | Path) -> list[RoundRecord]:
    types = {f.name: f.type for f in fields(RoundRecord)}
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            vals: dict[str, Any] = {}
            for k, v in row.items():
                t = types[k]
                vals[k] = (v == "1") if t == "bool" else int(v) if t == "int" else float(v) if t == "float" else v
            out.append(RoundRecord(**vals))
    return out


def final_test_accuracy(records: list[RoundRecord]) -> float:
    """Mean over learners of the test accuracy after the last round."""
    last = max(r.round for r in records)
    vals = [r.test_accuracy for r in records if r.round == last]
    return sum(vals) / len(vals)


def accepted_per_learner(records: list[RoundRecord], n_learners: int) -> list[int]:
    """How many of each learner's proposals were accepted (a learner's own row marks its proposal)."""
    counts = [0] * n_learners
    for r in records:
        if r.round > 0 and r.is_proposer and r.accepted:
            counts[r.learner] += 1
    return counts
