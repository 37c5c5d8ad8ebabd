"""Benchmark: does a model hold across beams? Detector preset x flux transfer matrix.

    .venv/bin/python bench/beams.py                       # 1,200 events a cell, 6 proposals
    .venv/bin/python bench/beams.py --events 600 --epochs 3 --threads 1

Cells (detector preset / flux): ``FD/dune`` (dune_fd with the LBNF neutrino-mode flux: 3-20 GeV
events), ``FD/paper`` (dune_fd with the paper's 2.5 +- 0.5 GeV Gaussian), ``uB/bnb`` (the surface
MicroBooNE preset on the Booster beam, ~1 GeV) and ``uB/numi`` (on NuMI, approximate flux). One file
per cell (60 % train, 15 % vote, 25 % test), the vertex anywhere in +-15 pixels. The compact model
with its defaults (collection plane, per-event normalisation, augmentation) is trained on each cell
(``--epochs`` proposals of one epoch, each kept if it scores better on the cell's vote set) and
scored on every cell's test set: accuracy, and NC and numu CC efficiency separately (the issue-28
failure: NC events read as numu CC). ``--set train.augment.cosmics=1`` (repeatable; a JSON value, else a
string) overrides one setting of the config every cell trains with, to try options on the matrix.
``--working-point equal_nc_numu`` scores with a working point instead of the arg-max: per trained
model, one offset on the NC logit (NC vs numu CC only; nue CC predictions stay the arg-max's) fitted
on that model's own vote split so that NC and numu CC efficiency are equal there
(:mod:`cohep.central.working_point`), then held fixed on every cell's test set.
``--mix`` also trains one model on every cell's train split together; ``--colearn ROUNDS`` plays the
protocol with four members, one cell each (``run_colearn``: the in-process runner's round, sealed votes
on the embedded chain; ``--colearn-protocol``, by default the product's default protocol), and scores
the shared model on each cell's test set by that cell's member (at the working point, each member fits
its own offset on its own vote split): what a collaboration across beams gives each of its
experiments, against that experiment's own model.
Targets (issue 28): worst off-diagonal drop within 5 points, NC efficiency within 5 points of numu CC
efficiency on every cell. Last line:
``worst off-diagonal drop: X pts; NC efficiency on the DUNE flux: Y``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")

import numpy as np
import torch

from cohep import models
from cohep.central import working_point
from cohep.config import experiment as config
from cohep.config.protocols import PROTOCOLS
from cohep.datasets.source import load_data
from cohep.lartpc import simulate
from cohep.lartpc.generator import FluxConfig
from cohep.lartpc.simulate import default_config
from cohep.models.spec import ModelSpec
from cohep.run.local import run_alone
from cohep.run.tasks import learner_seed
from cohep.testing import bench

HOME = bench.Home.of(__file__)

#: cell name -> (detector preset, flux kind)
CELLS = {"FD/dune": ("dune_fd", "dune"), "FD/paper": ("dune_fd", "paper"),
         "uB/bnb": ("microboone_surface", "bnb"), "uB/numi": ("microboone_surface", "numi")}
NC, NUMU = 0, 1


def simulate_cells(folder: Path, n: int, shift: int, workers: int) -> dict[str, Path]:
    out = {}
    for k, (cell, (preset, flux)) in enumerate(CELLS.items()):
        path = folder / f"{cell.replace('/', '_')}.h5"
        if not path.exists():
            cfg = replace(default_config(preset), flux=FluxConfig(kind=flux), vertex_row_shift=shift,
                          vertex_col_shift=shift)
            simulate(n, path, seed=300 + k, workers=workers, config=cfg, progress=False)
        out[cell] = path
    return out


def fit_point(scorer, dataset) -> working_point.WorkingPoint:
    """The NC / numu CC working point of ``scorer`` fitted on ``dataset`` (a vote split)."""
    probs, labels = scorer.predict(dataset)
    return working_point.fit(working_point.logits_of(probs), labels, NC, NUMU)


def per_beam(lrs, sets, offset_each: bool) -> dict[str, dict[str, float]]:
    """The shared model scored on each cell's test set, held by that cell's member (``lrs``: one learner
    a cell, in CELLS order, or one for all); at the working point each member fits its own NC offset on
    its own vote split (the balance is per beam, and a member's vote set never leaves it)."""
    row = {}
    for i, b in enumerate(CELLS):
        lr = lrs[i] if len(lrs) > 1 else lrs[0]
        row[b] = efficiencies(lr, sets[b][2], fit_point(lr, sets[b][1]).offset if offset_each else None)
    return row


def mix_row(args, spec, sets, cfg, initial) -> tuple[dict, dict | None]:
    """One model trained on every cell's train split at once (the training mix a collaboration across
    beams gives its shared model), its vote split every cell's, scored on each cell's test set: at the
    arg-max, or at the working point both ways, one offset fitted on that mixed vote split and one per
    beam on the beam's own vote split (the second row, None at the arg-max)."""
    from torch.utils.data import ConcatDataset

    train = ConcatDataset([sets[c][0] for c in CELLS])
    vote = ConcatDataset([sets[c][1] for c in CELLS])
    lr = models.build_learner(spec, train, vote, None, cfg.train, seed=learner_seed(args.seed, 0), initial=initial)
    run_alone(cfg, [lr])
    lr.load_live(lr.current())
    offset = fit_point(lr, vote).offset if args.working_point == "equal_nc_numu" else None
    row = {b: efficiencies(lr, sets[b][2], offset) for b in CELLS}
    print("trained on the mix: " + ", ".join(f"{b} {v['acc']:.3f}" for b, v in row.items()), flush=True)
    return row, (per_beam([lr], sets, True) if offset is not None else None)


def colearn_row(args, spec, sets, cfg, initial) -> tuple[dict, str]:
    """Four members, one cell each (its train and vote split), playing the protocol for ``--colearn``
    rounds with the product's own round (``run_colearn``: sealed votes on the embedded chain, each
    proposal judged on the other three cells' vote sets; ``--colearn-protocol``), the shared model then scored on each cell's
    test set by that cell's member (its own working point at ``equal_nc_numu``). Returns the row and
    how many rounds were accepted."""
    import tempfile

    from cohep.run.local import run_colearn
    from cohep.wire.store import WeightStore
    from cohep.wire.weights import digest

    ccfg = cfg.replace(experiment={"mode": "colearn", "learners": len(CELLS), "rounds": args.colearn,
                                   "protocol": args.colearn_protocol})
    lrs = [models.build_learner(spec, sets[c][0], sets[c][1], None, ccfg.train, seed=learner_seed(args.seed, i),
                                initial=initial) for i, c in enumerate(CELLS)]
    with tempfile.TemporaryDirectory() as store:
        records, _timings, info = run_colearn(ccfg, lrs, spec, initial, WeightStore(store))
    held = {digest(lr.current()).hex() for lr in lrs}
    assert held == {info["adopted_digest"]}, f"the members hold {held}, the chain {info['adopted_digest']}"
    accepted = len({rec.round for rec in records if rec.round > 0 and rec.accepted})  # a round's slots: one record each
    for lr in lrs:
        lr.load_live(lr.current())
    row = per_beam(lrs, sets, args.working_point == "equal_nc_numu")
    note = (f"protocol {args.colearn_protocol}, {accepted} of {args.colearn} rounds accepted, accepted digest "
            f"{info['accepted_digest'][:12]}")
    print(f"colearn across the four cells ({note}): " + ", ".join(f"{b} {v['acc']:.3f}" for b, v in row.items()),
          flush=True)
    return row, note


def shared_lines(title: str, name: str, shared: dict[str, dict[str, float]], matrix) -> list[str]:
    """A shared model's row against each cell's own model (the diagonal): accuracy, loss, NC - numu CC."""
    cells = list(CELLS)
    loss = {b: 100 * (matrix[b][b]["acc"] - shared[b]["acc"]) for b in cells}
    gap = {b: 100 * (shared[b]["nc"] - shared[b]["numu"]) for b in cells}
    return [f"### {title}", "",
            "| | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells),
            "| accuracy | " + " | ".join(f"{shared[b]['acc']:.3f}" for b in cells) + " |",
            "| the cell's own model | " + " | ".join(f"{matrix[b][b]['acc']:.3f}" for b in cells) + " |",
            "| NC / numu CC / nue CC | " + " | ".join(f"{shared[b]['nc']:.2f} / {shared[b]['numu']:.2f} / {shared[b]['nue']:.2f}"
                                                      for b in cells) + " |", "",
            f"{name}: worst loss against a cell's own model {max(loss.values()):.1f} pts; NC - numu CC "
            + "; ".join(f"{b} {gap[b]:+.0f}" for b in cells) + " pts"]


def split(n: int):
    a, b = int(0.6 * n), int(0.75 * n)
    idx = np.arange(n)
    return idx[:a], idx[a:b], idx[b:]


def predicted(probs: np.ndarray, offset: float | None) -> np.ndarray:
    """The arg-max (``offset`` None, the default scoring), else the working point with that NC offset."""
    if offset is None:
        return probs.argmax(1)
    return working_point.decide(working_point.logits_of(probs), offset, NC, NUMU)


def efficiencies(scorer, dataset, offset: float | None = None) -> dict[str, float]:
    probs, labels = scorer.predict(dataset)
    pred = predicted(probs, offset)
    out = {"acc": float((pred == labels).mean())}
    for name, c in (("nc", NC), ("numu", NUMU), ("nue", 2)):
        sel = labels == c
        out[name] = float((pred[sel] == c).mean()) if sel.any() else float("nan")
    out["nc_as_numu"] = float((pred[labels == NC] == NUMU).mean()) if (labels == NC).any() else float("nan")
    return out


#: True neutrino energy bins (GeV) of the efficiency-against-energy table.
ENERGY_BINS = (0.2, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)


def energy_table(scorer, dataset, energies_mev: np.ndarray, title: str, offset: float | None = None) -> list[str]:
    """Efficiency per class against true E_nu (events in brackets) of one model on one test set."""
    probs, labels = scorer.predict(dataset)
    pred = predicted(probs, offset)
    e = energies_mev / 1000.0
    edges = np.asarray(ENERGY_BINS)
    rows = []
    for c, name in enumerate(("NC", "numu CC", "nue CC")):
        cells = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (labels == c) & (e >= lo) & (e < hi)
            cells.append(f"{(pred[sel] == c).mean():.2f} ({sel.sum()})" if sel.any() else "-")
        rows.append((name, *cells))
    head = ("class \\ E_nu (GeV)", *(f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])))
    return [f"### Efficiency against true neutrino energy: {title}", "", *bench.table(head, rows)]


