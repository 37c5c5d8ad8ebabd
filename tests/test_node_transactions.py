"""Issue 29, the client side of a round on a node: a transaction from a local key is one JSON-RPC batch
(nonce, latest block, tip, gas estimate) and the raw transaction, filled as web3 fills it; a revert is
still refused before sending, with the contract's reason; a challenge window's blocks are one request."""
from __future__ import annotations

import collections
import hashlib
from fractions import Fraction

import pytest

from cohep.core.errors import ChainError
from cohep.ledger import Chain, Coordinator
from cohep.ledger.contract_client import GAS_BUFFER


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def counting(chain: Chain) -> collections.Counter:
    """Every JSON-RPC method the chain's provider is asked from now on (a batch's, and the word 'batch')."""
    asked: collections.Counter = collections.Counter()
    provider = chain.w3.provider
    one, many = provider.make_request, provider.make_batch_request

    def make_request(method, params):
        asked[method] += 1
        return one(method, params)

    def make_batch_request(requests):
        asked["batch"] += 1
        asked.update(m for m, _ in requests)
        return many(requests)

    provider.make_request, provider.make_batch_request = make_request, make_batch_request
    return asked


def test_a_local_key_sends_in_two_requests_as_web3_fills_and_a_revert_is_refused_before_sending():
    from cohep.ledger.anvil import Anvil, dev_private_keys

    with Anvil(accounts=5) as anvil:
        chain = Chain.connect(anvil.url, 4, private_keys=dev_private_keys(5)[1:])
        c = Coordinator.deploy(chain, chain.accounts[:4], threshold=Fraction(1, 2), seed=h("n"),
                               initial_digest=h("i"), model_digest=h("m"), vote_window=20, sender=chain.accounts[0])
        r = c.round()
        s = c.round_state(r)
        asked = counting(chain)
        before = chain.block_number()
        receipt = c.propose(s.proposer, r, h("w"), "file:///w")
        sends = {k: v for k, v in asked.items() if k not in ("eth_getTransactionReceipt",)}
        assert sends == {"batch": 1, "eth_getTransactionCount": 1, "eth_getBlockByNumber": 1,
                         "eth_maxPriorityFeePerGas": 1, "eth_estimateGas": 1, "eth_sendRawTransaction": 1}, asked
        tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
        parent = chain.w3.eth.get_block(receipt["blockNumber"] - 1)
        assert receipt["blockNumber"] == before + 1 and tx["type"] == 2 and tx["from"] == s.proposer
        tip = chain.w3.eth.max_priority_fee
        assert tx["maxPriorityFeePerGas"] == tip and tx["maxFeePerGas"] == tip + 2 * parent["baseFeePerGas"]
        assert receipt["gasUsed"] <= tx["gas"] - GAS_BUFFER <= 2 * receipt["gasUsed"]  # the estimate, + web3's buffer
        assert tx["nonce"] == chain.w3.eth.get_transaction_count(s.proposer) - 1
        # a second transaction of the same sender takes the next nonce
        voter = s.voters[0]
        c.commit_vote(voter, r, h("c"))
        with pytest.raises(ChainError, match=r"propose\(round 0\) rejected by the contract: already proposed"):
            c.propose(s.proposer, r, h("w2"), "file:///w2")
        assert chain.block_number() == before + 2  # the refused one was never sent
        asked.clear()
        chain.mine(3)
        assert chain.block_number() == before + 5 and asked == {"anvil_mine": 1}


def test_a_finalize_lost_to_one_waiting_in_the_next_block_is_not_a_fault(tmp_path):
    """Every node finalizes a finalizable round; on a chain that mines on a clock the first one's
    transaction waits for the next block, and the others' estimates, made against that block, are
    refused ("wrong round") while the latest block still shows the round open (stop 34's CI: a node
    logged it as a chain fault and retried). The member that lost the race returns None, sends nothing."""
    import torch
    from torch.utils.data import TensorDataset

    from cohep import models
    from cohep.frameworks.training import TrainConfig
    from cohep.ledger.anvil import Anvil, dev_private_keys
    from cohep.models import ModelSpec
    from cohep.protocol.combine import RoundSection
    from cohep.protocol.member import MemberWiring
    from cohep.protocol.vote import VoteRule
    from cohep.run.node import round_moved_on
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    with Anvil(accounts=4) as anvil:
        chain = Chain.connect(anvil.url, 3, private_keys=dev_private_keys(4)[1:])
        a, b, c3 = chain.accounts
        c = Coordinator.deploy(chain, [a, b, c3], threshold=Fraction(1, 2), seed=h("race"), initial_digest=h("i"),
                               model_digest=h("m"), proposal_window=2, vote_window=2, sender=chain.accounts[0])
        r = c.round()
        chain.mine(3)  # nothing proposed in the window: the round may be finalized (void)
        assert not c.round_state(r).finalized
        assert "error" not in chain.w3.provider.make_request("evm_setAutomine", [False])
        first = c._encoded("finalize", (r,)).transact({"from": a})  # waits in the pool for the next block
        assert c.round() == r  # the latest block: still open
        with pytest.raises(ChainError, match=r"finalize\(round 0\) rejected by the contract: wrong round"):
            c.finalize(b, r)  # the raw race: the estimate, against the pending block, refuses it
        assert c.closed(r) and not c.closed(r + 1)
        spec = ModelSpec("mnist_cnn", (1, 28, 28), 10, {"width": 4})
        initial = models.initial_weights(spec, 0)
        store = WeightStore(str(tmp_path / "weights"))
        _, initial_uri = store.put(initial)
        g = torch.Generator().manual_seed(0)
        digits = TensorDataset(torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g))
        learner = models.build_learner(spec, digits, digits, None,
                                       TrainConfig(batch_size=16, epochs=1.0, max_steps=1), seed=1, initial=initial)
        fetcher = Fetcher(allowed=[store.base_uri], max_bytes=1 << 20)
        p = MemberWiring(c, store, fetcher, VoteRule(), RoundSection().policy(), initial_uri).member(2, c3, learner)
        sent = chain.w3.eth.get_transaction_count(c3, "pending")
        assert p.finalize(r) is None
        assert round_moved_on(c, r) and not round_moved_on(c, r + 1)  # a node's loop goes on without a retry
        assert chain.w3.eth.get_transaction_count(c3, "pending") == sent  # nothing sent
        chain.w3.provider.make_request("evm_mine", [])
        assert chain.w3.eth.get_transaction_receipt(first)["status"] == 1 and c.round() == r + 1
        assert not c.closed(r + 1)
