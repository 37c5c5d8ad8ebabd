"""A node's own liveness: it rejoins when it finds itself suspended (and says why), retries a transient
fault until a stated time and then stops with one line, and stamps every log line with the time.

The chain is the embedded one with the real contract; the retries are the node's own loop helpers.
"""
import hashlib
import re
from types import SimpleNamespace

import pytest

from cohep.core.errors import ChainError, CohepError
from cohep.run import node
from cohep.run.node import NodeFault, NodeOptions
from cohep.wire.checks import Unavailable


def test_a_suspended_member_rejoins_and_says_why(capsys):
    from cohep.ledger import Chain, Coordinator

    chain = Chain.embedded(3)
    members = chain.accounts[:3]
    coord = Coordinator.deploy(chain, members, proposal_window=3, vote_window=3, max_missed=1,
                               initial_digest=b"\x01" * 32, model_digest=hashlib.sha256(b"m").digest(),
                               seed=hashlib.sha256(b"rejoin").digest())
    proposer = coord.proposer(0)
    coord.propose(proposer, 0, b"\x02" * 32, "/store/" + "02" * 32 + ".safetensors")
    chain.mine(5)
    coord.finalize(proposer, 0)  # neither voter voted: with max_missed 1, both are suspended
    absent = next(m for m in members if m != proposer)
    assert coord.member_stats(absent).suspended
    me = SimpleNamespace(address=absent)
    node._rejoin(me, coord, NodeOptions(), coord.round(), 10)
    assert not coord.member_stats(absent).suspended
    line = capsys.readouterr().err.strip()
    assert re.match(r"^\d\d:\d\d:\d\d round 2 of 10: this member was suspended in round 1\b.*; rejoined "
                    r"\(active again from round 3\)$", line), line
    node._rejoin(me, coord, NodeOptions(), coord.round(), 10)  # active: nothing to do, nothing said
    assert capsys.readouterr().err == ""


def test_a_transient_fault_is_retried_until_a_stated_time_then_one_line(capsys, monkeypatch):
    monkeypatch.setattr(node.time, "sleep", lambda s: None)
    tries = []

    def gone():
        tries.append(1)
        raise Unavailable("unavailable: connection refused")

    opts = NodeOptions(reconnect_s=0.05)
    with pytest.raises(NodeFault, match=r"^initial weights: unavailable: connection refused \(gave up after 0 s "
                                        r"of retrying\)$") as err:
        node._retrying(opts, "initial weights", gone)
    assert isinstance(err.value, CohepError) and err.value.exit_code == 2 and len(tries) > 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1  # one line, not one per try
    assert re.match(r"^\d\d:\d\d:\d\d initial weights: unavailable: connection refused "
                    r"\(retrying until \d\d:\d\d:\d\d\)$", lines[0]), lines
    assert node._retrying(opts, "chain", lambda: 7) == 7

    calls = iter([ChainError("down"), ChainError("down"), "back"])

    def flaky():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert node._retrying(NodeOptions(reconnect_s=60), "chain", flaky) == "back"


def test_a_permanent_fault_is_not_retried():
    from cohep.wire.checks import BadBlob

    def bad():
        raise BadBlob("fc.bias holds 3 non-finite values (NaN or inf)")

    with pytest.raises(BadBlob):  # not transient: _retrying lets it through at once
        node._retrying(NodeOptions(reconnect_s=60), "initial weights", bad)


def test_chain_messages_count_rounds_from_1():
    assert node.one_based("propose(round 1) rejected by the contract: proposal window closed") == \
        "propose in round 2 rejected by the contract: proposal window closed"
    assert node.one_based("commit_vote(round 0) failed: refused") == "commit_vote in round 1 failed: refused"
    assert node.one_based("cannot read the block number") == "cannot read the block number"


def test_a_restarted_nodes_first_connect_is_retried_until_a_stated_time(capsys, monkeypatch):
    """A node restarted in a folder that followed the chain (``known``) retries its first connect
    with the bounded-retry helper: one line with the time it goes on until, then NodeFault; a fresh
    node with a dead URL fails at once."""
    from cohep.ledger.anvil import dev_private_keys, free_port

    monkeypatch.setattr(node.time, "sleep", lambda s: None)
    dead = f"http://127.0.0.1:{free_port()}"
    key = SimpleNamespace(private_key=dev_private_keys(1)[0])
    with pytest.raises(ChainError, match="no Ethereum JSON-RPC node") as fresh:
        node._connect(dead, key, NodeOptions(reconnect_s=60))
    assert not isinstance(fresh.value, NodeFault)
    with pytest.raises(NodeFault, match=r"^chain: no Ethereum JSON-RPC node at .*\(gave up after 0 s of retrying\)$"):
        node._connect(dead, key, NodeOptions(reconnect_s=0.3), known=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.match(r"^\d\d:\d\d:\d\d chain: no Ethereum JSON-RPC node at .*"
                                        r"\(retrying until \d\d:\d\d:\d\d\)$", lines[0]), lines
