"""Inference latency of the torch policy backend at batch 1 (64x64 camera image).

Rows: the whole `TorchPolicy.infer` (transforms, cached instruction embedding, network,
de-normalisation), the network alone (deterministic 10-step flow), one stochastic chunk with its
log-probability, and the sentence encoder for a new instruction (what the cache saves).
Uses a checkpoint if given, otherwise a freshly initialised policy of the recipe (same cost).

    .venv/bin/python bench/bench_policy.py [--policy runs/policy/cpu] [--threads 2]
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
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.models.policy.text_encoder import SentenceEncoder
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.runtime.transforms import InstructionCache, PolicyTransforms
from vla_rft.training.train_policy import TrainPolicyConfig

INSTRUCTION = "push the puck to the target"


def _fresh_policy(recipe: Path, encoder: SentenceEncoder) -> TorchPolicy:
    config: PolicyConfig = load_config(TrainPolicyConfig, recipe).model
    stats = {"mean": [0.0] * 4, "std": [1.0] * 4}
    transforms = PolicyTransforms.from_stats(config.image_size, {"state": stats, "action": stats})
    known = {INSTRUCTION: encoder(INSTRUCTION)}
    return TorchPolicy(VLAPolicy(config), transforms, InstructionCache(known, encoder))


def _time(fn, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        samples.append(t.seconds)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="checkpoint or run directory (default: a fresh policy)")
    parser.add_argument("--recipe", type=Path, default=Path("training/cpu/policy.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    encoder = SentenceEncoder()
    if args.policy:
        policy = TorchPolicy.from_checkpoint(args.policy)
        policy.instructions.encode = encoder
    else:
        policy = _fresh_policy(args.recipe, encoder)
    size = policy.transforms.image.size
    rng = np.random.default_rng(0)
    obs = {
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "state": np.array([0.0, 0.6, 0.2, 1.0], np.float32),
        "instruction": INSTRUCTION,
    }
    image, state = policy.transforms.observation(obs["image"][None], obs["state"][None])
    inputs = {
        "image": torch.from_numpy(image),
        "instruction_embedding": torch.from_numpy(policy.instructions(INSTRUCTION)[None]),
        "state": torch.from_numpy(state),
    }
    model, generator = policy.model, torch.Generator().manual_seed(0)

    @torch.no_grad()
    def network():
        model.predict_chunk(*inputs.values())

    @torch.no_grad()
    def stochastic():
        model.sample_chunk(inputs, generator)

    new = iter(f"instruction number {i}" for i in range(10**6))
    cases = {
        "TorchPolicy.infer (cached instruction)": lambda: policy.infer(obs),
        "network only, deterministic chunk": network,
        "network only, stochastic chunk + log-prob": stochastic,
        "sentence encoder, new instruction": lambda: encoder(next(new)),
    }
    config = model.config
    rows = []
    for name, fn in cases.items():
        samples = _time(fn, args.repeats)
        rows.append(
            {
                "case": name,
                **percentiles(samples, (50, 90, 99)),
                "calls_per_s": 1 / float(np.median(samples)),
            }
        )
    print(
        f"{config.head} head, {config.flow_steps} steps, chunk {config.chunk_size}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"image {size} px, batch 1, {args.threads} threads"
    )
    report("policy", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
