"""How much the members' updates of one round agree: the direction floor's evidence.

For a split of MNIST t10k over ``--learners`` members (the vs_flower set-up: Dirichlet alpha = 0.5 or
IID, 2,000 images held out), every member trains one epoch from the same weights, and each update's
cosine with the sum of the others is printed (what ``[vote] direction_floor`` compares), with member 0's
update negated (the sign-flip attack) and replaced by random re-initialised weights (the random attack).
From the initial weights (round 1) and, with ``--from``, from trained weights (for example a run's
``final_weights.safetensors``): late in training on class-skewed data the honest cosines sit near zero,
where a negated update sits too (docs/attacks.md).

    python bench/update_directions.py --data ../shared/data/mnist --seeds 0,1 --from runs/x/final_weights.safetensors
    python bench/update_directions.py --events events-3k.h5 --events-limit 3000 --learners 6 --epochs 2 --split iid

(``--events``: the neutrino task as ``bench/byzantine.py`` runs it, compact model, 20 % held out.)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cohep import models
from cohep.config import experiment as config
from cohep.protocol.screens import direction_cosines, flat_update
from cohep.research import attacks
from cohep.run.tasks import build_learners, prepare
from cohep.testing import bench
from cohep.wire import weights

HOME = bench.Home.of(__file__)
#: the MNIST set-up of bench/vs_flower.py
vs_flower = bench.load_script(HOME.script.with_name("vs_flower.py"))


def parser():
    ap = bench.parser(__doc__)
    bench.add_mnist(ap, HOME, help="folder of the MNIST idx files")
    ap.add_argument("--split", default="dirichlet", choices=("iid", "dirichlet"))
    ap.add_argument("--learners", type=int, default=5)
    bench.add_seed_list(ap, "0")
    ap.add_argument("--events", default=None, help="an events HDF5 file: the neutrino task instead of MNIST")
    ap.add_argument("--events-limit", type=int, default=None)
    ap.add_argument("--epochs", type=float, default=1.0, help="epochs per update")
    ap.add_argument("--from", dest="start", type=Path, default=None,
                    help="also start from these weights (safetensors, cohep.wire.weights encoding)")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for seed in args.seeds:
        if args.events:
            cfg = config.load(None, {
                "experiment": {"protocol": "paper", "learners": args.learners, "seed": seed},
                "data": {"kind": "events", "path": args.events, "limit": args.events_limit, "holdout": 0.2,
                         "split": args.split, **({"alpha": 0.5} if args.split == "dirichlet" else {})},
                "train": {"epochs": args.epochs, "batch_size": 32},
                # as bench/byzantine.py: the figures in docs/ read all three planes
                "model": {"name": "compact", "params": {"planes": "all"}}})
        else:
            cfg = vs_flower.base_config(args.data, args.split, seed, 20, args.learners, train={"epochs": args.epochs})
        cfg, data, parts, spec = prepare(cfg)
        starts = {"initial": models.initial_weights(spec, seed)}
        if args.start is not None:
            starts["--from"] = weights.decode(args.start.read_bytes())
        for name, w0 in starts.items():
            updates = {i: flat_update(lr.propose(), w0)
                       for i, lr in enumerate(build_learners(cfg, data, parts, spec, w0))}
            honest = direction_cosines(updates)
            flipped = direction_cosines({**updates, 0: -updates[0]})[0]
            junk = attacks.craft("random", w0, w0, rng=np.random.default_rng(seed))
            random = direction_cosines({**updates, 0: flat_update(junk, w0)})[0]
            print(f"{args.split} seed {seed}, from the {name} weights: honest "
                  + " ".join(f"{c:+.3f}" for c in honest.values())
                  + f" (median {np.median(list(honest.values())):+.3f}); member 0 negated {flipped:+.3f}, "
                    f"random {random:+.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
