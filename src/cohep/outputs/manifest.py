"""The run manifest: everything needed to reproduce and audit a run (config, versions, seed, chain)."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import platform
from pathlib import Path

from cohep.core.files import atomic_write_text

_PACKAGES = ("cohep", "numpy", "torch", "keras", "safetensors", "h5py", "numba", "web3", "eth-tester", "py-evm")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_manifest(path: str | Path, **content) -> Path:
    data = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "platform": platform.platform(),
        **content,
    }
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return Path(path)


def read_manifest(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