def setting(text: str) -> tuple[list[str], object]:
    """``--set section.key=value``: the dotted path and the value (JSON when it parses, else the string)."""
    path, eq, raw = text.partition("=")
    keys = path.split(".")
    if not eq or len(keys) < 2 or not all(keys):
        raise argparse.ArgumentTypeError(f"--set wants section.key=value, got {text!r}")
    try:
        return keys, json.loads(raw)
    except json.JSONDecodeError:
        return keys, raw


def overrides(base: dict, sets) -> dict:
    """``base`` (nested tables) with every ``--set`` applied on top."""
    out = json.loads(json.dumps(base))
    for keys, value in sets:
        table = out
        for k in keys[:-1]:
            table = table.setdefault(k, {})
        table[keys[-1]] = value
    return out


def parser():
    ap = bench.parser(__doc__, whole_doc=True)
    ap.add_argument("--events", type=int, default=1200, help="events per cell (60 %% train, 15 %% vote, 25 %% test)")
    ap.add_argument("--epochs", type=int, default=6, help="proposals of one epoch per model")
    ap.add_argument("--shift", type=int, default=15)
    ap.add_argument("--lr", type=float, default=2e-3)
    bench.add_seed(ap, 1)
    ap.add_argument("--workers", type=int, default=2)
    bench.add_threads(ap, None, help="torch threads (default: all cores; 1 on a machine shared with other jobs)")
    ap.add_argument("--set", type=setting, action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one training setting (repeatable), e.g. train.augment.cosmics=1")
    ap.add_argument("--mix", action="store_true",
                    help="also train one model on every cell's train split together (its vote split: every cell's) "
                         "and score it on each cell's test set against that cell's own model")
    ap.add_argument("--colearn", type=int, default=0, metavar="ROUNDS",
                    help="also play the protocol with four members, one cell each, for ROUNDS rounds and score "
                         "the shared model on each cell's test set against that cell's own model")
    ap.add_argument("--colearn-protocol", choices=tuple(PROTOCOLS), default=config.ExperimentSection.protocol,
                    help="the named protocol --colearn plays (default: the product's, %(default)s)")
    ap.add_argument("--working-point", choices=("argmax", "equal_nc_numu"), default="argmax",
                    help="argmax (default), or an NC logit offset per model fitted on its own vote split "
                         "to equalise NC and numu CC efficiency there")
    bench.add_data_folder(ap)
    bench.add_doc(ap, HOME.doc())
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    t_all = time.perf_counter()
    folder, _tmp = bench.data_folder(args.data)
    t0 = time.perf_counter()
    files = simulate_cells(folder, args.events, args.shift, args.workers)
    t_sim = time.perf_counter() - t0
    print(f"simulated {len(files)} x {args.events} events in {t_sim:.0f} s", flush=True)
    data = {k: load_data("events", str(p)) for k, p in files.items()}
    sets = {k: tuple(d.subset(ix) for ix in split(len(d))) for k, d in data.items()}
    first = next(iter(data.values()))
    cfg = config.load(None, overrides({
        "experiment": {"protocol": "paper", "learners": 1, "rounds": args.epochs, "seed": args.seed,
                       "mode": "individual"},
        "model": {"name": "compact"},
        "train": {"epochs": 1.0, "batch_size": 32, "lr": args.lr},
    }, args.set))
    spec = ModelSpec("compact", tuple(int(s) for s in first.input_shape), len(first.class_names),
                     dict(cfg.model.params))
    initial = models.initial_weights(spec, args.seed)
    t0 = time.perf_counter()
    matrix: dict[str, dict[str, dict[str, float]]] = {}
    points: dict[str, working_point.WorkingPoint] = {}
    plain: dict[str, dict[str, dict[str, float]]] = {}
    for a in CELLS:
        train, vote, _test = sets[a]
        lr = models.build_learner(spec, train, vote, None, cfg.train, seed=learner_seed(args.seed, 0), initial=initial)
        run_alone(cfg, [lr])
        lr.load_live(lr.current())
        offset = None
        if args.working_point == "equal_nc_numu":  # fitted on this model's own vote split only
            points[a] = fit_point(lr, vote)
            offset = points[a].offset
        matrix[a] = {b: efficiencies(lr, sets[b][2], offset) for b in CELLS}
        if offset is not None:  # the same model at the arg-max, for the comparison in one run
            plain[a] = {b: efficiencies(lr, sets[b][2], None) for b in CELLS}
        print(f"trained on {a}: " + ", ".join(f"{b} {v['acc']:.3f}" for b, v in matrix[a].items()), flush=True)
        if a == "FD/dune":  # the question: which energies does the DUNE-flux model get wrong
            from cohep.datasets.events import EventFile

            with EventFile(files[a]) as f:
                energies = np.asarray(f.truth["nu_energy"])[split(len(data[a]))[2]]
            by_energy = energy_table(lr, sets[a][2], energies, "trained and tested on FD/dune", offset)
    mixed, mixed_each = mix_row(args, spec, sets, cfg, initial) if args.mix else (None, None)
    shared, shared_note = colearn_row(args, spec, sets, cfg, initial) if args.colearn else (None, "")
    t_train = time.perf_counter() - t0
    lines = report(matrix) + [""] + by_energy
    if mixed is not None:
        lines += ["", *shared_lines("One model trained on the mix of all four cells", "mix", mixed, matrix)]
    if mixed_each is not None:
        lines += ["", *shared_lines("The mix's model, each beam at its own working point (fitted on its own vote "
                                    "split)", "mix, per-beam working point", mixed_each, matrix)]
    if shared is not None:
        lines += ["", *shared_lines(f"Colearn: four members, one cell each, {args.colearn} rounds ({shared_note})"
                                    + (", each at its own working point" if points else ""),
                                    "colearn", shared, matrix)]
    if points:
        lines += ["", *point_lines(points), "", "### The same models at the arg-max", "", *report(plain),
                  f"worst off-diagonal drop at the arg-max: {worst_drop(plain):.1f} pts"]
    print("\n".join(lines))
    worst = worst_drop(matrix)
    nc_dune = matrix["FD/dune"]["FD/dune"]["nc"]
    doc = ["# Beams: detector preset x flux transfer (`bench/beams.py`)", "",
           f"Command: `{HOME.command(sys.argv[1:] if argv is None else argv)}` ({args.events} events a cell, "
           f"60 / 15 / 25 % train / vote / test; {args.epochs} proposals of one epoch; the compact model's "
           f"defaults; vertex region +-{args.shift} pixels; seed {args.seed}).", "",
           f"Machine: {bench.machine()}, load average {bench.load_average():.1f} at the end (other jobs "
           f"inflate the times, not the accuracies). Simulation {t_sim:.0f} s, training and scoring "
           f"{t_train:.0f} s, all {time.perf_counter() - t_all:.0f} s.", "", *lines, "",
           f"worst off-diagonal drop: {worst:.1f} pts; NC efficiency on the DUNE flux: {nc_dune:.3f}", ""]
    bench.write_doc(args.doc, "\n".join(doc))
    print(f"worst off-diagonal drop: {worst:.1f} pts; NC efficiency on the DUNE flux: {nc_dune:.3f}")
    return 0


def point_lines(points: dict[str, working_point.WorkingPoint]) -> list[str]:
    """What ``--working-point equal_nc_numu`` fitted: each model's NC offset and its vote-split balance."""
    return ["Working point `equal_nc_numu`: offset on the NC logit fitted on each model's own vote split "
            "(NC vs numu CC only, nue CC as the arg-max), held on every test set: " + "; ".join(
                f"{a} {p.offset:+.3f} (vote NC {p.eff_a:.3f} / numu CC {p.eff_b:.3f}, {p.n_a} / {p.n_b} events)"
                for a, p in points.items()) + "."]


def worst_drop(matrix) -> float:
    return max(100 * (matrix[a][a]["acc"] - matrix[a][b]["acc"]) for a in matrix for b in matrix[a] if b != a)


def worst_loss(matrix) -> float:
    """Points the model from A loses on B against B's own model: the transfer, without B's difficulty.

    The issue's drop compares A's model on B with A's model at home, so a cell whose events are harder
    (the 1 GeV surface-detector cells, with cosmics) counts as a drop even for a model that transfers
    perfectly; this compares it with the best one knows how to do on B at the same size.
    """
    return max(100 * (matrix[b][b]["acc"] - matrix[a][b]["acc"]) for a in matrix for b in matrix[a] if b != a)


def report(matrix) -> list[str]:
    names = list(matrix)
    out = ["### Accuracy: train on A (rows), test on B (columns)", "",
           *bench.table(("train \\ test", *names, "worst drop (pts)"),
                        [(a, *((f"**{matrix[a][b]['acc']:.3f}**" if a == b else f"{matrix[a][b]['acc']:.3f}")
                               for b in names),
                          f"{max(100 * (matrix[a][a]['acc'] - matrix[a][b]['acc']) for b in names if b != a):.1f}")
                         for a in names]),
           "", "### NC / numu CC / nue CC efficiency (and NC read as numu CC) per cell", "",
           *bench.table(("train \\ test", *names),
                        [(a, *(f"{m['nc']:.2f} / {m['numu']:.2f} / {m['nue']:.2f} ({m['nc_as_numu']:.2f})"
                               for m in (matrix[a][b] for b in names))) for a in names]),
           "", "NC minus numu CC efficiency (pts), target within 5: " + "; ".join(
               f"{a} -> {b} {100 * (matrix[a][b]['nc'] - matrix[a][b]['numu']):+.0f}" for a in names for b in names
               if a == b) + ".",
           "", f"Worst loss against the test cell's own model (its diagonal minus the column's worst): "
               f"{worst_loss(matrix):.1f} pts."]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
