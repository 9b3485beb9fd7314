"""Policy inference latency at batch 1: torch eager vs ONNX Runtime (and TensorRT where present).

    .venv/bin/python bench/bench_inference.py [--sizes 64,128,224] [--iters 300] [--threads 2]

For each image size a policy with the default architecture (PolicyConfig; random weights, which
do not change the cost) is saved as a checkpoint, exported with `vla-rft export`'s code and timed
through the one `Policy.infer` call the robot makes (preprocessing, network, de-normalisation),
after a warm-up. The instruction embedding comes from the cache, as on the robot.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentiles, report

from vla_rft.contract.config import to_dict
from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
from vla_rft.data.normalization import NormStats
from vla_rft.export.export_policy import export_policy
from vla_rft.models.checkpoint import save_checkpoint
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.runtime.loader import load_policy

INSTRUCTION = "push the puck to the goal"


def make_package(size: int, root: Path) -> tuple[Path, Path]:
    config = PolicyConfig(image_size=size)
    rng = np.random.default_rng(0)
    stats = NormStats.compute(
        rng.normal(size=(64, config.state_dim)), rng.normal(size=(64, config.action_dim))
    )
    run = root / f"run{size}"
    embedding = rng.standard_normal(config.instruction_dim).tolist()
    save_checkpoint(
        run,
        0,
        VLAPolicy(config),
        {},
        stats.to_dict(),
        "bench",
        extra={
            POLICY_CONFIG_KEY: to_dict(config),
            INSTRUCTIONS_KEY: {INSTRUCTION: embedding},
            ACTION_RANGE_KEY: [-1.0, 1.0],
        },
    )
    export_policy(run, root / f"pkg{size}")
    return run, root / f"pkg{size}"


def time_policy(policy, size: int, iters: int) -> list[float]:
    rng = np.random.default_rng(1)
    obs = {
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=4).astype(np.float32),
        "instruction": INSTRUCTION,
    }
    for _ in range(20):
        policy.infer(obs)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        policy.infer(obs)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="64,128,224")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backends = ["torch", "onnxruntime"]
    try:
        import tensorrt  # noqa: F401

        backends.append("tensorrt")
    except ImportError:
        print("TensorRT not installed: its rows are skipped")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            run, package = make_package(size, Path(tmp))
            p50 = {}
            for backend in backends:
                policy = load_policy(run if backend == "torch" else package, backend=backend)
                stats = percentiles(time_policy(policy, size, args.iters))
                p50[backend] = stats["p50_ms"]
                rows.append(
                    {"image": size, "backend": getattr(policy, "backend", backend), **stats}
                )
                print(rows[-1], flush=True)
            rows[-1 if "tensorrt" not in backends else -2]["speed-up vs torch (p50)"] = (
                p50["torch"] / p50["onnxruntime"]
            )
    report("inference", rows, args.out)


if __name__ == "__main__":
    main()
