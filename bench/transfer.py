"""Cross-detector transfer: does a model trained on one detector's events classify another's?

    .venv/bin/python bench/transfer.py                    # default size (about 10 min on 2 shared cores)
    .venv/bin/python bench/transfer.py --events 4000 --epochs 8 --rounds 15 --seeds 1,2,3   # full size

Detectors: the realistic presets ``microboone_surface`` (3 mm pitch, 273 V/cm, cosmics, 10 % bad
channels, ADC), ``protodune_sp`` and ``dune_fd`` (4.7-4.8 mm pitch, +-35.7 deg, bipolar induction,
ADC), each with the vertex anywhere in a +-``--shift`` pixel region, and an imported pixel-map
format ``import``: DUNE-FD geometry with MicroBooNE's pitch (3 mm, 2 wires a pixel), in electrons,
written channels-last to an NPZ and read in with ``cohep import`` (another group's files).

1. **Matrix**: a compact model trained on detector A (``--epochs`` proposals, each kept only if it
   scores better on A's vote set), tested on every detector B, for each set-up of ``VARIANTS``:
   ``collection`` (the model's defaults: the collection plane alone, per-event charge normalisation,
   ``[train.augment]``: vertex shift, gain, pitch, dead wires, charge resolution), ``augmented`` (the
   same reading all three planes), ``plain`` (three planes, fixed log1p input scale, no
   augmentation) and the variations tried on the way.
2. **The paper's setting made real**: 3 learners, one per detector (microboone_surface,
   protodune_sp, dune_fd), in colearn (the protocol with the contract; by default every learner
   proposes each round, ``--three-round``), individual (each alone) and centralised (one model on
   all three train sets) modes, ``--rounds`` rounds each, with the ``--three-variant`` set-up; every
   final model scored on all three detectors' test sets.

Prints the tables and, last, ``worst off-diagonal drop: X pts`` (the largest drop from the
diagonal, train-A-test-A, to train-A-test-B, over the three presets and the imported format) of
the collection matrix (else the augmented one); with ``--seeds`` the matrix is the mean over the
training seeds (one seed's entries move by up to 10 points at the full size, docs/physics.md) and
the three-learner runs are made for each seed and shown with their mean.
Writes docs/benchmarks/transfer.md and docs/figures/transfer.png.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Subset

from cohep import models
from cohep.config import experiment as config
from cohep.datasets.source import load_data
from cohep.lartpc import DetectorConfig, SimulationConfig, simulate
from cohep.models.spec import ModelSpec
from cohep.run.local import run_alone, run_colearn
from cohep.run.tasks import learner_seed
from cohep.testing import bench
from cohep.wire.store import WeightStore

HOME = bench.Home.of(__file__)

PRESETS = ("microboone_surface", "protodune_sp", "dune_fd")
SHORT = {"microboone_surface": "uB", "protodune_sp": "PDSP", "dune_fd": "FD", "import": "import"}


def simulate_sets(folder: Path, n: int, shift: int, workers: int) -> dict[str, Path]:
    """One event file per preset, plus the imported pixel-map format."""
    out = {}
    for k, name in enumerate(PRESETS):
        cfg = SimulationConfig(detector=DetectorConfig.preset(name), vertex_row_shift=shift, vertex_col_shift=shift)
        out[name] = Path(simulate(n, folder / f"{name}.h5", seed=100 + k, workers=workers, config=cfg, progress=False))
    # another group's pixel maps: DUNE-FD geometry read out at MicroBooNE's pitch, stored in electrons,
    # channels-last, in an NPZ; brought in with `cohep import`
    det = DetectorConfig.dune_fd(name="import", wire_pitch_mm=(3.0, 3.0, 3.0), wires_per_pixel=2)
    cfg = SimulationConfig(detector=det, vertex_row_shift=shift, vertex_col_shift=shift, image_dtype="float32")
    raw = Path(simulate(n, folder / "import_raw.h5", seed=200, workers=workers, config=cfg, progress=False))
    from cohep.datasets.events import EventFile

    with EventFile(raw) as f:
        x = f.images(np.arange(n)).astype(np.float32)  # ADC counts
        y = np.asarray(f.labels)
        electrons = x * float(f.attrs["electrons_per_unit"])
    npz = folder / "import.npz"
    np.savez(npz, images=np.moveaxis(electrons, 1, -1), labels=np.asarray(["NC", "numu_CC", "nue_CC"])[y])
    h5 = folder / "import.h5"
    cli = [sys.executable, "-m", "cohep", "import", str(npz), "--out", str(h5), "--overwrite"]  # a rerun remakes it
    subprocess.run(cli, check=True, stdout=subprocess.DEVNULL)
    out["import"] = h5
    return out


def split(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train 60 %, vote 15 %, test 25 % (the files' classes are already balanced and shuffled)."""
    a, b = int(0.6 * n), int(0.75 * n)
    idx = np.arange(n)
    return idx[:a], idx[a:b], idx[b:]


