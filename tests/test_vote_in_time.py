"""A voter votes in time whatever the proposer's store does: on a real Anvil node (0.25 s blocks, a
20-block vote window), a proposal served at 1 byte/s, withheld (404) or unreachable (connection
refused) costs the voter one reject vote with its reason, mined by the vote deadline.

The voter is the node's own code (``cohep.run.node.act_in_time``: the deadline from the chain's block
times, ``cohep.run.pace``) over a real member (MemberWiring, a torch learner); the proposer is a key
that announces a URI into its store, a real HTTP server (``cohep.testing.dishonest_store.DishonestStore``).
Run with ``-s`` to see the seconds each vote took: the numbers docs/nodes.md quotes.
"""
import hashlib

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cohep import models
from cohep.frameworks.training import TrainConfig
from cohep.ledger.anvil import Anvil, dev_private_keys, free_port
from cohep.models import ModelSpec
from cohep.protocol.combine import RoundSection
from cohep.protocol.member import MemberWiring
from cohep.protocol.view import RoundView
from cohep.protocol.vote import VoteRule
from cohep.run.node import act_in_time
from cohep.run.pace import Pace
from cohep.testing.dishonest_store import DishonestStore
from cohep.wire.checks import default_max_bytes
from cohep.wire.fetch import Fetcher
from cohep.wire.store import WeightStore

pytestmark = [pytest.mark.anvil, pytest.mark.usefixtures("one_torch_thread")]

BLOCK_S, VOTE_WINDOW = 0.25, 20


@pytest.fixture(scope="module")
def anvil(tmp_path_factory):
    from cohep.ledger import Chain

    node = Anvil(block_time=BLOCK_S, accounts=3, log=tmp_path_factory.mktemp("anvil") / "anvil.log").start()
    Chain.connect(node.url, 0).wait_blocks(64, poll_s=0.1)  # a chain with a history to measure its pace by
    yield node
    node.stop()


def _digits(n, seed):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


@pytest.mark.parametrize("case, reason", [
    ("drip 1 byte/s", r"^timeout: \d+ bytes of [\d.]+ kB in \d+\.\d s$"),
    ("404 to this voter", r"^unavailable: HTTP 404 Not Found$"),
    ("connection refused", r"^unavailable: connection refused$"),
])
def test_the_voter_casts_a_reject_with_the_reason_before_the_deadline(anvil, tmp_path, case, reason):
    from cohep.ledger import Chain, Coordinator

    keys = dev_private_keys(3)
    chain = Chain.connect(anvil.url, 0, private_keys=keys[1:3])
    a, b = chain.accounts[:2]
    spec = ModelSpec("mnist_cnn", (1, 28, 28), 10, {"width": 4})
    initial = models.initial_weights(spec, 0)
    shared = WeightStore(str(tmp_path / "shared"))
    initial_digest, initial_uri = shared.put(initial)
    coord = Coordinator.deploy(chain, [a, b], proposal_window=20, vote_window=VOTE_WINDOW,
                               initial_digest=initial_digest, model_digest=hashlib.sha256(b"m").digest(),
                               seed=hashlib.sha256(case.encode()).digest(), sender=a, start=False, sealed=False)
    chain.wait_blocks(1, poll_s=0.05)
    coord.start(a)  # from the block after the deployment
    proposer = coord.proposer(0)
    voter = b if proposer == a else a
    mode = "drip" if case.startswith("drip") else "withhold" if case.startswith("404") else "honest"
    with DishonestStore(tmp_path / "slow", mode=mode, drip_s=1.0) as slow:
        url = slow.url if case != "connection refused" else f"http://127.0.0.1:{free_port()}"
        proposal = {k: v + np.float32(0.01) if v.dtype.kind == "f" else v for k, v in initial.items()}
        digest, _ = WeightStore(str(tmp_path / "slow"), public_url=url).put(proposal)
        mine = WeightStore(str(tmp_path / "voter"))
        fetcher = Fetcher([url, mine.base_uri, shared.base_uri], default_max_bytes(initial), reference=initial,
                          owners={proposer: [url, shared.base_uri], voter: [mine.base_uri, shared.base_uri]},
                          keep=mine.keep)
        learner = models.build_learner(spec, _digits(160, 0), _digits(40, 1), None,
                                       TrainConfig(batch_size=16, epochs=1.0, max_steps=2), seed=1, initial=initial)
        wiring = MemberWiring(coord, mine, fetcher, VoteRule(), RoundSection().policy(), initial_uri)
        p = wiring.member([a, b].index(voter), voter, learner)
        p.sync(coord.accepted_digest())
        coord.propose(proposer, 0, digest, f"{url}/{digest.hex()}.safetensors")
        view = RoundView.read(coord, 0)
        assert view.voting_open()
        duty, took = act_in_time(p, fetcher, view, Pace(chain), scoring_s=0.2)
    assert duty is not None and duty.voted and not duty.approve
    import re
    assert re.match(reason, duty.reason), duty.reason
    deadline = view.state.vote_deadline
    cast = [e for e in coord.events() if e.name in ("Voted", "Committed") and e.args.get("voter") == voter]
    assert len(cast) == 1 and cast[0].block <= deadline, (cast, deadline)
    window_s = (deadline - view.block) * BLOCK_S
    print(f"\n{case}: reject cast {took:.2f} s after the vote opened ({window_s:.2f} s of window left at the read), "
          f"mined at block {cast[0].block}, {deadline - cast[0].block} blocks before the deadline; {duty.reason}")
    assert took < window_s
    if case.startswith("drip"):
        assert took > window_s / 2  # the fetch had the window, less the margins, not a second more
    assert not mine.has(digest)  # nothing unverified is kept


