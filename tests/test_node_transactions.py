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
