"""Stream a large blob through BlobServer and the Fetcher: throughput and memory beyond the blob.

    python bench/store_stream.py [--mb 256] [--chunk-kib 1024] [--repeats 3]

A node's store folder is served by ``BlobServer`` on 127.0.0.1 and fetched by URI with a ``Fetcher``
(allowed store, size cap, incremental sha256, decode, shape and finiteness checks), in this one
process. Memory is measured while the fetch runs: tracemalloc's peak (Python and numpy allocations)
and the resident set (VmRSS sampled every 2 ms, and VmHWM after resetting it). Both are reported as
growth over the moment before the fetch, next to the blob size: the design goal is the blob plus
O(chunk). For contrast, the same blob read whole (``urlopen().read()``) and decoded from bytes.
"""
from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path

import numpy as np

from cohep.testing import bench
from cohep.wire import weights as wts
from cohep.wire.checks import default_max_bytes
from cohep.wire.fetch import Fetcher
from cohep.wire.server import BlobServer
from cohep.wire.store import WeightStore


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM); 0 where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


class _RssSampler:
    """Highest VmRSS seen while running (a background thread reading /proc every 2 ms)."""

    def __enter__(self):
        self.peak, self._stop = _status("VmRSS"), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _status("VmRSS"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("VmRSS"))


def measure(fn):
    """(result, seconds, tracemalloc growth, sampled RSS growth, VmHWM growth or None)."""
    gc.collect()
    hwm_ok = _reset_hwm()
    rss0 = _status("VmRSS")
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    with _RssSampler() as sampler:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hwm = _status("VmHWM") - rss0 if hwm_ok else None
    return result, seconds, traced_peak - traced0, sampler.peak - rss0, hwm


def parser():
    ap = bench.parser(__doc__)
    ap.add_argument("--mb", type=int, default=256, help="blob size in MB (10^6 bytes), at least 200 for the record")
    ap.add_argument("--chunk-kib", type=int, default=1024, help="transfer chunk in KiB")
    ap.add_argument("--repeats", type=int, default=3)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    chunk = args.chunk_kib * 1024

    with tempfile.TemporaryDirectory(prefix="cohep-stream-") as tmp, BlobServer(tmp) as server:
        store = WeightStore(tmp, public_url=server.url)
        rng = np.random.default_rng(0)
        per = args.mb * 10**6 // 4 // 4  # four float32 tensors
        w = {f"layer{i}.weight": rng.standard_normal(per, dtype=np.float32).reshape(-1, 1000) for i in range(4)}
        w["layer3.bias"] = np.zeros(1000, np.float32)
        d, uri = store.put(w)
        # the reference carries shapes and dtypes only (zero-stride arrays: no memory)
        reference = {name: np.broadcast_to(np.zeros((), v.dtype), v.shape) for name, v in w.items()}
        expected = {name: v[:2].copy() for name, v in w.items()}
        del w
        size = Path(tmp, f"{d.hex()}.safetensors").stat().st_size
        fetcher = Fetcher([server.url], default_max_bytes(reference), reference=reference, chunk_bytes=chunk)
        print(f"blob {size / 1e6:.1f} MB ({size:,} bytes), served by BlobServer at {server.url}, "
              f"chunk {chunk // 1024} KiB, cap {fetcher.max_bytes / 1e6:.1f} MB")

        runs = []
        for _i in range(args.repeats):
            out, seconds, traced, rss, hwm = measure(lambda: fetcher.fetch(uri, d))
            assert all(np.array_equal(out[n][:2], expected[n]) for n in expected), "fetched weights differ"
            runs.append((seconds, traced, rss, hwm))
            del out
        best = min(r[0] for r in runs)
        median = statistics.median(r[0] for r in runs)
        traced, rss = max(r[1] for r in runs), max(r[2] for r in runs)
        hwms = [r[3] for r in runs if r[3] is not None]
        print(f"fetch + checks over HTTP: {size / 1e6 / median:,.0f} MB/s median, {size / 1e6 / best:,.0f} MB/s best "
              f"({args.repeats} runs, {median:.2f} s median)")
        print(f"  tracemalloc peak growth: {traced / 1e6:,.1f} MB = blob + {(traced - size) / chunk:.2f} chunks")
        print(f"  RSS peak growth (sampled): {rss / 1e6:,.1f} MB = blob + {(rss - size) / 1e6:.1f} MB")
        if hwms:
            print(f"  VmHWM growth: {max(hwms) / 1e6:,.1f} MB = blob + {(max(hwms) - size) / 1e6:.1f} MB")

        def naive():
            with urllib.request.urlopen(uri, timeout=30) as resp:
                blob = resp.read()
            return wts.decode(blob)

        out, seconds, traced, rss, hwm = measure(naive)
        del out
        print(f"for contrast, read whole + decode from bytes: {size / 1e6 / seconds:,.0f} MB/s, "
              f"tracemalloc peak growth {traced / 1e6:,.1f} MB ({traced / size:.2f} x blob), "
              f"RSS {rss / 1e6:,.1f} MB ({rss / size:.2f} x blob)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