#: The training set-ups of the matrix: as cohep trained before (fixed log1p input scale, all three
#: planes, no augmentation); all three planes with per-event charge normalisation plus training-time
#: augmentation of what differs between detectors (vertex position, gain, pitch, dead wires, charge
#: resolution: AUGMENT); variations of that augmented one that were tried (docs/physics.md); and the
#: collection plane alone (today's model default). Each is (model params, ``[train.augment]``, other
#: ``[train]`` settings).
AUGMENT = {"vertex_shift": 15, "charge_scale": 0.3, "pitch_scale": 0.3, "dead_wires": 0.05, "noise": 0.1}
VARIANTS = {
    "plain": ({"normalise": "log1p", "planes": "all"}, {"enabled": False}, {}),
    "augmented": ({"normalise": "event", "planes": "all"}, AUGMENT, {}),
    # wider pitch and dead-wire ranges: +-40 % covers uB's 3 mm against the others' 4.7-4.8 mm (0.63),
    # 10 % dead wires uB's 8 % dead and 2 % noisy channels
    "wide": ({"normalise": "event", "planes": "all"}, {**AUGMENT, "pitch_scale": 0.4, "dead_wires": 0.1}, {}),
    # the same plus cosmic-muon tracks overlaid on the training events (0.5 a window: uB's rate here)
    "cosmics": ({"normalise": "event", "planes": "all"}, {**AUGMENT, "cosmics": 0.5}, {}),
    # the augmented set-up plus view dropout: each view blanked with probability 0.25, so the model
    # cannot lean on the induction planes, whose wire angles and signal shape differ between presets
    "views": ({"normalise": "event", "planes": "all"}, {**AUGMENT, "view_dropout": 0.25}, {}),
    # the augmented set-up with the learning rate annealed (cosine) within each one-epoch proposal:
    # a proposal ends at a small step instead of mid-stride, so the kept weights depend less on the seed
    "cosine": ({"normalise": "event", "planes": "all"}, AUGMENT, {"lr_schedule": "cosine"}),
    # the augmented set-up, each proposal the mean of its second half's iterates ([train] average_tail):
    # flat minima transfer across domains (SWAD, Cha et al. 2021) and depend less on the seed
    "swa": ({"normalise": "event", "planes": "all"}, AUGMENT, {"average_tail": 0.5}),
    # the augmented set-up with bipolar induction signals folded (|x|: both lobes count as charge)
    # instead of half-dropped by max(x, 0): PDSP's and FD's raw induction planes then read closer to
    # uB's unipolar ones (model.params.bipolar)
    "fold": ({"normalise": "event", "planes": "all", "bipolar": "fold"}, AUGMENT, {}),
    # the augmented set-up reading the collection plane alone (model.params.planes): it is vertical and
    # unipolar in every preset, where the induction planes' angles and signal shape differ
    "collection": ({"normalise": "event", "planes": [2]}, AUGMENT, {}),
    # the same with the pitch range alone widened to +-40 % (dead wires as `collection`): the row of
    # docs/benchmarks/beams.md that transferred across beams as well as augmentation spanning the detectors
    "collection_pitch": ({"normalise": "event", "planes": [2]}, {**AUGMENT, "pitch_scale": 0.4}, {}),
    # the same with the learning rate annealed (cosine) within each proposal: in Figure 5 this brought
    # colearn within a point of central training (docs/results.md)
    "collection_cosine": ({"normalise": "event", "planes": [2]}, AUGMENT, {"lr_schedule": "cosine"}),
}


