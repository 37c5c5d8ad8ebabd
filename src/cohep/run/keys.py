"""A member's key: a standard encrypted Ethereum keystore (Web3 Secret Storage, scrypt + AES-128-CTR).

A node's key never leaves its machine in the clear: it lives in a keystore file that any Ethereum
wallet can read, and is unlocked with a password from an environment variable (for services) or a
prompt (for people). Nothing here writes a key unencrypted.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cohep.core.errors import CohepError
from cohep.core.files import atomic_write_text

#: the environment variable a node reads its keystore password from
PASSWORD_ENV = "COHEP_KEYSTORE_PASSWORD"


@dataclass(frozen=True)
class Key:
    """An unlocked key: its checksummed address and the private key (hex)."""

    address: str
    private_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"Key(address={self.address!r})"


def password(env: str = PASSWORD_ENV, *, confirm: bool = False, what: str = "keystore") -> str:
    """The password from ``env``, else a prompt on a terminal; a one-line error when neither exists."""
    value = os.environ.get(env)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise CohepError(f"no {what} password: set {env} or run on a terminal to be prompted")
    import getpass

    first = getpass.getpass(f"{what} password: ")
    if confirm and getpass.getpass("again: ") != first:
        raise CohepError("the two passwords differ")
    return first


def create(path: str | Path, secret: str, *, private_key: str | None = None, kdf_n: int | None = None) -> str:
    """Write a new keystore (a fresh random key, or ``private_key``) encrypted with ``secret``; returns
    the address. ``kdf_n`` lowers scrypt's cost for tests only."""
    from eth_account import Account

    out = Path(path)
    if out.exists():
        raise CohepError(f"{out} exists: refusing to overwrite a keystore")
    try:
        account = Account.from_key(private_key) if private_key else Account.create()
    except Exception:  # noqa: BLE001 - eth-account raises several types for a malformed key
        raise CohepError("the private key is malformed (expected 32 bytes of hex)") from None
    kwargs = {"iterations": kdf_n} if kdf_n else {}
    document = Account.encrypt(account.key, secret, kdf="scrypt", **kwargs)
    atomic_write_text(out, json.dumps(document) + "\n")
    os.chmod(out, 0o600)
    return account.address


def load(path: str | Path, secret: str) -> Key:
    """Unlock a keystore; a missing file, a malformed one or a wrong password is one line naming it."""
    from eth_account import Account

    p = Path(path)
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CohepError(f"cannot read keystore {p}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CohepError(f"{p} is not a keystore (not JSON)") from None
    if not isinstance(document, dict) or "crypto" not in {k.lower() for k in document}:
        raise CohepError(f"{p} is not an Ethereum keystore (no crypto section)")
    try:
        key = Account.decrypt(document, secret)
    except ValueError as exc:
        text = str(exc).lower()
        reason = "wrong password" if "mac" in text or "password" in text else str(exc)
        raise CohepError(f"cannot unlock keystore {p}: {reason}") from None
    except Exception as exc:  # noqa: BLE001 - malformed crypto parameters
        raise CohepError(f"cannot unlock keystore {p}: malformed ({exc.__class__.__name__})") from None
    account = Account.from_key(key)
    return Key(account.address, "0x" + bytes(key).hex())


def address_of(path: str | Path) -> str:
    """The address a keystore declares (no password needed)."""
    from web3 import Web3

    p = Path(path)
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
        return Web3.to_checksum_address("0x" + str(document["address"]).removeprefix("0x"))
    except (OSError, ValueError, KeyError, TypeError):
        raise CohepError(f"{p}: no address in this keystore") from None
