"""Why a server step does not help here: how far k short updates and their average move, and what
a step of s does to the vote sets. Probe, not a protocol run (no chain, no vote).

MNIST t10k, 5 learners (the bench/variants.py split), each trains 0.2 epoch from the same start (the
``avg5e`` round); prints each update's L2 norm, the average update's, and for each s the members'
mean vote-set accuracy and loss of ``w0 + s (average - w0)`` and how many of the five would approve
it (accuracy, loss). The next round starts from the plain average (s = 1), as avg5e would.

    python bench/server_step.py --split dirichlet
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

from cohep import models
from cohep.config import experiment as config
from cohep.protocol import combine
from cohep.run.tasks import build_learners, prepare
from cohep.testing import bench

HOME = bench.Home.of(__file__)


def norm(a, b) -> float:
    return float(np.sqrt(sum(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2) for k in a)))


def parser():
    ap = bench.parser(__doc__)
    bench.add_mnist(ap, HOME)
    ap.add_argument("--split", default="dirichlet")
    bench.add_seed(ap, 0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", default="1,1.5,2,3,5")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    cfg = config.from_dict({"experiment": {"protocol": "paper", "learners": 5, "rounds": args.rounds, "seed": args.seed},
                            "data": {"path": args.data, "split": args.split, "alpha": 0.5},
                            "round": {"proposers": 5, "combine": "average"}, "train": {"epochs": 0.2}})
    cfg, data, parts, spec = prepare(cfg)
    w0 = models.initial_weights(spec, args.seed)
    learners = build_learners(cfg, data, parts, spec, w0)
    for r in range(args.rounds):
        props = [lr.propose() for lr in learners]
        avg = combine.average(props)
        print(f"round {r + 1}: update norms {' '.join(f'{norm(p, w0):.3f}' for p in props)}, "
              f"their average's {norm(avg, w0):.3f}")
        base = [lr.evaluate(w0).vote for lr in learners]
        for s in (float(x) for x in args.steps.split(",")):
            w = combine.step(w0, avg, s)
            sc = [lr.evaluate(w).vote for lr in learners]
            print(f"  s={s:g}: vote accuracy {np.mean([x.accuracy for x in sc]):.3f} "
                  f"(start {np.mean([x.accuracy for x in base]):.3f}), loss {np.mean([x.loss for x in sc]):.3f} "
                  f"(start {np.mean([x.loss for x in base]):.3f}); would approve: "
                  f"accuracy {sum(a.accuracy > b.accuracy for a, b in zip(sc, base))}/5, "
                  f"loss {sum(a.loss < b.loss for a, b in zip(sc, base))}/5", flush=True)
        w0 = avg
        for lr in learners:
            lr.accept(w0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
