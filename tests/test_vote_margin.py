"""How early a voter stops fetching (``cohep.run.pace.vote_margin``), and what it does when the window
is nearly gone (``cohep.run.node.act_in_time``): a loaded machine's honest voter must still get its
vote mined in the window (issue 25's drills on two busy cores).

The margin rule is a pure function of the voter's own recent work and the block time; the rest runs
the node's own code on a real Anvil node (0.25 s blocks) over a real member (MemberWiring, a torch
learner) and a real HTTP store.
"""
import hashlib
import re
import time

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep.run.pace import Pace, judge_margin, vote_margin


# -- the margin rule --------------------------------------------------------------------------------
def test_without_history_the_margin_is_two_blocks_and_the_floor():
    assert vote_margin([], 0.25) == pytest.approx(2.0)  # 2 x 0.25 s + 1.5 s
    assert vote_margin([], 2.0) == pytest.approx(5.5)  # a slower chain: 2 x 2 s + 1.5 s


def test_the_slowest_recent_round_counts_one_and_a_half_times():
    assert vote_margin([0.4, 0.6, 3.0], 0.25) == pytest.approx(5.0)  # 0.5 + 1.5 x 3.0
    assert vote_margin([0.4, 0.6, 0.8], 0.25) == pytest.approx(2.0)  # 1.5 x 0.8 = 1.2: the floor
    assert vote_margin([1.2], 1.0) == pytest.approx(3.8)  # 2 x 1 s + 1.5 x 1.2


def test_only_the_last_five_rounds_count():
    assert vote_margin([3.0, 0.2, 0.2, 0.2, 0.2, 0.2], 0.25) == pytest.approx(2.0)  # the 3 s round is six back
    assert vote_margin([3.0, 0.2, 0.2, 0.2, 0.2], 0.25) == pytest.approx(5.0)  # five back: it counts


def test_each_judged_proposal_needs_one_scoring_and_one_more():
    assert vote_margin([], 0.25, scoring_s=1.0, judged=2) == pytest.approx(3.5)  # 0.5 + 1.0 x 3
    assert vote_margin([], 0.25, scoring_s=1.0, judged=0) == pytest.approx(2.5)  # at least one judged
    assert vote_margin([4.0], 0.25, scoring_s=1.0, judged=2) == pytest.approx(6.5)  # 1.5 x 4 beats 3


def test_scoring_starts_only_with_two_blocks_and_the_slowest_recent_work_left():
    assert judge_margin([], 0.25) == pytest.approx(0.5)  # 2 blocks, no work measured yet
    assert judge_margin([0.4, 0.6, 3.0], 0.25) == pytest.approx(3.5)  # 0.5 + 3.0, not padded
    assert judge_margin([3.0, 0.2, 0.2, 0.2, 0.2, 0.2], 0.25) == pytest.approx(0.7)  # the last five
    assert judge_margin([], 0.25, scoring_s=0.2, judged=2) == pytest.approx(0.9)  # 0.5 + 2 x 0.2
    # a fetch cut off a little past its stop still scores: the stop leaves 1.1 s more than scoring needs
    assert vote_margin([], 0.25, scoring_s=0.2, judged=2) - judge_margin([], 0.25, scoring_s=0.2, judged=2) \
        == pytest.approx(1.1)


def test_the_time_left_counts_from_when_the_block_was_read():
    pace = Pace(None, default_s=0.25)  # no chain to measure: the stated block time
    assert pace.seconds_left(140, 100) == pytest.approx(8.0)  # 40 blocks = 10 s, less 2 s
    assert pace.seconds_left(140, 100, [2.0]) == pytest.approx(6.5)  # less 0.5 + 3 s
    assert pace.stop(140, 100, [2.0], read_at=1000.0) == pytest.approx(1006.5)
    assert pace.seconds_left(107, 100) == 0.0  # 1.75 s of window, 2 s of margin: nothing to fetch in
    assert pace.deadline_at(140, 100, read_at=1000.0) == pytest.approx(1010.0)


# -- the node's voter when the window is nearly gone, on Anvil --------------------------------------
BLOCK_S, VOTE_WINDOW = 0.25, 40


@pytest.fixture(scope="module")
def anvil(tmp_path_factory):
    from cohep.ledger import Chain
    from cohep.ledger.anvil import Anvil

    node = Anvil(block_time=BLOCK_S, accounts=3, log=tmp_path_factory.mktemp("anvil") / "anvil.log").start()
    Chain.connect(node.url, 0).wait_blocks(64, poll_s=0.1)  # a history to measure the pace by
    yield node
    node.stop()


