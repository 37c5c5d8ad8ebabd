"""Autonomous members on a real Ethereum node (Anvil): every fault case of the issue, end to end.

Three ``cohep node`` processes and one dishonest member (a real key, crafted proposals) run an
experiment on Anvil while the controller kills a voter mid-round, kills the next proposer before it
proposes, sends transactions from a non-member and restarts Anvil itself. Every case must be
survived and ``cohep audit`` must come out clean.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cohep.testing.localnet import PASSWORD, Adversary, LocalNet, drill_table, run_drills, split_npz

pytestmark = [pytest.mark.anvil, pytest.mark.nodes, pytest.mark.slow]


@pytest.fixture(scope="module")
def digits():
    from cohep.testing.synthetic import synthetic_digits

    return synthetic_digits(1200, seed=0)


@pytest.fixture(scope="module")
def drills(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("localnet")
    data = split_npz(*digits, root / "data", 3)
    # four members: the adversary proposes once per 4 rounds (an epoch), wherever the drawn order puts it in
    # each; two spare epochs, since a turn it loses (the chain restarted; a turn before every honest node has
    # acted on chain, which it leaves silent) or a late place in the last epoch would leave a case untried
    rounds = 4 * (len(Adversary.CASES) + 2) + 2
    with LocalNet(root, data, adversary=True,
                  settings={"experiment": {"rounds": rounds}, "model": {"name": "mnist_cnn"}}) as net:
        result = run_drills(net, log=lambda text: None)
        yield net, result


def test_every_fault_is_survived_and_the_audit_is_clean(drills):
    net, result = drills
    table = drill_table(result)
    assert table.splitlines()[-1] == f"faults survived: {len(result) - 1}/{len(result) - 1}, audit: clean", table
    cases = {d.case for d in result}
    assert set(Adversary.CASES) <= cases  # each crafted proposal really came up on the adversary's turns
    assert {"voter killed mid-round, restarted", "proposer killed before proposing", "non-member proposes and votes",
            "Ethereum node restarted mid-round", "proposer draw under attack"} <= cases


def test_rejections_carry_the_check_that_failed(drills):
    _, result = drills
    by_case = {d.case: d.outcome for d in result}
    assert "digest mismatch" in by_case["digest mismatch"]
    assert "non-finite" in by_case["NaN weights"]
    assert "the model expects" in by_case["wrong shapes"]
    assert "over the" in by_case["oversized blob"] and "cap" in by_case["oversized blob"]
    assert "outside the allowed stores" in by_case["URI outside the stores"]
    assert "non-canonical metadata" in by_case["re-encoded blob"]


def test_nodes_agree_and_hold_the_chains_weights(drills):
    net, _ = drills
    coord = net.coordinator()
    assert coord.round() == net.experiment.config.experiment.rounds
    assert set(net.final_digests()) == {coord.accepted_digest().hex()}
    for i in range(net.honest):
        records = net.node_records(i)
        assert [r.round for r in records] == list(range(net.experiment.config.experiment.rounds + 1))
        node = json.loads((net.root / f"node{i}" / "node.json").read_text())
        assert node["rpc"] == net.anvil.url and node["member_index"] == i  # a local URL: nothing to redact


def test_every_honest_node_keeps_every_accepted_blob(drills):
    """Accepted weights outlive their proposer: each honest node's own store (which its server serves)
    holds every accepted slot's blob, whoever proposed it, and the initial weights."""
    net, _ = drills
    coord = net.coordinator()
    accepted = {s.digest.hex() for r in range(coord.round()) for s in coord.round_state(r).slots if s.accepted}
    assert accepted
    for i in range(net.honest):
        held = {p.name.removesuffix(".safetensors") for p in (net.root / f"store{i}").glob("*.safetensors")}
        assert accepted | {net.experiment.initial_digest} <= held, i


def test_audit_cli_on_the_chain(drills):
    """After the run every node (and its server) is gone: one honest member's store is enough."""
    net, _ = drills
    mirrors = ["--mirror", str(net.root / "store1")]
    proc = subprocess.run([sys.executable, "-m", "cohep", "audit", "--experiment", str(net.root / "experiment.json"),
                           "--rpc", net.anvil.url, *mirrors], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("audit: clean") and "6 rejected proposal" not in proc.stdout
    status = subprocess.run([sys.executable, "-m", "cohep", "status", "--experiment", str(net.root / "experiment.json"),
                             "--rpc", net.anvil.url], capture_output=True, text=True)
    rounds = net.experiment.config.experiment.rounds
    assert status.returncode == 0 and f"round {rounds} of {rounds}" in status.stdout
    # the table shows the last 20 rounds: the adversary's late proposals were rejected, honest ones accepted
    assert "accepted" in status.stdout and "rejected" in status.stdout


def test_a_node_refuses_what_does_not_fit_with_one_line(drills, tmp_path, digits):
    import numpy as np

    from cohep.run import keys

    net, _ = drills
    env = {"COHEP_KEYSTORE_PASSWORD": PASSWORD, "COHEP_PROGRESS": "0", "PATH": "/usr/bin:/bin"}
    if os.environ.get("PYTHONPATH"):  # the checkout under test, not whichever cohep the venv installed
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    stranger = tmp_path / "stranger.json"
    keys.create(stranger, PASSWORD, kdf_n=2**4)
    x, y = digits
    np.savez(tmp_path / "small.npz", x=x[:100, :20, :20], y=y[:100])
    base = [sys.executable, "-m", "cohep", "node", "--experiment", str(net.root / "experiment.json"),
            "--rpc", net.anvil.url, "--out", str(tmp_path / "o")]
    for args, named in [
        (["--keystore", str(stranger), "--data", str(net.data[0])], "is not a member"),
        (["--keystore", str(net.root / "key1.json"), "--data", str(tmp_path / "small.npz")], "differ from the experiment"),
        (["--keystore", str(net.root / "key1.json"), "--data", str(tmp_path / "none.npz")], "none.npz"),
    ]:
        proc = subprocess.run(base + args, capture_output=True, text=True, env=env)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and err.count("\n") == 0 and named in err, err
    wrong = subprocess.run(base + ["--keystore", str(net.root / "key1.json"), "--data", str(net.data[0])],
                           capture_output=True, text=True, env=dict(env, COHEP_KEYSTORE_PASSWORD="nope"))
    assert wrong.returncode == 2 and "wrong password" in wrong.stderr
