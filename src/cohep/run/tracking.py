"""``[tracking]`` carried out: a finished run's rounds, accepted proposals and final metrics in TensorBoard.

Written once the run's records are complete (one call at the end of ``cohep run``), from the same
records the run directory holds, so the two never disagree. Tags, each a scalar with the round as its
step (round 0: the initial weights):

* ``round/accepted``: proposals the chain accepted in the round; ``round/accepted_total``: so far;
* ``round/void``: 1 for a round without a proposal;
* ``round/mean_test_accuracy``, ``round/mean_test_loss``: over the learners, after the round;
* ``learner/<i>/test_accuracy``, ``learner/<i>/vote_score``: each learner's own (the proposal's score
  on its vote set; NaN for the proposer is left out);
* ``final/test_accuracy`` and ``final/accepted/<i>`` (learner i's accepted proposals) at the last round.

The writer is torch's ``SummaryWriter`` (torch is a dependency already), the reader
(:func:`read_scalars`) TensorBoard's own ``EventAccumulator``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from cohep.config.tracking import TrackingSection
from cohep.core.errors import ConfigError

#: the folder of a run directory that holds its TensorBoard log when [tracking] dir is unset
DEFAULT_DIR = "tensorboard"


def log_dir(tracking: TrackingSection, out_dir: str | Path, name: str) -> Path:
    return Path(tracking.dir) / (tracking.run_name or name) if tracking.dir else Path(out_dir) / DEFAULT_DIR


def _writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tracking.backend = \"tensorboard\" needs the tensorboard package: pip install tensorboard") \
            from None
    return SummaryWriter(log_dir=str(path), flush_secs=3600)


def log_run(tracking: TrackingSection, result, out_dir: str | Path, *, name: str) -> dict[str, Path]:
    """Log a finished run (a ``RunResult``: ``records``, ``final_accuracy``, ``accepted``); returns the log's folder."""
    if not tracking.active:
        return {}
    path = log_dir(tracking, out_dir, name)
    by_round = defaultdict(list)
    for r in result.records:
        by_round[r.round].append(r)
    writer = _writer(path)
    try:
        total = 0
        for rnd in sorted(by_round):
            rows = by_round[rnd]
            # a proposer's own row marks its proposal (protocol.records.accepted_per_learner), whatever the round's shape
            accepted = sum(1 for r in rows if r.is_proposer and r.accepted) if rnd > 0 else 0
            total += accepted
            writer.add_scalar("round/accepted", accepted, rnd)
            writer.add_scalar("round/accepted_total", total, rnd)
            writer.add_scalar("round/void", float(any(r.void for r in rows)), rnd)
            writer.add_scalar("round/mean_test_accuracy", _mean(r.test_accuracy for r in rows), rnd)
            writer.add_scalar("round/mean_test_loss", _mean(r.test_loss for r in rows), rnd)
            for r in rows:
                writer.add_scalar(f"learner/{r.learner}/test_accuracy", r.test_accuracy, rnd)
                if rnd > 0 and math.isfinite(r.vote_score):
                    writer.add_scalar(f"learner/{r.learner}/vote_score", r.vote_score, rnd)
        last = max(by_round) if by_round else 0
        writer.add_scalar("final/test_accuracy", result.final_accuracy, last)
        for i, n in enumerate(result.accepted):
            writer.add_scalar(f"final/accepted/{i}", n, last)
        writer.add_text("run", f"{name}: {result.mode}, {len(by_round) - 1} rounds, final test accuracy "
                               f"{result.final_accuracy:.4f}", last)
    finally:
        writer.close()
    return {"tracking": path}


def _mean(values) -> float:
    v = [x for x in values if math.isfinite(x)]
    return sum(v) / len(v) if v else math.nan


def read_scalars(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a TensorBoard log folder: ``tag -> [(step, value), ...]``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
