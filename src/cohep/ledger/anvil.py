"""A real Ethereum node for tests, benchmarks and local multi-node experiments: Anvil, as a process.

``make`` installs Anvil from the npm registry into the project (``.tools/``); :func:`find_anvil`
looks there, then at ``$COHEP_ANVIL``, then on ``PATH``. :class:`Anvil` starts it on a free port,
waits until it answers JSON-RPC, and can stop and restart it with its state kept on disk (so a test
can take the chain away mid-round and bring it back).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from cohep.core.errors import ChainError

ANVIL_ENV = "COHEP_ANVIL"
ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
ANVIL_VERSION = "1.7.1"
#: Anvil's default dev mnemonic: its first accounts are funded on every fresh Anvil chain
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def find_anvil() -> str:
    """Path of the anvil binary, or a one-line ChainError saying how to install it."""
    candidates = []
    if os.environ.get(ANVIL_ENV):
        candidates.append(Path(os.environ[ANVIL_ENV]))
    root = Path(__file__).resolve().parents[3]  # the checkout, for an editable install
    candidates.append(root / ".tools" / "node_modules" / ANVIL_PACKAGE / "bin" / "anvil")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("anvil")
    if found:
        return found
    raise ChainError(
        f"anvil not found: run `make venv` (installs {ANVIL_PACKAGE}@{ANVIL_VERSION} into .tools/) "
        f"or set {ANVIL_ENV} to the binary"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_private_keys(n: int) -> list[str]:
    """The private keys of Anvil's first ``n`` funded dev accounts (public test keys, never real)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return ["0x" + bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key).hex()
            for i in range(n)]


class Anvil:
    """One Anvil process on 127.0.0.1. ``block_time`` (s) mines on a clock, so block-counted windows
    pass even when nobody sends transactions; ``state`` keeps the chain in a file across restarts;
    ``fork`` (url, block): a fork of that chain at that block, any sender impersonated (what a resumed
    chain.rpc run replays its kept rounds on, :mod:`cohep.run.resume`)."""

    def __init__(self, *, port: int | None = None, accounts: int = 10, block_time: float | None = None,
                 state: str | Path | None = None, chain_id: int = 31337, log: str | Path | None = None,
                 fork: tuple[str, int] | None = None):
        self.port = port or free_port()
        self.accounts = accounts
        self.block_time = block_time
        self.state = Path(state) if state else None
        self.chain_id = chain_id
        self.log = Path(log) if log else None
        self.fork = fork
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "Anvil":
        args = [find_anvil(), "--host", "127.0.0.1", "--port", str(self.port), "--accounts", str(self.accounts),
                "--chain-id", str(self.chain_id), "--mnemonic", DEV_MNEMONIC]
        if self.block_time is not None:
            args += ["--block-time", str(self.block_time)]
        if self.state is not None:
            args += ["--state", str(self.state)]
        if self.fork is not None:
            args += ["--fork-url", self.fork[0], "--fork-block-number", str(self.fork[1]), "--auto-impersonate"]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ChainError(f"anvil exited with code {self.process.returncode} on start (port {self.port})")
            if self.block_number() is not None:
                return self
            time.sleep(0.05)
        self.stop()
        raise ChainError(f"anvil did not answer on {self.url} within {timeout_s:.0f} s")

    def block_number(self) -> int | None:
        """The node's block number, or None if it does not answer."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=1.0) as resp:
                return int(json.loads(resp.read())["result"], 16)
        except (OSError, ValueError, KeyError):
            return None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGINT: Anvil writes its state file on the way out), then kill."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> "Anvil":
        self.stop()
        return self.start()

    def __enter__(self) -> "Anvil":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
