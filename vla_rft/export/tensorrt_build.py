"""`vla-rft build-engine`: a TensorRT engine from a package's policy.onnx (TensorRT Python API).

    vla-rft build-engine --model models/policy-v1 [--precision fp16] [--batch-sizes 1,8,32]

The engine's manifest (policy.engine.json) is the ONNX manifest plus the build facts: TensorRT
version, GPU and precision. The runtime refuses an engine built for another TensorRT or GPU and
falls back to ONNX Runtime. Needs the `gpu` extra (tensorrt, cuda-python) and an NVIDIA GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from vla_rft.contract.manifest import POLICY_ENGINE, POLICY_ONNX, read_manifest, write_manifest

PRECISIONS = ("fp16", "fp32")


def build_engine(
    package: Path, precision: str = "fp16", batch_sizes=(1, 8, 32), workspace_gib: float = 2.0
) -> Path:
    """Build `package/policy.engine` with one optimisation profile over `batch_sizes`."""
    import tensorrt as trt

    from vla_rft.runtime.tensorrt_session import current_build_target

    onnx_path = package / POLICY_ONNX
    manifest = read_manifest(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    lo, opt, hi = min(batch_sizes), sorted(batch_sizes)[len(batch_sizes) // 2], max(batch_sizes)
    for spec in manifest.inputs:
        rest = tuple(int(d) for d in spec.shape[1:])
        profile.set_shape(spec.name, (lo, *rest), (opt, *rest), (hi, *rest))
    config.add_optimization_profile(profile)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    engine_path = package / POLICY_ENGINE
    engine_path.write_bytes(bytes(serialized))
    facts = {
        **current_build_target(),
        "precision": precision,
        "batch_sizes": list(batch_sizes),
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    write_manifest(
        engine_path, dataclasses.replace(manifest, extra={**manifest.extra, "engine": facts})
    )
    return engine_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vla-rft build-engine", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="model package from `vla-rft export`"
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16", help="default: fp16")
    parser.add_argument(
        "--batch-sizes",
        default="1,8,32",
        help="batch sizes of the optimisation profile (default: 1,8,32)",
    )
    args = parser.parse_args(argv)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print(
            "error: TensorRT is not installed (pip install -e .[gpu] on a machine with an "
            "NVIDIA GPU); the ONNX Runtime backend needs no engine",
            file=sys.stderr,
        )
        return 2
    sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    path = build_engine(args.model, args.precision, sizes)
    print(f"engine {path} ({path.stat().st_size / 1e6:.1f} MB, {args.precision})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
