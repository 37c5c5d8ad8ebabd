"""Where the Coordinator lives: an in-process EVM (research mode) or any JSON-RPC node.

Both kinds expose the same small surface, so code that drives the protocol never branches on
which chain it talks to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from cohep.core.errors import ChainError

if TYPE_CHECKING:  # eth-tester is imported only when an embedded chain is made
    from eth_tester import EthereumTester

CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 60.0
#: the embedded chain's genesis time and seconds per block: fixed, so its block hashes (which the
#: proposer draw's seed mixes in) are the same in every run of one experiment
EMBEDDED_GENESIS_TIME = 1_700_000_000
EMBEDDED_BLOCK_SECONDS = 12


def _reproducible_backend(genesis_state: dict):
    """An eth-tester py-evm backend whose blocks depend only on what is sent to it.

    eth-tester stamps blocks with the wall-clock time and draws each block's ``prevrandao`` (mix
    hash) from os.urandom, so two runs of one experiment would see different block hashes, and the
    contract's draw seed (keccak256(seed, blockhash(deployed_block))) would differ between them. Here
    the genesis time is fixed, each block comes EMBEDDED_BLOCK_SECONDS after its parent, and the mix
    hash is the keccak of the parent's hash.

    The chain runs the Cancun rules, which the contracts are compiled for (``evm-version cancun``):
    eth-tester's default, Prague, adds system-contract work to every block (the block-hash history
    write, the request scans) that no experiment uses: 6 % of a 64-member aggregated round (issue 29).
    """
    from eth.vm.forks import CancunVM, ParisVM, PragueVM  # noqa: PLC0415
    from eth.vm.forks.cancun import get_total_blob_gas  # noqa: PLC0415
    from eth_tester import PyEVMBackend  # noqa: PLC0415
    from eth_tester.backends.pyevm.main import get_default_genesis_params  # noqa: PLC0415
    from eth_utils import keccak  # noqa: PLC0415

    class Reproducible(PyEVMBackend):
        def reset_to_genesis(self, *args, **kwargs):  # also what the constructor calls
            super().reset_to_genesis(*args, **kwargs)
            self._pin_pending_time()

        def _pin_pending_time(self) -> None:
            parent = self.chain.get_canonical_head()
            self.chain.header = self.chain.header.copy(timestamp=parent.timestamp + EMBEDDED_BLOCK_SECONDS)

        def revert_to_snapshot(self, snapshot):
            super().revert_to_snapshot(snapshot)
            self._pin_pending_time()

        def mine_blocks(self, num_blocks=1, coinbase=b"\0" * 20):
            hashes = []
            for _ in range(num_blocks):
                self._pin_pending_time()
                parent = self.chain.get_canonical_head()
                kwargs: dict = {"coinbase": coinbase}
                vm = self.chain.get_vm()
                if isinstance(vm, ParisVM):
                    kwargs["mix_hash"] = keccak(b"cohep prevrandao" + parent.hash)
                if isinstance(vm, PragueVM):
                    kwargs["blob_gas_used"] = sum(get_total_blob_gas(tx) for tx in self.chain.get_block().transactions)
                hashes.append(self.chain.mine_block(**kwargs).hash)
            self._pin_pending_time()
            return tuple(hashes)

    params = get_default_genesis_params({"timestamp": EMBEDDED_GENESIS_TIME})
    return Reproducible(genesis_parameters=params, genesis_state=genesis_state, vm_configuration=((0, CancunVM),))


def _tester_without_idle_filters(base: type) -> type:
    """eth-tester's EthereumTester, less the read-back of each mined block when nothing listens.

    After every block (a transaction's, or an empty one of a window) eth-tester reads the block back,
    fully serialised, to feed its block and log filters: 0.3 ms of a 1.1 ms block, 8 blocks in an
    aggregated round (issue 29). cohep installs no filter (its events are read by block range, which
    eth-tester answers from the blocks, and its outcomes from receipts); one installed through web3
    gets eth-tester's own path again."""

    class Tester(base):  # type: ignore[misc, valid-type]
        def mine_blocks(self, num_blocks=1, coinbase=None):
            listening = getattr(self, "_block_filters", True) or getattr(self, "_log_filters", True)
            if listening or not self.auto_mine_transactions:
                return super().mine_blocks(num_blocks, coinbase) if coinbase else super().mine_blocks(num_blocks)
            kwargs = {} if coinbase is None else {"coinbase": self.normalizer.normalize_inbound_account(coinbase)}
            raw = self.backend.mine_blocks(num_blocks, **kwargs)
            if len(raw) != num_blocks:
                raise RuntimeError(f"eth-tester mined {len(raw)} blocks of {num_blocks}")
            return [self.normalizer.normalize_outbound_block_hash(h) for h in raw]

    return Tester


@dataclass
class Chain:
    """A web3 handle plus the accounts the experiment may send from."""

    w3: Web3
    accounts: list[str]
    chain_id: int
    kind: str  # "embedded" or the RPC URL
    _tester: EthereumTester | None = field(default=None, repr=False)
    #: address -> private key, for signing ballots locally (the embedded chain's, or those given)
    _keys: dict = field(default_factory=dict, repr=False)
    #: whether the node mines several blocks in one request (``anvil_mine``); None until asked
    _many_blocks: bool | None = field(default=None, repr=False)
    #: whether the node answers JSON-RPC batches (contract_client.send_signed); None until asked
    _batches: bool | None = field(default=None, repr=False)

    @classmethod
    def embedded(cls, n_accounts: int = 10) -> Chain:
        """A fresh in-process py-evm chain with n_accounts funded, unlocked accounts; its blocks (hashes
        included) are the same in every run that sends it the same transactions."""
        from eth_tester import EthereumTester, PyEVMBackend  # noqa: PLC0415
        from web3.providers.eth_tester import EthereumTesterProvider  # noqa: PLC0415

        if n_accounts < 1:
            raise ChainError(f"need at least 1 account, asked for {n_accounts}")
        # eth-tester funds 10 accounts by default; a genesis state of our own gives N.
        state = PyEVMBackend.generate_genesis_state(num_accounts=n_accounts)
        tester = _tester_without_idle_filters(EthereumTester)(_reproducible_backend(state))
        w3 = Web3(EthereumTesterProvider(tester))
        # Every middleware but attrdict does work the in-process chain needs nothing of: chain-id
        # validation (four eth_chainId requests a transaction), ENS names, gas price strategies.
        for name in ("validation", "ens_name_to_address", "gas_price_strategy"):
            w3.middleware_onion.remove(name)
        accounts: list[str] = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
        keys = {k.public_key.to_checksum_address(): k for k in tester.backend.account_keys}
        return cls(w3, accounts, int(w3.eth.chain_id), "embedded", tester, keys)

    @classmethod
    def connect(
        cls, rpc_url: str, n_accounts: int, private_keys: list[str] | None = None
    ) -> Chain:
        """Attach to an HTTP JSON-RPC node; sign locally when private keys are given."""
        scheme = urlparse(rpc_url).scheme
        if scheme not in ("http", "https"):
            raise ChainError(f"unsupported RPC URL {rpc_url!r}: expected http:// or https://")
        # Probe with a short timeout and no retries so a dead URL fails in seconds.
        probe = Web3(
            Web3.HTTPProvider(
                rpc_url,
                request_kwargs={"timeout": CONNECT_TIMEOUT_S},
                exception_retry_configuration=None,
            )
        )
        try:
            chain_id = int(probe.eth.chain_id)
        except Exception as exc:  # noqa: BLE001 - any failure here means "not a usable node": say which
            raise ChainError(f"no Ethereum JSON-RPC node at {rpc_url}: {unreachable_reason(exc)}") from None

        # eth_chainId is cached: web3 asked for it five times a transaction (signing, fee and
        # validation steps) and twice a call, and a node's chain id does not change under us.
        w3 = Web3(
            Web3.HTTPProvider(
                rpc_url,
                request_kwargs={"timeout": REQUEST_TIMEOUT_S},
                exception_retry_configuration=None,
                cache_allowed_requests=True,
                cacheable_requests={RPCEndpoint("eth_chainId")},
            )
        )
        if private_keys:
            from eth_account import Account  # noqa: PLC0415
            from web3.middleware import SignAndSendRawMiddlewareBuilder  # noqa: PLC0415

            try:
                local = [Account.from_key(k) for k in private_keys]
            except Exception:  # noqa: BLE001
                raise ChainError("a private key is malformed (expected 32 bytes hex)") from None
            w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(local), layer=0)
            accounts = [a.address for a in local]
            keys = {a.address: a.key for a in local}
            source = "private keys given"
        else:
            keys = {}
            try:
                accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
            except Exception as exc:  # noqa: BLE001
                raise ChainError(f"node at {rpc_url} did not list accounts: {exc}") from None
            source = "unlocked accounts on the node"
        if len(accounts) < n_accounts:
            raise ChainError(
                f"need {n_accounts} accounts but found {len(accounts)} {source} at {rpc_url}"
            )
        return cls(w3, accounts, chain_id, rpc_url, None, keys)

    def sign_ballot(self, address: str, contract: str, r: int, approvals: int, scores_ppm):
        """An EIP-712 ballot signed by ``address`` (approvals: the slot bitmap, a bool for slot 0;
        scores_ppm: one score or one per slot): with its local key, else by the node
        (``eth_signTypedData_v4``, for accounts the node holds unlocked)."""
        from cohep.ledger import ballots

        domain = ballots.Domain(self.chain_id, contract)
        key = self._key_for(address)
        if key is not None:
            return ballots.sign(key, domain, r, approvals, scores_ppm)
        signature = self._sign_typed(address, ballots.typed_data(domain, r, int(approvals), scores_ppm), "a ballot")
        return ballots.from_signature(address, r, approvals, scores_ppm, signature)

    def sign_commit(self, address: str, contract: str, r: int, commitment: bytes):
        """A sealed vote's commitment signed by ``address`` (EIP-712 Commit), as sign_ballot signs a ballot."""
        from cohep.ledger import ballots

        domain = ballots.Domain(self.chain_id, contract)
        key = self._key_for(address)
        if key is not None:
            return ballots.sign_commit(key, domain, r, commitment)
        signature = self._sign_typed(address, ballots.commit_typed_data(domain, r, commitment), "a commitment")
        return ballots.commit_from_signature(address, r, commitment, signature)

    def _key_for(self, address: str):
        """The local key of ``address`` (None: the node signs): looked up as given first, since callers pass
        the checksummed address and checksumming again is a keccak a signature."""
        return self._keys.get(address) or self._keys.get(Web3.to_checksum_address(address))

    def _sign_typed(self, address: str, data: dict, what: str) -> bytes:
        """The node's ``eth_signTypedData_v4`` signature of ``data`` by ``address`` (an account it
        holds the key of), or a ChainError naming ``what`` could not be signed."""
        try:
            sig = self.w3.provider.make_request(RPCEndpoint("eth_signTypedData_v4"), [address, data])
        except (Web3Exception, OSError) as exc:
            raise ChainError(f"{self.kind} cannot sign {what} for {address}: {exc}") from None
        if "error" in sig:
            raise ChainError(f"{self.kind} cannot sign {what} for {address}: {sig['error'].get('message', sig['error'])}")
        return bytes.fromhex(str(sig["result"]).removeprefix("0x"))

    def block_number(self) -> int:
        if self._tester is not None:  # the head as py-evm holds it: web3's round trip was ~160 us of ~1
            return int(self._tester.backend.chain.get_canonical_head().block_number)
        try:
            return int(self.w3.eth.block_number)
        except (Web3Exception, OSError) as exc:  # the node went away: one line, callers may retry
            raise ChainError(f"cannot read the block number from {self.kind}: {exc.__class__.__name__}") from None

    def mine(self, n: int = 1) -> None:
        """Advance n empty blocks, so block-counted windows can pass without traffic."""
        if n < 0:
            raise ValueError("cannot mine a negative number of blocks")
        if n == 0:
            return
        if self._tester is not None:
            self._tester.mine_blocks(n)
            return
        if n > 1 and self._many_blocks is not False:  # Anvil: n blocks in one request (a challenge window's)
            resp = self.w3.provider.make_request(RPCEndpoint("anvil_mine"), [hex(n)])
            self._many_blocks = "error" not in resp
            if self._many_blocks:
                return
        for _ in range(n):
            resp = self.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
            if "error" in resp:
                raise ChainError(f"node at {self.kind} cannot mine on demand (evm_mine): "
                                 f"{resp['error'].get('message', resp['error'])}")

    def wait_blocks(self, n: int, poll_s: float = 0.5, timeout_s: float = 600.0) -> None:
        """Wait for n more blocks: mines on the embedded chain, polls a real node."""
        if self._tester is not None:
            self.mine(n)
            return
        target = self.block_number() + n
        deadline = time.monotonic() + timeout_s
        while self.block_number() < target:
            if time.monotonic() > deadline:
                raise ChainError(f"no new blocks from {self.kind} within {timeout_s:.0f} s")
            time.sleep(poll_s)


