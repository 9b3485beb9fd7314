"""World-model training beside other CPU jobs: step time alone and under load, old thread
settings against `vla_rft.threads`.

    .venv/bin/python bench/bench_training_load.py [--recipe training/cpu/world_model.yaml]
        [--threads 2] [--steps 5] [--competitors 1] [--out FILE]

A training step is `bench_world_model.time_training` at the recipe's shapes (batch, open-loop
horizon, decoded frames, bf16 as the recipe says) with synthetic inputs; the median of `--steps`
steps after one warm-up. Every measurement is a fresh process, because OpenMP reads its wait
policy once, when torch is imported: "old" is `torch.set_num_threads` alone with
OMP_WAIT_POLICY and KMP_BLOCKTIME unset (OpenMP's default, spinning), "new" is
`set_torch_threads` after `passive_openmp`. "Loaded" runs `--competitors` processes spinning
`while 1: pass` beside it, killed afterwards. The slow-down is loaded over alone; sharing the
cores fairly predicts max(1, (threads + competitors) / cpus). Run it on an otherwise quiet
machine: other jobs are load the table does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report

from vla_rft.threads import PASSIVE_OPENMP, passive_openmp

SETTINGS = {
    "old": "torch.set_num_threads, OpenMP default wait",
    "new": "vla_rft.threads (passive OpenMP, 1 inter-op thread)",
}
SPIN = "while 1: pass"


def worker(settings: str, recipe: Path, threads: int, steps: int) -> dict:
    """Time the steps in this process; torch is imported here, after the OpenMP set-up."""
    if settings == "new":
        passive_openmp()
    import torch
    from bench_world_model import time_training

    from vla_rft.models.world_model import WorldModel
    from vla_rft.threads import set_torch_threads
    from vla_rft.training.config import load_config
    from vla_rft.training.train_world_model import TrainWorldModelConfig

    if settings == "new":
        set_torch_threads(threads)
    else:
        torch.set_num_threads(threads)
    cfg = load_config(TrainWorldModelConfig, recipe)
    torch.manual_seed(0)
    timing = time_training(WorldModel(cfg.model), cfg, steps, cfg.optim.bf16)
    return {"s_per_step": timing["p50_ms"] / 1e3, "setting": timing["setting"]}


def measure(settings: str, args, competitors: int) -> dict:
    """One worker process, with `competitors` spinning processes beside it."""
    env = {k: v for k, v in os.environ.items() if k not in PASSIVE_OPENMP}
    cmd = [sys.executable, __file__, "--worker", settings, "--recipe", str(args.recipe),
           "--threads", str(args.threads), "--steps", str(args.steps)]  # fmt: skip
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(competitors)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    if done.returncode:
        raise RuntimeError(f"{settings} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=Path("training/cpu/world_model.yaml"))
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--competitors", type=int, default=1, help="spinning processes beside it")
    p.add_argument("--out", type=Path, help="JSON file (default: bench/results/<name>.json)")
    p.add_argument("--worker", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.recipe, args.threads, args.steps)))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` kills the spinners
    cpus = os.cpu_count() or 1
    fair = max(1.0, (args.threads + args.competitors) / cpus)
    rows = []
    for settings, about in SETTINGS.items():
        alone = measure(settings, args, 0)
        loaded = measure(settings, args, args.competitors)
        rows.append(
            {
                "settings": about,
                "threads": args.threads,
                "competitors": args.competitors,
                "alone s/step": alone["s_per_step"],
                "loaded s/step": loaded["s_per_step"],
                "slow-down": loaded["s_per_step"] / alone["s_per_step"],
                "fair-share slow-down": fair,
            }
        )
    print(f"{args.recipe}: {alone['setting']}, {args.steps} steps each, {cpus} CPUs")
    report(f"training_load_{args.recipe.stem}_{args.recipe.parent.name}", rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
