"""Which round shape closes the gap to FedAvg on non-IID data? cohep runs of each variant, several seeds.

Variants (``--variants``, comma-separated names): ``k1`` today's round (one proposer, one epoch);
``avg5e`` five proposers of 1/5 epoch each, one vote on their average (equal client-epochs with
FedAvg's one client-epoch per round); ``avg5`` five proposers of one epoch each, vote on the average
(full participation); ``each5e`` five proposers of 1/5 epoch, a vote on each, the accepted ones
averaged; ``avg2e`` two proposers of half an epoch, vote on the average (equal client-epochs). Suffixes, in this order: ``-sLR`` a server step (``[round] server_lr = LR``: the round
leaves ``w0 + LR (average - w0)``; ``avg5e-s5`` adds five 1/5-epoch updates, about one sequential
client-epoch); ``-ex`` the accepted proposals averaged by the training examples each declares
(``[round] weighting = "examples"``, FedAvg's weighting, capped); ``-scr`` the screened average
(``[vote] judge = "screened_average"`` with ``norm_bound = 3``, ``peer_margin = 0.3`` and
``direction_floor = 0``; ``-scrF``: the floor at -F; ``-scrFhS``: and ``direction_share = S``; ``-scrFhSkN``: and ``strikes = N``; with
``each5``: every member proposes, each slot is screened, the screened ones judged by their
average); ``-loss`` the vote on the vote-set loss instead of accuracy (``[vote] metric = "loss"``:
continuous, so small real improvements pass; ``avg5-loss``), or ``-either`` the vote that approves when
accuracy or loss improves (``metric = "accuracy_or_loss"``); ``+prox`` adds ``train.proximal_mu = 0.01``. Every run is audited (``cohep audit``:
the averaged digests recomputed from the blobs). Prints one line per run and, last, the mean final
accuracy of each variant and split.

Default (a few minutes here): MNIST t10k, 5 learners, 4 rounds, seed 0, the Dirichlet split, variants
k1 and avg5e-loss. The issue's size: ``--rounds 20 --seeds 0,1,2 --splits dirichlet,iid``.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from cohep.config import experiment as config  # noqa: E402
from cohep.run.audit import audit_run  # noqa: E402
from cohep.run.local import run_experiment  # noqa: E402

VARIANTS = {
    "k1": {"round": {"proposers": 1, "combine": "each"}, "train": {"epochs": 1.0}},
    "avg5e": {"round": {"proposers": 5, "combine": "average"}, "train": {"epochs": 0.2}},
    "avg5": {"round": {"proposers": 5, "combine": "average"}, "train": {"epochs": 1.0}},
    "each5e": {"round": {"proposers": 5, "combine": "each"}, "train": {"epochs": 0.2}},
    "avg2e": {"round": {"proposers": 2, "combine": "average"}, "train": {"epochs": 0.5}},
    "each5": {"round": {"proposers": 5, "combine": "each"}, "train": {"epochs": 1.0}},
}
#: FedAvg's figures from docs/benchmarks/vs_flower.md (Flower 1.41, same CNN, splits and initial weights;
#: mean of 3 seeds, 20 rounds)
FEDAVG = {("dirichlet", "1 client"): 0.894, ("iid", "1 client"): 0.979,
          ("dirichlet", "5 clients"): 0.983, ("iid", "5 clients"): 0.987}


_NAME = re.compile(r"^(?P<base>[a-z0-9]+?)(?:-s(?P<lr>[0-9]+(?:\.[0-9]+)?))?(?P<ex>-ex)?(?P<scr>-scr(?P<floor>[0-9]+(?:\.[0-9]+)?)?(?:h(?P<share>[0-9]+(?:\.[0-9]+)?))?(?:k(?P<strikes>[0-9]+))?)?(?P<vote>-loss|-either)?(?:-tol(?P<tol>[0-9]+(?:\.[0-9]+)?))?(?P<prox>\+prox)?$")


def variant(name: str) -> dict:
    """A variant's config sections from its name: ``BASE[-sLR][-ex][-scr][-loss|-either][-tolT][+prox]``
    (``-tolT``: ``[vote] margin = -T``, a tolerated regression)."""
    m = _NAME.match(name)
    if m is None or m["base"] not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r} (known: {', '.join(VARIANTS)}, each with optional -sLR, -ex, -scr, "
                         "-loss or -either, -tolT, +prox)")
    v = {k: dict(s) for k, s in VARIANTS[m["base"]].items()}
    if m["lr"]:
        v["round"]["server_lr"] = float(m["lr"])
    if m["ex"]:
        v["round"]["weighting"] = "examples"
    if m["scr"]:
        v["vote"] = {"judge": "screened_average", "norm_bound": 3.0, "peer_margin": 0.3,
                     "direction_floor": -float(m["floor"]) if m["floor"] else 0.0}
        if m["share"]:
            v["vote"]["direction_share"] = float(m["share"])
        if m["strikes"]:
            v["vote"]["strikes"] = int(m["strikes"])
    if m["vote"]:
        v.setdefault("vote", {})["metric"] = "loss" if m["vote"] == "-loss" else "accuracy_or_loss"
    if m["tol"]:
        v.setdefault("vote", {})["margin"] = -float(m["tol"])
    if m["prox"]:
        v["train"]["proximal_mu"] = 0.01
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    ap.add_argument("--learners", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--splits", default="dirichlet")
    ap.add_argument("--variants", default="k1,avg5e-loss")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks" / "variants.md"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for split in args.splits.split(","):
            for name in args.variants.split(","):
                for seed in seeds:
                    cfg = config.from_dict({
                        "experiment": {"learners": args.learners, "rounds": args.rounds, "seed": seed},
                        "data": {"path": args.data, "split": split, "alpha": 0.5}, **variant(name)})
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
                    means = mean_of(rows)
                    write_doc(Path(args.doc), args, rows, means)  # after every run: a cut-short bench keeps its rows
    print("mean final accuracy: " + ", ".join(f"{s}/{n} {m:.4f}" for (s, n), m in mean_of(rows).items()))


def mean_of(rows) -> dict:
    means = {}
    for split, name, *_ in rows:
        vals = [r[3] for r in rows if r[0] == split and r[1] == name]
        means[(split, name)] = sum(vals) / len(vals)
    return means


def write_doc(path: Path, args, rows, means) -> None:
    cmd = (f"python bench/variants.py --rounds {args.rounds} --seeds {args.seeds} --splits {args.splits} "
           f"--variants {args.variants}")
    lines = [
        "# Protocol variants against FedAvg (bench/variants.py)", "",
        (f"MNIST t10k, {args.learners} learners, {args.rounds} rounds, Dirichlet alpha 0.5 / IID, the default CNN; "
         "every run audited. Machine: 2 cores, shared with 7 other engineers (wall times inflated)."), "",
        f"Command: `{cmd}`", "",
        "| split | variant | seed | final accuracy | rounds accepted | audit | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, name, seed, acc, accepted, clean, wall, _ in rows:
        lines.append(f"| {split} | {name} | {seed} | {acc:.4f} | {accepted}/{args.rounds} | "
                     f"{'clean' if clean else 'FAILED'} | {wall:.0f} |")
    lines += ["", "| split | variant | mean final accuracy |", "|---|---|---|"]
    lines += [f"| {s} | {n} | {m:.4f} |" for (s, n), m in means.items()]
    lines += ["", "FedAvg (docs/benchmarks/vs_flower.md, Flower, 3 seeds, 20 rounds): " + ", ".join(
        f"{s} {c}: {v}" for (s, c), v in FEDAVG.items()), "",
        "Mean test accuracy after each round (round 0 = initial weights):", ""]
    for split, name, seed, *_, curve in rows:
        lines.append(f"- {split} {name} seed {seed}: " + " ".join(f"{a:.3f}" for a in curve))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
