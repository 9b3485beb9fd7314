"""Policy inference latency at batch 1: torch eager vs ONNX Runtime (and TensorRT where present).

    .venv/bin/python bench/bench_inference.py [--sizes 64,128,224] [--iters 300] [--threads 2]
                                              [--flow-steps 10,5,3]
                                              [--recipe training/cpu/policy_224.yaml]
                                              [--gap-ms 33]

For each image size a policy with the default architecture (PolicyConfig), and for each
`--recipe` a policy with that training recipe's architecture, is saved as a checkpoint (random
weights, which do not change the cost), exported with `vla-rft export`'s code and timed through
the one `Policy.infer` call the robot makes (preprocessing, network, de-normalisation), after a
warm-up. The instruction embedding comes from the cache, as on the robot. With `--flow-steps`,
ONNX Runtime also runs packages exported with fewer Euler steps of the flow head (`vla-rft
export --flow-steps N`); torch runs the trained number (10). `--gap-ms` sleeps before each call,
as a policy waiting for a 30 Hz camera does (an idle core and cold caches make such a call
slower than back-to-back calls).
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

from vla_rft.contract.config import load_config, to_dict
from vla_rft.contract.manifest import ACTION_RANGE_KEY, INSTRUCTIONS_KEY, POLICY_CONFIG_KEY
from vla_rft.data.normalization import NormStats
from vla_rft.export.export_policy import export_policy
from vla_rft.models.checkpoint import save_checkpoint
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.runtime.loader import load_policy
from vla_rft.training.train_policy import TrainPolicyConfig


def make_package(
    config: PolicyConfig, root: Path, flow_steps: tuple[int, ...] = (), name: str = ""
) -> tuple[Path, Path]:
    """(checkpoint run, package) of a random policy of `config`; one more package per entry of
    `flow_steps` (root/pkg{name}-steps{n}); `name` defaults to the image size."""
    name = name or str(config.image_size)
    rng = np.random.default_rng(0)
    stats = NormStats.compute(
        rng.normal(size=(64, config.state_dim)), rng.normal(size=(64, config.action_dim))
    )
    run = root / f"run{name}"
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
    export_policy(run, root / f"pkg{name}")
    for n in flow_steps:
        export_policy(run, root / f"pkg{name}-steps{n}", flow_steps=n)
    return run, root / f"pkg{name}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="64,128,224")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="sleep before each call, e.g. 33 for a 30 Hz camera (default: back to back)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument(
        "--flow-steps", default="", help="comma-separated: also ONNX packages with these steps"
    )
    parser.add_argument(
        "--recipe",
        type=Path,
        action="append",
        default=[],
        help="a policy training recipe: one more row with its architecture (repeatable)",
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
    sizes = [int(size) for size in args.sizes.split(",") if size]
    models = [(str(size), PolicyConfig(image_size=size)) for size in sizes]
    models += [(path.stem, load_config(TrainPolicyConfig, path).model) for path in args.recipe]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in models:
            size = config.image_size
            run, package = make_package(config, Path(tmp), steps, name)
            runs = [(b, config.flow_steps, run if b == "torch" else package) for b in backends]
            runs += [
                ("onnxruntime", n, package.with_name(f"{package.name}-steps{n}")) for n in steps
            ]
            for backend, n, path in runs:
                policy = load_policy(path, backend=backend)
                stats = percentiles(time_policy(policy, size, args.iters, gap_s=args.gap_ms / 1e3))
                backend_name = getattr(policy, "backend", backend)
                arch = name if name != str(size) else "default"
                row = {"image": size, "model": arch, "flow steps": n, "backend": backend_name}
                row["gap ms"] = args.gap_ms
                rows.append({**row, **stats})
                if backend == "torch":  # the first row of each size
                    torch_p50 = stats["p50_ms"]
                else:
                    rows[-1]["speed-up vs torch (p50)"] = torch_p50 / stats["p50_ms"]
                print(rows[-1], flush=True)
    report("inference", rows, args.out)


if __name__ == "__main__":
    main()
