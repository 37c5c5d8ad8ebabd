"""``[tracking]`` carried out: a finished run's params, rounds, accepted proposals and final metrics.

Logged once the run's records are complete (one call at the end of ``cohep run``), from the same
records the run directory holds, so the two never disagree. Every backend gets the same stream through
:class:`Tracker` (one module per backend: :mod:`.mlflow`, :mod:`.tensorboard`):

* params, from the run's manifest: ``name``, ``mode``, ``protocol``, ``model``, ``learners``, ``rounds``,
  ``seed``;
* scalars with the round as step (round 0: the initial weights): ``round/accepted`` (proposals the
  chain accepted in the round), ``round/accepted_total`` (so far), ``round/void`` (1 for a round
  without a proposal), ``round/mean_test_accuracy`` and ``round/mean_test_loss`` (over the learners,
  after the round), ``learner/<i>/test_accuracy`` and ``learner/<i>/vote_score`` (the proposal's score
  on learner i's vote set; the proposer's own NaN is left out);
* at the last round: ``final/test_accuracy`` and ``final/accepted/<i>`` (learner i's accepted proposals).

A tracking tool that fails (an unwritable store, a server that does not answer) costs the run nothing:
the run directory is already complete, so one ``warning:`` line goes to stderr and the run carries on.
Where the run was logged is written to ``tracking.json`` in the run directory.
"""
from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from cohep.config.tracking import TrackingSection
from cohep.core.files import read_json, write_json
from cohep.outputs.rundir import MANIFEST

#: the file of a run directory that says where its tracking log is
TRACKING_FILE = "tracking.json"


class Tracker(ABC):
    """One tracking tool's writer for one run; nothing need reach the tool before :meth:`close`."""

    @abstractmethod
    def params(self, values: Mapping[str, str]) -> None:
        """The run's settings, once."""

    @abstractmethod
    def scalar(self, tag: str, value: float, step: int) -> None:
        """One value of ``tag`` at ``step`` (a round)."""

    @abstractmethod
    def text(self, tag: str, text: str, step: int) -> None:
        """A line of prose (the run's summary)."""

    @abstractmethod
    def close(self, ok: bool = True) -> dict:
        """Flush and end the run (``ok``: everything was logged); returns where it lies (for ``tracking.json``)."""


def open_tracker(tracking: TrackingSection, out_dir: Path, name: str) -> Tracker:
    if tracking.backend == "tensorboard":
        from cohep.run.tracking.tensorboard import TensorBoardTracker, log_dir

        return TensorBoardTracker(log_dir(tracking, out_dir, name))
    from cohep.run.tracking.mlflow import MlflowTracker

    return MlflowTracker(tracking, out_dir, name)


def run_params(manifest: Mapping) -> dict[str, str]:
    """The settings every backend logs as the run's params, from the run's manifest (config and model)."""
    e = (manifest.get("config") or {}).get("experiment") or {}
    values = {"name": e.get("name"), "mode": e.get("mode"), "protocol": e.get("protocol"),
              "model": (manifest.get("model") or {}).get("name"), "learners": e.get("learners"),
              "rounds": e.get("rounds"), "seed": e.get("seed")}
    return {k: str(v) for k, v in values.items() if v is not None}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def log_run(tracking: TrackingSection, result, out_dir: str | Path, *, name: str,
            params: Mapping[str, str] | None = None, warn: Callable[[str], None] = _stderr) -> dict[str, Path]:
    """Log a finished run (a ``RunResult``: ``records``, ``final_accuracy``, ``accepted``, ``mode``).

    ``params``: default, :func:`run_params` of the manifest in ``out_dir``. Returns
    ``{"tracking": <run directory>/tracking.json}``, or ``{}`` when tracking is off or failed (then
    ``warn`` got one line).
    """
    if not tracking.active:
        return {}
    out = Path(out_dir)
    try:
        if params is None:
            params = run_params(read_json(out / MANIFEST)) if (out / MANIFEST).exists() else {}
        tracker = open_tracker(tracking, out, name)
        try:
            _log(tracker, result, name, params)
        except BaseException:
            _close_quietly(tracker)
            raise
        where = tracker.close()
    except Exception as exc:  # noqa: BLE001 -- any tool's failure is one line; the run directory stands
        warn(f"warning: tracking ({tracking.backend}) failed, the run directory is complete without it: "
             f"{_one_line(exc)}")
        return {}
    return {"tracking": write_json(out / TRACKING_FILE, {"backend": tracking.backend, **where})}


def _log(tracker: Tracker, result, name: str, params: Mapping[str, str]) -> None:
    by_round = defaultdict(list)
    for r in result.records:
        by_round[r.round].append(r)
    tracker.params(params)
    total = 0
    for rnd in sorted(by_round):
        rows = by_round[rnd]
        # a proposer's own row marks its proposal (protocol.records.accepted_per_learner), whatever the round's shape
        accepted = sum(1 for r in rows if r.is_proposer and r.accepted) if rnd > 0 else 0
        total += accepted
        tracker.scalar("round/accepted", accepted, rnd)
        tracker.scalar("round/accepted_total", total, rnd)
        tracker.scalar("round/void", float(any(r.void for r in rows)), rnd)
        tracker.scalar("round/mean_test_accuracy", _mean(r.test_accuracy for r in rows), rnd)
        tracker.scalar("round/mean_test_loss", _mean(r.test_loss for r in rows), rnd)
        for r in rows:
            tracker.scalar(f"learner/{r.learner}/test_accuracy", r.test_accuracy, rnd)
            if rnd > 0 and math.isfinite(r.vote_score):
                tracker.scalar(f"learner/{r.learner}/vote_score", r.vote_score, rnd)
    last = max(by_round) if by_round else 0
    tracker.scalar("final/test_accuracy", result.final_accuracy, last)
    for i, n in enumerate(result.accepted):
        tracker.scalar(f"final/accepted/{i}", n, last)
    tracker.text("run", f"{name}: {result.mode}, {max(len(by_round) - 1, 0)} rounds, final test accuracy "
                        f"{result.final_accuracy:.4f}", last)


def _close_quietly(tracker: Tracker) -> None:
    try:
        tracker.close(ok=False)
    except Exception:  # noqa: BLE001 -- the first failure is the one reported
        pass


def _one_line(exc: BaseException) -> str:
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _mean(values) -> float:
    v = [x for x in values if math.isfinite(x)]
    return sum(v) / len(v) if v else math.nan