# -- what a newcomer gets wrong first: the URL, the funds, a chain without a block clock ----------

#: gas a node spends on one round at most (a proposal or a finalize, a commit and a reveal), for the
#: balance check before it starts: a stated bound (measured on Anvil 1.7.1, 3 members, 3 rounds: 190,000
#: to 360,000 gas a round per node on average, 180,000 a transaction)
NODE_GAS_PER_ROUND = 600_000
#: gas of ``start()``, the deployment's second transaction, beside the constructor's estimate
START_GAS = 200_000


def unreachable_reason(exc: BaseException) -> str:
    """Why the first request to an RPC URL failed, in words: DNS, nothing listening, a timeout, or
    something that answers but is no Ethereum JSON-RPC node (walks the exception's causes)."""
    import socket

    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(seen) < 12:
        seen.append(e)
        e = e.__cause__ or e.__context__
    names = {type(x).__name__ for x in seen}
    if any(isinstance(x, socket.gaierror) for x in seen) or "NameResolutionError" in names:
        return "the host name does not resolve (DNS)"
    if any(isinstance(x, ConnectionRefusedError) for x in seen):
        return "nothing listens there (connection refused)"
    if any(isinstance(x, TimeoutError) for x in seen) or names & {"ReadTimeout", "ConnectTimeout", "Timeout"}:
        return f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
    for x in seen:
        status = getattr(getattr(x, "response", None), "status_code", None)
        if status is not None:
            return f"it answers HTTP {status}: not an Ethereum JSON-RPC endpoint (check the path)"
    if "JSONDecodeError" in names or any(isinstance(x, ValueError) and "decode" in str(x) for x in seen):
        return "it answers, but not in JSON-RPC: not an Ethereum node"
    if any(isinstance(x, OSError) for x in seen):
        return f"cannot connect ({next(x for x in seen if isinstance(x, OSError)).__class__.__name__})"
    return f"it does not answer eth_chainId ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"


