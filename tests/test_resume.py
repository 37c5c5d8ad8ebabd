"""Ctrl-C in a run keeps its finished rounds; ``cohep run --resume`` ends where an uninterrupted run ends.

Compared byte for byte (cohep.run.resume's docstring): records.csv, final_weights.safetensors,
chain_events.jsonl, every blob in weights/, and manifest.json but for its wall-clock fields
(``created``, ``time_shares``) and ``resumed``. The uninterrupted run is made at the same path and then
moved aside, since the chain's URIs (and so its transaction hashes) name the store's folder.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cohep.cli import main
from cohep.config import experiment as config
from cohep.core.errors import RunInterrupted
from cohep.outputs import rundir
from cohep.protocol.records import read_csv
from cohep.run.local import resume_experiment, run_experiment

ROUNDS = 4
#: compared byte for byte with the uninterrupted run
SAME_BYTES = (rundir.RECORDS, rundir.WEIGHTS, rundir.CHAIN_LOG)
#: the manifest's wall-clock fields, and the record of the resume itself
WALL_CLOCK = {"created", "time_shares", "resumed"}



def ctrl_c_reaches_it() -> None:
    """The child's SIGINT back to its default, so that Python installs its Ctrl-C handler: a suite started
    in the background by a non-interactive shell (``cmd &``) inherits SIGINT ignored, and the run would
    then never see the signal these tests send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def settings(mnist_dir, **over):
    base = {
        "experiment": {"learners": 3, "rounds": ROUNDS, "seed": 0, "protocol": "paper"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 200},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 0.5, "batch_size": 32},
    }
    return config.merge(base, over)


def stop_after(k: int):
    """A deterministic Ctrl-C: KeyboardInterrupt as round ``k`` ends (what SIGINT raises in the main thread)."""
    def hook(r: int) -> None:
        if r == k:
            raise KeyboardInterrupt
    return hook


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_dir, one_torch_thread_module):
    """(uninterrupted run moved aside, the run interrupted after round 2 at that run's path, the
    RunInterrupted it raised, a copy of the interrupted directory taken before any resume)."""
    root = tmp_path_factory.mktemp("resume")
    here = root / "run"
    run_experiment(config.load(None, settings(mnist_dir)), here, figure=False)
    reference = here.rename(root / "reference")
    with pytest.raises(RunInterrupted) as stopped:
        run_experiment(config.load(None, settings(mnist_dir)), here, figure=False, on_round=stop_after(2))
    kept = root / "kept"
    shutil.copytree(here, kept)
    return reference, here, stopped.value, kept


def test_ctrl_c_keeps_the_finished_rounds(runs):
    _, run, stopped, _ = runs
    assert stopped.line == (f"interrupted in round 3 of {ROUNDS}; rounds 1-2 kept in {run}; "
                            f"resume with: cohep run --resume {run}")
    names = {p.name for p in run.iterdir()}
    assert {rundir.RECORDS, rundir.TIMINGS, rundir.WEIGHTS, rundir.MANIFEST, rundir.STORE, rundir.RESUME} <= names
    assert rundir.CHAIN_LOG not in names and not list(run.rglob("*.part")) and not list(run.rglob("*.tmp*"))
    # an honest run's proposals went to its store unchanged: the journal names those blobs, no copy
    state = json.loads((run / rundir.RESUME / "state.json").read_text())
    assert state["rounds_done"] == 2 and len(state["aliases"]) == 2  # one proposer a round
    assert not list((run / rundir.RESUME).glob("*.safetensors"))
    assert {r.round for r in read_csv(run / rundir.RECORDS)} == {0, 1, 2}  # round 3's half is discarded
    assert len((run / rundir.TIMINGS).read_text().splitlines()) == 1 + 2
    manifest = json.loads((run / rundir.MANIFEST).read_text())
    assert manifest["interrupted"]["rounds_done"] == 2 and manifest["interrupted"]["stopped_in"] == 3
    # the weights held after round 2: the adopted digest of round 2's rows
    held = {r.adopted for r in read_csv(run / rundir.RECORDS) if r.round == 2}
    from cohep.wire.weights import decode, digest

    assert {digest(decode((run / rundir.WEIGHTS).read_bytes())).hex()} == held


def test_resume_ends_byte_for_byte_where_the_uninterrupted_run_ends(runs):
    reference, run, _, _ = runs
    result = resume_experiment(run, figure=False)
    assert result.out_dir == run
    for name in SAME_BYTES:
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    blobs = sorted(p.name for p in (reference / rundir.STORE).iterdir())
    assert sorted(p.name for p in (run / rundir.STORE).iterdir()) == blobs
    for name in blobs:
        assert (run / rundir.STORE / name).read_bytes() == (reference / rundir.STORE / name).read_bytes()
    mine, theirs = (json.loads((d / rundir.MANIFEST).read_text()) for d in (run, reference))
    assert mine["resumed"]["from_round"] == 3 and "resumed" not in theirs and "interrupted" not in mine
    assert {k: v for k, v in mine.items() if k not in WALL_CLOCK} == \
        {k: v for k, v in theirs.items() if k not in WALL_CLOCK}
    assert not (run / rundir.RESUME).exists()  # the journal goes once the run is finished
    # the replayed rounds keep the interrupted run's wall times
    kept = (runs[3] / rundir.TIMINGS).read_text().splitlines()
    assert (run / rundir.TIMINGS).read_text().splitlines()[:3] == kept


def _resume(args, capsys) -> tuple[int, str]:
    code = main(["run", *args])
    return code, capsys.readouterr().err.strip()


