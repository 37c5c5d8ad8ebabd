"""cohep against Flower's FedAvg on the same task: MNIST t10k, 5 learners, the same CNN, split and start.

Both sides come from one experiment config: the same split indices (IID, Dirichlet alpha = 0.5), the
same initial weights and the same local training (one client-epoch = one pass over a learner's train
share with the ``[train]`` optimizer). cohep runs its protocol (``cohep.run.local.run_experiment``, embedded
chain); Flower runs its simulation engine (``cohep.studies.baselines.flower``). Systems:

* ``cohep``: one proposer a round (1 client-epoch per round), every other member votes;
* ``cohep-avg2e-loss``: two proposers of half an epoch each, one vote on their average, judged on
  the vote-set loss (equal compute: one client-epoch per round; within 1 point of FedAvg-1 on both
  splits in bench/variants.py);
* ``cohep-avg5e-loss``: five proposers of 1/5 epoch each, the same vote (equal compute);
* ``cohep-avg5-loss``: five proposers of one epoch each, the same vote (full participation, 5
  client-epochs per round). Both measured in docs/protocol_variants.md (bench/variants.py); a server
  step (``[round] server_lr`` > 1) lost there, so no system here has one.
* ``fedavg-1``: FedAvg sampling 1 client a round (equal compute);
* ``fedavg-all``: FedAvg with all 5 clients every round (5 client-epochs per round).

Per system: test accuracy per round (on the 2,000 held-out images), rounds to 95 %, wall time per
round (median), bytes moved per round and cohep's chain and store share of its round time. Writes
``docs/benchmarks/vs_flower.md`` and ``docs/figures/vs_flower.png``; the last line printed is
``dirichlet 0.5, equal compute: cohep X, FedAvg Y`` (final accuracy, mean over seeds): X is the first
system of ``EQUAL_COMPUTE`` that was measured on the Dirichlet split (``cohep-avg2e-loss``, then
``cohep-avg5e-loss``, then plain ``cohep``), named on the line before it; Y is ``fedavg-1``.

    python bench/vs_flower.py                          # default: 1 seed, 10 rounds
    python bench/vs_flower.py --seeds 3 --rounds 20    # the full size
    python bench/vs_flower.py --seeds 3 --rounds 20 --splits dirichlet --systems cohep,fedavg-1
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("COHEP_PROGRESS", "0")

from cohep.config import experiment as config
from cohep.outputs import rundir
from cohep.run.local import run_experiment
from cohep.studies.baselines.flower import FlowerPlan, run_flower, shutdown
from cohep.testing import bench

HOME = bench.Home.of(__file__)
TARGET = 0.95
#: the round shapes of bench/variants.py, by the names it measured them under (bench/variants.toml)
VARIANTS = bench.overlays(HOME.script.with_name("variants.toml"))

#: cohep systems: name -> config overrides on top of the bench's config (docs/protocol_variants.md)
COHEP_SYSTEMS: dict[str, dict] = {"cohep": {}, **{f"cohep-{name}": VARIANTS[name]
                                                  for name in ("avg2e-loss", "avg5e-loss", "avg5-loss",
                                                               "avg5-ex-either-tol0.005",
                                                               "each5-ex-scr-either-tol0.005")}}


def cohep_system(name: str) -> dict | None:
    """A cohep system's config overrides: a listed one, or ``cohep-VARIANT`` for any variant of
    bench/variants.toml (``cohep-each5-ex-scr0.1-either-tol0.005``); None if neither."""
    if name in COHEP_SYSTEMS:
        return COHEP_SYSTEMS[name]
    return VARIANTS.get(name.removeprefix("cohep-")) if name.startswith("cohep-") else None


#: the cohep systems at FedAvg-1's compute (one client-epoch a round), best first: the last line reports the first measured
EQUAL_COMPUTE = ("cohep-avg2e-loss", "cohep-avg5e-loss", "cohep")
#: Flower systems: name -> plan (FedAvg, clients trained per round; None: all)
FLOWER_SYSTEMS: dict[str, FlowerPlan] = {"fedavg-1": FlowerPlan(clients=1), "fedavg-all": FlowerPlan()}
SPLITS = {"iid": "IID", "dirichlet": "Dirichlet alpha = 0.5"}


@dataclass
class Measure:
    """One system on one split and seed."""

    system: str
    split: str
    seed: int
    accuracy: list[float]  #: round 0 (initial weights) .. last round
    round_seconds: list[float]
    bytes_per_round: float
    client_epochs: float  #: training passes per round, summed over clients
    shares: dict[str, float] = field(default_factory=dict)  #: cohep: share of round time per stage

    @property
    def final(self) -> float:
        return self.accuracy[-1]

    @property
    def rounds_to_target(self) -> int | None:
        return next((r for r, a in enumerate(self.accuracy) if r > 0 and a >= TARGET), None)


def base_config(path: str, split: str, seed: int, rounds: int, learners: int, **sections):
    """The experiment both sides run: the paper's MNIST setting, 2,000 images held out for testing."""
    raw = {
        "experiment": {"protocol": "paper",
                       "name": f"vs-flower-{split}-{seed}", "learners": learners, "rounds": rounds, "seed": seed},
        "data": {"kind": "mnist", "path": path, "holdout": 2000, "split": split, "alpha": 0.5, "vote_fraction": 0.2},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32, "lr": 1e-3},
    }
    return config.load(None, config.merge(raw, sections))