def fee_per_gas(chain: Chain) -> int:
    """Wei per gas a transaction reserves: web3's default EIP-1559 cap (2 x base fee + tip), or the
    legacy gas price on a chain without a base fee; the node refuses a sender holding less than gas x this."""
    try:
        latest = chain.w3.eth.get_block("latest")
        base = latest.get("baseFeePerGas")
        if base is None:
            return int(chain.w3.eth.gas_price)
        return 2 * int(base) + int(chain.w3.eth.max_priority_fee)
    except (Web3Exception, OSError) as exc:
        raise ChainError(f"cannot read the gas price from {chain.kind}: {exc.__class__.__name__}") from None


def ether(wei: int) -> str:
    return f"{wei / 10**18:.6g} ETH"


class InsufficientFunds(ChainError):
    """A sender that cannot pay for its next transactions: no retry mends it, only someone sending it
    ETH (a caller that retries ChainError tells this one apart)."""


def check_funds(chain: Chain, address: str, gas: int, what: str, *, then: str = "") -> int:
    """Refuse, in one line (InsufficientFunds), a sender that cannot pay for ``gas`` at the chain's
    current fees (``what``: for what; ``then``: what to do once it is sent, said after). Returns the
    wei needed."""
    address = Web3.to_checksum_address(address)
    price = fee_per_gas(chain)
    needed = gas * price
    try:
        balance = int(chain.w3.eth.get_balance(address))
    except (Web3Exception, OSError) as exc:
        raise ChainError(f"cannot read the balance of {address} from {chain.kind}: {exc.__class__.__name__}") from None
    if balance < needed:
        raise InsufficientFunds(f"{address} needs {ether(needed)} for {what} (about {gas:,} gas at {price / 1e9:.3g} "
                                f"gwei) and holds {ether(balance)}: send it {ether(needed - balance)} or more"
                                f"{then} (docs/nodes.md, funding)")
    return needed


