"""``[tracking]``: where a run's rounds, accepted proposals and final metrics are also logged.

Off by default (``backend = "none"``). ``backend = "tensorboard"`` writes TensorBoard event files
(``cohep.run.tracking``) into ``dir``, default ``<run directory>/tensorboard``; ``tensorboard --logdir``
shows them beside any other experiment's. TensorBoard and not MLflow: the ``tensorboard`` package adds
three small packages to cohep's install, MLflow (even ``mlflow-skinny``) sixteen, a web framework and a
telemetry stack among them (docs/physics_outputs.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from cohep.core.settings import Section, setting

BACKENDS = ("none", "tensorboard")


@dataclass(frozen=True)
class TrackingSection(Section):
    """``[tracking]``: log the run to a tracking tool as well as to its run directory."""

    section: ClassVar[str] = "tracking"

    backend: Literal["none", "tensorboard"] = setting("none", help="none | tensorboard: where the run is also logged.")
    dir: str | None = setting(None, help="Log directory (default: <run directory>/tensorboard).")
    run_name: str | None = setting(None, help="Name of the run in the log directory (default: the experiment's name).")

    @property
    def active(self) -> bool:
        return self.backend != "none"
