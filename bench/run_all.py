"""Run every benchmark at a size that fits a short session, and summarise the invocation.

    python bench/run_all.py [--mnist ../shared/data/mnist] [--only ledger,vs_flower] [--full] [--gpu auto]

Why one driver: the figures in docs/ must come from the code as it is, by one command (`make
bench`). Each benchmark runs as its own process (a crash or a missed target in one does not stop
the others). Each benchmark that records results writes its own page (``docs/benchmarks/<name>.md``,
with tables and plots) at its full size; a short run writes under runs/bench/ instead. This driver
writes runs/bench/summary.md: per benchmark its exit status, wall time and last line (its headline
figure). docs/benchmarks.md is the hand-kept index of those pages, never regenerated. Defaults are
sized so the whole set finishes in under 20 minutes on 2 CPU cores;
``--full`` runs each at the size its docstring names (hours on a CPU). Timings depend on the
machine: the page says which one.

With a CUDA device (``--gpu auto``, the default, looks for one) the benchmarks of the neutrino task
run it at full size instead of their short size (``Bench.gpu``: byzantine and augment_transfer on the
paper's 12,000 simulated events, made once if missing; transfer at its full size, 3 seeds;
train_throughput with every model on cuda); the MNIST ones keep their short size.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cohep.testing import bench as harness

HOME = harness.Home.of(__file__)
HERE = HOME.script.parent
ROOT = HOME.root
SECTIONS = ROOT / "docs" / "benchmarks"
QUICK = ROOT / "runs" / "bench"  # what the short runs write (their sections and figures)
SUMMARY = QUICK / "summary.md"


@dataclass(frozen=True)
class Bench:
    """One benchmark: its script, the arguments of the quick size and of the full size."""

    name: str
    what: str
    quick: tuple[str, ...]
    full: tuple[str, ...] = ()
    needs_mnist: bool = False
    writes_section: bool = False  # the script writes docs/benchmarks/<name>.md itself
    events_flag: str = ""  # the flag that takes the neutrino event file, for benchmarks that need one
    #: the neutrino task at full size, run instead of ``quick`` when a GPU is lent (``--gpu``)
    gpu: tuple[str, ...] = ()
    gpu_events_flag: str = ""  # the flag that takes the event file at the GPU size only

    def size(self, *, full: bool, gpu: bool) -> str:
        """Which of the sizes runs: "full", "gpu" (the neutrino task at full size) or "quick"."""
        return "full" if full else "gpu" if gpu and self.gpu else "quick"

    @property
    def script(self) -> Path:
        return HERE / f"{self.name}.py"

    def flags(self) -> frozenset[str]:
        """The options the script parses, from its own parser (``harness.flags``)."""
        return harness.flags(self.script)

    def command(self, *, full: bool, mnist: str, events: str, gpu: bool = False) -> list[str]:
        size = self.size(full=full, gpu=gpu)
        args = list({"full": self.full, "gpu": self.gpu, "quick": self.quick}[size])
        if size == "quick" and self.writes_section:  # a short run must not overwrite the recorded full-size results
            flags = self.flags()
            if "--doc" in flags:
                args += ["--doc", str(QUICK / "benchmarks" / f"{self.name}.md")]
            if "--figure" in flags:
                args += ["--figure", str(QUICK / "figures" / f"{self.name}.png")]
            if "--no-doc" in flags:
                args += ["--no-doc"]
        if self.needs_mnist:
            args += ["--data", mnist]
        flag = self.events_flag or (self.gpu_events_flag if size == "gpu" else "")
        if flag:
            args += [flag, events]
        return [sys.executable, str(self.script), *args]


#: the transfer benchmark's full size, which is also its size on a GPU (it simulates its own detectors)
TRANSFER_FULL = ("--events", "4000", "--epochs", "8", "--rounds", "15", "--variants", "augmented,collection",
                 "--seeds", "1,2,3")

BENCHES: tuple[Bench, ...] = (
    Bench("simulate", "LArTPC simulator throughput and memory", ("--events", "3000"), ()),
    Bench("train_throughput", "training and inference events/s of the compact model",
          ("--models", "compact", "--steps", "10", "--repeats", "2"), (),
          gpu=("--repeats", "3", "--device", "cuda")),
    Bench("chain_round", "gas and wall time of one round on the embedded chain", ("--rounds", "5"), ()),
    Bench("store_stream", "streaming a large blob through BlobServer and the Fetcher",
          ("--mb", "64", "--repeats", "1"), ()),
    Bench("mnist_paper", "the paper's MNIST experiment: accuracy and the chain + store share", (), (),
          needs_mnist=True),
    Bench("nodes", "autonomous nodes on Anvil: round cost and the fault matrix", ("--members", "3", "--rounds", "4"), ()),
    Bench("quality", "does a quality measure find the degraded learner", ("--cases", "flip5", "--seeds", "3",
                                                                         "--shapley-seeds", "1"), (),
          writes_section=True),
    Bench("ledger", "the ledger's cost per round for 3 to 64 members, embedded chain and Anvil",
          ("--members", "5", "20", "64", "--rounds", "2"), (), writes_section=True),
    Bench("vs_flower", "cohep against Flower's FedAvg on MNIST, IID and Dirichlet 0.5",
          ("--rounds", "5", "--splits", "dirichlet"), ("--seeds", "3", "--rounds", "20"),
          needs_mnist=True, writes_section=True),
    Bench("variants", "several proposers a round and the vote on their average, against FedAvg's figures",
          ("--rounds", "5", "--seeds", "0", "--splits", "dirichlet", "--variants", "avg2e-loss"),
          ("--rounds", "20", "--seeds", "0,1,2", "--splits", "dirichlet,iid", "--variants",
           "avg5e,avg5,avg5e-loss,avg5-loss,k1-loss,avg2e-loss,avg5-ex-either-tol0.005"),
          needs_mnist=True, writes_section=True),
    Bench("byzantine", "does the vote stop Byzantine members (every attack)",
          ("--limit", "1500", "--rounds", "6", "--attacks", "clean,sign_flip,noise,scaled,nan,random,backdoor",
           "--defence", "clean"), ("--full",), needs_mnist=True, writes_section=True,
          gpu=("--tasks", "neutrino", "--events-limit", "0", "--events-rounds", "15", "--events-setups", "6/2",
               "--seeds", "3", "--proposers", "6", "--combine", "each", "--norm-bound", "3", "--peer-margin", "0.3",
               "--attacks", "clean,sign_flip,noise,scaled,nan,random,backdoor", "--defence", "clean,backdoor"),
          gpu_events_flag="--events"),
    Bench("flower_attacks", "cohep against Flower's robust strategies under attack",
          ("--rounds", "4", "--limit", "2000", "--attacks", "sign_flip"),
          ("--seeds", "3", "--rounds", "20", "--limit", "0", "--holdout", "2000",
           "--attacks", "sign_flip,noise,scaled,random,nan,free_rider,label_flip"),
          needs_mnist=True, writes_section=True),
    Bench("privacy", "accuracy against the differential-privacy budget on MNIST",
          ("--rounds", "5", "--limit", "2000", "--budgets", "3,inf"), ("--limit", "10000", "--rounds", "20", "--width", "32"),
          needs_mnist=True, writes_section=True),
    Bench("augment_transfer", "which augmentation and normalisation transfer to another detector",
          ("--train-events", "1200", "--test-events", "400", "--other-events", "300", "--epochs", "2"), (),
          writes_section=True, events_flag="--data",
          gpu=("--train-events", "8000", "--test-events", "2000", "--other-events", "2000", "--epochs", "8")),
    Bench("transfer", "train on one detector preset, test on the others; 3 learners with one detector each",
          ("--events", "600", "--epochs", "2", "--rounds", "3", "--variants", "collection"),
          TRANSFER_FULL, writes_section=True, gpu=TRANSFER_FULL),
)


def gpu_lent(choice: str) -> bool:
    """``--gpu``: yes, no, or auto (torch sees a CUDA device; no torch, no GPU)."""
    if choice != "auto":
        return choice == "yes"
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run(bench: Bench, *, full: bool, mnist: str, events: str, gpu: bool = False) -> dict:
    cmd = bench.command(full=full, mnist=mnist, events=events, gpu=gpu)
    shown = " ".join(["python", *(str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in cmd[1:])])
    print(f"== {bench.name}: {shown}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    out = proc.stdout + (("\n" + proc.stderr.strip().splitlines()[-1]) if proc.returncode and proc.stderr.strip() else "")
    print(out.rstrip(), flush=True)
    print(f"-- {bench.name}: exit {proc.returncode}, {wall:.0f} s", flush=True)
    section = SECTIONS / f"{bench.name}.md"
    if not bench.writes_section or not section.exists():
        harness.write_doc(section, f"## {bench.name}: {bench.what}\n\n`{shown}`\n\n```\n{out.rstrip()}\n```\n")
    return {"bench": bench, "command": shown, "rc": proc.returncode, "wall": wall, "last": last_line(proc.stdout),
            "output": out.rstrip(), "size": bench.size(full=full, gpu=gpu)}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def summarise(results: list[dict], *, full: bool) -> str:
    """The invocation's summary page: per benchmark its exit status, wall time and last line, then
    the tail of what each short run printed (the recorded pages in docs/benchmarks/ stay as they are)."""
    ran = {r["bench"].name: r for r in results}
    lines = [
        "# Benchmarks: the last `make bench`",
        "",
        (f"`python bench/run_all.py{' --full' if full else ''}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
         f"commit {commit()}, {harness.machine()}. Exit 1 means the benchmark ran and reports a missed target; "
         "the recorded results are in docs/benchmarks/ (indexed by docs/benchmarks.md)."),
        "",
        "| benchmark | what | exit | wall | last line |",
        "|---|---|---|---|---|",
    ]
    for b in BENCHES:
        r = ran.get(b.name)
        if r:
            what = b.what + (" (neutrino task, full size, GPU)" if r["size"] == "gpu" else "")
            lines.append(f"| {b.name} | {what} | {r['rc']} | {r['wall']:.0f} s | {r['last'].replace('|', '/')} |")
    total = sum(r["wall"] for r in results)
    lines += ["", f"Total wall time: {total / 60:.1f} min.", ""]
    for r in results:
        tail = "\n".join(r["output"].splitlines()[-40:])
        lines += [f"## {r['bench'].name}", "", f"`{r['command']}`", "", "```", tail, "```", ""]
    return "\n".join(lines)


def parser():
    ap = harness.parser(__doc__)
    harness.add_mnist(ap, HOME, flag="--mnist", help="folder with the MNIST IDX files (benchmarks that need it)")
    ap.add_argument("--events", default=str(HOME.events),
                    help="simulated neutrino events for the benchmarks that need them (made small if missing)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(b.name for b in BENCHES)}")
    harness.add_full(ap, "each benchmark at its full size (hours on a CPU)")
    ap.add_argument("--gpu", choices=("auto", "yes", "no"), default="auto",
                    help="run the neutrino task at full size (auto: when torch sees a CUDA device)")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {b.name for b in BENCHES})
    if unknown:
        print(f"run_all: --only: unknown benchmark {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [b for b in BENCHES if not names or b.name in names]
    if any(b.needs_mnist for b in chosen) and not Path(args.mnist).is_dir():
        print(f"run_all: --mnist: {args.mnist} is not a folder with the MNIST IDX files "
              "(download them, or pass --only without the MNIST benchmarks)", file=sys.stderr)
        return 2
    gpu = gpu_lent(args.gpu) and not args.full
    events = args.events
    if gpu and any(b.gpu for b in chosen) and not Path(events).is_file():  # the full set, made once
        print(f"== GPU: simulating the paper's 12,000 events into {events}", flush=True)
        subprocess.run([sys.executable, "-m", "cohep", "simulate", "--events", "12000", "--out", events,
                        "--seed", "1"], cwd=ROOT, check=True)
    if any(b.events_flag for b in chosen) and not Path(events).is_file():
        events = str(ROOT / "runs" / "bench" / "events-3k.h5")
        if not Path(events).is_file():  # a user has no events yet: simulate a small set once
            print(f"== simulating 3,000 events into {events}", flush=True)
            subprocess.run([sys.executable, "-m", "cohep", "simulate", "--events", "3000", "--out", events,
                            "--seed", "1"], cwd=ROOT, check=True)
    if gpu:
        print("== a CUDA device is lent: the neutrino benchmarks run at full size", flush=True)
    results = [run(b, full=args.full, mnist=args.mnist, events=events, gpu=gpu) for b in chosen]
    harness.write_text(SUMMARY, summarise(results, full=args.full))
    print(f"wrote {SUMMARY.relative_to(ROOT)}: {len(results)} benchmarks, "
          f"{sum(r['wall'] for r in results) / 60:.1f} min, {sum(r['rc'] not in (0, 1) for r in results)} failed")
    return 0 if all(r["rc"] in (0, 1) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