#: the colearn round of the three-learner runs (``--three-round``): ``one`` proposer a round (the paper's
#: round: each learner's data reaches the shared model one epoch in three rounds), or ``all`` three each
#: round, their one-epoch proposals averaged by declared examples and the average voted on with a
#: tolerance of 0.005 (the full-participation shape level with FedAvg on MNIST, docs/protocol_variants.md)
THREE_ROUNDS = {
    "one": {},
    "all": {"round": {"proposers": 3, "combine": "average", "weighting": "examples"},
            "vote": {"metric": "accuracy_or_loss", "margin": -0.005}},
}


def experiment(args, mode: str, learners: int, variant: str = "augmented", round_shape: str = "one"):
    params, augment, train = VARIANTS[variant]
    return config.load(None, {
        "experiment": {"protocol": "paper", "learners": learners, "rounds": args.rounds, "seed": args.seed, "mode": mode},
        "model": {"name": "compact", "params": params},
        "train": {"epochs": 1.0, "batch_size": 32, "lr": args.lr, "augment": augment, **train},
        **(THREE_ROUNDS[round_shape] if mode == "colearn" else {}),
    })


def score_all(scorer, weights, tests: dict) -> dict[str, float]:
    scorer.load_live(weights)
    return {k: scorer.score(ds).accuracy for k, ds in tests.items()}


