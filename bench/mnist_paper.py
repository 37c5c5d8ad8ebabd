"""The paper's MNIST experiment: 5 learners, 20 rounds, IID split of 8,000 t10k images.

Tests on the 2,000 held-out images (400 per learner). Prints the final mean test accuracy, accepted
proposals per learner and the wall time per round split into training, evaluation, chain and store.
Targets: accuracy >= 95 %, chain + store < 5 % of the round time.

    python bench/mnist_paper.py [--data ../shared/data/mnist] [--out runs/bench-mnist]
"""
from __future__ import annotations

import sys
import time

from cohep.config import experiment as config
from cohep.run.local import STAGES, run_experiment
from cohep.testing import bench

HOME = bench.Home.of(__file__)


def parser():
    ap = bench.parser(__doc__)
    bench.add_mnist(ap, HOME)
    bench.add_out(ap, "runs/bench-mnist")
    ap.add_argument("--learners", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--ballots", choices=("transactions", "signed", "aggregate"), default=None,
                    help="how votes reach the chain ([chain] ballots; default: the product's)")
    bench.add_seed(ap, 0)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    cfg = config.load(None, {
        "experiment": {"protocol": "paper",
                       "name": "mnist-paper", "learners": args.learners, "rounds": args.rounds, "seed": args.seed},
        "data": {"kind": "mnist", "path": args.data, "holdout": 2000, "split": "iid", "vote_fraction": 0.2},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": args.epochs, "batch_size": 32, "lr": 1e-3},
        **({"chain": {"ballots": args.ballots}} if args.ballots else {}),
    })
    start = time.perf_counter()
    res = run_experiment(cfg, args.out)
    wall = time.perf_counter() - start
    n = len(res.timings)
    per = {s: sum(getattr(t, s) for t in res.timings) / n for s in STAGES}
    total = sum(per.values())
    overhead = (per["chain"] + per["store"]) / total
    print(f"MNIST paper benchmark: {args.learners} learners, {args.rounds} rounds, IID, 8000 / 2000 held out")
    print(f"final mean test accuracy : {res.final_accuracy:.4f}   (target >= 0.95)")
    print(f"accepted per learner     : {res.accepted}  ({sum(res.accepted)} of {args.rounds} rounds)")
    print(f"wall time                : {wall:.1f} s total, {total:.2f} s per round")
    for s in STAGES:
        print(f"  {s:<11}: {per[s]:7.3f} s/round  {100 * per[s] / total:5.1f} %")
    print(f"chain + store share      : {100 * overhead:.2f} %   (target < 5 %)")
    print(f"chain id {res.chain_id}, contract {res.contract}, run dir {res.out_dir}")
    ok = res.final_accuracy >= 0.95 and overhead < 0.05
    print("TARGETS MET" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
