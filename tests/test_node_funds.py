"""A member whose key runs out of ETH mid-run: its ``cohep node`` says in one line which address needs
how much and stops (exit 2) at the next round's start, instead of retrying its transactions for
minutes. Real Anvil and real ``cohep node`` processes; ``anvil_setBalance`` empties the key.
"""
from __future__ import annotations

import time

import pytest

from cohep.testing.localnet import LocalNet, split_npz

pytestmark = [pytest.mark.anvil, pytest.mark.nodes, pytest.mark.slow]


def test_a_node_whose_funds_run_out_mid_run_says_who_needs_how_much_and_stops(tmp_path):
    from cohep.ledger import Chain
    from cohep.testing.synthetic import synthetic_digits

    data = split_npz(*synthetic_digits(300, seed=0), tmp_path / "data", 3)
    settings = {"model": {"name": "mnist_cnn"}, "train": {"epochs": 1}, "experiment": {"rounds": 6},
                "chain": {"proposal_window": 120}}
    with LocalNet(tmp_path / "net", data, settings=settings) as net:
        coord = net.coordinator()
        net.wait(lambda: coord.round() >= 1, 240, "round 1 to be decided")
        poor = 2
        address = net.experiment.members[poor].address
        chain = Chain.connect(net.anvil.url, 0)
        assert "error" not in chain.w3.provider.make_request("anvil_setBalance", [address, hex(10**9)])
        emptied = time.monotonic()
        code = net.procs[poor].wait(60)  # one round at most: 40-block windows of 0.25 s blocks
        took = time.monotonic() - emptied
        lines = [line for line in (net.root / f"node{poor}.log").read_text().splitlines() if line.strip()]
    assert code == 2, lines[-5:]
    last = lines[-1]
    assert "Traceback" not in "\n".join(lines), lines[-20:]
    assert address in last and "needs" in last and "ETH" in last and "holds 1e-09 ETH" in last, last
    assert "start the node again" in last and "round" in last, last
    assert not any("retrying" in line for line in lines), [line for line in lines if "retrying" in line]
    assert took < 60, took
