"""Run logging: TensorBoard scalars plus a `metrics.jsonl` that plots and reports read back.

Only the main process writes; on other ranks every call is a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path

from vla_rft.training.distributed import DistInfo


class RunLogger:
    """log(step, {'loss/train': 0.1, ...}) -> TensorBoard + <run>/metrics.jsonl."""

    def __init__(self, run_dir: str | Path, info: DistInfo | None = None):
        self.run_dir = Path(run_dir)
        self.active = info is None or info.is_main
        self._tb = None
        if self.active:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
            self._jsonl = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.active:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), step)
        self._jsonl.write(
            json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n"
        )
        self._jsonl.flush()

    def close(self) -> None:
        if self.active:
            self._tb.close()
            self._jsonl.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of <run>/metrics.jsonl (a resumed run appends; later rows win for a step)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(run_dir: str | Path, keys: list[str], out: str | Path, title: str = "") -> Path:
    """One panel per metric key against step, four to a row; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    cols = min(4, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys, strict=False):  # trailing panels stay empty
        points = sorted({r["step"]: r[key] for r in rows if key in r}.items())
        if points:
            ax.plot(*zip(*points, strict=True))
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
