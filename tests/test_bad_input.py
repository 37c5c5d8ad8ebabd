"""Defaults that work (issue 26): an existing output is never replaced unless --overwrite says so, and a
setting that cannot work (a missing CUDA device, an unwritable folder, a split that leaves a learner
without test events, an install numba cannot cache in) is one line naming it, exit 2, before any work."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_line

from cohep.cli import main
from cohep.core.errors import CohepError, ConfigError
from cohep.core.files import claim_output, replace_output
from cohep.datasets.splits import assign


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "ev.h5"
    assert main(["simulate", "--events", "40", "--out", str(path), "--workers", "1"]) == 0
    return path


# -- existing outputs ---------------------------------------------------------------------------


def test_claim_output_refuses_and_replaces(tmp_path):
    assert claim_output(tmp_path / "new", overwrite=False) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    claim_output(tmp_path / "empty", overwrite=False)  # an empty folder holds nothing to lose
    earlier = tmp_path / "run"
    (earlier / "weights").mkdir(parents=True)
    (earlier / "manifest.json").write_text("{}")
    (earlier / "weights" / "stale").write_bytes(b"old blob")
    with pytest.raises(CohepError, match=r"--out: .*run already exists \(pass --overwrite"):
        claim_output(earlier, overwrite=False, marker="manifest.json")
    assert (earlier / "weights" / "stale").exists()
    claim_output(earlier, overwrite=True, marker="manifest.json")
    assert (earlier / "weights" / "stale").exists()  # claiming removes nothing: the input is checked first
    replace_output(earlier, marker="manifest.json")
    assert not earlier.exists()  # the earlier run, weight store included, is gone
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(CohepError, match="not an earlier output of this command"):
        claim_output(mine, overwrite=True, marker="manifest.json")
    assert (mine / "thesis.tex").read_text() == "x"


def test_simulate_refuses_an_existing_file(events, tmp_path, capsys):
    out = tmp_path / "ev.h5"
    out.write_bytes(events.read_bytes())
    assert main(["simulate", "--events", "3", "--out", str(out), "--workers", "1"]) == 2
    assert f"--out: {out} already exists (pass --overwrite to replace it)" in one_line(capsys)
    assert out.read_bytes() == events.read_bytes()
    assert main(["simulate", "--events", "3", "--out", str(out), "--workers", "1", "--overwrite"]) == 0
    from cohep.datasets.events import EventFile

    with EventFile(out) as f:
        assert f.n_events == 3


def test_run_refuses_an_existing_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    code = main(["run", "--data", str(tmp_path / "nope.h5"), "--out", str(out)])
    err = one_line(capsys)
    assert code == 2 and f"--out: {out} already exists (pass --overwrite to replace it)" in err
    assert [p.name for p in out.iterdir()] == ["manifest.json"]


def test_run_overwrite_with_bad_input_keeps_the_earlier_run(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "weights").mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    (out / "weights" / "blob").write_bytes(b"an earlier run's blob")
    assert main(["run", "--data", str(tmp_path / "nope.h5"), "--out", str(out), "--overwrite"]) == 2
    assert "nope.h5" in one_line(capsys)
    assert (out / "weights" / "blob").read_bytes() == b"an earlier run's blob"


def test_run_overwrite_leaves_no_stale_blobs(events, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "run"
    (out / "weights").mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    (out / "weights" / "stale").write_bytes(b"an earlier run's blob")
    args = ["run", "--data", str(events), "-n", "2", "-r", "1", "--epochs", "0.2", "--no-figure", "--out", str(out)]
    assert main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    assert not (out / "weights" / "stale").exists() and (out / "records.csv").exists()


def test_demo_and_train_refuse_existing_folders(events, tmp_path, capsys):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    assert main(["demo", "--out", str(folder)]) == 2
    assert "already exists" in one_line(capsys)
    assert main(["demo", "--out", str(folder), "--overwrite"]) == 2  # not a demo: never emptied
    assert "no events.h5" in one_line(capsys)
    assert main(["train", str(events), "--out", str(folder)]) == 2
    assert "central.out" in one_line(capsys)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_import_refuses_an_existing_file(events, tmp_path, capsys):
    out = tmp_path / "b.h5"
    out.write_text("mine")
    assert main(["import", str(events), "--out", str(out)]) == 2
    assert "--overwrite" in one_line(capsys) and out.read_text() == "mine"


# -- settings that cannot work ------------------------------------------------------------------


def test_train_on_a_missing_cuda_device(events, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["train", str(events), "--epochs", "1", "--device", "cuda:99", "--out", str(out)]) == 2
    assert "train.device: 'cuda:99'" in one_line(capsys)
    assert not out.exists()


def test_train_into_an_unwritable_place(events, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", str(events), "--epochs", "1", "--out", str(blocker / "sub")]) == 2
    assert f"central.out: cannot create {blocker / 'sub'}" in one_line(capsys)


def test_holdout_too_small_for_the_learners(events, tmp_path, capsys):
    labels = np.zeros(40, dtype=np.int64)
    with pytest.raises(ConfigError, match="data.holdout: 2 held-out samples for 3 learners"):
        assign(labels, 3, holdout=np.array([38, 39]))
    assert [len(p.test) for p in assign(labels, 3, holdout=np.array([37, 38, 39]))] == [1, 1, 1]
    assert all(len(p.test) == 0 for p in assign(labels, 3, holdout=np.zeros(0, dtype=np.int64)))
    out = tmp_path / "o"
    assert main(["run", "--data", str(events), "-n", "3", "--holdout", "2.0", "--out", str(out)]) == 2
    assert "data.holdout" in one_line(capsys) and not out.exists()


def test_simulator_imports_where_numba_cannot_cache():
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator")
    env.pop("NUMBA_CACHE_DIR", None)  # no locator finds a cache folder: a read-only install
    done = subprocess.run([sys.executable, "-c", "import cohep.lartpc.transport, cohep.lartpc.detector, "
                           "cohep.lartpc.imaging"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_learner_on_a_cuda_device_torch_cannot_use_is_one_line(monkeypatch):
    """Every learner resolves its device through one function, so `cohep run` fails like `cohep train`."""
    import torch

    from cohep.frameworks.torch import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"train.device: 'cuda' is not available"):
        resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
