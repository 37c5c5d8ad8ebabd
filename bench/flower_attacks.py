"""Under attack: cohep against Flower's FedAvg, FedMedian, FedTrimmedAvg and Krum, same task and attacker.

MNIST t10k, 5 learners of which 1 malicious (``--learners 6 --malicious 2`` for two), the same split,
CNN, initial weights and local training on both sides (see ``bench/vs_flower.py``). The attacker is
the first member(s) of ``[attack]`` on both sides: in cohep it crafts its proposal when drawn (and
votes honestly); in Flower its client sends the crafted update every round it is sampled. Flower's
robust strategies need every client's update, so every Flower system here trains all clients every
round (5 client-epochs a round against cohep's 1). Attacks are ``cohep.research.attacks``' weight attacks that
a stateless Flower client can play (``stale`` and ``little_is_enough`` replay adopted weights, which a
Flower client rebuilt every round does not keep) and the data attack ``label_flip``.

Writes ``docs/benchmarks/flower_attacks.md`` and ``docs/figures/flower_attacks.png``; the last line
is the final accuracy per system, averaged over the attacks run.

    python bench/flower_attacks.py                  # default: 1 seed, 5 rounds, 3,000 images
    python bench/flower_attacks.py --seeds 3 --rounds 20 --limit 0 --holdout 2000 \\
        --attacks sign_flip,noise,scaled,random,nan,free_rider,label_flip             # the full size
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from cohep.studies.baselines.flower import FlowerPlan, shutdown
from cohep.testing import bench

HOME = bench.Home.of(__file__)
#: the comparison's machinery: the same task, measures and pages as bench/vs_flower.py
vs_flower = bench.load_script(HOME.script.with_name("vs_flower.py"))
Measure = vs_flower.Measure

FLOWER_SYSTEMS = {"FedAvg": FlowerPlan("fedavg"), "FedMedian": FlowerPlan("fedmedian"),
                  "FedTrimmedAvg": FlowerPlan("fedtrimmedavg"), "Krum": FlowerPlan("krum")}
#: cohep systems: name -> config overrides (protocol variants are one more line each)
COHEP_SYSTEMS: dict[str, dict] = {"cohep": {}}


def table(results: list[Measure], attacks: list[str], systems: list[str]) -> list[str]:
    rows = []
    for attack in attacks:
        cells = []
        for system in systems:
            finals = [m.final for m in results if m.system == system and m.split == attack]
            sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
            cells.append(f"{statistics.fmean(finals):.4f} ± {sd:.4f}" if finals else "")
        rows.append((attack, *cells))
    return bench.table(("attack", *systems), rows)


def plot(results: list[Measure], attacks: list[str], systems: list[str], path: Path, title: str) -> Path:
    plt = bench.pyplot()
    cols = min(4, len(attacks))
    rows = -(-len(attacks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, attack in zip(axes.flat, attacks):
        for system in systems:
            ms = [m for m in results if m.system == system and m.split == attack]
            if ms:
                length = min(len(m.accuracy) for m in ms)
                ax.plot(range(length), [statistics.fmean(m.accuracy[r] for m in ms) for r in range(length)],
                        marker=".", label=system)
        ax.set(title=attack, xlabel="round", ylabel="test accuracy", ylim=(0.0, 1.0))
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    axes.flat[0].legend(loc="lower right", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return bench.save_figure(fig, path)


def parser():
    ap = bench.parser(__doc__)
    bench.add_mnist(ap, HOME)
    ap.add_argument("--attacks", default="sign_flip,scaled")
    bench.add_seed_count(ap, 1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--learners", type=int, default=5)
    ap.add_argument("--malicious", type=int, default=1, help="the first N members attack")
    ap.add_argument("--limit", type=int, default=3000, help="use the first N images only (0: all 10,000)")
    ap.add_argument("--holdout", type=int, default=600, help="images held out for testing (the last N)")
    ap.add_argument("--split", default="iid", choices=["iid", "dirichlet"])
    ap.add_argument("--systems", default=",".join([*COHEP_SYSTEMS, *FLOWER_SYSTEMS]))
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--merge", default=None, help="results.json files to assemble instead of running")
    bench.add_out(ap, "runs/bench-flower-attacks", type=Path)
    bench.add_doc(ap, HOME.doc())
    bench.add_figure(ap, HOME.figures / "flower_attacks.png")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    attacks, systems = args.attacks.split(","), args.systems.split(",")
    unknown = [s for s in systems if s not in COHEP_SYSTEMS and s not in FLOWER_SYSTEMS]
    if unknown:
        ap.error(f"unknown system {unknown[0]} (known: {', '.join([*COHEP_SYSTEMS, *FLOWER_SYSTEMS])})")
    out, results, started = args.out, [], time.perf_counter()
    if args.merge:
        results = [Measure(**m) for f in args.merge.split(",") for m in json.loads(Path(f).read_text())]
        attacks = list(dict.fromkeys(m.split for m in results))
        systems = [s for s in [*COHEP_SYSTEMS, *FLOWER_SYSTEMS] if any(m.system == s for m in results)]
    command = HOME.command(sys.argv[1:] if argv is None else argv)
    try:
        for attack in attacks if not args.merge else ():
            for seed in range(args.seeds):
                cfg = vs_flower.base_config(args.data, args.split, seed, args.rounds, args.learners,
                                            attack={"kind": attack, "members": args.malicious},
                                            data={"limit": args.limit or None, "holdout": args.holdout})
                for system in systems:
                    t0 = time.perf_counter()
                    if system in COHEP_SYSTEMS:
                        m = vs_flower.measure_cohep(system, cfg.replace(**COHEP_SYSTEMS[system]),
                                                    out / f"{system}-{attack}-{seed}")
                    else:
                        m = vs_flower.measure_flower(system, cfg, FLOWER_SYSTEMS[system], args.cpus)
                    m.split = attack  # the bench's axis is the attack; the split is the same for all
                    results.append(m)
                    vs_flower.write_json(results, out / "results.json", command)  # kept if a later run fails
                    print(f"{attack:<12} seed {seed} {system:<13} final {m.final:.4f}  "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        shutdown()
    if args.merge:
        command = "\n".join(filter(None, [vs_flower.commands_of(args.merge.split(",")), command]))
    else:
        vs_flower.write_json(results, out / "results.json", command)
    tables = table(results, attacks, systems)
    print("\n".join(tables))
    title = f"Under attack: {args.malicious} of {args.learners} malicious, {args.split}, MNIST t10k"
    fig = plot(results, attacks, systems, args.figure, title)
    doc = bench.write_doc(args.doc, vs_flower.page(
        args.doc, "cohep vs Flower's robust strategies under attack",
        [(f"MNIST t10k{f' (first {args.limit} images)' if args.limit else ''}, "
          f"{args.learners} learners of which the first {args.malicious} malicious, {args.split} split, "
          f"`mnist_cnn`, {args.rounds} rounds, seeds {', '.join(str(s) for s in range(args.seeds))}; final test "
          f"accuracy on the {args.holdout} held-out images (mean ± sd over seeds). Both sides get the same split, initial "
          "weights, local training (one pass over a learner's train share per client-epoch) and attacker "
          "(`cohep.research.attacks`: a weight attack crafts from the honest update, `label_flip` trains on flipped labels). "
          "cohep: one proposer a round, the attacker crafts when drawn, every other member votes on its vote set. "
          "Flower 1.41 (simulation engine, its own strategies, `cohep.studies.baselines.flower`): every client trains "
          "every round (robust aggregation needs them all: 5 client-epochs a round); Krum assumes "
          f"{max(1, args.malicious)} attacker(s), FedTrimmedAvg cuts 20 % at each end. "
          + ("" if args.merge else f"Bench time {time.perf_counter() - started:.0f} s.")), "", "Command:"],
        command, tables, fig,
        [("Not run through Flower: `stale` and `little_is_enough` (they replay adopted weights; a Flower client "
         "is rebuilt every round and keeps none), `backdoor` (clean accuracy does not show it), `collude` "
         "(Flower clients do not vote)."), "",
         f"Machine: {bench.machine()}; only accuracies are reported here."]))
    print(f"\nwrote {doc}, {fig}" + ("" if args.merge else f", {out / 'results.json'}"))
    means = {s: statistics.fmean(m.final for m in results if m.system == s) for s in systems}
    print("under attack, final accuracy averaged over " + ", ".join(attacks) + ": "
          + ", ".join(f"{s} {v:.3f}" for s, v in means.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
