"""The MLflow backend of ``[tracking]``: one MLflow run per cohep run, through ``MlflowClient``.

The store is ``[tracking] uri``, by default ``sqlite:///<run directory>/mlflow.db`` (MLflow 3's own
local default; ``mlflow ui --backend-store-uri sqlite:///runs/x/mlflow.db`` shows it). Its experiment
is ``[tracking] experiment`` (default: the cohep experiment's name), created when missing. Values are
buffered and sent with ``log_batch`` at :meth:`MlflowTracker.close` (a 64-member, 50-round run is
3 000 metrics: one request per thousand instead of one each).

Before MLflow is imported three settings get defaults the environment may override: a server that
does not answer fails in about 20 s, not after MLflow's seven retries with backoff (minutes), and
MLflow's usage telemetry is off (``MLFLOW_DISABLE_TELEMETRY``), since a physics run logs to the
physicist's own store and nothing else.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from cohep.config.tracking import TrackingSection
from cohep.run.tracking import Tracker

#: the SQLite file in the run directory when [tracking] uri is unset
DEFAULT_DB = "mlflow.db"
#: environment defaults set before MLflow is imported (an explicit environment value wins)
ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                "MLFLOW_DISABLE_TELEMETRY": "true"}
#: log_batch's limits per request
_MAX_METRICS, _MAX_PARAMS = 1000, 100


def default_uri(out_dir: str | Path) -> str:
    return "sqlite:///" + str((Path(out_dir) / DEFAULT_DB).resolve())


class MlflowTracker(Tracker):
    def __init__(self, tracking: TrackingSection, out_dir: Path, name: str):
        for key, value in ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        # a new SQLite store says "Creating initial MLflow database tables..." at INFO: not news for a run
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self.uri = tracking.uri or default_uri(out_dir)
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = tracking.experiment or name
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            # the default store keeps any artifact beside it, not in ./mlruns of whatever folder cohep ran in
            location = (Path(out_dir) / "mlartifacts").resolve().as_uri() if tracking.uri is None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        elif found.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {experiment!r} is deleted in {self.uri} (restore it or name another)")
        else:
            self.experiment_id = found.experiment_id
        run = self.client.create_run(self.experiment_id, run_name=tracking.run_name or name,
                                     tags={"cohep.run_directory": str(Path(out_dir).resolve())})
        self.run_id = run.info.run_id
        self._params: list = []
        self._metrics: list = []
        self._now = int(time.time() * 1000)

    def params(self, values: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        self._params += [Param(k, str(v)) for k, v in values.items()]

    def scalar(self, tag: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self._metrics.append(Metric(tag, float(value), self._now, int(step)))

    def text(self, tag: str, text: str, step: int) -> None:
        self.client.set_tag(self.run_id, f"cohep.{tag}", text)

    def close(self, ok: bool = True) -> dict:
        try:
            if ok:
                for i in range(0, len(self._params), _MAX_PARAMS):
                    self.client.log_batch(self.run_id, params=self._params[i:i + _MAX_PARAMS])
                for i in range(0, len(self._metrics), _MAX_METRICS):
                    self.client.log_batch(self.run_id, metrics=self._metrics[i:i + _MAX_METRICS])
        except BaseException:
            ok = False
            raise
        finally:
            self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
        return {"tracking_uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.run_id}


def read_run(uri: str, run_id: str) -> tuple[dict[str, str], dict[str, list[tuple[int, float]]]]:
    """A logged run read back: its params and every metric's history, ``key -> [(step, value), ...]``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    history = {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
               for key in run.data.metrics}
    return dict(run.data.params), history
