"""What a resume costs: an uninterrupted run, the same run interrupted after round k, and its resume.

The resume replays rounds 1..k from the journal (no training, no scoring: cohep/run/resume.py) and
runs the rest live, so it costs the chain's and the stores' share of the replayed rounds plus the
live rounds. Prints the three wall times, the replayed rounds' share of the uninterrupted run's time,
and whether the resumed run's records.csv, final weights and chain log equal the uninterrupted run's
byte for byte (they must). Synthetic digits, so it needs no download.

    python bench/resume.py [--protocol paper] [--learners 3] [--rounds 6] [--stop 3] [--epochs 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")

from cohep.config import experiment as config
from cohep.core.errors import RunInterrupted
from cohep.outputs import rundir
from cohep.run.local import resume_experiment, run_experiment
from cohep.testing.synthetic import synthetic_mnist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="paper")
    ap.add_argument("--learners", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--stop", type=int, default=3, help="interrupt as this round ends")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=1200)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="cohep-resume-bench-"))
    try:
        digits = synthetic_mnist(root / "mnist", 1200, seed=0)
        tables = {"experiment": {"learners": args.learners, "rounds": args.rounds, "seed": 0,
                                 "protocol": args.protocol},
                  "data": {"kind": "mnist", "path": str(digits), "limit": args.limit, "holdout": args.limit // 4},
                  "model": {"name": "mnist_cnn"}, "train": {"epochs": args.epochs, "batch_size": 32}}
        # one round first, untimed: the process's one-time costs (imports, py-evm, the contract) are
        # not the first timed run's
        warm = config.merge(tables, {"experiment": {"rounds": 1}})
        run_experiment(config.load(None, warm), root / "warm-up", figure=False)
        here = root / "run"
        start = time.perf_counter()
        run_experiment(config.load(None, tables), here, figure=False)
        full = time.perf_counter() - start
        reference = here.rename(root / "reference")

        def stop(r: int) -> None:
            if r == args.stop:
                raise KeyboardInterrupt

        start = time.perf_counter()
        try:
            run_experiment(config.load(None, tables), here, figure=False, on_round=stop)
        except RunInterrupted:
            pass
        interrupted = time.perf_counter() - start
        start = time.perf_counter()
        resume_experiment(here, figure=False)
        resumed = time.perf_counter() - start
        same = all((here / f).read_bytes() == (reference / f).read_bytes()
                   for f in (rundir.RECORDS, rundir.WEIGHTS, rundir.CHAIN_LOG))
        print(f"protocol {args.protocol}, {args.learners} learners, {args.rounds} rounds, {args.epochs:g} epochs, "
              f"interrupted after round {args.stop}")
        print(f"uninterrupted run: {full:.1f} s")
        print(f"interrupted run (rounds 1-{args.stop}): {interrupted:.1f} s")
        print(f"resume (replays 1-{args.stop}, runs {args.stop + 1}-{args.rounds}): {resumed:.1f} s; "
              f"interrupted + resumed = {(interrupted + resumed) / full:.2f} x the uninterrupted run")
        print(f"records.csv, final weights, chain log byte for byte equal: {same}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
