"""The run directory: every file one experiment writes, written and read back here and only here.

Layout (names below are the only place they are spelled)::

    records.csv                one row per round and learner: proposer, scores, vote, outcome
    timings.csv                wall time per round by stage
    manifest.json              config, versions, seed, chain id, contract address, digests, file names
    final_weights.safetensors  the weights every learner holds at the end (sha256 in the manifest)
    figure.png                 per-learner scores above the vote grid (the paper's Figure 2)
    report.md                  a short Markdown report
    chain_events.jsonl         every event of the run's contract, in chain order (the audit trail)
    weights/                   the default weight store: every proposal, by digest
    resume/                    an interrupted run's journal (cohep.run.resume), gone once it finishes

The manifest names the files it describes, so a reader follows the manifest, not these constants.
"""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

from cohep.outputs.checkpoint import SavedModel
from cohep.core.errors import CohepError, ConfigError, DataError, RunInterrupted
from cohep.core.files import atomic_write_bytes, atomic_write_text, read_json
from cohep.outputs.manifest import write_manifest
from cohep.models.registry import ModelSpec
from cohep.protocol.records import RoundRecord, RoundTiming, read_csv, time_shares, write_csv, write_timings

RECORDS = "records.csv"
TIMINGS = "timings.csv"
MANIFEST = "manifest.json"
WEIGHTS = "final_weights.safetensors"
FIGURE = "figure.png"
REPORT = "report.md"
CHAIN_LOG = "chain_events.jsonl"
STORE = "weights"
RESUME = "resume"


@contextlib.contextmanager
def created(path: str | Path) -> Iterator[Path]:
    """Create the run directory for the block; if the block fails, undo what it created.

    A failed run (bad data, unreachable node, interrupted) leaves no half-made run directory and no
    new parent folders; in a directory that existed before, only the entries the run added are
    removed, and files in it are only ever replaced atomically.
    """
    out = Path(path)
    top = out  # the outermost folder this call creates (None: the run directory existed)
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    existed = out.exists()
    before = {p.name for p in out.iterdir()} if existed and out.is_dir() else set()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {out}: {exc.strerror or exc}") from None
    try:
        yield out
    except RunInterrupted:
        raise  # Ctrl-C after the run kept its finished rounds (cohep.run.resume): they stay
    except BaseException:
        if not existed:
            shutil.rmtree(top, ignore_errors=True)
        else:
            for entry in out.iterdir():
                if entry.name not in before:
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        raise


def store_url(run_dir: str | Path) -> str:
    """The default weight store of a run: a folder inside its directory."""
    return str((Path(run_dir) / STORE).resolve())


def store_ref(run_dir: str | Path, base_uri: str) -> str:
    """The store as the manifest records it: ``weights`` (relative to the run directory, so the
    directory can move) for the run's own store, else the store's URL as given."""
    return STORE if base_uri == store_url(run_dir) else base_uri


def own_store(run_dir: str | Path, manifest: dict) -> Path | None:
    """The run's own store folder where it is now, if the manifest's ``store`` is it: ``weights``
    (relative), or an absolute path ending in ``weights`` of a run directory written before that, when
    this directory holds a ``weights`` folder (a moved or copied run). None: an external store."""
    ref = manifest.get("store")
    if not isinstance(ref, str):
        return None
    here = Path(run_dir) / STORE
    if ref == STORE or (Path(ref).is_absolute() and Path(ref).name == STORE and here.is_dir()):
        return here
    return None


@dataclass
class RunOutputs:
    """What a finished run hands over to be written."""

    mode: str
    records: list[RoundRecord]
    timings: list[RoundTiming]
    final_weights_blob: bytes
    final_digest: str
    manifest: dict  #: everything else the manifest records (config, chain, data, digests...)
    events: list | None = None  #: the contract's events (ledger.ChainEvent), for colearn runs


