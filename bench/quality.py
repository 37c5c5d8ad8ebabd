"""Do the quality measures find a degraded learner? Small colearn runs on synthetic digits, many seeds.

Cases: 5 learners with one learner's labels all flipped to other classes (``flip5``); 5 learners
with one keeping a tenth of its items (``tenth5``); 3 learners with half its labels flipped
(``flip3``); on simulated neutrino events with the compact model, 3 learners with one whose events
come from a mis-configured detector: the collection plane dead (``deadplane3``) or every plane read
out 30 % low (``gain3``, opt-in). The degraded learner is ``seed % learners``, so no position is favoured. For each
measure: in how many seeds the degraded learner has the strictly lowest value ("ranked last"); for
the seeds where exact Shapley was computed by retraining, the mean Spearman correlation of each
cheap measure with it. Run: ``python bench/quality.py`` (about 11 minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")
os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cohep import config, quality  # noqa: E402
from cohep.runner import run_experiment  # noqa: E402

CHEAP = ("acceptance", "gain", "delta", "agreement", "offset", "combined")
CASES = {"flip5": (5, {"label_flip": 1.0}), "tenth5": (5, {"keep": 0.1}), "flip3": (3, {"label_flip": 0.5})}
#: (b) a mis-configured detector: the degraded learner's events come from its own simulation with
#: this detector setting (every plane read out 30 % low; the collection plane dead)
EVENT_CASES = {"gain3": (3, {"plane_gain": [0.7, 0.7, 0.7]}), "deadplane3": (3, {"dead_planes": [2]})}


def simulate_events(folder: Path, detector_cases: dict) -> tuple[Path, dict[str, Path]]:
    """The common event pool (2,400 events) and, per case, the degraded learner's own 600 events."""
    from cohep.lartpc.simulate import SimulationConfig, simulate

    pool = simulate(2400, folder / "pool.h5", seed=2026, workers=2, progress=False)
    own = {}
    for case, (_, detector) in detector_cases.items():
        cfg = SimulationConfig.from_dict({"detector": detector})
        own[case] = simulate(600, folder / f"{case}.h5", seed=7, workers=2, config=cfg, progress=False)
    return Path(pool), {k: Path(v) for k, v in own.items()}


def last(values: list[float], i: int) -> bool:
    """The degraded learner has the strictly lowest finite value (a tie or an unknown is not a find)."""
    v = values[i]
    return math.isfinite(v) and all(not math.isfinite(w) or v < w for j, w in enumerate(values) if j != i)


def spearman(a: list[float], b: list[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return math.nan

    def ranks(x):
        order = x.argsort(kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for val in np.unique(x):  # ties share their mean rank
            r[x == val] = r[x == val].mean()
        return r

    ra, rb = ranks(a[ok]), ranks(b[ok])
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--shapley-seeds", type=int, default=4, help="Seeds per case with exact Shapley by retraining.")
    ap.add_argument("--rounds", type=int, default=10)
    # gain3 (about 5 more minutes) is opt-in: the default set finishes in about 11 minutes here
    ap.add_argument("--cases", default=",".join([*CASES, "deadplane3"]), help=f"of {', '.join([*CASES, *EVENT_CASES])}")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from conftest import synthetic_digits, write_mnist_idx

    tmp = Path(tempfile.mkdtemp(prefix="cohep-quality-"))
    x, y = synthetic_digits(1200, seed=0)
    mnist = write_mnist_idx(tmp / "mnist", x, y)
    t_all = time.perf_counter()
    wanted = args.cases.split(",")
    event_cases = {c: EVENT_CASES[c] for c in wanted if c in EVENT_CASES}
    pool, own = simulate_events(tmp, event_cases) if event_cases else (None, {})
    summary = {}
    for case in wanted:
        n, how = CASES[case] if case in CASES else (EVENT_CASES[case][0], {"path": str(own[case])})
        found = {m: 0 for m in CHEAP + ("loo", "shapley")}
        rho = {m: [] for m in CHEAP}
        shapley_runs = 0
        seconds = {"run": 0.0, "shapley": 0.0, "trainings": 0}
        for seed in range(args.seeds):
            bad = seed % n
            if case in CASES:
                data = {"kind": "mnist", "path": str(mnist), "limit": 1200, "holdout": 200}
                train = {"epochs": 1.0, "batch_size": 32}
            else:  # event images, the compact model
                data = {"kind": "events", "path": str(pool), "holdout": 400}
                train = {"epochs": 1.0, "batch_size": 32, "lr": 2e-3}
            cfg = config.load(None, {
                "experiment": {"learners": n, "rounds": args.rounds, "seed": seed}, "data": data,
                "model": {"name": "mnist_cnn" if case in CASES else "compact"}, "train": train,
                "degrade": {"learner": bad, **how},
            })
            out = tmp / f"{case}-{seed}"
            t0 = time.perf_counter()
            run_experiment(cfg, out, figure=False)
            seconds["run"] += time.perf_counter() - t0
            rep = quality.from_run(out)
            qs = sorted(rep.learners, key=lambda q: q.learner)
            for m in CHEAP:
                found[m] += last([getattr(q, m) for q in qs], bad)
            if seed < args.shapley_seeds and case in CASES:
                c = quality.contributions_of_run(out)
                exact = c.values["shapley_exact"]
                found["shapley"] += last(exact, bad)
                found["loo"] += last(c.values["leave_one_out"], bad)
                seconds["shapley"] += sum(v["seconds"] for v in c.cost.values())
                seconds["trainings"] += sum(v["trainings"] for v in c.cost.values())
                shapley_runs += 1
                for m in CHEAP:
                    rho[m].append(spearman([getattr(q, m) for q in qs], exact))
            print(f"{case} seed {seed}: degraded {bad}, combined ranks it {[q.learner for q in rep.ranked()].index(bad) + 1} "
                  f"of {n}", flush=True)
        summary[case] = (found, rho, shapley_runs, seconds)
    print()
    for case, (found, rho, k, sec) in summary.items():
        n, how = CASES[case] if case in CASES else (EVENT_CASES[case][0], {"detector": EVENT_CASES[case][1]})
        print(f"## {case}: {n} learners, degraded learner {how}, {args.seeds} seeds x {args.rounds} rounds "
              f"(runs {sec['run']:.0f} s; Shapley + leave-one-out on {k} seeds: {sec['trainings']} trainings, "
              f"{sec['shapley']:.0f} s)")
        print(f"| measure | ranked last | Spearman with exact Shapley ({k} seeds) |")
        print("|---|---|---|")
        for m in CHEAP:
            r = [x for x in rho[m] if math.isfinite(x)]
            print(f"| {m} | {found[m]}/{args.seeds} | {np.mean(r):+.2f} (n={len(r)}) |" if r else
                  f"| {m} | {found[m]}/{args.seeds} | - |")
        for m in ("loo", "shapley"):
            print(f"| {m} (retraining) | {found[m]}/{k} | - |")
        print()
    print(f"total {time.perf_counter() - t_all:.0f} s")
    if "flip5" in summary:
        found = summary["flip5"][0]
        best = max(CHEAP, key=lambda m: (found[m], m == "combined"))
        print(f"degraded learner ranked last: {found[best]}/{args.seeds} seeds (best measure: {best})")


if __name__ == "__main__":
    main()
