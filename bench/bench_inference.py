"""Policy inference latency at batch 1: torch eager vs ONNX Runtime (and TensorRT where present).

    .venv/bin/python bench/bench_inference.py [--sizes 64,128,224] [--iters 300] [--threads 2]
                                              [--flow-steps 10,5,3]

For each image size a policy with the default architecture (PolicyConfig; random weights, which
do not change the cost) is saved as a checkpoint, exported with `vla-rft export`'s code and timed
through the one `Policy.infer` call the robot makes (preprocessing, network, de-normalisation),
after a warm-up. The instruction embedding comes from the cache, as on the robot. With
`--flow-steps`, ONNX Runtime also runs packages exported with fewer Euler steps of the flow head
(`vla-rft export --flow-steps N`); torch runs the trained number (10).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import INSTRUCTION, percentiles, report, time_policy

from vla_rft.contract.config import to_dict
from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
from vla_rft.data.normalization import NormStats
from vla_rft.export.export_policy import export_policy
from vla_rft.models.checkpoint import save_checkpoint
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.runtime.loader import load_policy


def make_package(
    size: int, root: Path, flow_steps: tuple[int, ...] = (), **architecture
) -> tuple[Path, Path]:
    """(checkpoint run, package) of a random policy at `size`; one more package per entry of
    `flow_steps` (root/pkg{size}-steps{n}). `architecture`: PolicyConfig fields to change from
    the default."""
    config = PolicyConfig(image_size=size, **architecture)
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
    for n in flow_steps:
        export_policy(run, root / f"pkg{size}-steps{n}", flow_steps=n)
    return run, root / f"pkg{size}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="64,128,224")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument(
        "--flow-steps", default="", help="comma-separated: also ONNX packages with these steps"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backends = ["torch", "onnxruntime"]
    try:
        import tensorrt  # noqa: F401

        backends.append("tensorrt")
    except ImportError:
        print("TensorRT not installed: its rows are skipped")
    steps = tuple(int(n) for n in args.flow_steps.split(",") if n)
    trained = PolicyConfig().flow_steps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            run, package = make_package(size, Path(tmp), steps)
            runs = [(b, trained, run if b == "torch" else package) for b in backends]
            runs += [
                ("onnxruntime", n, package.with_name(f"{package.name}-steps{n}")) for n in steps
            ]
            for backend, n, path in runs:
                policy = load_policy(path, backend=backend)
                stats = percentiles(time_policy(policy, size, args.iters))
                name = getattr(policy, "backend", backend)
                rows.append({"image": size, "flow steps": n, "backend": name, **stats})
                if backend == "torch":  # the first row of each size
                    torch_p50 = stats["p50_ms"]
                else:
                    rows[-1]["speed-up vs torch (p50)"] = torch_p50 / stats["p50_ms"]
                print(rows[-1], flush=True)
    report("inference", rows, args.out)


if __name__ == "__main__":
    main()
