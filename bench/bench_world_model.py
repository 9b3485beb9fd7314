"""World-model throughput on the CPU: rollouts (batch 1 and 32) and training step time.

    .venv/bin/python bench/bench_world_model.py [--recipe training/cpu/world_model.yaml]
        [--checkpoint runs/world_model/cpu] [--threads 1 2] [--horizon 8]

Weights do not change the cost, so a recipe's untrained model is timed unless --checkpoint is
given. Rollouts run in eval mode under torch.no_grad (what GRPO does); a training step is the
recipe's (batch, open-loop horizon, decoded frames) with synthetic inputs, in float32 and under
bfloat16 autocast. Another job on the machine slows every number: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, percentiles, report

from vla_rft.contract.config import load_config
from vla_rft.models.world_model import WorldModel, load_world_model
from vla_rft.training.train_world_model import TrainWorldModelConfig, pixel_loss


def time_rollouts(model: WorldModel, b: int, g: int, horizon: int, repeats: int) -> dict:
    cfg = model.config
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, (b, cfg.context_frames, cfg.image_size, cfg.image_size, 3))
    context = context.astype(np.uint8)
    actions = rng.normal(size=(b, g, horizon, cfg.action_dim)).astype(np.float32)
    model.rollout(context, actions)  # warm-up
    samples = []
    for _ in range(repeats):
        with Timer() as t:
            model.rollout(context, actions)
        samples.append(t.seconds)
    frames = b * g * horizon
    return {
        "frames_per_s": frames / float(np.median(samples)),
        **percentiles(samples),
    }


def time_training(
    model: WorldModel, cfg: TrainWorldModelConfig, repeats: int, bf16: bool, before_step=None
) -> dict:
    m = cfg.model
    n, t = cfg.optim.batch_size, cfg.data.horizon
    keep = cfg.decoded_frames if 0 < cfg.decoded_frames < t else t
    context = torch.rand(n, m.context_frames, 3, m.image_size, m.image_size)
    actions = torch.randn(n, t, m.action_dim)
    target = torch.rand(n, keep, 3, m.image_size, m.image_size)
    valid = torch.ones(n, keep, dtype=torch.bool)
    steps = list(range(0, t, t // keep))[:keep] if keep < t else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    samples = []
    for i in range(repeats + 1):
        if before_step is not None:  # e.g. vla_rft.threads.adapt_threads, as the trainer calls it
            before_step()
        with Timer() as timer:
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                pred = model(context, actions, steps)
            loss, _ = pixel_loss(pred.float(), target, valid, cfg.l1_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if i:  # the first step is a warm-up
            samples.append(timer.seconds)
    model.eval()
    return {
        "frames_per_s": n * keep / float(np.median(samples)),
        **percentiles(samples),
        "setting": f"batch {n}, {t} steps, {keep} decoded, {'bf16' if bf16 else 'fp32'}",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=Path("training/cpu/world_model.yaml"))
    p.add_argument("--checkpoint", type=Path, help="time this trained model instead")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--horizon", type=int, default=8, help="rollout steps (default: 8, a chunk)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    cfg = load_config(TrainWorldModelConfig, args.recipe)
    if args.checkpoint:
        model, _ = load_world_model(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = WorldModel(cfg.model).eval()
    params = sum(q.numel() for q in model.parameters()) / 1e6
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for b, g in ((1, 1), (4, 8), (32, 1)):
            rows.append(
                {
                    "what": f"rollout B={b} x G={g}, {args.horizon} steps",
                    "threads": threads,
                    **time_rollouts(model, b, g, args.horizon, args.repeats),
                }
            )
        for bf16 in (False, True):
            timing = time_training(model, cfg, args.repeats, bf16)
            rows.append({"what": "training step", "threads": threads, **timing})
    run = Path(cfg.run_dir).name
    name = f"world_model_{run}"
    print(f"{run} model: {params:.2f} M parameters, {cfg.model.image_size} px")
    report(name, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