def write(out: str | Path, outputs: RunOutputs, *, figure_title: str | None = None,
          metric: str = "accuracy") -> dict[str, Path]:
    """Write records, timings, final weights, manifest and (optionally) the figure; returns the paths."""
    out = Path(out)
    files = {
        "records": write_csv(outputs.records, out / RECORDS),
        "timings": write_timings(outputs.timings, out / TIMINGS),
    }
    atomic_write_bytes(out / WEIGHTS, outputs.final_weights_blob)
    files["weights"] = out / WEIGHTS
    if outputs.events is not None:
        files["chain_log"] = write_events(outputs.events, out / CHAIN_LOG)
    digests = dict(outputs.manifest.get("digests") or {}, final=outputs.final_digest)
    files["manifest"] = write_manifest(
        out / MANIFEST,
        **{**outputs.manifest, "mode": outputs.mode, "digests": digests,
           "time_shares": time_shares(outputs.timings),
           "files": {"records": RECORDS, "timings": TIMINGS, "weights": WEIGHTS,
                     "figure": FIGURE if figure_title is not None else None, "report": REPORT,
                     "chain_log": CHAIN_LOG if outputs.events is not None else None}},
    )
    if figure_title is not None:
        from cohep.outputs.plots.rounds import round_figure

        files["figure"] = round_figure(outputs.records, out / FIGURE, title=figure_title, metric=metric)
    return files


def read_manifest(run_dir: str | Path) -> dict:
    """The manifest of a run directory (one-line error if missing or malformed)."""
    p = Path(run_dir)
    if not (p / MANIFEST).exists():
        raise DataError(f"{p} is not a run directory (no {MANIFEST})")
    return read_json(p / MANIFEST)


def _named_file(run_dir: Path, manifest: dict, key: str, default: str) -> Path:
    name = (manifest.get("files") or {}).get(key) or default
    if not isinstance(name, str) or Path(name).name != name:
        raise DataError(f"{run_dir / MANIFEST}: files.{key} must name a file in the run directory, got {name!r}")
    return run_dir / name


def read_records(run_dir: str | Path) -> list[RoundRecord]:
    """The per-round records of a run."""
    p = Path(run_dir)
    path = _named_file(p, read_manifest(p), "records", RECORDS) if (p / MANIFEST).exists() else p / RECORDS
    try:
        return read_csv(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: malformed records ({exc})") from None


def read_model(run_dir: str | Path) -> SavedModel:
    """The run's final weights with the spec and digest its manifest recorded."""
    p = Path(run_dir)
    manifest = read_manifest(p)
    if not isinstance(manifest.get("model"), dict):
        raise DataError(f"{p / MANIFEST} has no model spec (\"model\")")
    try:
        spec = ModelSpec.from_dict(manifest["model"], str(p / MANIFEST))
    except CohepError as exc:
        raise DataError(str(exc)) from None
    digest = (manifest.get("digests") or {}).get("final")  # sha256 of the encoded final weights
    return SavedModel("run", p / MANIFEST, _named_file(p, manifest, "weights", WEIGHTS), spec, digest, manifest)


def write_events(events: list, path: str | Path) -> Path:
    """The contract's events as JSON lines: name, block, log index, transaction, arguments."""
    import json

    lines = [json.dumps({"name": e.name, "block": e.block, "log_index": e.log_index, "tx_hash": e.tx_hash,
                         "args": e.args}, sort_keys=True, default=_hex) for e in events]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return Path(path)


def _hex(value):
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    raise TypeError(f"cannot write {type(value).__name__} to the chain log")


def read_events(run_dir: str | Path) -> list[dict]:
    """The chain log of a run directory (one dict per event); one-line error if missing or malformed."""
    import json

    p = Path(run_dir)
    path = _named_file(p, read_manifest(p), "chain_log", CHAIN_LOG)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    out = []
    for i, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: not JSON ({exc.msg})") from None
        if not isinstance(event, dict) or not isinstance(event.get("args"), dict) or "name" not in event:
            raise DataError(f"{path}:{i}: not a chain event")
        out.append(event)
    return out
