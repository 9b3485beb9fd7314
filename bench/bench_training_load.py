"""World-model training beside other CPU jobs: step time alone and under load, with fixed
threads (three OpenMP wait policies) and with the trainers' adaptive threads.

    .venv/bin/python bench/bench_training_load.py [--recipe training/cpu/world_model.yaml]
        [--threads 2] [--steps 5] [--competitors 1] [--variants spin,passive,adaptive]

A training step is `bench_world_model.time_training` at the recipe's shapes (batch, open-loop
horizon, decoded frames, bf16 as the recipe says) with synthetic inputs; the median of `--steps`
steps after one warm-up. Every measurement is a fresh process, because OpenMP reads its wait
policy once, when torch is imported; each sets `--threads` intra-op threads and one inter-op
thread, and differs in its OpenMP environment or, for "adaptive" (what the trainers do), calls
`vla_rft.threads.adapt_threads` before every step. "Loaded" runs `--competitors` processes spinning
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

VARIANTS = {
    "spin": ("fixed threads, OpenMP default (waiting threads spin)", {}),
    "passive": (
        "fixed threads, OMP_WAIT_POLICY=PASSIVE + KMP_BLOCKTIME=0 (waiting threads sleep)",
        {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"},
    ),
    "short-spin": ("fixed threads, GOMP_SPINCOUNT=10000", {"GOMP_SPINCOUNT": "10000"}),
    "adaptive": ("vla_rft.threads: adapt_threads() every step, OpenMP default", {}),
}
"""name -> (description, OpenMP environment)."""
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")
SPIN = "while 1: pass"


def worker(recipe: Path, threads: int, steps: int, adapt_period_s: float | None) -> dict:
    """Time the steps in this process (its OpenMP environment is the parent's choice), calling
    `adapt_threads` before each step when `adapt_period_s` is given."""
    import torch
    from bench_world_model import time_training

    from vla_rft.contract.config import load_config
    from vla_rft.models.world_model import WorldModel
    from vla_rft.threads import adapt_threads, set_torch_threads
    from vla_rft.training.train_world_model import TrainWorldModelConfig

    set_torch_threads(threads)
    cfg = load_config(TrainWorldModelConfig, recipe)
    torch.manual_seed(0)
    before_step = None if adapt_period_s is None else (lambda: adapt_threads(adapt_period_s))
    timing = time_training(WorldModel(cfg.model), cfg, steps, cfg.bf16, before_step)
    return {"s_per_step": timing["p50_ms"] / 1e3, "setting": timing["setting"]}


def measure(variant: str, args, competitors: int) -> dict:
    """One worker process with `variant`'s OpenMP environment, `competitors` spinning
    processes beside it."""
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES}
    env.update(VARIANTS[variant][1])
    cmd = [sys.executable, __file__, "--worker", "--recipe", str(args.recipe),
           "--threads", str(args.threads), "--steps", str(args.steps)]  # fmt: skip
    if variant == "adaptive":
        cmd += ["--adaptive", "--adapt-period", str(args.adapt_period)]
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(competitors)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    if done.returncode:
        raise RuntimeError(f"{variant} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=Path("training/cpu/world_model.yaml"))
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--competitors", type=int, default=1, help="spinning processes beside it")
    p.add_argument("--variants", default="spin,passive,adaptive", help=f"of {list(VARIANTS)}")
    p.add_argument(
        "--adapt-period", type=float, default=2.0, help="adaptive: seconds between looks"
    )
    p.add_argument("--out", type=Path, help="JSON file (default: bench/results/<name>.json)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--adaptive", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        period = args.adapt_period if args.adaptive else None
        print(json.dumps(worker(args.recipe, args.threads, args.steps, period)))
        return 0
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` kills the spinners
    cpus = os.cpu_count() or 1
    fair = max(1.0, (args.threads + args.competitors) / cpus)
    rows = []
    for variant in args.variants.split(","):
        about, _ = VARIANTS[variant]
        alone = measure(variant, args, 0)
        loaded = measure(variant, args, args.competitors)
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
    name = f"training_load_{args.recipe.stem}_{args.recipe.parent.name}_t{args.threads}"
    report(f"{name}_c{args.competitors}", rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
