"""The TensorBoard backend of ``[tracking]``: event files that ``tensorboard --logdir`` shows.

The writer is torch's ``SummaryWriter`` (torch is a dependency already), the reader
(:func:`read_scalars`) TensorBoard's own ``EventAccumulator``. Params go in as one text summary (a
Markdown table), since TensorBoard's scalars have no place for them.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cohep.config.tracking import TrackingSection
from cohep.run.tracking import Tracker

#: the folder of a run directory that holds its TensorBoard log when [tracking] dir is unset
DEFAULT_DIR = "tensorboard"


def log_dir(tracking: TrackingSection, out_dir: str | Path, name: str) -> Path:
    return Path(tracking.dir) / (tracking.run_name or name) if tracking.dir else Path(out_dir) / DEFAULT_DIR


class TensorBoardTracker(Tracker):
    def __init__(self, path: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.path = path
        self.writer = SummaryWriter(log_dir=str(path), flush_secs=3600)

    def params(self, values: Mapping[str, str]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
        self.writer.add_text("params", "| param | value |\n|---|---|\n" + rows, 0)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def close(self, ok: bool = True) -> dict:
        self.writer.close()
        return {"location": str(self.path)}


def read_scalars(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a TensorBoard log folder: ``tag -> [(step, value), ...]``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
