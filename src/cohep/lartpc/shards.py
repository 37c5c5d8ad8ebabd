"""A simulation run cut into event-range shards (a batch array's jobs), and their merge.

Shard ``i`` of ``N`` (0-based) of a run of ``n`` events holds events ``[i n // N, (i + 1) n // N)``:
each event draws from its own generator (seed, index) and the classes are fixed from (seed, n), so a
shard is the same events a whole run holds there. A shard file is an ordinary event file with five
more attributes (``shard_index``, ``shard_count``, ``shard_start``, ``shard_stop``, ``run_events``);
:func:`merge` checks that the files given are all N shards of one run (same seed, configuration and
cohep version), copies their compressed chunks without decoding them, and writes the file a
one-process run of that seed and size writes, byte for byte.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cohep.core.errors import CohepError, DataError

#: the attributes a shard adds to the run's
SHARD_ATTRS = ("shard_index", "shard_count", "shard_start", "shard_stop", "run_events")


def shard_range(n_events: int, index: int, count: int) -> tuple[int, int]:
    """[start, stop) of shard ``index`` of ``count`` (ranges as even as integers allow)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise CohepError(f"shard count must be a positive integer, got {count!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise CohepError(f"shard index must be 0..{count - 1} (0-based), got {index!r}")
    if count > n_events:
        raise CohepError(f"{count} shards of {n_events} events: some would be empty (at most one shard per event)")
    return index * n_events // count, (index + 1) * n_events // count


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N), 0-based i; a malformed value is one line naming --shard."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise CohepError(f"--shard {text}: expected i/N (shard i of N, 0-based: 0/4 .. 3/4)")
    i, n = int(parts[0]), int(parts[1])
    if n < 1 or not 0 <= i < n:
        raise CohepError(f"--shard {text}: i must be 0..N-1 (0-based), N at least 1")
    return i, n


def shard_attributes(n_events: int, index: int, count: int) -> dict:
    start, stop = shard_range(n_events, index, count)
    return {"shard_index": int(index), "shard_count": int(count), "shard_start": start, "shard_stop": stop,
            "run_events": int(n_events)}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN attributes (an imported file's unknown pitch) agree with themselves
    return a == b


def merge(shards: list[str | os.PathLike], out_path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Join the shards of one run into ``out_path`` (atomically); the result is the whole run's file.

    Refused with a :class:`DataError` naming the file when a file is not a shard, belongs to another
    run (seed, configuration, version or size differ), a shard is given twice, or one is missing."""
    from cohep import __version__
    from cohep.datasets.events import EventFile, EventWriter
    from cohep.lartpc.simulate import CHUNK_EVENTS, SimulationConfig, blocks, file_attributes, write_blocks

    paths = [Path(p) for p in shards]
    if not paths:
        raise DataError("merge: no shard files given")
    metas = []
    for p in paths:
        with EventFile(p) as f:
            attrs = dict(f.attrs)
            n_here = f.n_events
        missing = [k for k in SHARD_ATTRS if k not in attrs]
        if missing:
            raise DataError(f"{p}: not a shard (no {missing[0]} attribute; shards come from cohep simulate --shard i/N)")
        if attrs["shard_stop"] - attrs["shard_start"] != n_here:
            raise DataError(f"{p}: holds {n_here} events, its shard range "
                            f"{attrs['shard_start']}..{attrs['shard_stop']} says otherwise")
        metas.append((p, attrs))
    first, run = metas[0][0], {k: v for k, v in metas[0][1].items() if k not in SHARD_ATTRS[:4]}
    for p, attrs in metas[1:]:
        mine = {k: v for k, v in attrs.items() if k not in SHARD_ATTRS[:4]}
        for key in sorted(set(run) | set(mine)):
            if not _same(run.get(key), mine.get(key)):
                what = "configuration" if key == "config" else key
                raise DataError(f"{p}: not the same run as {first}: {what} differs "
                                f"({_show(mine.get(key))} vs {_show(run.get(key))})")
        if attrs["shard_count"] != metas[0][1]["shard_count"]:
            raise DataError(f"{p}: shard of {attrs['shard_count']}, {first} is a shard of {metas[0][1]['shard_count']}")
    count, n_events = int(metas[0][1]["shard_count"]), int(run["run_events"])
    by_index: dict[int, Path] = {}
    for p, attrs in metas:
        i = int(attrs["shard_index"])
        if i in by_index:
            raise DataError(f"{p}: shard {i}/{count} given twice (also {by_index[i]})")
        by_index[i] = p
    absent = [i for i in range(count) if i not in by_index]
    if absent:
        raise DataError(f"merge: shard{'s' if len(absent) > 1 else ''} {', '.join(f'{i}/{count}' for i in absent[:5])}"
                        f"{' ...' if len(absent) > 5 else ''} missing (have {len(by_index)} of {count})")
    if run.get("version") != __version__:
        raise DataError(f"{first}: simulated by cohep {run.get('version')}, this is {__version__}: merge with the "
                        "version that made the shards (the bytes of a run belong to one version)")
    try:
        config = SimulationConfig.from_dict(json.loads(run["config"]))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{first}: its config attribute is not a simulation configuration ({exc})") from None
    attrs = file_attributes(config, int(run["seed"]))
    if json.dumps(attrs["config"], sort_keys=True) != json.dumps(json.loads(run["config"]), sort_keys=True):
        raise DataError(f"{first}: its configuration does not read back as the same one (made by another cohep?)")
    attrs["created"] = run.get("created", "")
    out = Path(out_path)
    with EventWriter(out, n_events=n_events, image_shape=config.image_shape, dtype=config.image_dtype,
                     attrs=attrs, truth_fields=config.truth_fields) as writer:
        write_blocks(writer, _read_blocks([by_index[i] for i in range(count)], config, CHUNK_EVENTS, blocks),
                     0, n_events)
    return out


def _read_blocks(paths: list[Path], config, size: int, blocks):
    """The shards' events as block results (start, raw chunks, labels, truth, {}), in event order."""
    import h5py

    names = list(config.truth_fields)
    for p in paths:
        with h5py.File(p, "r") as f:
            start = int(f.attrs["shard_start"])
            images, labels = f["images"], f["labels"]
            for a, b in blocks(start, int(f.attrs["shard_stop"]), size):
                chunks = []
                for i in range(a - start, b - start):
                    mask, data = images.id.read_direct_chunk((i, 0, 0, 0))
                    if mask != 0:
                        raise DataError(f"{p}: event {start + i} is stored with an unexpected filter mask {mask}")
                    chunks.append(data)
                try:
                    truth = {n: f["truth"][n][a - start:b - start] for n in names}
                except KeyError as exc:
                    raise DataError(f"{p}: truth field missing ({exc})") from None
                yield a, chunks, labels[a - start:b - start], truth, {}


def _show(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