def parser():
    ap = bench.parser(__doc__, whole_doc=True)
    ap.add_argument("--events", type=int, default=900, help="events per detector (60 %% train, 15 %% vote, 25 %% test)")
    ap.add_argument("--epochs", type=int, default=3, help="proposals (1 epoch each) for the matrix models")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of the colearn / individual / centralised runs")
    ap.add_argument("--shift", type=int, default=15, help="vertex region: +- pixels in rows and columns")
    ap.add_argument("--lr", type=float, default=2e-3)
    bench.add_seed(ap, 1)
    bench.add_seed_list(ap, None,
                        help="comma-separated training seeds (default: --seed); the matrix shown is their mean, the "
                             "headline its worst drop; the three-learner runs are made once per seed and shown "
                             "with their mean")
    ap.add_argument("--workers", type=int, default=2)
    bench.add_threads(ap, None, help="torch threads (default: all cores; 1 on a machine shared with other jobs)")
    ap.add_argument("--variants", default="augmented,collection", help=f"matrix set-ups, of {', '.join(VARIANTS)} "
                    "(the last line reports collection's when it ran: what transfers best)")
    ap.add_argument("--three-train", type=int, default=None,
                    help="train events per learner in the three-learner runs (default: all of its 60 %%)")
    ap.add_argument("--parts", default="matrix,three", help="matrix, three (the three-learner runs), or both")
    ap.add_argument("--three-variant", default="collection", choices=list(VARIANTS),
                    help="the training set-up of the three-learner runs")
    ap.add_argument("--three-modes", default="colearn,individual,centralised",
                    help="which three-learner runs (comma-separated; the individual and centralised runs do not "
                         "depend on --three-round, so one run of them serves both)")
    ap.add_argument("--three-round", default="all", choices=list(THREE_ROUNDS),
                    help="the colearn round of the three-learner runs: one proposer a round, or all three "
                         "(averaged by examples, the average voted on)")
    bench.add_data_folder(ap)
    bench.add_doc(ap, HOME.doc())
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not set(args.three_modes.split(",")) <= {"colearn", "individual", "centralised"}:
        ap.error(f"--three-modes takes colearn, individual and centralised, got {args.three_modes!r}")
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    t_all = time.perf_counter()
    folder, _tmp = bench.data_folder(args.data)
    t0 = time.perf_counter()
    if all((folder / f"{k}.h5").exists() for k in (*PRESETS, "import")):
        files = {k: folder / f"{k}.h5" for k in (*PRESETS, "import")}
    else:
        files = simulate_sets(folder, args.events, args.shift, args.workers)
    t_sim = time.perf_counter() - t0
    print(f"simulated {len(files)} x {args.events} events in {t_sim:.0f} s", flush=True)

    data = {k: load_data("events", str(p)) for k, p in files.items()}
    parts = {k: split(len(d)) for k, d in data.items()}
    sets = {k: tuple(data[k].subset(ix) for ix in parts[k]) for k in data}  # train, vote, test
    tests = {k: s[2] for k, s in sets.items()}
    first = data[PRESETS[0]]
    specs = {v: ModelSpec("compact", tuple(int(s) for s in first.input_shape), len(first.class_names), dict(p))
             for v, (p, _augment, _train) in VARIANTS.items()}
    seeds = args.seeds or [args.seed]
    args.seed = seeds[0]

    @functools.cache
    def start(variant: str, seed: int):
        """The initial weights of a set-up and seed, built once however many learners share them."""
        return models.initial_weights(specs[variant], seed)

    def learner(cfg, train, vote, test, i, variant="augmented", seed=None):
        seed = args.seed if seed is None else seed
        return models.build_learner(specs[variant], train, vote, test, cfg.train, seed=learner_seed(seed, i),
                                    initial=start(variant, seed))

    used = (args.variants.split(",") if "matrix" in args.parts else []) + [args.three_variant]
    scorers = {v: learner(experiment(args, "individual", 1, v), sets[PRESETS[0]][0], sets[PRESETS[0]][1], None, 99, v)
               for v in dict.fromkeys(used)}

    # 1. the matrix, once per training seed; shown as the mean over seeds
    matrices, per_seed = {}, {}
    t0 = time.perf_counter()
    for variant in (args.variants.split(",") if "matrix" in args.parts else []):
        per_seed[variant] = {}
        for seed in seeds:
            matrix = {}
            for a in files:
                cfg = experiment(args, "individual", 1, variant).replace(
                    experiment={"rounds": args.epochs, "seed": seed})
                lr = learner(cfg, sets[a][0], sets[a][1], None, 0, variant, seed=seed)
                run_alone(cfg, [lr])
                matrix[a] = score_all(scorers[variant], lr.current(), tests)
                print(f"[{variant} seed {seed}] trained on {SHORT[a]}: "
                      + ", ".join(f"{SHORT[b]} {v:.3f}" for b, v in matrix[a].items()), flush=True)
            per_seed[variant][seed] = matrix
        matrices[variant] = mean_matrix(list(per_seed[variant].values()))
    t_matrix = time.perf_counter() - t0

    # 2. three learners, one detector each
    t0 = time.perf_counter()
    three = {}  # seed -> mode -> one row per learner
    for seed in (seeds if "three" in args.parts else []):
        three[seed] = {}
        three_learners(args, sets, tests, learner, specs[args.three_variant], start(args.three_variant, seed), seed,
                       scorers[args.three_variant], three[seed])
    t_three = time.perf_counter() - t0

    lines = report(args, matrices, three, t_sim, t_matrix, t_three, time.perf_counter() - t_all, per_seed)
    print("\n".join(lines))
    write_doc(args, lines, matrices, three, HOME.command(sys.argv[1:] if argv is None else argv))
    if matrices:
        final = next((v for v in ("collection", "augmented") if v in matrices), next(iter(matrices)))
        print(f"worst off-diagonal drop: {worst_drop(matrices[final]):.1f} pts")
    return 0


