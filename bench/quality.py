"""Do the quality measures find a degraded learner? Small colearn runs on synthetic digits, many seeds.

Cases: 5 learners with one learner's labels all flipped to other classes (``flip5``); 5 learners
with one keeping a tenth of its items (``tenth5``); 3 learners with half its labels flipped
(``flip3``); on simulated neutrino events with the compact model, 3 learners with one whose events
come from its own simulation (``experiments/quality_<x>_sim.toml``): the collection plane dead
(``deadplane3``), every plane read out 30 % low (``gain3``), three times the wire noise (``noise3``)
or a low-energy neutrino flux (``flux3``). The degraded learner is ``seed % learners``, so no
position is favoured. For each measure: in how many seeds the degraded learner has the strictly
lowest value ("ranked last"); for the seeds where exact Shapley was computed by retraining, the mean
Spearman correlation of each cheap measure with it. Prints the tables and writes them, case by case,
to ``docs/benchmarks/quality.md`` (a rerun replaces only the cases it ran) with one plot per case in
``docs/figures/``. Run: ``python bench/quality.py`` (about 11 minutes on 2 CPU cores); all cases:
``--cases flip5,tenth5,flip3,deadplane3,gain3,noise3,flux3``.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")
os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import torch

from cohep.config import experiment as config
from cohep.run.local import run_experiment
from cohep.studies import quality
from cohep.testing import bench
from cohep.testing.synthetic import synthetic_mnist

HOME = bench.Home.of(__file__)
ROOT = HOME.root

CHEAP = ("acceptance", "gain", "delta", "agreement", "offset", "combined")
CASES = {"flip5": (5, {"label_flip": 1.0}), "tenth5": (5, {"keep": 0.1}), "flip3": (3, {"label_flip": 0.5})}
#: (b) a mis-configured detector, (d) another flux: the degraded learner's events come from its own
#: simulation with this configuration (experiments/quality_<name>_sim.toml)
EVENT_CASES = {"gain3": (3, "gain"), "deadplane3": (3, "deadplane"), "noise3": (3, "noise"), "flux3": (3, "flux")}
#: the page's sections are the cases: ``<!-- case: NAME -->`` ... ``<!-- /case -->``
TAG = "case"


def sim_config_path(case: str) -> Path:
    return ROOT / "experiments" / f"quality_{EVENT_CASES[case][1]}_sim.toml"


def simulate_events(folder: Path, cases: list[str]) -> tuple[Path, dict[str, Path]]:
    """The common event pool (2,400 events) and, per case, the degraded learner's own 600 events."""
    from cohep.lartpc.simulate import load_config, simulate

    pool = simulate(2400, folder / "pool.h5", seed=2026, workers=2, progress=False)
    own = {}
    for case in cases:
        cfg = load_config(sim_config_path(case))
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


