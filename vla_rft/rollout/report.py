"""Closed-loop evaluation results: Wilson intervals, summaries, a markdown table, image strips.

Numpy and Pillow only, so the same report can be made from episodes run on a real robot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sound at 0% and 100%, unlike p +- z*se).

    The bounds always contain successes / n: at 0% and 100% `centre -+ half` is exactly 0 or 1
    in real arithmetic but lands a rounding error inside (5.6e-17 at 0/3, 1 - 1.1e-16 at
    10/10), which would put the point estimate outside its own interval."""
    if n <= 0:
        raise ValueError("a success rate needs at least one episode")
    if not 0 <= successes <= n:
        raise ValueError(f"successes ({successes}) must lie in [0, {n}]")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


@dataclass
class EpisodeResult:
    """One closed-loop episode."""

    task: str
    perturbation: str
    seed: int
    success: bool
    steps: int
    """Control ticks until success or the step limit."""
    final_state: list[float] = field(default_factory=list)
    """Robot state at the end."""
    digest: str = ""
    """sha256 over every image and action of the episode: equal digests, identical episodes."""


def summarize(episodes: Sequence[EpisodeResult]) -> dict:
    """Success rate with its 95% Wilson interval and mean episode length."""
    n = len(episodes)
    wins = sum(e.success for e in episodes)
    lo, hi = wilson_interval(wins, n)
    lengths = [e.steps for e in episodes]
    win_lengths = [e.steps for e in episodes if e.success]
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n,
        "ci95": [lo, hi],
        "mean_length": float(np.mean(lengths)),
        "mean_length_success": float(np.mean(win_lengths)) if win_lengths else None,
    }


def build_report(episodes: Sequence[EpisodeResult], meta: dict) -> dict:
    """Per (task, perturbation), per perturbation over all tasks, and every episode."""
    groups: dict[tuple[str, str], list[EpisodeResult]] = {}
    for e in episodes:
        groups.setdefault((e.task, e.perturbation), []).append(e)
    perturbations = list(dict.fromkeys(e.perturbation for e in episodes))
    return {
        **meta,
        "results": [
            {"task": t, "perturbation": p, **summarize(eps)} for (t, p), eps in groups.items()
        ],
        "overall": {
            p: summarize([e for e in episodes if e.perturbation == p]) for p in perturbations
        },
        "episodes": [asdict(e) for e in episodes],
    }


def merge_reports(reports: Sequence[dict]) -> dict:
    """One report from reports of disjoint episodes of one suite (graphs run side by side):
    episodes in the suite's order (task, perturbation, seed), the longest wall time, every
    graph's media. Raises ValueError if two reports hold the same episode."""
    first = reports[0]
    tasks, perturbations = first["tasks"], first["perturbations"]
    episodes = sorted(
        (EpisodeResult(**e) for r in reports for e in r["episodes"]),
        key=lambda e: (tasks.index(e.task), perturbations.index(e.perturbation), e.seed),
    )
    keys = [(e.task, e.perturbation, e.seed) for e in episodes]
    if len(set(keys)) != len(keys):
        raise ValueError("the reports to merge share episodes: they are not disjoint shares")
    seeds = [s for r in reports for s in r["seeds"]]
    meta = {k: v for k, v in first.items() if k not in ("results", "overall", "episodes", "media")}
    meta.update(
        seeds=[min(seeds), max(seeds)],
        seconds=max(r["seconds"] for r in reports),
        interrupted="; ".join(r["interrupted"] for r in reports if r["interrupted"]) or None,
        graphs=len(reports),
    )
    return {**build_report(episodes, meta), "media": [m for r in reports for m in r["media"]]}


def _row(name: str, perturbation: str, s: dict) -> str:
    lo, hi = s["ci95"]
    win_len = "-" if s["mean_length_success"] is None else f"{s['mean_length_success']:.1f}"
    return (
        f"| {name} | {perturbation} | {s['successes']}/{s['episodes']} | "
        f"{100 * s['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] | "
        f"{s['mean_length']:.1f} | {win_len} |"
    )


def markdown_table(report: dict) -> str:
    lines = [
        "| task | perturbation | successes | success rate [95% CI] | mean length | "
        "mean length (successes) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_row(r["task"], r["perturbation"], r) for r in report["results"]]
    lines += [_row("**all tasks**", p, s) for p, s in report["overall"].items()]
    return "\n".join(lines)


def frame_strip(rows: Sequence[tuple[str, np.ndarray]], columns: int = 10, scale: int = 2):
    """One labelled row per episode: `columns` frames evenly spaced from first to last.

    rows: (label, frames uint8 [T, H, W, 3]). Returns a PIL image.
    """
    from PIL import Image, ImageDraw

    tiles = []
    for label, frames in rows:
        picks = np.linspace(0, len(frames) - 1, columns).round().astype(int)
        tile = np.concatenate([frames[i] for i in picks], axis=1)
        tile = np.kron(tile, np.ones((scale, scale, 1), np.uint8))
        header = Image.new("RGB", (tile.shape[1], 14), "white")
        ImageDraw.Draw(header).text((2, 1), label, fill="black")
        tiles += [np.asarray(header), tile]
    return Image.fromarray(np.concatenate(tiles, axis=0))


def save_media(rows: Sequence[tuple[str, np.ndarray]], out_dir: Path, stem: str) -> list[Path]:
    """A PNG strip and a GIF (episodes side by side, 20 frames/s) of labelled episodes."""
    from PIL import Image

    if not rows:
        return []
    png = out_dir / f"{stem}.png"
    frame_strip(rows).save(png)
    length = max(len(f) for _, f in rows)
    movie = [
        np.concatenate([f[min(t, len(f) - 1)] for _, f in rows], axis=1) for t in range(length)
    ]
    gif = out_dir / f"{stem}.gif"
    first, *rest = (Image.fromarray(np.kron(m, np.ones((2, 2, 1), np.uint8))) for m in movie)
    first.save(gif, save_all=True, append_images=list(rest), duration=50, loop=0)
    return [png, gif]
