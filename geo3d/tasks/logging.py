"""Training logs: a CSV file (standard library ``csv``) and TensorBoard events
(``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard`` package).

One CSV row per logged event: training rows every ``log_every`` steps and one validation
row per evaluation, with the fixed columns :data:`CSV_COLUMNS` (empty where not applicable).
The CSV is rewritten atomically at every row (small files; a crash never leaves a torn
line), and on resume rows newer than the checkpoint are dropped, so the log matches the
weights.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Optional

from geo3d.io import atomic_write_bytes

__all__ = ["RunLogger", "CSV_COLUMNS"]

CSV_COLUMNS = ("epoch", "step", "split", "loss", "lr", "OA", "mAcc", "mIoU", "seconds")


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class RunLogger:
    """Write ``log.csv`` and TensorBoard events under ``out_dir`` (None: keep rows in memory).

    Args:
        out_dir: Output folder or None.
        tensorboard: Also write TensorBoard events to ``out_dir/tb``. If the ``tensorboard``
            package is missing, a warning says so and only the CSV is written.
        resume_step: On resume, drop CSV rows with ``step`` greater than this and tell
            TensorBoard to purge events after it. None: start a new log.
    """

    def __init__(self, out_dir: Optional[Path], tensorboard: bool = True,
                 resume_step: Optional[int] = None) -> None:
        self.rows: list[dict] = []
        self.csv_path = None if out_dir is None else Path(out_dir) / "log.csv"
        self._writer = None
        if self.csv_path is not None and resume_step is not None and self.csv_path.is_file():
            with open(self.csv_path, newline="") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        if out_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("TensorBoard logging is off: the 'tensorboard' package is not "
                              "installed (pip install tensorboard); writing log.csv only",
                              stacklevel=3)
            else:
                self._writer = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=resume_step)

    def log(self, row: dict) -> None:
        """Record one row (keys from :data:`CSV_COLUMNS`; ``split`` is train or val)."""
        full = {k: _fmt(row.get(k)) for k in CSV_COLUMNS}
        self.rows.append(full)
        if self.csv_path is not None:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
            atomic_write_bytes(self.csv_path, buffer.getvalue().encode())
        if self._writer is not None:
            step, split = int(row["step"]), row["split"]
            for key in ("loss", "lr", "OA", "mAcc", "mIoU"):
                value = row.get(key)
                if isinstance(value, (int, float)) and not math.isnan(value):
                    self._writer.add_scalar(f"{split}/{key}", value, step)
            for name, iou in (row.get("iou") or {}).items():
                if not math.isnan(iou):
                    self._writer.add_scalar(f"{split}/IoU/{name}", iou, step)

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