def measure_cohep(name: str, cfg, out: Path) -> Measure:
    """One cohep run; traffic: proposals uploaded, blobs fetched by voters and adopters, calldata."""
    if out.exists():
        shutil.rmtree(out)
    res = run_experiment(cfg, out, figure=False)
    n = cfg.experiment.learners
    rounds = sorted({r.round for r in res.records})
    accuracy = [statistics.fmean(r.test_accuracy for r in res.records if r.round == k) for k in rounds]
    traffic = rundir.read_manifest(out)["traffic"]
    blob = (out / rundir.WEIGHTS).stat().st_size  # every proposal has the same tensors, so the same size
    proposals = sum(1 for r in res.records if r.round > 0 and r.is_proposer and r.digest)
    moved = traffic["bytes_fetched"] + traffic["calldata_bytes"] + proposals * blob
    played = len(res.timings)
    shares = res.time_shares()
    shutil.rmtree(out / rundir.STORE, ignore_errors=True)  # the blobs: MBs per round, not needed after
    return Measure(name, cfg.data.split, cfg.experiment.seed, accuracy, [t.total for t in res.timings],
                   moved / played, cfg.round.proposers * float(cfg.train.epochs), shares | {"learners": n})


def measure_flower(name: str, cfg, plan: FlowerPlan, cpus: int) -> Measure:
    res = run_flower(cfg, plan, cpus=cpus, keep_initialised=True)
    k = cfg.experiment.learners if plan.clients is None else plan.clients
    return Measure(name, cfg.data.split, cfg.experiment.seed, res.accuracy, res.round_seconds,
                   statistics.fmean(res.bytes_per_round), k * float(cfg.train.epochs))


def summary(ms: list[Measure]) -> dict:
    finals = [m.final for m in ms]
    reached = [m.rounds_to_target for m in ms]
    return {
        "final": statistics.fmean(finals), "sd": statistics.stdev(finals) if len(finals) > 1 else 0.0,
        "rounds_to": f"{statistics.fmean(r for r in reached if r is not None):.1f}"
                     + ("" if all(r is not None for r in reached) else f" ({sum(r is None for r in reached)} never)")
                     if any(r is not None for r in reached) else "never",
        "seconds": statistics.median(s for m in ms for s in m.round_seconds),
        "mb": statistics.fmean(m.bytes_per_round for m in ms) / 1e6,
        "client_epochs": ms[0].client_epochs,
        "chain": statistics.fmean(m.shares["chain"] for m in ms) if ms[0].shares else None,
        "store": statistics.fmean(m.shares["store"] for m in ms) if ms[0].shares else None,
    }


