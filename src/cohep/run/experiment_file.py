"""The shared experiment file: everything a member needs to join a deployed experiment, and nothing private.

``cohep deploy`` writes it; every ``cohep node`` reads it. It names the chain and the contract, the
members and where each one's proposals may live (the allowed stores), the model spec, the initial
weights (digest and URI), and the settings every member trains and votes by. It holds no key, no data
path and no RPC URL (each member brings its own), so it can be published as it is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cohep.config.experiment import ExperimentConfig, from_dict, to_toml_dict
from cohep.core.errors import CohepError, DataError
from cohep.core.files import read_json, write_json
from cohep.models import ModelSpec

FORMAT = "cohep-experiment-1"
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HEX32 = re.compile(r"^[0-9a-f]{64}$")


def redact_url(url: str | None) -> str | None:
    """An RPC URL fit to write down: scheme, host and port only (user info, paths and queries often
    hold API keys: ``https://mainnet.example/v3/<key>``)."""
    if not url or "://" not in url:  # None, or a label such as "embedded"
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    hidden = bool(parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment)
    return urlunsplit((parts.scheme, netloc, "/<redacted>" if hidden else "", "", ""))


@dataclass(frozen=True)
class Member:
    address: str  #: checksummed
    store: str | None = None  #: the store URL this member's proposals live under (None: the shared store)


@dataclass(frozen=True)
class Experiment:
    """A deployed experiment as its members see it."""

    name: str
    chain_id: int
    contract: str
    deployed_block: int
    members: tuple[Member, ...]
    model: ModelSpec
    class_names: tuple[str, ...]
    initial_digest: str  #: sha256 hex of the initial weights' canonical encoding
    initial_uri: str
    shared_store: str | None  #: a store every member may read and write, if any
    config: ExperimentConfig  #: rounds, seed, training, vote rule, windows, data split shares
    max_bytes: int  #: the largest blob a member will fetch
    extra: dict = field(default_factory=dict)

    def index_of(self, address: str) -> int:
        for i, m in enumerate(self.members):
            if m.address.lower() == address.lower():
                return i
        raise CohepError(f"{address} is not a member of experiment {self.name!r} ({self.contract})")

    def store_of(self, index: int) -> str:
        store = self.members[index].store or self.shared_store
        if store is None:
            raise CohepError(f"member {index} has no store and the experiment has no shared store")
        return store

    def allowed_stores(self) -> list[str]:
        """Every URL a proposal's URI may point into: the shared store and each member's own."""
        urls = [self.shared_store] + [m.store for m in self.members]
        return sorted({u for u in urls if u})

    def owners(self) -> dict[str, list[str]]:
        """Member address -> the stores its proposals may name: its own and the shared one. A URI
        into another member's store is refused (a member cannot pass another's file off as its own)."""
        return {m.address: sorted({u for u in (m.store, self.shared_store) if u}) for m in self.members}

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "name": self.name, "chain_id": self.chain_id, "contract": self.contract,
            "deployed_block": self.deployed_block,
            "members": [{"address": m.address, "store": m.store} for m in self.members],
            "model": self.model.to_dict(), "model_digest": self.model.digest().hex(),
            "class_names": list(self.class_names), "initial_digest": self.initial_digest,
            "initial_uri": self.initial_uri, "shared_store": self.shared_store,
            "config": to_toml_dict(self.config), "max_bytes": self.max_bytes, **self.extra,
        }

    def write(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> "Experiment":
        """Read and check an experiment file; anything malformed is one line naming the file and field."""
        p = Path(path)
        data = read_json(p)
        try:
            return cls.from_dict(data)
        except CohepError as exc:
            raise DataError(f"{p}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Experiment":
        if data.get("format") != FORMAT:
            raise DataError(f"format is {data.get('format')!r}, expected {FORMAT}")
        members = data.get("members")
        if not isinstance(members, list) or not 2 <= len(members) <= 64:
            raise DataError("members must be a list of 2 to 64 members")
        parsed = []
        for i, m in enumerate(members):
            if not isinstance(m, dict) or not isinstance(m.get("address"), str) or not _ADDRESS.match(m["address"]):
                raise DataError(f"members[{i}].address must be a 0x-prefixed 20-byte hex address")
            store = m.get("store")
            if store is not None and not isinstance(store, str):
                raise DataError(f"members[{i}].store must be a URL or null")
            parsed.append(Member(_checksum(m["address"]), store))
        for key, kind in (("name", str), ("contract", str), ("initial_uri", str), ("initial_digest", str)):
            if not isinstance(data.get(key), kind):
                raise DataError(f"{key} is missing or not a string")
        for key in ("chain_id", "deployed_block", "max_bytes"):
            if isinstance(data.get(key), bool) or not isinstance(data.get(key), int) or data[key] < 0:
                raise DataError(f"{key} must be a non-negative integer")
        if not _ADDRESS.match(data["contract"]):
            raise DataError("contract must be a 0x-prefixed 20-byte hex address")
        if not _HEX32.match(data["initial_digest"]):
            raise DataError("initial_digest must be 64 lowercase hex digits")
        if not isinstance(data.get("model"), dict):
            raise DataError("model is missing")
        spec = ModelSpec.from_dict(data["model"], "model")
        names = data.get("class_names")
        if not isinstance(names, list) or len(names) != spec.n_classes or not all(isinstance(c, str) for c in names):
            raise DataError(f"class_names must list the model's {spec.n_classes} class names")
        if not isinstance(data.get("config"), dict):
            raise DataError("config is missing")
        shared = data.get("shared_store")
        if shared is not None and not isinstance(shared, str):
            raise DataError("shared_store must be a URL or null")
        known = {"format", "name", "chain_id", "contract", "deployed_block", "members", "model", "model_digest",
                 "class_names", "initial_digest", "initial_uri", "shared_store", "config", "max_bytes"}
        return cls(
            name=data["name"], chain_id=data["chain_id"], contract=_checksum(data["contract"]),
            deployed_block=data["deployed_block"], members=tuple(parsed), model=spec,
            class_names=tuple(names), initial_digest=data["initial_digest"], initial_uri=data["initial_uri"],
            shared_store=shared, config=from_dict(data["config"]), max_bytes=data["max_bytes"],
            extra={k: v for k, v in data.items() if k not in known},
        )


def _checksum(address: str) -> str:
    from web3 import Web3

    return Web3.to_checksum_address(address)
