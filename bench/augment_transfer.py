"""Which augmentation and normalisation defaults transfer: train on cohep events, score on another detector.

    .venv/bin/python bench/augment_transfer.py                       # 2,400 training events, 3 epochs
    .venv/bin/python bench/augment_transfer.py --train-events 9600 --epochs 8 --other-events 2000

Trains the compact model centrally (the learner's own ``train_steps``, constant learning rate) on the
first ``--train-events`` events of ``--data`` once per variant (normalisation x augmentation), then
scores each on:

* ``in-domain``: the last ``--test-events`` events of ``--data`` (the same simulation);
* ``other, as simulated``: ``--other-events`` events simulated with another detector (ProtoDUNE-SP
  pitch and wire angles, 0.6 x the gain: ``--other-config``), read as they are;
* ``other, imported``: the same file through ``cohep import`` (resampled to the training pitch,
  MIP-calibrated, re-centred on the charge-weighted vertex estimate);
* ``other, vertex moved``: the as-simulated events moved by up to +-10 pixels (another pipeline's
  vertex convention).

Weights are kept in ``--out`` and reused when the same variant is asked again (``--retrain`` to
redo). Prints one table and, last, the variant with the best mean accuracy over the other-detector
sets; writes docs/benchmarks/augment_transfer.md.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

import cohep  # noqa: F401  (sets KERAS_BACKEND=torch)
from cohep.core.files import atomic_write_bytes
from cohep.datasets.events import EventFile
from cohep.frameworks.augment import AugmentConfig, augment
from cohep.frameworks.training import TrainConfig
from cohep.models import ModelSpec, build_learner
from cohep.testing import bench
from cohep.wire.weights import decode, encode

HOME = bench.Home.of(__file__)
AUGMENT_ON = AugmentConfig(vertex_shift=8, charge_scale=0.3, pitch_scale=0.2, dead_wires=0.02, noise=0.1)
AUGMENT_OFF = AugmentConfig(enabled=False)
VARIANTS = {
    "log1p": ("log1p", AUGMENT_OFF),
    "event": ("event", AUGMENT_OFF),
    "log1p+augment": ("log1p", AUGMENT_ON),
    "event+augment": ("event", AUGMENT_ON),
}
OTHER_CONFIG = '[detector]\npreset = "protodune"\nplane_gain = [0.6, 0.6, 0.6]\n'


def load(path: Path, start: int, stop: int) -> TensorDataset:
    with EventFile(path) as f:
        stop = min(stop, len(f))
        x = torch.from_numpy(np.asarray(f.images(np.arange(start, stop)), dtype=np.float16))
        y = torch.from_numpy(np.asarray(f.labels[start:stop], dtype=np.int64))
    return TensorDataset(x, y)


def other_detector(out: Path, n: int, seed: int) -> Path:
    """The other-detector file, simulated once into ``out``."""
    from cohep.lartpc.simulate import load_config, simulate

    path = out / f"other-{n}-{seed}.h5"
    if not path.exists():
        cfg_path = out / "other.toml"
        cfg_path.write_text(OTHER_CONFIG)
        simulate(n, path, seed=seed, workers=1, config=load_config(cfg_path))
    return path


def imported(src: Path, out: Path) -> Path:
    """``src`` through the importer: its own pitch -> the training pitch, MIP calibration, vertex."""
    from cohep.datasets.importer import ImportSettings, import_events

    path = out / (src.stem + "-imported.h5")
    if not path.exists():
        with EventFile(src) as f:
            wire, time_mm = (float(v) for v in f.attrs["pixel_pitch_mm"])
            drift = float(f.attrs["drift_velocity_mm_us"])
        settings = ImportSettings(format="hdf5", axes="NVWT", wire_pitch_mm=wire, time_per_pixel_us=time_mm / drift,
                                  drift_mm_us=drift, size=(200, 200), vertex="charge", calibrate="mip")
        import_events(src, path, settings)
    return path


def moved(data: TensorDataset, pixels: int, seed: int) -> TensorDataset:
    shift_only = AugmentConfig(vertex_shift=pixels, charge_scale=0.0, pitch_scale=0.0, dead_wires=0.0, noise=0.0)
    x = augment(data.tensors[0].float(), shift_only, torch.Generator().manual_seed(seed))
    return TensorDataset(x.half(), data.tensors[1])


def train(variant: str, train_set, args, out: Path) -> dict:
    """The variant's learner, trained (or read back from ``out``); ``train_set()`` loads the events."""
    mode, aug = VARIANTS[variant]
    spec = ModelSpec("compact", (3, 200, 200), 3, {"normalise": mode, "planes": "all"})  # as measured in docs/
    cfg = TrainConfig(batch_size=32, lr=args.lr, augment=aug)
    weights = out / f"{variant}-{args.train_events}-{args.epochs}-{args.seed}.safetensors"
    if weights.exists() and not args.retrain:
        learner = build_learner(spec, None, None, None, cfg, seed=args.seed)
        learner.load_live(decode(weights.read_bytes()))
        return {"learner": learner, "seconds": None}
    data = train_set()
    learner = build_learner(spec, data, None, None, cfg, seed=args.seed)
    optimizer = learner.make_optimizer()
    start = time.perf_counter()
    for epoch in range(args.epochs):
        learner.train_steps(data, 1.0, seed=args.seed * 1000 + epoch, optimizer=optimizer)
        print(f"  {variant}: epoch {epoch + 1}/{args.epochs} done", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    atomic_write_bytes(weights, encode(learner.live_weights()))
    return {"learner": learner, "seconds": seconds}


def plot(table: dict, sets: list[str], variants: list[str], path: Path) -> Path:
    """Grouped bars: accuracy per test set, one bar per variant."""
    plt = bench.pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(variants)
    for k, v in enumerate(variants):
        ax.bar(np.arange(len(sets)) + (k - (len(variants) - 1) / 2) * width, [table[v][s] for s in sets], width, label=v)
    ax.set_xticks(np.arange(len(sets)), sets)
    ax.set_ylim(0.3, 0.9)
    ax.axhline(1 / 3, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("compact model trained on cohep events, scored on another detector")
    fig.tight_layout()
    return bench.save_figure(fig, path)


def parser():
    p = bench.parser(__doc__)
    p.add_argument("--data", type=Path, default=HOME.events, help="the training events (HDF5)")
    p.add_argument("--train-events", type=int, default=2400)
    p.add_argument("--test-events", type=int, default=1000)
    p.add_argument("--other-events", type=int, default=600)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    bench.add_seed(p, 0)
    bench.add_threads(p, 1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    bench.add_out(p, HOME.root / "runs" / "augment_transfer", type=Path, help="trained weights and simulated files")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--train-only", action="store_true", help="train (and keep) the variants, score nothing")
    bench.add_doc(p, HOME.doc())
    bench.add_figure(p, HOME.figures / "augment_transfer.png")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown} (known: {', '.join(VARIANTS)})")

    cache: list = []

    def train_set() -> TensorDataset:  # loaded once, and only when a variant is not trained yet
        if not cache:
            cache.append(load(args.data, 0, args.train_events))
        return cache[0]

    learners, seconds = {}, {}
    for v in variants:
        r = train(v, train_set, args, args.out)
        learners[v], seconds[v] = r["learner"], r["seconds"]
    cache.clear()
    if args.train_only:
        return 0
    with EventFile(args.data) as f:
        n = len(f)
    other = other_detector(args.out, args.other_events, args.seed + 7)
    raw = load(other, 0, args.other_events)
    sets = {
        "in-domain": load(args.data, n - args.test_events, n),
        "other, as simulated": raw,
        "other, imported": load(imported(other, args.out), 0, args.other_events),
        "other, vertex moved": moved(raw, 10, args.seed),
    }
    table = {v: {name: learners[v].score(ds).accuracy for name, ds in sets.items()} for v in variants}
    other_sets = [s for s in sets if s != "in-domain"]
    for v in variants:
        table[v]["mean other"] = float(np.mean([table[v][s] for s in other_sets]))
    lines = bench.table(("variant", *sets, "mean other"),
                        [(v, *(f"{table[v][s]:.3f}" for s in [*sets, "mean other"])) for v in variants])
    best = max(variants, key=lambda v: table[v]["mean other"])
    figure = plot(table, list(sets), variants, args.figure)
    errors = {name: (0.5 / np.sqrt(len(ds))) for name, ds in sets.items()}  # binomial, at most
    command = HOME.command(argv if argv is not None else sys.argv[1:])
    doc = [
        "# Transfer: augmentation and per-event normalisation (`bench/augment_transfer.py`)",
        "",
        (f"Compact model, {args.train_events} training events of `{args.data.name}` (MicroBooNE-like), "
         f"{args.epochs} epochs, batch 32, Adam lr {args.lr:g}, seed {args.seed}. Augmentation when on: "
         f"`{json.dumps(AUGMENT_ON.to_dict())}`. Other detector: {args.other_events} events simulated with "
         "ProtoDUNE-SP pitch and wire angles at 0.6 x the gain; imported = `cohep import` to the training "
         "pitch with MIP calibration and the charge-weighted vertex; vertex moved = up to +-10 pixels."),
        "",
        "```", command, "```", "",
        *lines, "",
        (f"Best mean accuracy over the other-detector sets: **{best}**. Statistical error of one accuracy "
         f"(binomial, at most): {', '.join(f'{k} +-{v:.3f}' for k, v in errors.items())}."),
        "",
        f"![accuracy per variant and test set](../figures/{figure.name})",
        "",
        (f"Machine: {bench.machine()} ({args.threads} torch thread(s), load average {bench.load_average():.1f}); "
         "accuracies do not depend on the load, training times would."),
        "",
    ]
    bench.write_doc(args.doc, "\n".join(doc))
    print("\n".join(lines))
    print(f"best transfer: {best} (mean other-detector accuracy {table[best]['mean other']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
