"""Benchmark of the LArTPC simulator: events per second for the paper-sized data set.

    .venv/bin/python bench/simulate.py                 # 12,000 events, 3 x 200 x 200, all cores
    .venv/bin/python bench/simulate.py --events 2000 --workers 1
    .venv/bin/python bench/simulate.py --detector dune_fd           # the DUNE preset with its flux
    .venv/bin/python bench/simulate.py --scheduler local:4   # events/s on Dask with 1, 2, 4 workers
    .venv/bin/python bench/simulate.py --scheduler tcp://host:8786   # on a running cluster's workers

Prints wall time, events/s, the CPU seconds of the timed run (user + system of this process and its
reaped workers, ``getrusage``: on a shared machine wall time measures the other jobs' load as much as
the code; 60 s on 2 idle cores is about 120 CPU seconds; the memory sampler's own CPU time is left
out), peak memory of the process tree (parent + workers, sampled from /proc every 0.1 s: PSS, and
RSS summed over the processes) and the CPU time per stage (summed over the workers).
A warm-up of 16 events first loads (or compiles, on a fresh checkout) the Numba kernels; its time
is reported separately.  Targets: 12,000 events in under 60 s, peak memory under 2 GB.

With ``--scheduler`` the blocks of events run as Dask tasks (the code path of a cluster, here on one
machine's cores): ``local:K`` starts a LocalCluster of 1, 2, 4 ... K worker processes in turn and
prints the events per second against the workers; each cluster first simulates a few blocks per
worker so that every worker has loaded the kernels, and every file is checked to be the same bytes.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from cohep.testing import bench


def _memory_tree(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of a process and all its descendants (Linux /proc).

    RSS counts pages shared between the parent and its forked workers once per process; PSS
    splits them, so its sum is the memory the tree really holds.
    """
    rss = pss = 0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as fh:
                rss += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            try:
                with open(f"/proc/{p}/smaps_rollup") as fh:
                    for line in fh:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1]) * 1024
                            break
            except OSError:
                pass
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return rss, pss


