"""A simulation cut into event-range shards (a batch array) and merged: the one-process file, byte for byte."""
from __future__ import annotations

import os
import random
from pathlib import Path

import h5py
import pytest

from cohep.cli import main
from cohep.core.errors import CohepError, DataError
from cohep.datasets.events import EventFile
from cohep.lartpc.shards import merge, parse_shard, shard_range
from cohep.lartpc.simulate import blocks, simulate

N, SEED = 70, 5  # 70 is no multiple of the 16-event chunks, and 3 shards cut inside chunks


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The run made in one process, with no SOURCE_DATE_EPOCH: a simulated file records no wall time."""
    old = os.environ.pop("SOURCE_DATE_EPOCH", None)
    try:
        path = simulate(N, tmp_path_factory.mktemp("whole") / "one.h5", seed=SEED, workers=1, progress=False)
    finally:
        if old is not None:
            os.environ["SOURCE_DATE_EPOCH"] = old
    return path


def test_shard_ranges_cover_the_run_evenly():
    ranges = [shard_range(N, i, 3) for i in range(3)]
    assert ranges == [(0, 23), (23, 46), (46, 70)]
    assert [shard_range(10, i, 10) for i in (0, 9)] == [(0, 1), (9, 10)]
    assert blocks(23, 46, 16) == [(23, 32), (32, 46)]
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "1-4", "a/b", "1/0"):
        with pytest.raises(CohepError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(CohepError, match="some would be empty"):
        shard_range(3, 0, 4)


def test_merged_shards_are_the_one_process_file(whole, tmp_path):
    paths = [simulate(N, tmp_path / f"s{i}.h5", seed=SEED, shard=(i, 3), progress=False) for i in range(3)]
    with h5py.File(paths[1], "r") as f:
        assert f["images"].shape[0] == 23
        assert {k: int(f.attrs[k]) for k in ("shard_index", "shard_count", "shard_start", "shard_stop", "run_events",
                                             "seed")} == {"shard_index": 1, "shard_count": 3, "shard_start": 23,
                                                          "shard_stop": 46, "run_events": N, "seed": SEED}
    with EventFile(whole) as f:
        assert f.attrs["created"] == ""  # no time in a simulated file unless SOURCE_DATE_EPOCH says one
        labels = f.labels
    with EventFile(paths[2]) as f:
        assert (f.labels == labels[46:]).all()  # the classes come from (seed, run size), not the shard
    order = list(paths)
    random.Random(1).shuffle(order)
    out = merge(order, tmp_path / "merged.h5")
    assert out.read_bytes() == Path(whole).read_bytes()
    # 7 shards of 10: the first shard ends inside the first chunk of 16 (HDF5 places the labels and
    # truth where the first write leaves off, so the merge writes the whole run's batches, not the shards')
    small = [simulate(N, tmp_path / f"t{i}.h5", seed=SEED, shard=(i, 7), progress=False) for i in range(7)]
    assert merge(small, tmp_path / "merged7.h5").read_bytes() == Path(whole).read_bytes()


@pytest.fixture(scope="module")
def cli_shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    for i in range(3):
        assert main(["simulate", "--events", str(N), "--seed", str(SEED), "--shard", f"{i}/3", "--workers", "1",
                     "--out", str(d / f"shard_{i}.h5")]) == 0
    return d


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_shards_and_merge_give_the_one_process_file(cli_shards, whole, tmp_path, capsys):
    out = tmp_path / "all.h5"
    assert main(["merge", *(str(cli_shards / f"shard_{i}.h5") for i in (2, 0, 1)), "--out", str(out)]) == 0
    assert "merged 3 shards" in capsys.readouterr().out
    assert out.read_bytes() == Path(whole).read_bytes()
    assert main(["merge", str(cli_shards / "shard_0.h5"), "--out", str(out)]) == 2  # exists: refused
    assert "--overwrite" in _one_line(capsys)


def test_cli_merge_refuses_a_missing_duplicated_or_foreign_shard(cli_shards, whole, tmp_path, capsys):
    s = [str(cli_shards / f"shard_{i}.h5") for i in range(3)]
    out = tmp_path / "all.h5"
    assert main(["merge", s[0], s[2], "--out", str(out)]) == 2
    assert "shard 1/3 missing (have 2 of 3)" in _one_line(capsys)
    assert main(["merge", s[0], s[1], s[1], s[2], "--out", str(out)]) == 2
    assert "shard 1/3 given twice" in _one_line(capsys)
    other = tmp_path / "other_seed.h5"
    assert main(["simulate", "--events", str(N), "--seed", "6", "--shard", "1/3", "--workers", "1",
                 "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["merge", s[0], str(other), s[2], "--out", str(out)]) == 2
    assert "not the same run" in (line := _one_line(capsys)) and "seed differs" in line
    assert main(["merge", s[0], str(whole), "--out", str(out)]) == 2
    assert "not a shard" in _one_line(capsys)
    assert main(["simulate", "--events", "3", "--shard", "0/4", "--out", str(tmp_path / "x.h5")]) == 2
    assert "some would be empty" in _one_line(capsys)
    assert not out.exists() and not (tmp_path / "x.h5").exists()
    with pytest.raises(DataError, match="no shard files"):
        merge([], out)
