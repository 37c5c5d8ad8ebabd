"""Autonomous nodes on a real Ethereum node: what a round costs, and the fault matrix.

    python bench/nodes.py                 # 3, 5 and 10 members, then the fault matrix
    python bench/nodes.py --members 3     # fewer sizes

Part 1, for each member count: the same experiment (synthetic 28 x 28 digits dealt out to the
members, ``mnist_cnn``, one pass per proposal) run by ``cohep node`` processes on Anvil (block time
0.25 s) and by the in-process runner on the embedded chain. Per round: wall time, chain time (all
members' JSON-RPC calls and transactions, summed), transactions and blob bytes fetched.

Part 2: the fault matrix of ``cohep.testing.localnet.run_drills`` (3 honest nodes and one dishonest member);
one row per case and, last, ``faults survived: X/Y, audit: clean|FAILED``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")

from cohep.testing import bench
from cohep.testing.synthetic import synthetic_digits


def digits(n: int = 1200):
    """The members' data: seeded synthetic digits (the tests' generator), nothing downloaded."""
    return synthetic_digits(n, seed=0)


def nodes_run(members: int, rounds: int, work: Path) -> dict:
    from cohep.testing.localnet import LocalNet, split_npz

    root = work / f"nodes{members}"
    shutil.rmtree(root, ignore_errors=True)
    data = split_npz(*digits(), root / "data", members)
    settings = {"experiment": {"rounds": rounds}, "model": {"name": "mnist_cnn"},
                "chain": {"proposal_window": 80, "vote_window": 80}}
    with LocalNet(root, data, settings=settings) as net:
        coord = net.coordinator()
        t0 = time.perf_counter()
        net.wait(lambda: coord.round() >= 1, 600, "the first round")
        t1 = time.perf_counter()
        net.wait_finished(1800)
        wall = (time.perf_counter() - t1) / max(1, rounds - 1)
        stats = [json.loads((root / f"node{i}" / "node_stats.json").read_text()) for i in range(members)]
        startup = t1 - t0
    return {
        "wall_s": wall, "startup_s": startup,
        "chain_s": sum(s["chain_seconds"] for s in stats) / rounds,
        "txs": sum(s["transactions"] for s in stats) / rounds,
        "gas": sum(s["gas_used"] for s in stats) / rounds,
        "bytes": sum(s["bytes_fetched"] or 0 for s in stats) / rounds,
        "train_s": sum(s["training_seconds"] for s in stats) / rounds,
    }


def runner_run(members: int, rounds: int, work: Path) -> dict:
    import numpy as np

    from cohep.config import experiment as config
    from cohep.run.local import run_experiment

    x, y = digits()
    path = work / "pooled.npz"
    np.savez(path, x=x, y=y)
    cfg = config.load(None, {"experiment": {"learners": members, "rounds": rounds, "seed": 0},
                             "data": {"kind": "mnist", "path": str(path), "holdout": 0.2},
                             "model": {"name": "mnist_cnn"}, "chain": {"vote_window": 80}})
    out = work / f"runner{members}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = run_experiment(cfg, out, figure=False)
    wall = (time.perf_counter() - t0) / rounds
    traffic = json.loads((out / "manifest.json").read_text())["traffic"]
    return {"wall_s": wall, "chain_s": sum(t.chain for t in res.timings) / rounds,
            "txs": traffic["transactions"] / rounds, "gas": traffic["gas_used"] / rounds,
            "bytes": traffic["bytes_fetched"] / rounds, "train_s": sum(t.training for t in res.timings) / rounds}


def parser():
    ap = bench.parser(__doc__)
    ap.add_argument("--members", type=int, nargs="*", default=[3, 5, 10])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="cohep-bench-nodes-"))
    print(f"work folder {work}; {os.cpu_count()} CPU cores")
    print(f"{'members':>7}  {'driver':<22} {'wall s/round':>12} {'chain s/round':>13} {'txs/round':>9} "
          f"{'gas/round':>10} {'MB fetched/round':>16}")
    for n in args.members:
        for name, fn in (("cohep node x n, Anvil", nodes_run), ("in-process, embedded", runner_run)):
            r = fn(n, args.rounds, work)
            print(f"{n:>7}  {name:<22} {r['wall_s']:>12.2f} {r['chain_s']:>13.3f} {r['txs']:>9.1f} "
                  f"{r['gas']:>10.0f} {r['bytes'] / 1e6:>16.2f}", flush=True)
    if args.no_faults:
        return 0
    from cohep.testing.localnet import (
        Adversary,
        LocalNet,
        drill_table,
        run_drills,
        split_npz,
    )

    root = work / "faults"
    shutil.rmtree(root, ignore_errors=True)
    data = split_npz(*digits(), root / "data", 3)
    t0 = time.perf_counter()
    with LocalNet(root, data, adversary=True,
                  settings={"experiment": {"rounds": 4 * (len(Adversary.CASES) + 1) + 2}, "model": {"name": "mnist_cnn"}}) as net:
        drills = run_drills(net, log=lambda text: print(f"  {text}", flush=True))
    print(f"fault matrix: {time.perf_counter() - t0:.0f} s")
    print(drill_table(drills))
    return 0


if __name__ == "__main__":
    sys.exit(main())