class PeakMemory:
    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
        self.cpu_s = 0.0  # the sampler thread's own CPU seconds (taken out of the run's figure)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            self._sample(pid)
            self._stop.wait(self.interval)
        self.cpu_s = time.thread_time()

    def _sample(self, pid: int) -> None:
        rss, pss = _memory_tree(pid)
        self.peak = max(self.peak, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample(os.getpid())


def _load() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "n/a"


def _cpu_seconds() -> float:
    """User + system seconds of this process and of its children that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def parser():
    ap = bench.parser(__doc__)
    ap.add_argument("--events", type=int, default=12000)
    ap.add_argument("--workers", type=int, default=0, help="0: all cores")
    bench.add_seed(ap, 1)
    ap.add_argument("--detector", default="microboone")
    ap.add_argument("--flux", default=None,
                    help="flux preset or kind (paper, dune, bnb, numi; default: the detector preset's own)")
    bench.add_out(ap, None, type=Path, help="keep the file here (default: a temporary file)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    ap.add_argument("--scheduler", default=None,
                    help="run on Dask: local:K (LocalClusters of 1, 2, 4 .. K workers) or a scheduler address")
    return ap


def _worker_counts(k: int) -> list[int]:
    counts, w = [], 1
    while w < k:
        counts.append(w)
        w *= 2
    return counts + [k]


def dask_scaling(args) -> int:
    """Events per second on Dask against the number of worker processes."""
    import hashlib

    from cohep.core.executor import connect, local_workers
    from cohep.lartpc.simulate import default_config, simulate

    cfg = default_config(args.detector)
    k = local_workers(args.scheduler)
    rows, digests = [], set()
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        for w in (_worker_counts(k) if k else [None]):
            with connect(f"local:{w}" if w else args.scheduler) as ex:
                t0 = time.perf_counter()
                simulate(64 * ex.workers, Path(tmp) / "warmup.h5", seed=0, executor=ex, config=cfg, progress=False)
                t_warm = time.perf_counter() - t0
                out = Path(tmp) / "bench.h5"
                t1 = time.perf_counter()
                simulate(args.events, out, seed=args.seed, executor=ex, config=cfg, progress=False)
                wall = time.perf_counter() - t1
                digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
                rows.append({"workers": ex.workers, "wall_s": round(wall, 2), "events_per_s": round(args.events / wall, 1),
                             "warmup_s": round(t_warm, 2), "where": ex.describe()})
    base = rows[0]["events_per_s"]
    print(f"LArTPC simulator on Dask ({args.scheduler}): {args.events} events, {cfg.image_shape[0]} x "
          f"{cfg.image_shape[1]} x {cfg.image_shape[2]}, detector {args.detector}, {os.cpu_count()} CPU(s) here")
    print(f"  {'workers':>7} {'wall s':>8} {'events/s':>9} {'speed-up':>8} {'warm-up s':>9}")
    for r in rows:
        print(f"  {r['workers']:>7} {r['wall_s']:>8.2f} {r['events_per_s']:>9.1f} {r['events_per_s'] / base:>8.2f} "
              f"{r['warmup_s']:>9.2f}")
    print(f"  files identical for every worker count: {'yes' if len(digests) == 1 else 'NO'}")
    print(f"  load average         {load_before} before, {_load()} after")
    if args.json:
        bench.write_text(args.json, json.dumps({"events": args.events, "scheduler": args.scheduler, "rows": rows,
                                                "identical": len(digests) == 1, "load_before": load_before,
                                                "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0 if len(digests) == 1 else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.scheduler:
        os.environ.setdefault("COHEP_PROGRESS", "0")
        return dask_scaling(args)

    os.environ.setdefault("COHEP_PROGRESS", "0")
    t0 = time.perf_counter()
    from cohep.lartpc.simulate import STAGES, default_config, simulate

    cfg = default_config(args.detector)
    if args.flux is not None:
        from dataclasses import replace

        from cohep.core.errors import ConfigError
        from cohep.lartpc.generator import FluxConfig

        try:
            cfg = replace(cfg, flux=FluxConfig(kind=args.flux))
        except ConfigError as exc:
            print(f"--flux: {exc}", file=sys.stderr)
            return 2
    workers = args.workers or (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        simulate(16, Path(tmp) / "warmup.h5", seed=0, workers=1, config=cfg, progress=False)
        t_warm = time.perf_counter() - t0
        out = args.out or Path(tmp) / "bench.h5"
        load_before = _load()
        timings: dict = {}
        with PeakMemory() as mem:
            c1 = _cpu_seconds()
            t1 = time.perf_counter()
            simulate(args.events, out, seed=args.seed, workers=workers, config=cfg, progress=False, timings=timings)
            wall = time.perf_counter() - t1
        cpu = _cpu_seconds() - c1 - mem.cpu_s  # the pool's workers are joined when simulate returns
        size = out.stat().st_size
    rate = args.events / wall
    cpu_total = sum(timings[s] for s in STAGES) + timings["write"]
    result = {
        "events": args.events,
        "image_shape": list(cfg.image_shape),
        "detector": args.detector,
        "flux": cfg.flux.kind,
        "workers": timings.get("workers", workers),
        "cpus": os.cpu_count(),
        "wall_s": round(wall, 2),
        "events_per_s": round(rate, 1),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_event": round(1e3 * cpu / args.events, 2),
        "sampler_cpu_s": round(mem.cpu_s, 2),
        "peak_rss_tree_mb": round(mem.peak / 2**20, 1),
        "peak_pss_tree_mb": round(mem.peak_pss / 2**20, 1),
        "file_mb": round(size / 2**20, 1),
        "kb_per_event": round(size / args.events / 1024, 1),
        "warmup_s": round(t_warm, 2),
        "load_before": load_before,
        "load_after": _load(),
        "stage_cpu_s": {k: round(timings[k], 2) for k in list(STAGES) + ["write"]},
        "stage_share": {k: round(timings[k] / cpu_total, 3) for k in list(STAGES) + ["write"]},
        "python": sys.version.split()[0],
    }
    print(f"LArTPC simulator benchmark: {args.events} events, {cfg.image_shape[0]} x {cfg.image_shape[1]} x "
          f"{cfg.image_shape[2]}, detector {args.detector}, {result['workers']} worker(s) on {result['cpus']} CPU(s)")
    print(f"  wall time            {wall:8.2f} s      (target < 60 s for 12,000 events)")
    print(f"  throughput           {rate:8.1f} events/s (target >= 200)")
    print(f"  CPU time             {cpu:8.2f} s      ({1e3 * cpu / args.events:.2f} ms/event, user + sys of the process "
          f"tree but the memory sampler's {mem.cpu_s:.2f} s; 12,000 events in 60 s on 2 idle cores: < 120 s)")
    print(f"  peak memory, tree    {result['peak_pss_tree_mb']:8.1f} MB PSS (target < 2048 MB); "
          f"{result['peak_rss_tree_mb']:.1f} MB RSS summed (shared pages counted per process)")
    print(f"  file size            {result['file_mb']:8.1f} MB     ({result['kb_per_event']} kB/event)")
    print(f"  warm-up (JIT load)   {t_warm:8.2f} s")
    print(f"  load average         {load_before} before, {result['load_after']} after")
    print("  CPU time per stage (summed over workers; 'write' is the parent's HDF5 writes; the rest is "
          "start-up, task traffic and truth):")
    for k in list(STAGES) + ["write"]:
        print(f"    {k:<10} {timings[k]:8.2f} s  {100 * timings[k] / cpu_total:5.1f} %")
    if args.json:
        bench.write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
