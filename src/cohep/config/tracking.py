"""``[tracking]``: where a run's rounds, accepted proposals and final metrics are also logged.

Off by default (``backend = "none"``). ``backend = "mlflow"`` logs one MLflow run (params, per-round
metrics with the round as step, final metrics) to ``uri``, by default a SQLite store in the run
directory (``<run directory>/mlflow.db``: MLflow 3's own local default; its ``./mlruns`` file store is
in maintenance mode and refused unless ``MLFLOW_ALLOW_FILE_STORE=true``). ``backend = "tensorboard"``
writes TensorBoard event files into ``dir``, default ``<run directory>/tensorboard``. The writers live
in ``cohep.run.tracking``; docs/physics_outputs.md says what each logs.

The backend's package is asked for here, when the config is read, so a missing one is a one-line
error before any training rather than a surprise at the end of a run.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from cohep.core.errors import ConfigError
from cohep.core.settings import Section, setting

BACKENDS = ("none", "tensorboard", "mlflow")
#: the package each backend imports, and what installs it
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny sqlalchemy alembic")}
#: tracking URI schemes MLflow's stores answer (a ``+driver`` suffix, ``postgresql+psycopg2``, is allowed)
URI_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
_URI_FORMS = "sqlite:///path/mlflow.db, file:///path/mlruns or http(s)://host:port"


@dataclass(frozen=True)
class TrackingSection(Section):
    """``[tracking]``: log the run to a tracking tool as well as to its run directory."""

    section: ClassVar[str] = "tracking"

    backend: Literal["none", "tensorboard", "mlflow"] = setting(
        "none", help="none | tensorboard | mlflow: where the run is also logged.")
    dir: str | None = setting(None, help="TensorBoard log directory (default: <run directory>/tensorboard).")
    uri: str | None = setting(None, help="MLflow tracking URI (default: sqlite:///<run directory>/mlflow.db).")
    experiment: str | None = setting(None, help="MLflow experiment (default: the experiment's name).")
    run_name: str | None = setting(None, help="Name of the run in the log (default: the experiment's name).")

    @property
    def active(self) -> bool:
        return self.backend != "none"

    def check(self) -> None:
        if self.dir is not None and self.backend != "tensorboard":
            raise ConfigError(f"tracking.dir is TensorBoard's log directory, tracking.backend is {self.backend!r}")
        for field in ("uri", "experiment"):
            if getattr(self, field) is not None and self.backend != "mlflow":
                raise ConfigError(f"tracking.{field} is for MLflow, tracking.backend is {self.backend!r}")
        if self.uri is not None:
            check_uri(self.uri)
        if self.active:
            module, install = PACKAGES[self.backend]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"tracking.backend = {self.backend!r} needs the {module} package: "
                                  f"pip install {install} (or cohep[tracking])")


def check_uri(uri: str) -> None:
    """A URI MLflow can open, by its form (whether it answers is known only when the run is logged)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- a port that is not a number raises here
    except ValueError:
        raise ConfigError(f"tracking.uri must be a tracking URI ({_URI_FORMS}), got {uri!r}") from None
    scheme = parts.scheme.split("+")[0].lower()
    if scheme not in URI_SCHEMES:
        raise ConfigError(f"tracking.uri must be a tracking URI ({_URI_FORMS}), got {uri!r}")
    if scheme in ("http", "https") and not parts.hostname:
        raise ConfigError(f"tracking.uri {uri!r} names no host")
    if scheme in ("sqlite", "file") and not parts.path.strip("/"):
        raise ConfigError(f"tracking.uri {uri!r} names no path")
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("1", "true"):
        raise ConfigError(f"tracking.uri {uri!r} is MLflow's file store, which MLflow refuses unless "
                          "MLFLOW_ALLOW_FILE_STORE=true is set; sqlite:///path/mlflow.db is its local store")
