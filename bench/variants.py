"""Which round shape closes the gap to FedAvg on non-IID data? cohep runs of each variant, several seeds.

Variants (``--variants``, comma-separated names) are the named overlays of ``bench/variants.toml``:
each a table of the ``section.field = value`` settings it changes over this bench's experiment (the
file's header explains the labels). ``k1`` is today's round (one proposer, one epoch); ``avg5e`` five
proposers of 1/5 epoch each, one vote on their average (equal client-epochs with FedAvg's one
client-epoch per round); ``avg5`` five proposers of one epoch each (full participation); ``each5e``
five proposers of 1/5 epoch, a vote on each, the accepted ones averaged; ``avg2e`` two proposers of
half an epoch (equal client-epochs); suffixes name what a variant adds: ``-s5`` a server step,
``-ex`` the average weighted by examples, ``-scr...`` the screened average, ``-loss`` / ``-either``
the vote's metric, ``-tol0.005`` a tolerated regression. Every run is audited (``cohep audit``: the
averaged digests recomputed from the blobs). Prints one line per run and, last, the mean final
accuracy of each variant and split.

Default (a few minutes here): MNIST t10k, 5 learners, 4 rounds, seed 0, the Dirichlet split, variants
k1 and avg5e-loss. The full size: ``--rounds 20 --seeds 0,1,2 --splits dirichlet,iid``.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")

from cohep.config import experiment as config
from cohep.run.audit import audit_run
from cohep.run.local import run_experiment
from cohep.testing import bench

HOME = bench.Home.of(__file__)
#: the variants: name -> the settings it changes (bench/variants.toml)
VARIANTS = bench.overlays(HOME.script.with_suffix(".toml"))
#: FedAvg's figures from docs/benchmarks/vs_flower.md (Flower 1.41, same CNN, splits and initial weights;
#: mean of 3 seeds, 20 rounds)
FEDAVG = {("dirichlet", "1 client"): 0.894, ("iid", "1 client"): 0.979,
          ("dirichlet", "5 clients"): 0.983, ("iid", "5 clients"): 0.987}


def parser():
    ap = bench.parser(__doc__)
    bench.add_mnist(ap, HOME)
    ap.add_argument("--learners", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=4)
    bench.add_seed_list(ap, "0")
    ap.add_argument("--splits", default="dirichlet")
    ap.add_argument("--variants", default="k1,avg5e-loss", help=f"comma-separated, of {', '.join(VARIANTS)}")
    bench.add_doc(ap, HOME.doc())
    return ap


def experiment(args, split: str, name: str, seed: int):
    """The bench's experiment for one split and seed with variant ``name``'s settings merged over it."""
    base = {"experiment": {"protocol": "paper", "learners": args.learners, "rounds": args.rounds, "seed": seed},
            "data": {"path": args.data, "split": split, "alpha": 0.5}}
    return config.from_dict(config.merge(base, VARIANTS[name]))


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    unknown = [n for n in args.variants.split(",") if n not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)}; "
                 f"a new one is a table in {HOME.script.with_suffix('.toml').name})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for split in args.splits.split(","):
            for name in args.variants.split(","):
                for seed in args.seeds:
                    cfg = experiment(args, split, name, seed)
                    t0 = time.perf_counter()
                    res = run_experiment(cfg, Path(tmp) / f"{split}-{name}-{seed}", figure=False)
                    wall = time.perf_counter() - t0
                    audit = audit_run(res.out_dir)
                    curve = [sum(r.test_accuracy for r in res.records if r.round == k) / args.learners
                             for k in range(args.rounds + 1)]
                    accepted = sum(1 for k in range(1, args.rounds + 1)
                                   if any(r.accepted for r in res.records if r.round == k))
                    rows.append((split, name, seed, res.final_accuracy, accepted, audit.clean, wall, curve))
                    print(f"{split:9s} {name:10s} seed {seed}: final {res.final_accuracy:.4f}, "
                          f"{accepted}/{args.rounds} rounds accepted, audit {'clean' if audit.clean else 'FAILED'}, "
                          f"{wall:.0f} s", flush=True)
                    write_doc(args.doc, args, rows, mean_of(rows))  # after every run: a cut-short bench keeps its rows
    print("mean final accuracy: " + ", ".join(f"{s}/{n} {m:.4f}" for (s, n), m in mean_of(rows).items()))
    return 0


def mean_of(rows) -> dict:
    means = {}
    for split, name, *_ in rows:
        vals = [r[3] for r in rows if r[0] == split and r[1] == name]
        means[(split, name)] = sum(vals) / len(vals)
    return means


def write_doc(path: Path, args, rows, means) -> None:
    cmd = (f"python bench/variants.py --rounds {args.rounds} --seeds {','.join(map(str, args.seeds))} "
           f"--splits {args.splits} --variants {args.variants}")
    lines = [
        "# Protocol variants against FedAvg (bench/variants.py)", "",
        (f"MNIST t10k, {args.learners} learners, {args.rounds} rounds, Dirichlet alpha 0.5 / IID, the default CNN; "
         f"every run audited. Machine: {bench.machine()}, load average {bench.load_average():.1f} "
         "(other jobs inflate the wall times, not the accuracies)."), "",
        f"Command: `{cmd}`", "",
        *bench.table(("split", "variant", "seed", "final accuracy", "rounds accepted", "audit", "wall s"),
                     [(split, name, seed, f"{acc:.4f}", f"{accepted}/{args.rounds}", "clean" if clean else "FAILED",
                       f"{wall:.0f}") for split, name, seed, acc, accepted, clean, wall, _ in rows]),
        "",
        *bench.table(("split", "variant", "mean final accuracy"), [(s, n, f"{m:.4f}") for (s, n), m in means.items()]),
        "", "FedAvg (docs/benchmarks/vs_flower.md, Flower, 3 seeds, 20 rounds): " + ", ".join(
            f"{s} {c}: {v}" for (s, c), v in FEDAVG.items()), "",
        "Mean test accuracy after each round (round 0 = initial weights):", ""]
    for split, name, seed, *_, curve in rows:
        lines.append(f"- {split} {name} seed {seed}: " + " ".join(f"{a:.3f}" for a in curve))
    bench.write_doc(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