def table(results: list[Measure], split: str) -> list[str]:
    def share(v):
        return "" if v is None else f"{100 * v:.2f} %"

    rows = []
    for system in dict.fromkeys(m.system for m in results):
        ms = [m for m in results if m.system == system and m.split == split]
        if not ms:
            continue
        s = summary(ms)
        rows.append((system, f"{s['client_epochs']:g}", f"{s['final']:.4f} ± {s['sd']:.4f}", s["rounds_to"],
                     f"{s['seconds']:.2f}", f"{s['mb']:.2f}", share(s["chain"]), share(s["store"])))
    return bench.table(("system", "client-epochs / round", "final accuracy (mean ± sd)", "rounds to 95 %",
                        "s / round (median)", "MB / round", "chain share", "store share"), rows)


def plot(results: list[Measure], path: Path, title: str) -> Path:
    plt = bench.pyplot()
    splits = list(dict.fromkeys(m.split for m in results))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        for system in dict.fromkeys(m.system for m in results):
            ms = [m for m in results if m.system == system and m.split == split]
            if not ms:
                continue
            length = min(len(m.accuracy) for m in ms)
            mean = [statistics.fmean(m.accuracy[r] for m in ms) for r in range(length)]
            ax.plot(range(length), mean, marker=".", label=f"{system} ({len(ms)} seed{'s' * (len(ms) > 1)})")
        ax.axhline(TARGET, color="grey", lw=0.7, ls=":")
        ax.set(title=SPLITS.get(split, split), xlabel="round", ylabel="test accuracy", ylim=(0.0, 1.0))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return bench.save_figure(fig, path)


def write_json(results: list[Measure], path: Path, command: str) -> None:
    """The measures, and beside them (``command.txt``) the command that made them, for ``--merge``."""
    bench.write_text(path, json.dumps([asdict(m) for m in results], indent=1))
    bench.write_text(path.parent / "command.txt", command)


def commands_of(files: list[str]) -> str:
    """The commands behind merged results (one line each), else nothing."""
    lines = [(Path(f).parent / "command.txt") for f in files]
    return "\n".join(p.read_text().strip() for p in lines if p.exists())


def page(path: Path, title: str, intro: list[str], command: str, tables: list[str], figure: Path,
         notes: list[str]) -> str:
    """A comparison's results page: what ran, the command, the tables, the figure, the notes."""
    return "\n".join([f"# {title}", "", *intro, "", "```", command, "```", "", *tables, "",
                      f"![{title}]({os.path.relpath(figure, path.parent)})", "", *notes, ""])


