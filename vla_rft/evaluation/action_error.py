"""`vla-rft action-error`: how close each policy's chunks are to the recorded actions, offline.

    vla-rft action-error --policy runs/policy/cpu runs/rft/corrections runs/policy/cpu-dagger \
        --data data/corrections data/expert200 --out runs/action_error

On held-out windows of each episode directory (the validation split every trainer leaves out,
by episode name), each policy's deterministic chunk is compared with the episode's next K
recorded actions: mean absolute error in robot units, with its standard error over windows.
It answers "did fine-tuning move the policy towards the expert's actions where they were
recorded?" without the simulator: on correction episodes (`vla-rft collect-corrections`) that is
the expert's recovery from states the base policy drove into. Writes action_error.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vla_rft.data import WindowConfig, build_datasets
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.threads import set_torch_threads
from vla_rft.training.imagination import full_chunk_windows


def held_out_windows(data: str, chunk: int, windows: int, seed: int) -> dict[str, np.ndarray]:
    """Up to `windows` held-out windows of `data` whose next `chunk` actions lie inside the
    episode: raw uint8 "image" [N, H, W, 3], "state" [N, S], "action" [N, K, A], instructions."""
    config = WindowConfig(action_horizon=chunk, normalize=False, val_fraction=0.1)
    _, val, _ = build_datasets([data], config)
    if val is None:
        raise ValueError(f"{data} has no held-out episodes (it needs at least 2 episodes)")
    picks = full_chunk_windows(val, chunk)
    if len(picks) == 0:
        raise ValueError(f"{data}: no held-out episode is longer than one chunk ({chunk} steps)")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(picks, min(windows, len(picks)), replace=False))
    batch = val.get_batch(picks)
    batch["image"] = batch["image"][:, -1]  # the current frame
    return batch


def chunk_errors(policy: TorchPolicy, batch: dict, batch_size: int = 64) -> np.ndarray:
    """Mean |deterministic chunk - recorded actions| per window [N], robot units: the actions as
    the policy serves them (`TorchPolicy.infer_batch`, clipped to the robot's range)."""
    out = []
    for i in range(0, len(batch["state"]), batch_size):
        rows = slice(i, i + batch_size)
        actions, _ = policy.infer_batch(
            batch["image"][rows], batch["state"][rows], batch["instruction"][rows]
        )  # [B, K, A]
        out.append(np.abs(actions - batch["action"][rows]).mean(axis=(1, 2)))
    return np.concatenate(out)


def action_error(policies: list[str], data: list[str], windows: int, seed: int) -> list[dict]:
    """One row per (data directory, policy): mean error, its standard error, windows."""
    loaded = {p: TorchPolicy.from_checkpoint(p) for p in policies}
    chunk = next(iter(loaded.values())).model.config.chunk_size
    if any(p.model.config.chunk_size != chunk for p in loaded.values()):
        raise ValueError("the policies have different chunk sizes; compare them separately")
    rows = []
    for directory in data:
        batch = held_out_windows(directory, chunk, windows, seed)
        for name, policy in loaded.items():
            errors = chunk_errors(policy, batch)
            rows.append(
                {
                    "data": directory,
                    "policy": name,
                    "windows": len(errors),
                    "mean_abs_error": float(errors.mean()),
                    "standard_error": float(errors.std(ddof=1) / np.sqrt(len(errors)))
                    if len(errors) > 1
                    else float("nan"),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    lines = [
        "| held-out windows of | n | " + " | ".join(policies) + " |",
        "| --- | --- |" + " --- |" * len(policies),
    ]
    for directory in dict.fromkeys(r["data"] for r in rows):
        cells = {r["policy"]: r for r in rows if r["data"] == directory}
        n = next(iter(cells.values()))["windows"]
        values = [
            f"{cells[p]['mean_abs_error']:.4f} ± {cells[p]['standard_error']:.4f}" for p in policies
        ]
        lines.append(f"| {directory} | {n} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vla-rft action-error", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--policy", nargs="+", required=True, help="checkpoints or runs")
    parser.add_argument("--data", nargs="+", required=True, help="episode directories")
    parser.add_argument(
        "--windows", type=int, default=400, help="held-out windows per directory (default 400)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the window sample")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("runs/action_error"))
    args = parser.parse_args(argv)
    if args.windows < 1:
        parser.error("--windows must be >= 1")
    set_torch_threads(args.threads)
    try:
        rows = action_error(args.policy, args.data, args.windows, args.seed)
    except (ValueError, FileNotFoundError) as err:  # CheckpointError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "action_error.json").write_text(json.dumps(rows, indent=1))
    (args.out / "action_error.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