def test_resume_refuses_a_finished_run(runs, capsys):
    reference = runs[0]
    before = sorted(p.name for p in reference.rglob("*"))
    code, err = _resume(["--resume", str(reference)], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err == f"cohep: error: {reference} holds a finished run ({ROUNDS} rounds): nothing to resume"
    assert sorted(p.name for p in reference.rglob("*")) == before


def test_resume_refuses_another_config_and_a_corrupted_directory(runs, tmp_path, capsys, mnist_dir):
    kept = runs[3]
    run = tmp_path / "run"
    shutil.copytree(kept, run)
    code, err = _resume(["--resume", str(run), "--rounds", "5"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "was run with another config (differs in experiment.rounds)" in err
    # a kept proposal changed (the store's blob the journal names): the replay stops at it, one line,
    # and the directory stays as it was
    listing = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    state = json.loads((run / rundir.RESUME / "state.json").read_text())
    blob = run / rundir.STORE / f"{next(iter(state['aliases'].values()))}.safetensors"
    blob.write_bytes(blob.read_bytes()[:-1] + bytes([blob.read_bytes()[-1] ^ 1]))
    code, err = _resume(["--resume", str(run)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "not resumable" in err and "Traceback" not in err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == listing
    # the resume state gone, or not JSON
    (run / rundir.RESUME / "state.json").write_text("{not json")
    code, err = _resume(["--resume", str(run)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "state.json: malformed resume state" in err
    (run / rundir.RESUME / "state.json").unlink()
    code, err = _resume(["--resume", str(run)], capsys)
    assert code == 2 and "state.json: cannot read the resume state" in err
    code, err = _resume(["--resume", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "is not a run directory" in err
    # a config file beside --resume must be the run's own; --out is the directory itself
    code, err = _resume(["--resume", str(run), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--resume continues the run directory it names" in err


def test_resume_print_config_shows_the_runs_own_config(runs, capsys):
    kept = runs[3]
    assert main(["run", "--resume", str(kept), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert f"rounds = {ROUNDS}" in out and "[experiment]" in out


def test_sigint_in_a_cli_run_keeps_rounds_and_resumes(runs, tmp_path, mnist_dir):
    """A real Ctrl-C (SIGINT) to ``python -m cohep run``: one line, exit 130, no traceback, the finished
    rounds kept; the resumed run's records and final weights are the uninterrupted run's."""
    reference = runs[0]
    cfg_file = tmp_path / "exp.toml"
    from cohep.cli import toml_text

    cfg_file.write_text(toml_text(settings(mnist_dir)))
    run = tmp_path / "run"
    env = {**os.environ, "COHEP_PROGRESS": "lines", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cohep", "run", "--config", str(cfg_file), "--out", str(run),
                             "--no-figure"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=ctrl_c_reaches_it)
    lines = []
    deadline = time.monotonic() + 300
    assert proc.stderr is not None
    for text in proc.stderr:
        lines.append(text)
        if text.startswith(f"round 1/{ROUNDS}:"):
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)
    rest = proc.stderr.read()
    code = proc.wait(timeout=300)
    err = (rest or "").strip().splitlines()
    assert code == 130, "".join(lines) + (rest or "")
    assert "Traceback" not in (rest or "")
    stopped = re.fullmatch(rf"cohep: interrupted in round (\d+) of {ROUNDS}; rounds? (?:1-)?(\d+) kept in (.+); "
                           r"resume with: cohep run --resume (.+)", err[-1])
    assert stopped is not None, err
    done = int(stopped.group(2))
    assert done == int(stopped.group(1)) - 1 >= 1 and stopped.group(3) == stopped.group(4) == str(run)
    assert ("round 1 kept" in err[-1]) == (done == 1)
    assert {r.round for r in read_csv(run / rundir.RECORDS)} == set(range(done + 1))
    assert json.loads((run / rundir.MANIFEST).read_text())["interrupted"]["rounds_done"] == done
    assert main(["run", "--resume", str(run), "--no-figure"]) == 0
    for name in (rundir.RECORDS, rundir.WEIGHTS):  # neither names the run's folder
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_baseline_run_resumes_too(tmp_path, mnist_dir, one_torch_thread):
    """``individual`` mode: no chain and no store, so the journal keeps the proposals itself."""
    over = {"experiment": {"mode": "individual", "rounds": 3}}
    here = tmp_path / "run"
    run_experiment(config.load(None, settings(mnist_dir, **over)), here, figure=False)
    reference = here.rename(tmp_path / "reference")
    with pytest.raises(RunInterrupted, match="rounds? (1-)?1 kept"):
        run_experiment(config.load(None, settings(mnist_dir, **over)), here, figure=False, on_round=stop_after(1))
    assert len(list((here / rundir.RESUME).glob("*.safetensors"))) == 3  # each learner's round-1 proposal
    resume_experiment(here, config.load(None, settings(mnist_dir, **over)), figure=False)
    for name in (rundir.RECORDS, rundir.WEIGHTS):
        assert (here / name).read_bytes() == (reference / name).read_bytes(), name


def test_ctrl_c_while_replaying_leaves_what_was_kept(runs, tmp_path):
    kept = runs[3]
    run = tmp_path / "run"
    shutil.copytree(kept, run)
    before = {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunInterrupted) as stopped:
        resume_experiment(run, figure=False, on_round=stop_after(1))  # round 1 of the 2 kept
    assert stopped.value.line.startswith(f"interrupted in round 3 of {ROUNDS}; rounds 1-2 kept in {run}")
    assert {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