def test_a_slow_slot_does_not_use_up_the_time_of_an_honest_one(anvil, tmp_path):
    """Two slots a round: slot A's store drips, slot B's serves at once. Both are fetched side by side,
    so B's proposal is judged on its scores and only A's is rejected for its timeout."""
    from cohep.ledger import Chain, Coordinator

    keys = dev_private_keys(3)
    chain = Chain.connect(anvil.url, 0, private_keys=keys)
    members = chain.accounts[:3]
    spec = ModelSpec("mnist_cnn", (1, 28, 28), 10, {"width": 4})
    initial = models.initial_weights(spec, 0)
    shared = WeightStore(str(tmp_path / "shared"))
    initial_digest, initial_uri = shared.put(initial)
    coord = Coordinator.deploy(chain, members, proposal_window=20, vote_window=VOTE_WINDOW, proposers=2,
                               initial_digest=initial_digest, model_digest=hashlib.sha256(b"m").digest(),
                               seed=hashlib.sha256(b"two slots").digest(), sender=members[0], start=False, sealed=False)
    chain.wait_blocks(1, poll_s=0.05)
    coord.start(members[0])
    slow_p, fast_p = coord.proposers_of(0)
    voter = next(m for m in members if m not in (slow_p, fast_p))
    with DishonestStore(tmp_path / "slow", mode="drip") as slow, DishonestStore(tmp_path / "fast") as fast:
        announced = []
        for k, (who, store) in enumerate([(slow_p, slow), (fast_p, fast)]):
            w = {n: v + np.float32(0.01 * (k + 1)) if v.dtype.kind == "f" else v for n, v in initial.items()}
            d, uri = WeightStore(str(store.folder), public_url=store.url).put(w)
            announced.append((who, d, uri))
        mine = WeightStore(str(tmp_path / "voter"))
        fetcher = Fetcher([slow.url, fast.url, mine.base_uri, shared.base_uri], default_max_bytes(initial),
                          reference=initial, owners={slow_p: [slow.url], fast_p: [fast.url], voter: [mine.base_uri]},
                          keep=mine.keep)
        learner = models.build_learner(spec, _digits(160, 0), _digits(40, 1), None,
                                       TrainConfig(batch_size=16, epochs=1.0, max_steps=2), seed=1, initial=initial)
        wiring = MemberWiring(coord, mine, fetcher, VoteRule(), RoundSection().policy(), initial_uri)
        p = wiring.member(members.index(voter), voter, learner)
        p.sync(coord.accepted_digest())
        for slot, (who, d, uri) in enumerate(announced):
            coord.propose(who, 0, d, uri, slot)
        view = RoundView.read(coord, 0)
        assert view.voting_open()
        duty, took = act_in_time(p, fetcher, view, Pace(chain), scoring_s=0.2)
    assert duty is not None and duty.voted
    assert duty.reason.startswith("slot 0: timeout:") and "slot 1" not in duty.reason, duty.reason
    assert mine.has(announced[1][1]) and not mine.has(announced[0][1])  # the verified one is kept
    cast = [e for e in coord.events() if e.name in ("Voted", "Committed") and e.args.get("voter") == voter]
    assert len(cast) == 1 and cast[0].block <= view.state.vote_deadline
    print(f"\ntwo slots, one dripping: ballot {duty.verdicts} cast after {took:.2f} s; {duty.reason}")
