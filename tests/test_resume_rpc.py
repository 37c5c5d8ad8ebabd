"""``cohep run --rpc URL`` on a real Anvil: a real Ctrl-C keeps the finished rounds, and ``--resume``
continues the same experiment on that chain (the kept rounds replay on a fork of it, never as new
transactions there); a chain that went on, is gone or was reset is refused in one line."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from cohep.cli import main, toml_text
from cohep.config import experiment as config
from cohep.ledger.anvil import Anvil, free_port
from cohep.outputs import rundir
from cohep.protocol.records import read_csv
from cohep.run.audit import audit_run

pytestmark = [pytest.mark.anvil, pytest.mark.usefixtures("one_torch_thread")]

ROUNDS = 3



def ctrl_c_reaches_it() -> None:
    """The child's SIGINT back to its default, so that Python installs its Ctrl-C handler: a suite started
    in the background by a non-interactive shell (``cmd &``) inherits SIGINT ignored, and the run would
    then never see the signal these tests send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def settings(mnist_dir, url):
    """The guarded protocol (every member proposes): a Ctrl-C often lands after some of the next
    round's proposals reached the chain, which the resume must take up, not send again."""
    return config.merge({
        "experiment": {"learners": 3, "rounds": ROUNDS, "seed": 3, "protocol": "guarded"},
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 600, "holdout": 200},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 0.5, "batch_size": 32},
    }, {"chain": {"rpc": url}})


def events(run):
    return [json.loads(x) for x in (run / rundir.CHAIN_LOG).read_text().splitlines()]


def logs(url) -> int:
    """How many logs the node holds (every one is the run's contract's)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs",
                       "params": [{"fromBlock": "0x0", "toBlock": "latest"}]}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"})) as r:
        return len(json.loads(r.read())["result"])


def interrupt(cfg_file, run, url=None):
    """``python -m cohep run`` stopped by SIGINT once round 1 is shown (``url``: and once the next
    round's first proposal is on that chain): (exit code, its last line, all it wrote)."""
    env = {**os.environ, "COHEP_PROGRESS": "lines", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cohep", "run", "--config", str(cfg_file), "--out", str(run),
                             "--no-figure"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=ctrl_c_reaches_it)
    lines, deadline = [], time.monotonic() + 300
    assert proc.stderr is not None
    for text in proc.stderr:
        lines.append(text)
        if text.startswith(f"round 1/{ROUNDS}:"):
            if url is not None:
                seen = logs(url)
                while logs(url) == seen and time.monotonic() < deadline:
                    time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)
    rest = proc.stderr.read() or ""
    code = proc.wait(timeout=300)
    assert "Traceback" not in rest, rest
    return code, rest.strip().splitlines()[-1], "".join(lines) + rest


def test_a_round_half_on_the_chain_is_taken_up_not_sent_again(tmp_path, mnist_dir, capsys):
    """SIGINT once round 2's first proposal is on the chain: the resume's replay makes that proposal on
    the fork and goes on from there on the chain, so round 2 holds each proposal once."""
    with Anvil(accounts=3, log=tmp_path / "anvil.log") as node:
        cfg_file = tmp_path / "exp.toml"
        cfg_file.write_text(toml_text(settings(mnist_dir, node.url)))
        run = tmp_path / "run"
        code, last, text = interrupt(cfg_file, run, node.url)
        assert code == 130 and "round 1 kept" in last, text
        state = json.loads((run / rundir.RESUME / "state.json").read_text())
        assert logs(node.url) > state["chain"]["marks"][-1][0]  # part of round 2 reached the chain
        assert main(["run", "--resume", str(run), "--no-figure"]) == 0
        capsys.readouterr()
        log = events(run)
        proposed = [(int(e["args"]["round"]), int(e["args"]["slot"])) for e in log if e["name"] == "Proposed"]
        assert len(proposed) == len(set(proposed)) and {r for r, _ in proposed} == set(range(ROUNDS))
        assert [int(e["args"]["round"]) for e in log if e["name"] == "Finalized"] == list(range(ROUNDS))
        report = audit_run(run)
        assert report.clean, report.text()


