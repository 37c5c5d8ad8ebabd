"""``cohep status`` names every suspension: the member, the round, the duty whose miss caused it (the
reason contract v4's ``Suspended`` event carries) and whether and when the member rejoined.

On a real chain: Anvil (mining on demand), an experiment deployed as ``cohep deploy`` does, driven by
the members' own keys so that one misses a proposal, one a vote and one a reveal; ``status`` is the
real command in its own process.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from cohep.ledger.anvil import Anvil, dev_private_keys


@pytest.fixture(scope="module")
def suspended(tmp_path_factory):
    """A deployed experiment in which round 1's proposer missed its proposal and rejoined, and in
    round 2 one voter committed without revealing and the other did not vote at all."""
    from cohep.config import experiment as config
    from cohep.ledger import Chain, Coordinator
    from cohep.run.deploy import MemberSpec, deploy
    from cohep.testing.synthetic import synthetic_digits

    root = tmp_path_factory.mktemp("status")
    x, y = synthetic_digits(60, seed=0)
    np.savez(root / "data.npz", x=x, y=y)
    dev = dev_private_keys(5)
    with Anvil(accounts=5, log=root / "anvil.log") as anvil:
        chain = Chain.connect(anvil.url, 0, private_keys=dev[1:])  # the members' own keys
        members = [MemberSpec(a, str(root / f"store{i}")) for i, a in enumerate(chain.accounts)]
        cfg = config.load(None, {"experiment": {"name": "suspensions", "rounds": 4, "seed": 1, "protocol": "paper"},
                                 "model": {"name": "mnist_cnn"},
                                 "chain": {"proposal_window": 3, "vote_window": 3, "max_missed": 1}})
        exp = deploy(cfg, data_path=str(root / "data.npz"), members=members, rpc=anvil.url, deployer_key=dev[0],
                     store=str(root / "shared"), out=root / "experiment.json")
        coord = Coordinator.at(chain, exp.contract)
        lazy = coord.proposer(0)
        chain.mine(5)  # round 1's proposer lets the proposal window pass
        assert coord.finalize(chain.accounts[0], 0).void
        coord.rejoin(lazy)  # active again from round 3: round 2 started without it
        st = coord.round_state(1)
        assert lazy not in (st.proposer, *st.voters) and len(st.voters) == 2
        coord.propose(st.proposer, 1, hashlib.sha256(b"r2").digest(), "/store/" + "aa" * 32 + ".safetensors")
        hider, absent = st.voters
        coord.commit_vote(hider, 1, b"\x07" * 32)
        chain.mine(12)  # the vote and reveal windows pass with no reveal
        coord.finalize(chain.accounts[0], 1)
        index = {m.lower(): i for i, m in enumerate(coord.members())}
        yield {"root": root, "url": anvil.url, "coord": coord, "lazy": index[lazy.lower()],
               "hider": index[hider.lower()], "absent": index[absent.lower()], "addresses": coord.members()}


def test_status_lists_every_suspension_with_its_reason_and_rejoin(suspended):
    env = dict(os.environ, COHEP_PROGRESS="0", COLUMNS="220")
    proc = subprocess.run([sys.executable, "-m", "cohep", "status", "--experiment",
                           str(suspended["root"] / "experiment.json"), "--rpc", suspended["url"]],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\W*(\d)\W+0x[0-9a-fA-F]{40}\W+\d\W+(missed|committed).*$",
                                                             proc.stdout, re.M)}
    assert "suspensions" in proc.stdout, proc.stdout
    lazy, hider, absent = suspended["lazy"], suspended["hider"], suspended["absent"]
    assert set(rows) == {lazy, hider, absent}, proc.stdout
    assert re.search(r"\b1\W+missed proposal\W+active from round 3\b", rows[lazy]), rows[lazy]
    assert re.search(r"\b2\W+committed but did not reveal\W+no\b", rows[hider]), rows[hider]
    assert re.search(r"\b2\W+missed vote\W+no\b", rows[absent]), rows[absent]


def test_watch_lines_say_each_suspension_and_rejoin(suspended):
    from cohep.run.status import watch_lines

    coord, addr = suspended["coord"], suspended["addresses"]
    lines: list[str] = []
    watch_lines(coord, interval=0, until_round=coord.round(), echo=lines.append)  # one pass: every round is decided
    said = [line for line in lines if line.startswith("member ")]
    lazy, hider, absent = suspended["lazy"], suspended["hider"], suspended["absent"]
    assert said[0] == (f"member {lazy} {addr[lazy]}: suspended in round 1 (missed proposal); "
                       f"rejoined, active again from round 3"), lines
    assert sorted(said[1:]) == sorted([
        f"member {hider} {addr[hider]}: suspended in round 2 (committed but did not reveal); still suspended",
        f"member {absent} {addr[absent]}: suspended in round 2 (missed vote); still suspended"]), lines