def parser():
    ap = bench.parser(__doc__)
    bench.add_mnist(ap, HOME)
    bench.add_seed_count(ap, 1)
    ap.add_argument("--seed-list", type=bench.seed_list, default=None,
                    help="these seeds instead (one process per seed, then --merge)")
    ap.add_argument("--merge", default=None, help="results.json files to assemble instead of running")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--learners", type=int, default=5)
    ap.add_argument("--splits", default="iid,dirichlet")
    ap.add_argument("--systems", default=",".join([*COHEP_SYSTEMS, *FLOWER_SYSTEMS]),
                    help="comma-separated: the listed ones, or cohep-VARIANT for a variant of bench/variants.toml")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs Flower's Ray engine may use (one client each)")
    bench.add_out(ap, "runs/bench-vs-flower", type=Path)
    bench.add_doc(ap, HOME.doc())
    bench.add_figure(ap, HOME.figures / "vs_flower.png")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    systems = args.systems.split(",")
    chosen = {s: cohep_system(s) for s in systems if s not in FLOWER_SYSTEMS}
    unknown = [s for s, overrides in chosen.items() if overrides is None]
    if unknown:
        ap.error(f"unknown system {unknown[0]} (known: {', '.join([*COHEP_SYSTEMS, *FLOWER_SYSTEMS])}, "
                 "or cohep-VARIANT for any variant of bench/variants.toml)")
    COHEP_SYSTEMS.update(chosen)
    out = args.out
    results: list[Measure] = []
    if args.merge:
        results = [Measure(**m) for f in args.merge.split(",") for m in json.loads(Path(f).read_text())]
        systems = list(dict.fromkeys(m.system for m in results))
    seeds = args.seed_list or list(range(args.seeds))
    started = time.perf_counter()
    command = HOME.command(sys.argv[1:] if argv is None else argv)
    try:
        for split in args.splits.split(",") if not args.merge else ():
            for seed in seeds:
                cfg = base_config(args.data, split, seed, args.rounds, args.learners)
                for system in systems:
                    t0 = time.perf_counter()
                    if system in COHEP_SYSTEMS:
                        m = measure_cohep(system, cfg.replace(**COHEP_SYSTEMS[system]), out / f"{system}-{split}-{seed}")
                    else:
                        m = measure_flower(system, cfg, FLOWER_SYSTEMS[system], args.cpus)
                    results.append(m)
                    write_json(results, out / "results.json", command)  # kept if a later run fails
                    print(f"{split:<9} seed {seed} {system:<11} final {m.final:.4f}  "
                          f"rounds to 95 %: {m.rounds_to_target}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        shutdown()
    if args.merge:
        command = "\n".join(filter(None, [commands_of(args.merge.split(",")), command]))
    else:
        write_json(results, out / "results.json", command)
    rounds = max(len(m.accuracy) for m in results) - 1
    seed_names = ", ".join(str(s) for s in sorted({m.seed for m in results}))
    tables = []
    for split in dict.fromkeys(m.split for m in results):
        tables += [f"### {SPLITS.get(split, split)}", "", *table(results, split), ""]
        print(f"\n{SPLITS.get(split, split)}")
        print("\n".join(table(results, split)))
    fig = plot(results, args.figure, f"cohep vs Flower FedAvg: MNIST t10k, {args.learners} learners")
    doc = bench.write_doc(args.doc, page(
        args.doc, "cohep vs Flower FedAvg",
        [(f"MNIST t10k (8,000 images dealt to {args.learners} learners, 20 % of each share its vote set, "
         f"2,000 held out for testing), `mnist_cnn`, {rounds} rounds, seeds {seed_names}, "
         "one client-epoch = one pass over a learner's train share (Adam, lr 1e-3, batch 32). Both sides get the "
         "same split indices and initial weights from one experiment config; Flower 1.41's simulation engine "
         "(Ray) runs the clients and its FedAvg aggregates (`cohep.studies.baselines.flower`). Accuracy is on the "
         "held-out images (cohep: the mean over learners of their share of them, the same thing). "
         + ("" if args.merge else f"Bench time {time.perf_counter() - started:.0f} s.")), "", "Command:"],
        command, tables, fig,
        [("Bytes per round: Flower, the weights sent to the sampled clients plus their updates (Flower's own "
         "serialisation); cohep, the proposal written to the store, every blob fetched (voters check it, then "
         "every member fetches the accepted one again) and the calldata of the round's transactions."),
         "",
         (f"Machine: {bench.machine()}, load average {bench.load_average():.1f} at the end: wall times are "
         "inflated and noisy on a shared machine; Flower's Ray engine runs up to 2 clients at once, "
         "cohep's runner runs its members one "
         "after another in one process (every voter scores the proposal, which is in cohep's round time). "
         "The first Flower round includes starting the Ray actors; the table gives medians.")]))
    print(f"\nwrote {doc}, {fig}" + ("" if args.merge else f", {out / 'results.json'}"))
    dirichlet = [m for m in results if m.split == "dirichlet"]
    system = next((s for s in EQUAL_COMPUTE if any(m.system == s for m in dirichlet)), None)
    cohep = [m.final for m in dirichlet if m.system == system]
    fedavg = [m.final for m in dirichlet if m.system == "fedavg-1"]
    if cohep and fedavg:
        print(f"equal compute, cohep system: {system}")
        print(f"dirichlet 0.5, equal compute: cohep {statistics.fmean(cohep):.3f}, FedAvg {statistics.fmean(fedavg):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
