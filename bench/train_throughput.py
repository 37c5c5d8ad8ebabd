"""Training and inference throughput (events/s) of the model zoo on random 3 x 200 x 200 events.

    .venv/bin/python bench/train_throughput.py                 # compact, resnet50v2, densenet169
    .venv/bin/python bench/train_throughput.py --models compact --steps 20 --json out.json

Each model is built through the registry and driven through its learner's own ``train_steps`` /
``predict`` (the code that trains proposals), on sparse random events (about 3% of pixels charged,
log-normal around 17 ke-, like ``cohep simulate`` output), batch 32 for every model by default.
One warm-up step is not timed. Each measurement is repeated (``--repeats``); the table gives the
best and the median, since the machine is shared and interference only ever slows a run down. The
Keras giants take a few seconds per batch on CPU, so they run one timed step per repeat
(``--giant-steps``). Torch uses the threads it is given (``--threads``; default torch's choice).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from torch.utils.data import TensorDataset

import cohep  # noqa: F401  (sets KERAS_BACKEND=torch before any keras import)
from cohep.frameworks.training import TrainConfig
from cohep.models import ModelSpec, build_learner, get
from cohep.testing import bench
from cohep.testing.synthetic import sparse_events as sparse_arrays

SHAPE = (3, 200, 200)
GIANTS = {"resnet50v2", "densenet169"}


def sparse_events(n: int, seed: int = 0) -> TensorDataset:
    x, y = sparse_arrays(n, SHAPE, seed)
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def measure(name: str, *, batch: int, steps: int, infer_batches: int, device: str, repeats: int) -> dict:
    spec = ModelSpec(name, SHAPE, 3)
    data = sparse_events(batch * max(steps, infer_batches))
    cfg = TrainConfig(batch_size=batch, eval_batch_size=batch, max_steps=1, device=device)
    learner = build_learner(spec, data, None, None, cfg, seed=0)
    n_params = sum(p.numel() for p in learner.model.parameters() if p.requires_grad)
    learner.train_steps(data, 1.0, seed=0)  # warm-up (allocation, oneDNN kernel choice)
    learner.config = TrainConfig(batch_size=batch, eval_batch_size=batch, max_steps=steps, device=device)
    train_rates = []
    for r in range(repeats):
        start = time.perf_counter()
        losses = learner.train_steps(data, 1.0, seed=1 + r)
        train_rates.append(len(losses) * batch / (time.perf_counter() - start))
    infer = TensorDataset(*(t[: batch * infer_batches] for t in data.tensors))
    learner.predict(TensorDataset(*(t[:batch] for t in data.tensors)))  # warm-up
    infer_rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        learner.predict(infer)
        infer_rates.append(len(infer) / (time.perf_counter() - start))
    return {
        "model": name,
        "framework": get(name).framework,
        "parameters": int(n_params),
        "batch": batch,
        "train_steps": len(losses),
        "repeats": repeats,
        # best of the repeats: the machine is shared, and interference only ever slows a run down
        "train_events_per_s": max(train_rates),
        "train_events_per_s_median": float(np.median(train_rates)),
        "inference_events_per_s": max(infer_rates),
        "inference_events_per_s_median": float(np.median(infer_rates)),
    }


def parser():
    ap = bench.parser(__doc__)
    ap.add_argument("--models", default="compact,resnet50v2,densenet169")
    ap.add_argument("--batch", type=int, default=32, help="batch size for the compact model")
    ap.add_argument("--giant-batch", type=int, default=32, help="batch size for resnet50v2 / densenet169")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps (compact)")
    ap.add_argument("--giant-steps", type=int, default=1, help="timed training steps (Keras giants)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; the table shows the best (and median)")
    bench.add_threads(ap, None, help="torch threads (default: torch's choice)")
    bench.add_device(ap, "cpu")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        giant = name in GIANTS
        print(f"  measuring {name} ...", file=sys.stderr, flush=True)
        row = measure(
            name,
            batch=args.giant_batch if giant else args.batch,
            steps=args.giant_steps if giant else args.steps,
            infer_batches=2 if giant else 10,
            device=args.device,
            repeats=args.repeats,
        )
        rows.append(row)
    ref = next((r["train_events_per_s"] for r in rows if r["model"] == "resnet50v2"), None)
    host = bench.machine()
    print(f"\nCPU: {host.cpu}, {host.cores} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, device {args.device}, "
          f"events {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]}\n")
    print("\n".join(bench.table(
        ("model", "framework", "parameters", "batch", "train events/s best (median)",
         "inference events/s best (median)", "train vs ResNet-50 V2"),
        [(r["model"], r["framework"], f"{r['parameters']:,}", r["batch"],
          f"{r['train_events_per_s']:.2f} ({r['train_events_per_s_median']:.2f})",
          f"{r['inference_events_per_s']:.2f} ({r['inference_events_per_s_median']:.2f})",
          f"{r['train_events_per_s'] / ref:.0f}x" if ref else "-") for r in rows], align="llrrrrr")))
    if args.json:
        bench.write_text(args.json, json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