def three_learners(args, sets, tests, learner, spec, initial, seed, scorer, three) -> None:
    """colearn, individual and centralised runs of three learners with one detector each, from ``seed``
    (``initial``: the set-up's initial weights for it)."""
    if args.three_train:
        sets = {k: (Subset(s[0], range(min(args.three_train, len(s[0])))), *s[1:]) for k, s in sets.items()}
    v, modes = args.three_variant, set(args.three_modes.split(","))

    def setting(mode, n, round_shape="one"):
        return experiment(args, mode, n, v, round_shape).replace(experiment={"seed": seed})

    if "colearn" in modes:
        cfg = setting("colearn", 3, args.three_round)
        lrs = [learner(cfg, sets[k][0], sets[k][1], sets[k][2], i, v, seed) for i, k in enumerate(PRESETS)]
        with tempfile.TemporaryDirectory() as store_dir:
            run_colearn(cfg, lrs, spec, initial, WeightStore(store_dir))
        three["colearn"] = [score_all(scorer, lr.current(), {k: tests[k] for k in PRESETS}) for lr in lrs]
        print(f"seed {seed}: colearn done", flush=True)
    if "individual" in modes:
        cfg = setting("individual", 3)
        lrs = [learner(cfg, sets[k][0], sets[k][1], sets[k][2], i, v, seed) for i, k in enumerate(PRESETS)]
        run_alone(cfg, lrs)
        three["individual"] = [score_all(scorer, lr.current(), {k: tests[k] for k in PRESETS}) for lr in lrs]
        print(f"seed {seed}: individual done", flush=True)
    if "centralised" not in modes:
        return
    cfg = setting("centralised", 1)
    central = learner(cfg, ConcatDataset([sets[k][0] for k in PRESETS]), ConcatDataset([sets[k][1] for k in PRESETS]),
                      None, 0, v, seed)
    run_alone(cfg, [central])
    three["centralised"] = [score_all(scorer, central.current(), {k: tests[k] for k in PRESETS})]


def mean_matrix(matrices: list[dict]) -> dict:
    """Cell by cell mean of several seeds' matrices (same rows and columns)."""
    return {a: {b: float(np.mean([m[a][b] for m in matrices])) for b in matrices[0][a]} for a in matrices[0]}


def worst_drop(matrix: dict) -> float:
    return max(100 * (matrix[a][a] - matrix[a][b]) for a in matrix for b in matrix[a] if b != a)


def report(args, matrices, three, t_sim, t_matrix, t_three, t_all, per_seed=None) -> list[str]:
    out = []
    for variant, m in matrices.items():
        names = list(m)
        runs = (per_seed or {}).get(variant, {})
        title = f"{variant}, mean of seeds {', '.join(map(str, runs))}" if len(runs) > 1 else variant
        out += [f"### Train on A (rows), test on B (columns): {title}", "",
                *bench.table(("train \\ test", *(SHORT[b] for b in names), "worst drop (pts)"),
                             [(SHORT[a], *((f"**{m[a][b]:.3f}**" if a == b else f"{m[a][b]:.3f}") for b in names),
                               f"{max(100 * (m[a][a] - m[a][b]) for b in names if b != a):.1f}") for a in names])]
        if len(runs) > 1:
            spread = {a: {b: 100 * float(np.std([r[a][b] for r in runs.values()])) for b in names} for a in names}
            out += ["", "Seed-to-seed standard deviation of each cell (pts): " + "; ".join(
                f"{SHORT[a]}: " + " ".join(f"{spread[a][b]:.1f}" for b in names) for a in names) + ".",
                    "Worst drop of each seed's own matrix: " + ", ".join(
                f"seed {s} {worst_drop(r):.1f}" for s, r in runs.items()) + " pts."]
        out += ["", f"worst off-diagonal drop ({variant}): {worst_drop(m):.1f} pts", ""]
    for seed, runs in three.items():
        out += three_table(runs, args.three_variant, args.three_round, f"seed {seed}")
    if len(three) > 1:
        out += three_table(mean_three(list(three.values())), args.three_variant, args.three_round,
                           f"mean of seeds {', '.join(map(str, three))}")
        counted = [f"seed {seed} {sum(beats(runs))}/3" for seed, runs in three.items() if beats(runs)]
        if counted:
            out += ["Per seed, learners that beat their individual selves on both other detectors: "
                    + ", ".join(counted) + ".", ""]
    out += [(f"time: simulation {t_sim:.0f} s, matrix {t_matrix:.0f} s, three-learner runs {t_three:.0f} s, "
            f"total {t_all:.0f} s")]
    return out


