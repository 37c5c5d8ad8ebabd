"""A contract's ABI compiled once: call data encoded, results and logs decoded, with plain eth_abi.

web3's contract functions look the ABI entry up, validate it and walk every argument through its
normalisers on each use, and ``process_log`` does the same per log: on the embedded chain that was
about a tenth of a 63-ballot batch, and a few ms of every call. This codec keeps one table per ABI
and makes the one normalisation web3 makes of results (checksummed addresses, arrays as lists), so
what it decodes equals web3's decoding (tests/test_ledger.py checks every view and event).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any, cast

import eth_abi
from eth_typing import ABIEvent, ABIFunction
from eth_utils.abi import event_abi_to_log_topic, function_abi_to_4byte_selector
from web3 import Web3


def _abi_type(param: dict) -> str:
    """eth_abi's type string of an ABI parameter (tuples spelled out)."""
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + t[len("tuple"):]
    return t


def _normaliser(param: dict) -> Callable[[Any], Any] | None:
    """What web3 does to a decoded value of this parameter (addresses checksummed, arrays as lists),
    or None."""
    t = param["type"]
    if t.endswith("]"):
        inner = _normaliser({**param, "type": t[: t.rindex("[")]})
        return (lambda v: list(v)) if inner is None else (lambda v: [inner(x) for x in v])
    if t == "tuple":
        parts = [_normaliser(c) for c in param["components"]]
        if all(f is None for f in parts):
            return None
        return lambda v: tuple(x if f is None else f(x) for f, x in zip(parts, v))
    if t == "address":
        return Web3.to_checksum_address
    return None


def _decoder(params: list[dict]) -> Callable[[bytes], tuple]:
    types = [_abi_type(p) for p in params]
    norms = [_normaliser(p) for p in params]
    return lambda data: tuple(x if f is None else f(x) for f, x in zip(norms, eth_abi.decode(types, data)))


class Codec:
    """One ABI's table: selector, input types and result decoder per function; name, argument names
    and decoders per event topic."""

    def __init__(self, abi: list[dict]):
        self.functions: dict[str, tuple[bytes, list[str], Callable[[bytes], tuple]]] = {}
        for entry in abi:
            if entry["type"] != "function":
                continue
            if entry["name"] in self.functions:  # an overload: this codec keys by name only
                raise ValueError(f"ABI has two functions named {entry['name']}")
            self.functions[entry["name"]] = (function_abi_to_4byte_selector(cast(ABIFunction, entry)),
                                             [_abi_type(i) for i in entry["inputs"]], _decoder(entry["outputs"]))
        self.events: dict[bytes, tuple[str, list[str], list[tuple[str, str, Callable | None]], Callable]] = {}
        for entry in abi:
            if entry["type"] != "event":
                continue
            indexed = [(i["name"], _abi_type(i), _normaliser(i)) for i in entry["inputs"] if i["indexed"]]
            data = [i for i in entry["inputs"] if not i["indexed"]]
            self.events[event_abi_to_log_topic(cast(ABIEvent, entry))] = (entry["name"], [i["name"] for i in data], indexed,
                                                         _decoder(data))

    def encode(self, name: str, args: tuple) -> bytes:
        selector, types, _ = self.functions[name]
        return selector + eth_abi.encode(types, args)

    def decode(self, name: str, data: bytes) -> Any:
        """A call's result as web3 gives it: the value of a single output, else the tuple."""
        out = self.functions[name][2](data)
        return out[0] if len(out) == 1 else out

    def event(self, topics: list[bytes], data: bytes) -> tuple[str, dict[str, Any]] | None:
        """(name, args) of a log of this ABI (indexed arguments first, as web3 orders them), or None."""
        spec = self.events.get(topics[0]) if topics else None
        if spec is None:
            return None
        name, data_names, indexed, decode = spec
        args = {}
        for (arg, typ, norm), topic in zip(indexed, topics[1:]):
            value = eth_abi.decode([typ], topic)[0]
            args[arg] = value if norm is None else norm(value)
        args.update(zip(data_names, decode(data)))
        return name, args


@lru_cache(maxsize=8)
def codec_of(abi_json: str) -> Codec:
    """The codec of an ABI given as canonical JSON (sorted keys), built once per ABI."""
    return Codec(json.loads(abi_json))
