"""Episode write/read throughput and data-set epoch time at 64x64.

    .venv/bin/python bench/bench_data.py [--episodes 200] [--steps 80] [--out FILE]

Synthetic episodes of random frames (the worst case for size) go through the real episode
store; the data set then indexes them cold (decoding every MCAP into the cache), warm (from the
cache) and reads one epoch of batches.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, report

from vla_rft.data.dataset import EpisodeIndex, WindowConfig, build_datasets
from vla_rft.data.episode import Episode, EpisodeMeta
from vla_rft.data.episode_store import list_episodes, read_episode, write_episode


def synthetic_episode(steps: int, size: int, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        images=rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
        states=rng.normal(size=(steps, 4)).astype(np.float32),
        actions=rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        timestamps=np.arange(steps) / 80.0,
        meta=EpisodeMeta(
            task="reach-v3", instruction="reach the goal", robot="bench", fps=80.0, source="bench"
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=80, help="steps per episode")
    parser.add_argument("--size", type=int, default=64, help="image size")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default bench/results/data.json)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        episodes = [synthetic_episode(args.steps, args.size, i) for i in range(args.episodes)]
        with Timer() as t_write:
            for i, ep in enumerate(episodes):
                write_episode(root, f"ep{i:04d}", ep)
        total_steps = args.episodes * args.steps
        mbytes = sum(f.stat().st_size for p in list_episodes(root) for f in p.iterdir()) / 1e6
        with Timer() as t_read:
            for path in list_episodes(root):
                read_episode(path)
        with Timer() as t_cold:
            EpisodeIndex(root)
        with Timer() as t_warm:
            train, _, _ = build_datasets([root], WindowConfig(future_frames=8))
        with Timer() as t_epoch:
            batches = sum(1 for _ in train.iter_batches(64))

    rows = [
        {
            "what": "episode write",
            "seconds": t_write.seconds,
            "steps_per_s": total_steps / t_write.seconds,
            "MB_per_s": mbytes / t_write.seconds,
        },
        {
            "what": "episode read",
            "seconds": t_read.seconds,
            "steps_per_s": total_steps / t_read.seconds,
            "MB_per_s": mbytes / t_read.seconds,
        },
        {
            "what": "data set index, cold (decode to cache)",
            "seconds": t_cold.seconds,
            "steps_per_s": total_steps / t_cold.seconds,
        },
        {
            "what": "data set index, warm (from cache) + stats",
            "seconds": t_warm.seconds,
            "steps_per_s": total_steps / t_warm.seconds,
        },
        {
            "what": f"one epoch, {batches} batches of 64 (1 context + 8 future frames)",
            "seconds": t_epoch.seconds,
            "steps_per_s": len(train) / t_epoch.seconds,
        },
    ]
    print(
        f"{args.episodes} episodes x {args.steps} steps at {args.size}x{args.size}, {mbytes:.0f} MB"
    )
    report("data", rows, args.out)


if __name__ == "__main__":
    main()
