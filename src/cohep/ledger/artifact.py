"""The Coordinator contract's compiled artifact.

The JSON is committed so that running an experiment never needs the Vyper compiler;
``compile_artifact`` (and a test) proves the JSON still matches the source.
Regenerate with ``python -m cohep.ledger.artifact``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path

CONTRACT = "Coordinator"
COMPILER_VERSION = "0.4.3"


def _package_file(name: str):
    return resources.files("cohep.ledger").joinpath(name)


#: every contract of the package: the coordinator of rounds, and the model-competition record
#: and the coordinator of rounds with aggregated ballots (which imports Coordinator.vy as a module)
CONTRACTS = (CONTRACT, "Competition", "AggregateCoordinator")


def read_source(contract: str = CONTRACT) -> str:
    return _package_file(f"{contract}.vy").read_text(encoding="utf-8")


@cache
def _load_cached(contract: str = CONTRACT) -> str:
    return _package_file(f"{contract}.json").read_text(encoding="utf-8")


def load_artifact(contract: str = CONTRACT) -> dict:
    """The committed artifact (a fresh dict each call; callers may mutate it)."""
    return json.loads(_load_cached(contract))


def compile_artifact(contract: str = CONTRACT) -> dict:
    """Compile the source with the pinned Vyper version (imported lazily: a test-only dependency)."""
    import vyper  # noqa: PLC0415

    if vyper.__version__.split("+")[0] != COMPILER_VERSION:
        raise RuntimeError(
            f"artifact must be built with vyper {COMPILER_VERSION}, found {vyper.__version__}"
        )
    from vyper.compiler.input_bundle import FilesystemInputBundle  # noqa: PLC0415

    source = read_source(contract)
    # A fixed contract path keeps the output independent of where the package is installed; the
    # package's folder resolves a contract's imports (AggregateCoordinator imports Coordinator).
    out = vyper.compile_code(
        source,
        contract_path=f"{contract}.vy",
        input_bundle=FilesystemInputBundle([Path(str(_package_file(f"{contract}.vy"))).parent]),
        output_formats=["abi", "bytecode", "bytecode_runtime"],
    )
    return {
        "contract": contract,
        "compiler": f"vyper {COMPILER_VERSION}",
        "source_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def write_artifact(path: Path | None = None, contract: str = CONTRACT) -> Path:
    """Recompile and write the JSON atomically (a crash never leaves half a file)."""
    if path is None:
        path = Path(str(_package_file(f"{contract}.json")))
    text = json.dumps(compile_artifact(contract), indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the artifact is a normal package file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _load_cached.cache_clear()
    return path


if __name__ == "__main__":
    for name in CONTRACTS:
        print(write_artifact(contract=name))
