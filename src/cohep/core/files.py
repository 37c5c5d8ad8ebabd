"""Atomic file output: write to a temporary name beside the target, rename on success.

A crash or a bad input never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from collections.abc import Iterator

from cohep.core.errors import CohepError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` if the block succeeds."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise CohepError(f"cannot write {target}: {exc.strerror or exc}") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj):
    """``obj`` with NaN / inf as null and numpy scalars as Python numbers (strict JSON)."""
    import math

    import numpy as np

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj, *, indent: int = 2) -> Path:
    """Strict JSON (see :func:`json_safe`), written atomically."""
    import json

    atomic_write_text(path, json.dumps(json_safe(obj), indent=indent, default=str) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from a file; unreadable, malformed or non-object content is one line naming it."""
    import json

    from cohep.core.errors import DataError

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p} is not valid JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(data, dict):
        raise DataError(f"{p} is not a JSON object")
    return data


def claim_output(path: str | os.PathLike, *, overwrite: bool, flag: str = "--out", marker: str | None = None) -> Path:
    """Make sure writing ``path`` replaces nothing the user did not ask to replace; removes nothing.

    An existing file, or a folder with anything in it, is refused (one line naming ``flag``) unless
    ``overwrite``. A folder output (``marker``: a file the command always writes into it) without the
    marker was not made by the command and is refused even then. A file output is left for the atomic
    write to replace; a folder output is emptied by :func:`replace_output` once the command has checked
    the rest of its input, so bad input found later leaves the earlier output whole.
    """
    p = Path(path)
    if not p.exists() or (p.is_dir() and not any(p.iterdir())):
        return p
    if not overwrite:
        raise CohepError(f"{flag}: {p} already exists (pass --overwrite to replace it)")
    if marker is not None and p.is_dir():
        _require_marker(p, flag, marker)
    return p


def replace_output(path: str | os.PathLike, *, marker: str, flag: str = "--out") -> None:
    """Remove an earlier folder output (one holding ``marker``) right before the command writes anew,
    so a rerun leaves none of the earlier run's files behind; nothing to remove is fine."""
    import shutil

    p = Path(path)
    if not p.is_dir() or not any(p.iterdir()):
        return
    _require_marker(p, flag, marker)
    try:
        shutil.rmtree(p)
    except OSError as exc:
        raise CohepError(f"{flag}: cannot remove the earlier {p}: {exc.strerror or exc}") from None


def _require_marker(p: Path, flag: str, marker: str) -> None:
    if not (p / marker).is_file():
        raise CohepError(f"{flag}: {p} is not an earlier output of this command (no {marker}); "
                         "refusing to replace it")
