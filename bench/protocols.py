"""Which named protocol should a user who sets nothing get? Every protocol on every cell of a matrix.

The cells: MNIST t10k dealt IID, Dirichlet 0.5 and Dirichlet 0.1 (``--splits``), and optionally the
neutrino task on simulated events (``--tasks mnist,neutrino``), each clean and with one dishonest
member flipping its update's sign (``--attacks``). Every protocol of config/protocols.py
(``--protocols``) runs on every cell with the same seed, data, model and initial weights, and every
run is audited. A protocol's gap on a cell is the best final accuracy on that cell less its own; the
winner is the protocol whose worst gap is smallest (ties: less compute per round). Compute per
round is stated beside accuracy: client-epochs a round (proposers x epochs) and wall seconds.

Prints one line per run and, last, ``default protocol: NAME, worst gap X points (cell)``.
Default size (about 20 minutes on 2 cores): 5 learners, 10 rounds, seed 0, MNIST only.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("COHEP_PROGRESS", "0")

from cohep.config import experiment as config
from cohep.config.protocols import PROTOCOLS
from cohep.run.audit import audit_run
from cohep.run.local import run_experiment
from cohep.testing import bench

HOME = bench.Home.of(__file__)
#: split name -> the [data] settings it stands for
SPLITS = {"iid": {"split": "iid"}, "dir0.5": {"split": "dirichlet", "alpha": 0.5},
          "dir0.1": {"split": "dirichlet", "alpha": 0.1}}


@dataclass(frozen=True)
class Cell:
    task: str  #: mnist or neutrino
    split: str
    attack: str  #: clean, or the attack one member runs

    @property
    def label(self) -> str:
        return f"{self.task}/{self.split}/{self.attack}"


@dataclass(frozen=True)
class Row:
    cell: Cell
    protocol: str
    accuracy: float
    accepted: int
    client_epochs: float  #: per round
    seconds: float
    clean_audit: bool


def parser():
    ap = bench.parser(__doc__)
    bench.add_mnist(ap, HOME)
    ap.add_argument("--events", default=str(HOME.events), help="neutrino event HDF5 (for --tasks neutrino)")
    ap.add_argument("--events-limit", type=int, default=3000)
    ap.add_argument("--tasks", default="mnist", help="comma-separated: mnist, neutrino")
    ap.add_argument("--splits", default="iid,dir0.5,dir0.1", help=f"comma-separated, of {', '.join(SPLITS)}")
    ap.add_argument("--attacks", default="clean,sign_flip", help="comma-separated: clean and attack kinds")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS), help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    ap.add_argument("--learners", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None, help="MNIST: use only the first N images")
    bench.add_seed(ap)
    bench.add_doc(ap, HOME.doc())
    return ap


def experiment(args, cell: Cell, protocol: str):
    raw = {"experiment": {"name": "protocols", "learners": args.learners, "rounds": args.rounds, "seed": args.seed,
                          "protocol": protocol},
           "data": {**SPLITS[cell.split]}}
    if cell.task == "mnist":
        raw["data"].update(kind="mnist", path=str(args.data), **({"limit": args.limit} if args.limit else {}))
    else:
        raw["data"].update(kind="events", path=str(args.events), limit=args.events_limit)
    if cell.attack != "clean":
        raw["attack"] = {"kind": cell.attack, "members": 1}
    return config.from_dict(raw)


def winner(rows: list[Row]) -> tuple[str, float, str]:
    """(protocol, its worst gap in points, the cell of that gap): the smallest worst gap wins."""
    best = {}
    for r in rows:
        best[r.cell] = max(best.get(r.cell, -1.0), r.accuracy)
    worst: dict[str, tuple[float, str]] = {}
    compute: dict[str, float] = {}
    for r in rows:
        gap = 100 * (best[r.cell] - r.accuracy)
        if r.protocol not in worst or gap > worst[r.protocol][0]:
            worst[r.protocol] = (gap, r.cell.label)
        compute[r.protocol] = compute.get(r.protocol, 0.0) + r.client_epochs
    name = min(worst, key=lambda p: (round(worst[p][0], 1), compute[p]))
    return name, *worst[name]


def write_doc(path: Path, argv: list[str], rows: list[Row], verdict: tuple[str, float, str] | None) -> None:
    lines = ["# Named protocols on a benchmark matrix (bench/protocols.py)", "",
             f"Machine: {bench.machine()}, load average {bench.load_average():.1f} (other jobs inflate wall "
             "times, not accuracies). One seed; every run audited.", "",
             f"Command: `{HOME.command(argv)}`", "",
             *bench.table(("cell", "protocol", "final accuracy", "rounds accepted", "client-epochs / round",
                           "wall s", "audit"),
                          [(r.cell.label, r.protocol, f"{r.accuracy:.4f}", str(r.accepted), f"{r.client_epochs:g}",
                            f"{r.seconds:.0f}", "clean" if r.clean_audit else "FAILED") for r in rows]), ""]
    if verdict is not None:
        lines += [f"default protocol: {verdict[0]}, worst gap {verdict[1]:.1f} points ({verdict[2]})", ""]
    bench.write_doc(path, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    for name in args.protocols.split(","):
        if name not in PROTOCOLS:
            ap.error(f"--protocols: unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})")
    for name in args.splits.split(","):
        if name not in SPLITS:
            ap.error(f"--splits: unknown split {name!r} (known: {', '.join(SPLITS)})")
    cells = [Cell(t, s, a) for t in args.tasks.split(",") for s in args.splits.split(",")
             for a in args.attacks.split(",")]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in cells:
            for protocol in args.protocols.split(","):
                cfg = experiment(args, cell, protocol)
                t0 = time.perf_counter()
                res = run_experiment(cfg, Path(tmp) / f"{cell.label.replace('/', '-')}-{protocol}", figure=False)
                wall = time.perf_counter() - t0
                accepted = sum(1 for k in range(1, args.rounds + 1)
                               if any(r.accepted for r in res.records if r.round == k))
                row = Row(cell, protocol, res.final_accuracy, accepted,
                          cfg.round.proposers * cfg.train.epochs, wall, audit_run(res.out_dir).clean)
                rows.append(row)
                print(f"{cell.label:24s} {protocol:9s} final {row.accuracy:.4f}, {accepted}/{args.rounds} accepted, "
                      f"{row.client_epochs:g} client-epochs/round, {wall:.0f} s, "
                      f"audit {'clean' if row.clean_audit else 'FAILED'}", flush=True)
                write_doc(args.doc, argv, rows, None)  # a cut-short bench keeps its rows
    verdict = winner(rows)
    write_doc(args.doc, argv, rows, verdict)
    print(f"default protocol: {verdict[0]}, worst gap {verdict[1]:.1f} points ({verdict[2]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
