"""The ledger plumbing: artifact reproducibility, chains (embedded and JSON-RPC), client details."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from eth_account import Account
from web3 import Web3

from cohep.core.errors import ChainError
from cohep.ledger import Chain, Coordinator, Outcome, load_artifact
from cohep.ledger.contract_client import EMBEDDED_TX_GAS, send as _send
from cohep.ledger.events import EVENT_NAMES

SEED = hashlib.sha256(b"ledger seed").digest()
INITIAL = hashlib.sha256(b"initial").digest()
MODEL = hashlib.sha256(b"model").digest()


def deploy(chain: Chain, members: list[str], **kw) -> Coordinator:
    kw = {"seed": SEED, "initial_digest": INITIAL, "model_digest": MODEL, "sealed": False, **kw}
    return Coordinator.deploy(chain, members, **kw)


def play_round(c: Coordinator, r: int, approve: bool = True) -> Outcome:
    p = c.proposer(r)
    c.propose(p, r, hashlib.sha256(f"r{r}".encode()).digest(), f"file:///store/r{r}")
    for m in c.members():
        if m != p:
            c.vote(m, r, approve, 0)
    return c.finalize(p, r)


# -- artifact --------------------------------------------------------------------------------


def test_artifact_recompiles_to_committed_json():
    pytest.importorskip("vyper")
    from cohep.ledger.artifact import compile_artifact, read_source

    committed = load_artifact()
    fresh = compile_artifact()
    assert committed["source_sha256"] == hashlib.sha256(read_source().encode()).hexdigest(), (
        "Coordinator.vy changed: run `python -m cohep.ledger.artifact`")
    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["bytecode_runtime"] == committed["bytecode_runtime"]
    assert fresh == committed


def test_load_artifact_needs_no_compiler():
    code = ("import sys; from cohep.ledger import load_artifact; a = load_artifact(); "
            "assert 'vyper' not in sys.modules; print(a['contract'], a['compiler'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Coordinator", "vyper", "0.4.3"]
    art = load_artifact()
    assert set(art) == {"contract", "compiler", "source_sha256", "abi", "bytecode",
                        "bytecode_runtime"}
    abi = [dict(entry) for entry in art["abi"]]
    assert {e["name"] for e in abi if e["type"] == "function"} >= {
        "propose", "vote", "finalize", "rejoin", "round", "required_for", "draw_slots", "permutation",
        "submit_ballots", "domain_separator", "start", "commit_vote", "submit_commits", "submit_reveals", "draw_seed"}
    assert {e["name"] for e in abi if e["type"] == "event"} == set(EVENT_NAMES) == {
        "Started", "RoundStarted", "Proposed", "Committed", "Voted", "Finalized", "RoundVoided", "Suspended",
        "Rejoined", "BallotSkipped"}  # the client decodes exactly these (its codec's event table)
    art["abi"].clear()  # callers get a copy
    assert load_artifact()["abi"] == abi


# -- embedded chain --------------------------------------------------------------------------


def test_embedded_chain_has_requested_funded_accounts():
    chain = Chain.embedded(12)
    assert chain.kind == "embedded"
    assert len(chain.accounts) == 12 == len(set(chain.accounts))
    assert all(Web3.is_checksum_address(a) for a in chain.accounts)
    assert all(chain.w3.eth.get_balance(a) >= 10**24 for a in chain.accounts)
    # The 12th account can actually send.
    chain.w3.eth.send_transaction({"from": chain.accounts[11], "to": chain.accounts[0],
                                   "value": 1})
    b = chain.block_number()
    chain.mine(3)
    assert chain.block_number() == b + 3


def test_embedded_blocks_are_the_same_with_or_without_a_filter_listening():
    """The embedded chain skips eth-tester's read-back of each mined block while no filter listens;
    a block filter installed through web3 still sees every block, and the blocks are the same."""
    quiet, heard = Chain.embedded(2), Chain.embedded(2)
    block_filter = heard.w3.eth.filter("latest")
    for chain in (quiet, heard):
        chain.w3.eth.send_transaction({"from": chain.accounts[1], "to": chain.accounts[0], "value": 1})
        chain.mine(2)
    assert [quiet.w3.eth.get_block(n)["hash"] for n in range(4)] == [heard.w3.eth.get_block(n)["hash"] for n in range(4)]
    assert len(block_filter.get_new_entries()) == 3


def test_client_accounting_and_uri_limit():
    chain = Chain.embedded(3)
    c = deploy(chain, chain.accounts[:3])
    # a creation costs at least 21,000 + 32,000 gas plus 200 per byte of deployed code
    assert c.gas_used >= 53_000 + 200 * len(chain.w3.eth.get_code(c.address))
    assert c.seconds > 0
    s0 = c.seconds
    p = c.proposer(0)
    with pytest.raises(ChainError, match="longer than 256 bytes"):
        c.propose(p, 0, b"\x01" * 32, "x" * 257)
    with pytest.raises(ValueError, match="32 bytes"):
        c.propose(p, 0, b"\x01" * 31, "x")
    c.propose(p, 0, b"\x01" * 32, "é" * 128)  # exactly 256 bytes of UTF-8
    assert c.round_state(0).uri == "é" * 128
    assert c.seconds > s0
    with pytest.raises(dataclasses.FrozenInstanceError):
        Outcome(0, True, False, b"", 1, 1, p, 1).accepted = False  # type: ignore[misc]


def test_at_reattaches_and_rejects_other_code():
    chain = Chain.embedded(3)
    c = deploy(chain, chain.accounts[:3])
    play_round(c, 0)
    again = Coordinator.at(chain, c.address.lower())
    assert again.address == c.address
    assert again.round() == 1 and again.accepted_digest() == c.accepted_digest()
    assert again.accepted_round() == 0
    assert [e.name for e in again.events()] == [e.name for e in c.events()]
    with pytest.raises(ChainError, match="no cohep Coordinator"):
        Coordinator.at(chain, chain.accounts[1])


def test_status_zero_receipt_becomes_chain_error():
    """A transaction that passes the pre-check but fails on chain still raises, with a reason."""
    chain = Chain.embedded(3)
    c = deploy(chain, chain.accounts[:3])
    fn = c._c.functions.finalize(0)
    chain.mine(60)  # proposal window passed: finalize would succeed with enough gas
    with pytest.raises(ChainError, match="out of gas"):
        _send(chain.w3, "finalize", fn, chain.accounts[0], fixed_gas=30_000)
    assert c.round() == 0


def test_64_members_worst_case_fits_the_gas_cap():
    """64 members voting one transaction each: finalize credits all 63 voters for the first time (their
    counters' bit planes written for the first time); and the worst case for the suspension
    bookkeeping, a round where nobody votes and all 63 voters are suspended at once (63 events). The
    contract takes 256 members, not 257."""
    chain = Chain.embedded(64)
    c = deploy(chain, chain.accounts, vote_window=100, max_missed=1)
    assert c.round_state(0).required == 32
    out = play_round(c, 0)
    assert (out.accepted, out.votes, out.approvals, out.required) == (True, 63, 63, 32)
    finalize_gas = chain.w3.eth.get_block("latest")["gasUsed"]  # one transaction per block
    assert finalize_gas < EMBEDDED_TX_GAS // 2, finalize_gas
    p = c.proposer(1)
    c.propose(p, 1, b"\x07" * 32, "u")
    chain.mine(100)
    out = c.finalize(p, 1)
    assert (out.accepted, out.votes) == (False, 0)
    suspend_gas = chain.w3.eth.get_block("latest")["gasUsed"]
    assert suspend_gas < EMBEDDED_TX_GAS // 2, suspend_gas
    assert sum(c.member_stats(m).suspended for m in chain.accounts) == 63
    assert c.round_state(2).proposer == p
    with pytest.raises(ChainError, match="at most 256 members"):
        Coordinator.deploy(chain, chain.accounts + [Account.create().address for _ in range(193)], seed=SEED,
                           initial_digest=INITIAL, model_digest=MODEL)


# -- JSON-RPC chains -------------------------------------------------------------------------


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_to_dead_node_fails_fast_with_one_line():
    url = f"http://127.0.0.1:{_unused_port()}"
    t0 = time.monotonic()
    with pytest.raises(ChainError) as info:
        Chain.connect(url, 2)
    assert time.monotonic() - t0 < 5
    assert str(info.value) == f"no Ethereum JSON-RPC node at {url}: nothing listens there (connection refused)"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_connect_rejects_non_http_url():
    with pytest.raises(ChainError, match="expected http"):
        Chain.connect("ftp://localhost:8545", 2)


@pytest.fixture(scope="module")
def rpc_node():
    """A minimal HTTP JSON-RPC node backed by eth-tester, standing in for anvil or geth."""
    from eth_abi import encode
    from eth_tester import EthereumTester, PyEVMBackend
    from web3._utils.encoding import Web3JsonEncoder
    from web3.providers.eth_tester import EthereumTesterProvider

    state = PyEVMBackend.generate_genesis_state(num_accounts=6)
    backend = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend(genesis_state=state))),
                   middleware=[])
    handle = backend.provider.request_func(backend, backend.middleware_onion)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            RPC_METHODS[req["method"]] += 1
            with lock:
                try:
                    resp = dict(handle(req["method"], req.get("params") or []))
                except Exception as exc:  # noqa: BLE001 - reply like geth does
                    msg = str(exc)
                    err = {"code": -32000, "message": msg}
                    if msg.startswith("execution reverted"):
                        reason = msg.partition(": ")[2]
                        data = "0x08c379a0" + encode(["string"], [reason]).hex()
                        err = {"code": 3, "message": msg, "data": data}
                    resp = {"error": err}
            resp.update(id=req["id"], jsonrpc="2.0")
            body = json.dumps(resp, cls=Web3JsonEncoder).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


#: JSON-RPC methods the fake node has served, by name
RPC_METHODS: collections.Counter = collections.Counter()


def test_connect_uses_unlocked_accounts(rpc_node):
    chain = Chain.connect(rpc_node, 5)
    assert chain.kind == rpc_node and len(chain.accounts) == 6
    assert chain.chain_id == Chain.embedded(1).chain_id
    b = chain.block_number()
    chain.mine(2)  # evm_mine
    assert chain.block_number() == b + 2
    c = deploy(chain, chain.accounts[:5])
    assert c._fixed_gas is None  # real nodes estimate gas
    with pytest.raises(ChainError, match=": not a member$"):
        c.propose(chain.accounts[5], 0, b"\x02" * 32, "u")
    out = play_round(c, 0, approve=False)
    assert (out.accepted, out.votes, out.approvals) == (False, 4, 0)
    with pytest.raises(ChainError, match="need 7 accounts but found 6"):
        Chain.connect(rpc_node, 7)


def test_connect_signs_locally_with_private_keys(rpc_node):
    unlocked = Chain.connect(rpc_node, 2)
    keys = ["0x" + "42" * 32, "0x" + "43" * 32]
    local = [Account.from_key(k).address for k in keys]
    assert not set(local) & set(unlocked.accounts)  # the node cannot sign for these
    for a in local:
        unlocked.w3.eth.send_transaction({"from": unlocked.accounts[0], "to": a,
                                          "value": 10**20})
    chain = Chain.connect(rpc_node, 2, private_keys=keys)
    assert chain.accounts == local
    asked = RPC_METHODS["eth_chainId"]
    c = deploy(chain, local, sender=local[1])
    out = play_round(c, 0)
    assert out.accepted and out.proposer in local
    # the chain id is asked once (and once more by web3's cache setting itself up), not five times a
    # transaction and twice a call
    assert RPC_METHODS["eth_chainId"] - asked <= 2, RPC_METHODS["eth_chainId"] - asked
    with pytest.raises(ChainError, match="need 3 accounts but found 2 private keys"):
        Chain.connect(rpc_node, 3, private_keys=keys)
    with pytest.raises(ChainError, match="malformed"):
        Chain.connect(rpc_node, 1, private_keys=["0x1234"])


# -- the client's own ABI codec --------------------------------------------------------------


@pytest.mark.parametrize("shape", [{}, {"proposers": 2}, {"proposers": 3, "combine": "average"}])
def test_client_codec_reads_what_web3_reads(shape):
    """The client encodes calls and decodes results and events with eth_abi directly (web3's
    contract layer was a tenth of a large batch): every event kind and view must come out as web3's
    own decoding gives it, values, types and argument order alike."""
    from cohep.ledger.events import plain as _plain

    chain = Chain.embedded(6)
    m = chain.accounts[:6]
    c = deploy(chain, m, max_missed=1, vote_window=3, **shape)
    for k in range(4):
        r = c.round()
        st = c.round_state(r)
        if k == 3:  # nobody proposes: a void round
            chain.mine(51)
            c.finalize(m[0], r)
            continue
        partial = k == 1 and len(st.slots) > 1  # one slot silent: voting opens after the window
        for s in st.slots:
            if not (partial and s.slot == 1):
                c.propose(s.proposer, r, hashlib.sha256(f"{k}{s.slot}".encode()).digest(), f"file:///x/{k}", slot=s.slot)
        if partial:
            chain.mine(50)
        st = c.round_state(r)
        one = len(st.slots) == 1 or c.settings().vote_on_average
        ballots = []
        for i, v in enumerate(st.voters[1:]):
            own = sum(1 << s.slot for s in st.slots if s.proposer == v)
            ballots.append(c.sign_ballot(v, r, 1 if one else st.proposed_slots & ~own,
                                         [1000 * i - 7] if one else [0] * len(st.slots)))
        c.submit_ballots(st.proposer, r, ballots + ballots[:1])  # the duplicate: BallotSkipped
        chain.mine(4)
        c.finalize(m[0], r)
    suspended = next(x for x in m if c.member_stats(x).suspended)
    c.rejoin(suspended)
    logs = sorted(chain.w3.eth.get_logs({"address": c.address, "fromBlock": 0, "toBlock": "latest"}),
                  key=lambda log: (log["blockNumber"], log["logIndex"]))
    events = c.events()
    assert {e.name for e in events} == {"Started", "RoundStarted", "Proposed", "Voted", "BallotSkipped", "Finalized",
                                        "RoundVoided", "Suspended", "Rejoined"}
    assert len(logs) == len(events)
    for log, ev in zip(logs, events):
        web3s = c._c.events[ev.name]().process_log(log)
        args = {k: _plain(v) for k, v in web3s["args"].items()}
        assert list(args.items()) == list(ev.args.items()), ev.name
        assert (web3s["blockNumber"], web3s["logIndex"], Web3.to_hex(web3s["transactionHash"])) == (
            ev.block, ev.log_index, ev.tx_hash)
    for name, args in [("round_info", (1,)), ("slot_info", (1, 0)), ("members", ()), ("member_stats", (m[1],)),
                       ("ballot", (1, m[2])), ("draw_slots", (5,)), ("permutation", (2,)), ("proposers_of", (1,)),
                       ("accepted_digest", ()), ("seed", ()), ("draw_seed", ()), ("vote_on_average", ()), ("round", ())]:
        ours, web3s = c._call(name, *args), getattr(c._c.functions, name)(*args).call({"from": m[0]})
        assert ours == web3s and type(ours) is type(web3s), name
    with pytest.raises(ChainError, match="do not fit the contract's ABI"):
        c.propose(m[0], -1, INITIAL, "file:///x")


def test_the_ledger_hashes_with_the_c_keccak_unless_the_user_chose_a_backend():
    """Importing the product (as the CLI does) makes eth-hash take safe-pysha3's keccak, 7x faster a hash
    than pycryptodome's, which py-evm spends on every trie node; a backend the user names is kept."""
    import os
    import subprocess
    import sys

    code = ("import cohep.cli\nfrom cohep.ledger import Chain\nChain.embedded(2)\nfrom eth_hash.auto import keccak\n"
            "assert keccak(b'') .hex().startswith('c5d246')\nprint(type(keccak.hasher.__self__).__name__)")
    env = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PySha3Backend", out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ETH_HASH_BACKEND": "pycryptodome"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "CryptodomeBackend", out.stderr