def mean_three(runs: list[dict]) -> dict:
    """Entry by entry mean of several seeds' three-learner results (the modes all seeds have)."""
    modes = [m for m in runs[0] if all(m in r for r in runs)]
    return {m: [{k: float(np.mean([r[m][i][k] for r in runs])) for k in runs[0][m][i]} for i in range(len(runs[0][m]))]
            for m in modes}


def beats(three: dict) -> list[bool]:
    """Per learner: does the colearn model score above that learner's individual model on both detectors
    the learner does not hold (strictly)? Empty without both modes."""
    if not {"colearn", "individual"} <= set(three):
        return []
    return [all(three["colearn"][i][o] > three["individual"][i][o] for j, o in enumerate(PRESETS) if j != i)
            for i in range(len(PRESETS))]


def three_table(three, variant: str = "augmented", round_shape: str = "one", which: str = "") -> list[str]:
    shape = "" if round_shape == "one" else f", colearn round: {round_shape} propose"
    which = f"{which}; " if which else ""
    cells = []
    for mode, rows in three.items():
        for i, r in enumerate(rows):
            who = "one model, all data" if mode == "centralised" else SHORT[PRESETS[i]]
            others = [r[k] for j, k in enumerate(PRESETS) if j != i] if mode != "centralised" else list(r.values())
            cells.append((mode, who, *(f"{r[k]:.3f}" for k in PRESETS), f"{np.mean(others):.3f}"))
    out = [f"### Three learners, one detector each ({which}accuracy on each detector's test set; set-up: {variant}{shape})", "",
           *bench.table(("mode", "learner (own detector)", "uB", "PDSP", "FD", "mean on the other two"), cells)]
    won = beats(three)
    if not won:
        return out + [""]
    out += ["", (f"colearn learner beats its individual self on both other detectors: "
            f"{sum(won)}/3 ({', '.join(SHORT[k] + (' yes' if b else ' no') for k, b in zip(PRESETS, won))})"), ""]
    return out


def write_doc(args, lines, matrices, three, cmd: str) -> None:
    fig = Path(args.doc).resolve().parent.parent / "figures" / "transfer.png"  # beside the doc's folder
    try:
        if not matrices:
            raise ImportError  # nothing to plot
        plt = bench.pyplot()
        ms = list(matrices.items())
        f, axes = plt.subplots(1, len(ms), figsize=(4.6 * len(ms), 4), squeeze=False)
        for ax, (variant, m) in zip(axes[0], ms):
            names = list(m)
            arr = np.array([[m[a][b] for b in names] for a in names])
            im = ax.imshow(arr, vmin=1 / 3, vmax=1, cmap="viridis")
            ax.set_xticks(range(len(names)), [SHORT[n] for n in names])
            ax.set_yticks(range(len(names)), [SHORT[n] for n in names])
            ax.set_xlabel("test on")
            ax.set_ylabel("train on")
            ax.set_title(f"accuracy ({variant})")
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", color="w" if arr[i, j] < 0.7 else "k")
            f.colorbar(im, ax=ax, fraction=0.046)
        f.tight_layout()
        bench.save_figure(f, fig)
    except ImportError:
        pass
    doc = ["# Cross-detector transfer (`bench/transfer.py`)", "",
           ("What: the compact model trained on one detector preset and tested on the others (and on an "
           "imported pixel-map format), and three learners with one detector each in colearn, individual "
           "and centralised modes, each scored on all three detectors. See docs/physics.md for the "
           "discussion."), "",
           (f"Command: `{cmd}` ({args.events} events per detector: 60 % train, 15 % vote, 25 % test; "
           f"matrix models {args.epochs} proposals of 1 epoch; {args.rounds} rounds per three-learner run; "
           f"vertex region +-{args.shift} pixels; seed {','.join(map(str, args.seeds)) if args.seeds else args.seed})."),
           "",
           (f"Machine: {bench.machine()}, load average {bench.load_average():.1f} at the end of the run "
           "(other jobs inflate the times, not the accuracies)."), "", *lines, "",
           "![transfer matrix](../figures/transfer.png)", ""]
    bench.write_doc(args.doc, "\n".join(doc))


if __name__ == "__main__":
    sys.exit(main())