def test_sigint_in_an_rpc_run_resumes_on_the_same_chain(tmp_path, mnist_dir, capsys):
    port = free_port()
    node = Anvil(port=port, accounts=3, log=tmp_path / "anvil.log").start()
    try:
        cfg_file = tmp_path / "exp.toml"
        cfg_file.write_text(toml_text(settings(mnist_dir, node.url)))
        run = tmp_path / "run"
        code, last, text = interrupt(cfg_file, run)
        assert code == 130, text
        stopped = re.fullmatch(rf"cohep: interrupted in round (\d+) of {ROUNDS}; rounds? (?:1-)?(\d+) kept in (.+); "
                               r"resume with: cohep run --resume (.+)", last)
        assert stopped is not None, last
        done = int(stopped.group(2))
        assert done >= 1
        kept_rows = (run / rundir.RECORDS).read_text().splitlines()
        kept = tmp_path / "kept"
        shutil.copytree(run, kept)
        block_before = node.block_number()

        assert main(["run", "--resume", str(run), "--no-figure"]) == 0
        capsys.readouterr()
        assert {r.round for r in read_csv(run / rundir.RECORDS)} == set(range(ROUNDS + 1))
        rows = (run / rundir.RECORDS).read_text().splitlines()
        assert rows[:len(kept_rows)] == kept_rows  # the kept rounds stand as they were, byte for byte
        log = events(run)
        started = [int(e["args"]["round"]) for e in log if e["name"] == "RoundStarted"]
        finalized = [int(e["args"]["round"]) for e in log if e["name"] == "Finalized"]
        proposed = [(int(e["args"]["round"]), int(e["args"]["slot"])) for e in log if e["name"] == "Proposed"]
        assert finalized == list(range(ROUNDS)) and started == list(range(ROUNDS + 1))
        assert len(proposed) == len(set(proposed))  # nothing proposed (or replayed) twice
        manifest = json.loads((run / rundir.MANIFEST).read_text())
        assert manifest["resumed"]["from_round"] == done + 1 and "interrupted" not in manifest
        assert manifest["chain"] == node.url and node.block_number() > block_before
        assert not (run / rundir.RESUME).exists()
        report = audit_run(run)
        assert report.clean, report.text()

        # the kept copy: its chain has gone on since (the resume above finished the run)
        assert main(["run", "--resume", str(kept), "--no-figure"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"went on past round {done + 1}" in err, err
    finally:
        node.stop()
    # the chain is gone
    assert main(["run", "--resume", str(kept), "--no-figure"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the run's chain is gone" in err, err
    # a fresh chain at the same URL: reset
    with Anvil(port=port, accounts=3):
        assert main(["run", "--resume", str(kept), "--no-figure"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no cohep contract" in err, err
    assert json.loads((kept / rundir.MANIFEST).read_text())["interrupted"]["rounds_done"] == done  # left as it was


def test_an_rpc_url_recorded_redacted_is_not_resumable_and_says_so(tmp_path, mnist_dir, capsys):
    """A URL holding a key (here user info) is written down redacted: the Ctrl-C line says the run
    cannot be resumed, and ``--resume`` refuses in one line instead of dialling a redacted URL."""
    from cohep.core.errors import RunInterrupted
    from cohep.run.local import run_experiment

    with Anvil(accounts=3) as node:
        url = node.url.replace("http://", "http://user:key@")
        cfg = config.load(None, settings(mnist_dir, url))
        run = tmp_path / "run"

        def stop(r):
            if r == 1:
                raise KeyboardInterrupt

        with pytest.raises(RunInterrupted) as stopped:
            run_experiment(cfg, run, figure=False, on_round=stop)
        assert str(stopped.value).endswith("its chain.rpc URL was recorded redacted (it held a key), "
                                           "so it cannot be resumed"), str(stopped.value)
        assert main(["run", "--resume", str(run), "--no-figure"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "recorded redacted" in err, err
