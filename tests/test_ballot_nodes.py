"""Signed ballots between nodes: each member's store carries its ballot; any node submits the batch.

The ballot box drops what is not the voter's own valid ballot for the round (forged, misplaced,
malformed, oversized, a FIFO or a link planted under the name); the blob server serves ballot files
and nothing else new; and a real network (Anvil, one ``cohep node`` process per member, HTTP stores)
runs an experiment in which no member sends a single vote transaction.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
from eth_account import Account

from cohep.core.errors import IntegrityError
from cohep.wire.ballotbox import BallotBox, ballot_name
from cohep.wire.server import BlobServer
from cohep.ledger import ballots as B

CONTRACT = "0x" + "ab" * 20
DOMAIN = B.Domain(31337, CONTRACT)
KEYS = [Account.create() for _ in range(3)]


def _box(tmp_path, i: int) -> BallotBox:
    stores = {k.address: str(tmp_path / f"store{j}") for j, k in enumerate(KEYS)}
    return BallotBox(str(tmp_path / f"store{i}"), stores, DOMAIN)


def test_posted_ballots_are_collected_and_bad_files_dropped(tmp_path):
    boxes = [_box(tmp_path, i) for i in range(3)]
    voters = [k.address for k in KEYS]
    good = B.sign(KEYS[0].key, DOMAIN, 4, True, 12)
    boxes[0].post(good)
    assert (tmp_path / "store0" / ballot_name(CONTRACT, 4, voters[0])).is_file()
    assert not list((tmp_path / "store0").rglob("*.part"))  # temp name then rename
    # member 1 writes a ballot signed by member 2 under its own name; member 2's file is garbage
    boxes[1].post(B.SignedBallot(voters[1], *[getattr(B.sign(KEYS[2].key, DOMAIN, 4, False, 0), f)
                                                for f in ("round", "approvals", "scores_ppm", "v", "r", "s")]))
    junk = tmp_path / "store2" / ballot_name(CONTRACT, 4, voters[2])
    junk.parent.mkdir(parents=True)
    junk.write_text("{" * 10_000)
    reader = _box(tmp_path, 0)
    assert reader.collect(4, voters) == [good]
    assert len(reader.dropped) == 2 and "does not recover" in reader.dropped[0] and "over" in reader.dropped[1]
    # a ballot for another round under this round's name, and one for another contract
    for ballot in (B.sign(KEYS[2].key, DOMAIN, 5, True, 0), B.sign(KEYS[2].key, B.Domain(1, CONTRACT), 4, True, 0)):
        junk.write_text(ballot.to_json())
        assert reader.collect(4, voters) == [good]
    # a FIFO or a symlink under the name: skipped without hanging or following
    junk.unlink()
    os.mkfifo(junk)
    assert reader.collect(4, voters) == [good]
    junk.unlink()
    target = tmp_path / "elsewhere.json"
    target.write_text(B.sign(KEYS[2].key, DOMAIN, 4, True, 0).to_json())
    junk.symlink_to(target)
    assert reader.collect(4, voters) == [good]
    assert reader.collect(4, ["0x" + "00" * 20]) == []  # not a member of the box: not read


def test_commitments_and_reveals_are_dropped_for_the_same_reasons_as_ballots(tmp_path):
    """One check serves ballots, signed commitments and reveals: the voter named, the round, and (the
    signed ones) the signature; each refusal says which of the three it was."""
    boxes = [_box(tmp_path, i) for i in range(3)]
    voters = [k.address for k in KEYS]
    commit = B.sign_commit(KEYS[0].key, DOMAIN, 4, b"\x01" * 32)
    reveal = B.Reveal(voters[1], 4, 1, (0,), b"\x02" * 32)
    boxes[0].post(commit)
    boxes[1].post(reveal)
    reader = _box(tmp_path, 2)
    assert reader.collect_commits(4, voters) == [commit] and reader.collect_reveals(4, voters) == [reveal]
    assert reader.dropped == []
    forged = B.SignedCommit(voters[1], 4, b"\x01" * 32, commit.v, commit.r, commit.s)  # member 0's signature
    boxes[1].post(forged)
    boxes[0].post(B.Reveal(voters[0], 5, 1, (0,), b"\x02" * 32))  # another round's reveal under round 4's name
    (tmp_path / "store0" / ballot_name(CONTRACT, 5, voters[0], "reveal")).rename(
        tmp_path / "store0" / ballot_name(CONTRACT, 4, voters[0], "reveal"))
    assert reader.collect_commits(4, voters) == [commit] and reader.collect_reveals(4, voters) == [reveal]
    assert reader.dropped == [f"{voters[1]} round 4: commitment signature does not recover to its voter",
                              f"{voters[0]} round 4: reveal is for round 5"]
    with pytest.raises(IntegrityError, match="^commitment names voter"):
        reader.check_commit(commit, 4, voters[1])
    with pytest.raises(IntegrityError, match="^reveal names voter"):
        reader.check_reveal(reveal, 4, voters[0])
    with pytest.raises(IntegrityError, match="^ballot is for round 4"):
        reader.check(B.sign(KEYS[0].key, DOMAIN, 4, True, 0), 3, voters[0])


def test_blobserver_serves_ballots_and_nothing_beside(tmp_path):
    box = _box(tmp_path, 0)
    ballot = B.sign(KEYS[0].key, DOMAIN, 7, False, -3)
    box.post(ballot)
    (tmp_path / "store0" / "ballots" / "secret.json").write_text("{}")
    with BlobServer(tmp_path / "store0") as server:
        reader = BallotBox(str(tmp_path / "r"), {KEYS[0].address: server.url}, DOMAIN)
        assert reader.collect(7, [KEYS[0].address]) == [ballot]
        for path in ("/ballots/secret.json", f"/{ballot_name(CONTRACT, 7, KEYS[0].address)}/../x",
                     f"/{ballot_name(CONTRACT, 7, KEYS[0].address).upper()}"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(server.url + path, timeout=5)


@pytest.fixture(scope="module")
def signed_net(tmp_path_factory):
    from cohep.testing.localnet import LocalNet, split_npz
    from cohep.testing.synthetic import synthetic_digits

    root = tmp_path_factory.mktemp("signednet")
    data = split_npz(*synthetic_digits(600, seed=1), root / "data", 3)
    settings = {"experiment": {"rounds": 3}, "model": {"name": "mnist_cnn"}, "train": {"epochs": 1},
                "chain": {"ballots": "signed", "proposal_window": 240, "vote_window": 120}}
    with LocalNet(root, data, settings=settings) as net:
        net.wait_finished(timeout_s=400)
        yield net


@pytest.mark.anvil
@pytest.mark.nodes
@pytest.mark.slow
def test_nodes_vote_by_signed_ballots_through_their_stores(signed_net):
    net = signed_net
    coord = net.coordinator()
    events = coord.events()
    voted = [e for e in events if e.name == "Voted"]
    proposed = [e for e in events if e.name == "Proposed"]
    assert len(proposed) >= 2 and len(voted) == 2 * len(proposed)  # every voter, counted from the batches
    w3 = coord.w3
    committed = [e for e in events if e.name == "Committed"]
    assert len(committed) == len(voted)  # sealed: every vote committed first, revealed from the stores
    for kind, evs in (("submit_reveals", voted), ("submit_commits", committed)):  # in batches, none as a plain transaction
        for e in evs:
            tx = w3.eth.get_transaction(e.tx_hash)
            assert coord._c.decode_function_input(tx["input"])[0].fn_name == kind
    assert not [e for e in events if e.name == "BallotSkipped" and e.args["reason"] not in ("already voted",
                                                                                          "already committed")]
    stats = [json.loads((net.root / f"node{i}" / "node_stats.json").read_text()) for i in range(3)]
    assert all(s["ballots_dropped"] == [] for s in stats)
    assert sum(s["transactions"] for s in stats) <= 4 * 3 + 3  # propose, 2 batches, finalize (+ a few duplicates)
    assert len(set(net.final_digests())) == 1
    assert net.audit().clean
