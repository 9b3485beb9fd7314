"""Helpers for the benchmarks: timing and reporting (a printed table plus a JSON file)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
INSTRUCTION = "push the puck to the goal"
"""The instruction the benchmarks' policies are given (and have an embedding for)."""


class Timer:
    """with Timer() as t: ...; t.seconds"""

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start


def percentiles(samples_s, qs=(50, 99)) -> dict[str, float]:
    """Latency percentiles in milliseconds."""
    arr = np.asarray(samples_s) * 1e3
    return {f"p{q}_ms": float(np.percentile(arr, q)) for q in qs}


def time_policy(policy, size: int, iters: int, warmup: int = 20, gap_s: float = 0.0) -> list[float]:
    """Seconds of each of `iters` batch-1 `policy.infer` calls on one observation at `size`
    px, after `warmup` calls; `gap_s` of sleep before each (a camera's period: an idle core
    and cold caches make a call slower than back-to-back calls)."""
    rng = np.random.default_rng(1)
    obs = {
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=4).astype(np.float32),
        "instruction": INSTRUCTION,
    }
    for _ in range(warmup):
        policy.infer(obs)
    samples = []
    for _ in range(iters):
        if gap_s:
            time.sleep(gap_s)
        start = time.perf_counter()
        policy.infer(obs)
        samples.append(time.perf_counter() - start)
    return samples


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def print_table(name: str, rows: list[dict]) -> None:
    """Print rows as a markdown table under `name`; a column per key seen in any row."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print(f"\n{name}\n")
    if not rows:
        print("(no rows)")
        return
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        cells = [_fmt(row.get(c, "")) for c in columns]
        print("| " + " | ".join(cells) + " |")


def report(
    name: str, rows: list[dict], out: str | Path | None = None, extra: dict | None = None
) -> Path:
    """Print rows as a markdown table and write them with the machine's description as JSON;
    `extra`: more top-level keys of that JSON."""
    print_table(name, rows)
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": __import__("os").cpu_count(),
    }
    document = {"benchmark": name, "machine": machine, "rows": rows, **(extra or {})}
    path.write_text(json.dumps(document, indent=1))
    print(f"\nwritten to {path}")
    return path