def _digits(n, seed):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def _voter_with_a_held_proposal(anvil, tmp_path, name: str):
    """A two-member contract whose round 0 has an honest proposal the voter already holds (fetched
    and checked, as an earlier look at the round leaves it), and the voter: (p, fetcher, coord, voter)."""
    from cohep import models
    from cohep.frameworks.training import TrainConfig
    from cohep.ledger import Chain, Coordinator
    from cohep.ledger.anvil import dev_private_keys
    from cohep.models import ModelSpec
    from cohep.protocol.combine import RoundSection
    from cohep.protocol.member import MemberWiring
    from cohep.protocol.vote import VoteRule
    from cohep.wire.checks import default_max_bytes
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    chain = Chain.connect(anvil.url, 0, private_keys=dev_private_keys(3)[1:3])
    a, b = chain.accounts[:2]
    spec = ModelSpec("mnist_cnn", (1, 28, 28), 10, {"width": 4})
    initial = models.initial_weights(spec, 0)
    shared = WeightStore(str(tmp_path / "shared"))
    initial_digest, initial_uri = shared.put(initial)
    coord = Coordinator.deploy(chain, [a, b], proposal_window=20, vote_window=VOTE_WINDOW,
                               initial_digest=initial_digest, model_digest=hashlib.sha256(b"m").digest(),
                               seed=hashlib.sha256(name.encode()).digest(), sender=a, start=False, sealed=False)
    chain.wait_blocks(1, poll_s=0.05)
    coord.start(a)
    proposer = coord.proposer(0)
    voter = b if proposer == a else a
    theirs = WeightStore(str(tmp_path / "proposer"))
    digest, uri = theirs.put({k: v + np.float32(0.01) if v.dtype.kind == "f" else v for k, v in initial.items()})
    mine = WeightStore(str(tmp_path / "voter"))
    fetcher = Fetcher([theirs.base_uri, mine.base_uri, shared.base_uri], default_max_bytes(initial),
                      reference=initial, owners={proposer: [theirs.base_uri], voter: [mine.base_uri]}, keep=mine.keep)
    learner = models.build_learner(spec, _digits(160, 0), _digits(40, 1), None,
                                   TrainConfig(batch_size=16, epochs=1.0, max_steps=2), seed=1, initial=initial)
    p = MemberWiring(coord, mine, fetcher, VoteRule(), RoundSection().policy(), initial_uri).member(
        [a, b].index(voter), voter, learner)
    p.sync(coord.accepted_digest())
    coord.propose(proposer, 0, digest, uri)
    p.adoption.proposal(uri, digest, proposer)  # held: fetched and checked on an earlier look
    return p, fetcher, coord, voter


def _cast(coord, voter):
    return [e for e in coord.events() if e.name in ("Voted", "Committed") and e.args.get("voter") == voter]


@pytest.mark.anvil
@pytest.mark.usefixtures("one_torch_thread")
def test_a_voter_past_its_last_moment_rejects_for_timeout_at_once_without_scoring(anvil, tmp_path):
    from cohep.protocol.view import RoundView
    from cohep.run.node import act_in_time

    p, fetcher, coord, voter = _voter_with_a_held_proposal(anvil, tmp_path, "late")
    view = RoundView.read(coord, 0)
    assert view.voting_open()
    scored = p.seconds["evaluation"]
    work = [1.0]  # its last round's work after the fetch took 1 s: scoring needs 0.5 + 1.0 s left
    # the view was read 9 s ago (a node busy since): of the 10 s window, under 1 s is left
    duty, took = act_in_time(p, fetcher, view, Pace(coord.chain), scoring_s=0.2, work=work,
                             read_at=time.monotonic() - 9.0)
    assert duty is not None and duty.voted and not duty.approve
    assert re.match(r"^timeout: no time left to judge it \(\d\.\d s to the deadline, 1\.5 s needed\)$",
                    duty.reason), duty.reason
    assert p.seconds["evaluation"] == scored  # not scored
    cast = _cast(coord, voter)
    assert len(cast) == 1 and cast[0].block <= view.state.vote_deadline
    assert len(work) == 2 and 0.0 < work[1] < took


@pytest.mark.anvil
@pytest.mark.usefixtures("one_torch_thread")
def test_a_voter_in_time_scores_the_held_proposal_and_measures_its_work(anvil, tmp_path):
    from cohep.protocol.view import RoundView
    from cohep.run.node import act_in_time

    p, fetcher, coord, voter = _voter_with_a_held_proposal(anvil, tmp_path, "in time")
    view = RoundView.read(coord, 0)
    scored = p.seconds["evaluation"]
    work: list[float] = []
    duty, took = act_in_time(p, fetcher, view, Pace(coord.chain), work=work)
    assert duty is not None and duty.voted
    assert not duty.reason.startswith("timeout"), duty.reason
    assert duty.scores is not None and p.seconds["evaluation"] > scored  # judged on its scores
    assert len(work) == 1 and 0.0 < work[0] <= took
    assert len(_cast(coord, voter)) == 1
