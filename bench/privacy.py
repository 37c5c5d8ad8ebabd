"""Accuracy against privacy budget: colearn on MNIST with every learner's proposals trained by DP-SGD.

For each epsilon budget (``inf``: no differential privacy, the baseline) one colearn run of 5
learners; the noise multiplier is derived from the budget for the proposals each learner is planned
to make (``ceil(rounds / learners)``). Reported per budget: final mean test accuracy, proposals made
and accepted, the noise multiplier, the mean spent epsilon and how many learners stopped at their
budget. Writes ``docs/benchmarks/privacy.md`` and ``docs/figures/privacy_accuracy.png``.

Run: ``python bench/privacy.py --data ../shared/data/mnist`` (default size, a few minutes on 2
shared cores); full size: ``--limit 10000 --rounds 20 --width 32``.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")

import torch

from cohep.config import experiment as config
from cohep.run.local import run_experiment
from cohep.testing import bench

HOME = bench.Home.of(__file__)


def parser():
    p = bench.parser(__doc__)
    bench.add_mnist(p, HOME, help="MNIST folder (t10k IDX files) or npz")
    p.add_argument("--budgets", default="1,3,8,inf", help="comma-separated epsilon budgets; inf: no DP")
    p.add_argument("--learners", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--limit", type=int, default=3000, help="MNIST items used (10000: all of t10k)")
    p.add_argument("--epochs", type=float, default=2.0, help="passes over a learner's train set per proposal")
    p.add_argument("--batch-size", type=int, default=64, help="expected (Poisson) batch size")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate of the no-DP baseline")
    #: noisy gradients: plain SGD with a large step (Adam rescales every coordinate's noise up to the
    #: step size and does not learn at sigma ~ 1 in this few steps)
    p.add_argument("--dp-optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--dp-lr", type=float, default=1.0)
    p.add_argument("--dp-momentum", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--width", type=int, default=8, help="mnist_cnn width (32: the model's default)")
    bench.add_seed(p, 0)
    bench.add_threads(p, 2)
    bench.add_doc(p, HOME.doc())
    bench.add_figure(p, HOME.figures / "privacy_accuracy.png")
    return p


def budgets(text: str) -> list[float]:
    out = [float(b) for b in text.split(",")]
    if any(not (b > 0) for b in out):
        raise ValueError("every budget must be > 0 (inf for no privacy)")
    return out


def one_run(args, epsilon: float, out: Path) -> dict:
    private = not math.isinf(epsilon)
    privacy = {"epsilon": epsilon, "max_grad_norm": args.max_grad_norm} if private else {}
    train = ({"optimizer": args.dp_optimizer, "lr": args.dp_lr, "momentum": args.dp_momentum} if private
             else {"optimizer": "adam", "lr": args.lr})
    cfg = config.load(None, {
        "experiment": {"protocol": "paper", "name": f"privacy-eps{epsilon:g}", "learners": args.learners, "rounds": args.rounds,
                       "seed": args.seed},
        "data": {"kind": "mnist", "path": args.data, "limit": args.limit, "holdout": 0.2},
        "model": {"name": "mnist_cnn", "params": {"width": args.width}},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "device": "cpu", **train},
        "privacy": privacy,
    })
    start = time.perf_counter()
    result = run_experiment(cfg, out, figure=False)
    seconds = time.perf_counter() - start
    rows = [r for r in result.records if r.round > 0 and r.is_proposer]
    spent = result.privacy or []
    return {
        "epsilon": epsilon, "accuracy": result.final_accuracy, "proposed": sum(not r.void for r in rows),
        "accepted": sum(result.accepted), "void": sum(r.void for r in rows),
        "noise": sum(p["noise_multiplier"] for p in spent) / len(spent) if spent else 0.0,
        "spent": sum(p["epsilon_spent"] for p in spent) / len(spent) if spent else math.inf,
        "max_spent": max((p["epsilon_spent"] for p in spent), default=math.inf),
        "delta": spent[0]["delta"] if spent else None,
        "stopped": sum(bool(p["stopped"]) for p in spent), "seconds": seconds,
    }


def plot(results: list[dict], path: Path, args) -> None:
    plt = bench.pyplot()
    finite = [r for r in results if math.isfinite(r["epsilon"])]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if finite:
        ax.plot([r["epsilon"] for r in finite], [r["accuracy"] for r in finite], "o-", label="DP-SGD (Opacus)")
        ax.set_xscale("log")
        ax.set_xticks([r["epsilon"] for r in finite], [f"{r['epsilon']:g}" for r in finite])
        ax.minorticks_off()
    for r in results:
        if math.isinf(r["epsilon"]):
            ax.axhline(r["accuracy"], color="grey", ls="--", label="no DP (epsilon = inf)")
    ax.set_xlabel("epsilon budget per learner")
    ax.set_ylabel("final mean test accuracy")
    ax.set_title(f"MNIST colearn, {args.learners} learners, {args.rounds} rounds", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    bench.save_figure(fig, path, dpi=120)


def write_doc(results: list[dict], args, command: str, path: Path, figure: Path) -> None:
    delta = next((r["delta"] for r in results if r["delta"] is not None), None)
    lines = [
        "# Privacy: accuracy against epsilon budget (MNIST)",
        "",
        f"Colearn on MNIST t10k ({args.limit} items, 20 % held out), {args.learners} learners, {args.rounds} rounds, "
        f"`mnist_cnn` width {args.width}, {args.epochs:g} epoch(s) per proposal at batch {args.batch_size}. "
        f"DP runs: {args.dp_optimizer} lr {args.dp_lr:g} (momentum {args.dp_momentum:g}), Poisson sampling, "
        f"clipping norm {args.max_grad_norm:g}, RDP accountant, "
        + (f"delta {delta:.0e} per learner. " if delta else ""),
        ("Each learner's noise multiplier is derived from its budget for the proposals it is planned to make "
         f"(ceil(rounds / learners) = {math.ceil(args.rounds / args.learners)}); `inf` is the same run without "
         f"differential privacy, trained with Adam lr {args.lr:g} (the usual non-private setting; with DP "
         "noise at sigma ~ 1 Adam did not learn in this few steps, plain SGD with a large step does)."),
        "",
        "Command:",
        "",
        f"```\n{command}\n```",
        "",
        *bench.table(("epsilon budget", "final test accuracy", "proposals made", "accepted", "void rounds",
                      "noise multiplier", "mean epsilon spent", "max epsilon spent", "learners stopped",
                      "wall time (s)"), [row(r) for r in results], align="r" * 10),
    ]
    rel = os.path.relpath(figure, path.parent)
    lines += [
        "",
        f"![accuracy against epsilon]({rel})",
        "",
        (f"Machine: {bench.machine()}, load average {bench.load_average():.1f} at the end: other jobs inflate "
         "the wall times (the accuracies and epsilons are not: they follow from the seed)."),
        "",
    ]
    bench.write_doc(path, "\n".join(lines))


def row(r: dict) -> tuple:
    """One budget's row of the results table."""
    eps = "inf (no DP)" if math.isinf(r["epsilon"]) else f"{r['epsilon']:g}"
    spent = "-" if math.isinf(r["spent"]) else f"{r['spent']:.3f}"
    top = "-" if math.isinf(r["max_spent"]) else f"{r['max_spent']:.3f}"
    noise = "-" if math.isinf(r["epsilon"]) else f"{r['noise']:.3f}"
    return (eps, f"{r['accuracy']:.4f}", r["proposed"], r["accepted"], r["void"], noise, spent, top, r["stopped"],
            f"{r['seconds']:.0f}")


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    try:
        chosen = budgets(args.budgets)
    except ValueError as exc:
        ap.error(f"--budgets: {exc}")
    torch.set_num_threads(args.threads)
    command = HOME.command(argv if argv is not None else sys.argv[1:])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for eps in chosen:
            r = one_run(args, eps, Path(tmp) / f"eps{eps:g}")
            results.append(r)
            print(f"epsilon {eps:g}: accuracy {r['accuracy']:.4f}, proposals {r['proposed']} "
                  f"(accepted {r['accepted']}, void {r['void']}), noise {r['noise']:.3f}, "
                  f"spent {r['spent']:.3f} (max {r['max_spent']:.3f}), stopped {r['stopped']}, {r['seconds']:.0f} s",
                  flush=True)
    plot(results, args.figure, args)
    write_doc(results, args, command, args.doc, args.figure)
    print("accuracy against epsilon: " + ", ".join(f"{r['epsilon']:g}: {r['accuracy']:.4f}" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