def parser():
    ap = bench.parser(__doc__)
    bench.add_seed_count(ap, 10, first=True, help="seeds per case")
    ap.add_argument("--shapley-seeds", type=int, default=4,
                    help="Digit cases: seeds with exact Shapley by retraining (the first ones).")
    # on events one seed's 11 trainings of the compact model took 24 minutes on the shared machine: opt-in
    ap.add_argument("--event-shapley-seeds", type=int, default=0, help="Event cases: seeds with exact Shapley (the first ones).")
    ap.add_argument("--rounds", type=int, default=10)
    # gain3 (about 5 more minutes) is opt-in: the default set finishes in about 11 minutes here
    ap.add_argument("--cases", default=",".join([*CASES, "deadplane3"]), help=f"of {', '.join([*CASES, *EVENT_CASES])}")
    bench.add_doc(ap, HOME.doc(), optional=True,
                  help="Results page to update (its other cases are kept); '' for none.")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="cohep-quality-"))
    mnist = synthetic_mnist(tmp / "mnist", 1200, seed=0)
    t_all = time.perf_counter()
    wanted = args.cases.split(",")
    unknown = [c for c in wanted if c not in CASES and c not in EVENT_CASES]
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)} (known: {', '.join([*CASES, *EVENT_CASES])})")
    event_cases = [c for c in wanted if c in EVENT_CASES]
    pool, own = simulate_events(tmp, event_cases) if event_cases else (None, {})
    summary = {}
    for case in wanted:
        n, how = CASES[case] if case in CASES else (EVENT_CASES[case][0], {"path": str(own[case])})
        found = {m: 0 for m in CHEAP + ("loo", "shapley")}
        rho = {m: [] for m in CHEAP}
        shapley_runs = 0
        seconds = {"run": 0.0, "shapley": 0.0, "trainings": 0}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            bad = seed % n
            if case in CASES:
                data = {"kind": "mnist", "path": str(mnist), "limit": 1200, "holdout": 200}
                train = {"epochs": 1.0, "batch_size": 32}
            else:  # event images, the compact model
                data = {"kind": "events", "path": str(pool), "holdout": 400}
                # the settings the event cases were measured with (log1p input, no augmentation):
                # augmentation and per-event normalisation, today's defaults, are made to hide
                # exactly the detector differences these cases plant
                train = {"epochs": 1.0, "batch_size": 32, "lr": 2e-3, "augment": {"enabled": False}}
            model = ({"name": "mnist_cnn"} if case in CASES
                     else {"name": "compact", "params": {"normalise": "log1p", "planes": "all"}})
            cfg = config.load(None, {
                "experiment": {"protocol": "paper", "learners": n, "rounds": args.rounds, "seed": seed}, "data": data,
                "model": model, "train": train,
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
            if seed < args.first_seed + (args.shapley_seeds if case in CASES else args.event_shapley_seeds):
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
    total = time.perf_counter() - t_all
    shutil.rmtree(tmp, ignore_errors=True)
    sections = {case: case_section(case, *summary[case], seeds=args.seeds, rounds=args.rounds) for case in summary}
    print()
    for text in sections.values():
        print(text)
    print(f"total {total:.0f} s")
    if args.doc:
        command = HOME.command(sys.argv[1:] if argv is None else argv)
        for case, (found, *_rest) in summary.items():
            plot_case(case, found, args.seeds, args.doc.resolve().parent.parent / "figures" / f"quality-{case}.png")
        sections = {case: text + f"\n![{case}](../figures/quality-{case}.png)\n" for case, text in sections.items()}
        write_doc(args.doc, sections, command=command, seconds=total)
        print(f"wrote {args.doc}")
    if "flip5" in summary:
        found = summary["flip5"][0]
        best = max(CHEAP, key=lambda m: (found[m], m == "combined"))
        print(f"degraded learner ranked last: {found[best]}/{args.seeds} seeds (best measure: {best})")
    return 0


def describe(case: str) -> str:
    """How the case degrades its learner: the [degrade] setting, or its simulation file's settings."""
    if case in CASES:
        return f"`{CASES[case][1]}`"
    path = sim_config_path(case)
    body = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return f"events from `{path.relative_to(ROOT)}` (`{'; '.join(body)}`)"


def case_section(case: str, found: dict, rho: dict, k: int, sec: dict, *, seeds: int, rounds: int) -> str:
    """One case's markdown: what was run, and per measure the finds and the Spearman with exact Shapley."""
    n = CASES[case][0] if case in CASES else EVENT_CASES[case][0]
    lines = [f"### {case}: {n} learners, degraded learner {describe(case)}, {seeds} seeds x {rounds} rounds",
             "",
             (f"Runs {sec['run']:.0f} s; exact Shapley + leave-one-out by retraining on {k} seeds: "
              f"{sec['trainings']} trainings, {sec['shapley']:.0f} s. Chance of ranking a given learner last: "
              f"{seeds}/{n} = {seeds / n:.1f} of {seeds} seeds."),
             "",
             *bench.table(("measure", "ranked last", f"Spearman with exact Shapley ({k} seeds)"),
                          [*((m, f"{found[m]}/{seeds}", spearman_cell(rho[m])) for m in CHEAP),
                           *((f"{m} (retraining)", f"{found[m]}/{k}", "-") for m in ("loo", "shapley"))])]
    return "\n".join(lines) + "\n"


def spearman_cell(values: list[float]) -> str:
    """The mean of the finite correlations and how many there were, or "-" for none."""
    r = [x for x in values if math.isfinite(x)]
    return f"{np.mean(r):+.2f} (n={len(r)})" if r else "-"


def plot_case(case: str, found: dict, seeds: int, path: Path) -> Path:
    """Bars: in how many seeds each cheap measure ranked the degraded learner last; chance as a line."""
    plt = bench.pyplot()
    n = CASES[case][0] if case in CASES else EVENT_CASES[case][0]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.bar(CHEAP, [found[m] for m in CHEAP], color=["tab:red" if m == "combined" else "tab:blue" for m in CHEAP])
    ax.axhline(seeds / n, color="k", ls="--", lw=0.8, label="chance")
    ax.set_ylim(0, seeds)
    ax.set_ylabel(f"ranked last (of {seeds} seeds)")
    ax.set_title(f"{case}: is the degraded learner ranked last?", fontsize=10)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return bench.save_figure(fig, path)


def write_doc(path: Path, sections: dict[str, str], *, command: str, seconds: float) -> Path:
    """The results page: this header, then every case's section, those of cases not rerun kept."""
    header = (
        "# Benchmark: data-set quality (`bench/quality.py`)\n\n"
        "Do the cheap quality measures (`src/cohep/studies/quality.py`, docs/quality.md) rank a degraded learner "
        "last? Small colearn runs, many seeds; the degraded learner is `seed % learners`; \"ranked last\" = "
        "strictly lowest value (a tie is not a find). Digit cases: synthetic digits (1,200 items, 200 held "
        "out), `mnist_cnn`. Event cases: 2,400 simulated events (seed 2026), 400 held out, the degraded "
        "learner's own 600 events (seed 7) from the named simulation file, `compact`, Adam 2e-3. One epoch "
        "per proposal. Exact Shapley = held-out accuracy after retraining every coalition (one proposal's "
        "budget) on the first seeds.\n\n"
        f"Machine: {bench.machine()}; one torch thread. Timings are inflated when other jobs share it; "
        "the counts do not depend on it (every run is seeded).\n\n"
        f"Last command: `{command}` ({seconds:.0f} s). Each case below records the run that produced it; "
        "a rerun of some cases replaces only their sections.\n"
    )
    return bench.write_doc(path, sections, head=header, tag=TAG)


if __name__ == "__main__":
    sys.exit(main())