def funds_error(exc: BaseException, address: str) -> InsufficientFunds | None:
    """The node's raw 'insufficient funds' refusal as one line naming the address, else None."""
    text = str(exc)
    if "nsufficient funds" not in text and "insufficient balance" not in text.lower():
        return None
    return InsufficientFunds(f"{Web3.to_checksum_address(address)} has too little ETH to pay for its transactions: "
                             f"send it more (docs/nodes.md, funding)")


#: how long ``block_clock_problem`` watches a chain whose last block is old
WATCH_S = 3.0
#: a last block older than this (s) makes ``block_clock_problem`` watch for a new one
STALE_S = 60.0


def block_clock_problem(chain: Chain, watch_s: float = WATCH_S) -> str | None:
    """None when the chain makes blocks on a clock; else one line saying it does not.

    The contract's windows are counted in blocks, so on a chain that mines only when a transaction
    arrives (plain ``anvil``, hardhat's automine, ``geth --dev`` without a period) a round whose
    proposer is absent never reaches its deadline. Anvil and hardhat say so (``*_getAutomine``);
    another chain is watched for ``watch_s`` when its last block is older than ``STALE_S``."""
    if chain._tester is not None:
        return None  # the embedded chain: the in-process runner mines the windows itself
    for method in ("anvil_getAutomine", "hardhat_getAutomine"):
        try:
            resp = chain.w3.provider.make_request(RPCEndpoint(method), [])
        except (Web3Exception, OSError):
            continue
        if "result" in resp and isinstance(resp["result"], bool):
            if resp["result"]:
                return (f"the chain at {chain.kind} mines only when a transaction arrives (automine), so a round "
                        f"whose proposer is absent never reaches its deadline: start it with blocks on a clock "
                        f"(anvil --block-time 1; hardhat: mining.interval; geth --dev --dev.period 1)")
            return None
    try:
        first = chain.w3.eth.get_block("latest")
        age = time.time() - int(first["timestamp"])
        if age < STALE_S:
            return None
        deadline = time.monotonic() + watch_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if chain.block_number() > int(first["number"]):
                return None
    except (Web3Exception, OSError):
        return None  # cannot tell; the node's own retries report a chain that went away
    return (f"the chain at {chain.kind} made no block for {age:.0f} s (none in {watch_s:.0f} s of watching): block windows "
            f"pass only with blocks on a clock (anvil --block-time 1; geth --dev --dev.period 1)")
