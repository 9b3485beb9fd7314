"""The GPU check: the FP16 TensorRT engine, its parity with ONNX Runtime on the CPU, and batch-1
latency of each backend at 64 and 224 px, on a machine with an NVIDIA GPU and no network.

    .venv/bin/python bench/gpu_check.py pack [--sizes 64,224] [--wheels DIR]   # here
    python3 bench/gpu_check.py run [--carry gpu_carry] [--out DIR]              # on the GPU

`pack` exports a policy with random weights (bench_inference.make_package; weights do not change
the cost) at each size (224 px with the 224 px recipe's encoder, training/cpu/policy_224.yaml)
into the carried folder, with its checkpoint for the torch rows, copies
any wheels given, writes manifest.json, and fails if the folder and the repository together
exceed what the device tool carries (64 MiB). `run` goes through three stages per size and
backend: open (for tensorrt: build the FP16 engine with `build_engine`, then load it), parity
(the chunk on several inputs against ONNX Runtime on the CPU in FP32) and latency (p50/p99 of the
full `infer` call, as bench_inference.py times it). Each stage is recorded as ok, failed (with the
error) or skipped (the backend is not installed here, or a stage it needs did not pass); the
check continues after any of them, writes gpu_check.json, prints the tables and exits 1 if a
stage failed. `run` imports torch only for the torch rows, so it also runs where only ONNX
Runtime and TensorRT are installed (a robot's computer). scripts/gpu/ holds the shell entry
points; docs/EXPORT.md ("GPU check") the device commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from carry import (
    CARRY_LIMIT_MIB,
    CARRY_MANIFEST,
    CarryDamaged,
    CarryTooLarge,
    copy_wheels,
    finish_folder,
    pack_and_run_parsers,
    start_folder,
    travelling_bytes,
    verify_folder,
)
from common import RESULTS_DIR, percentiles, print_table, report, time_policy

from vla_rft.contract.config import comma_list
from vla_rft.contract.manifest import (
    CHUNK_OUTPUT,
    IMAGE_INPUT,
    INSTRUCTION_INPUT,
    INSTRUCTIONS_KEY,
    POLICY_ONNX,
    STATE_INPUT,
    Manifest,
    manifest_path,
)
from vla_rft.runtime.loader import load_policy
from vla_rft.runtime.onnx_session import PROVIDERS, OnnxModel

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / "gpu_carry"
SIZE_RECIPES = {224: "training/cpu/policy_224.yaml"}
"""Sizes packed with a training recipe's architecture (the others: the default PolicyConfig)."""
__all__ = ["CARRY_LIMIT_MIB", "CARRY_MANIFEST", "CarryTooLarge", "travelling_bytes"]
"""Re-exported from carry.py, where bench/rft_paper_scale.py shares them."""

CPU_ATOL = 1e-4
"""torch (FP32, CPU) against ONNX Runtime on the CPU: the export's own bound
(vla_rft.export.onnx_export.PARITY_ATOL, not imported: that module needs torch and onnx)."""
GPU_ATOL = 1e-2
"""Largest |GPU backend - ONNX Runtime CPU FP32| accepted on the normalised action chunk.

FP16 keeps 11 significant bits (unit roundoff 4.9e-4) and the chunk is of order 1 (normalised
actions, in standard deviations of the training actions); the rounding of a few dozen layers
and 10 Euler steps adds up. Measured on the CPU with torch autocast to float16 (random weights,
4 inputs): 1.6e-3 at 64 px, 1.9e-3 at 224 px; 1e-2 leaves 5x for TensorRT's own kernel choices
and still catches a wrong graph (whose differences are of order 1). It is a hundredth of a
standard deviation of an action. The FP32 GPU paths get the same bound: their convolutions and
matrix products may run in TF32, which keeps FP16's 10 mantissa bits."""

NOT_CARRIED = {
    "tensorrt": "TensorRT cannot travel: the GPU image has none, and tensorrt-cu13's libraries "
    "(libnvinfer and its kernels, served from pypi.nvidia.com) are far over the 64 MiB the "
    "device tool carries",
    "onnxruntime-cuda": "ONNX Runtime's CUDA provider cannot travel: the GPU image has "
    "onnxruntime without it, and the onnxruntime-gpu wheel is 244 MiB (1.31.1, cp312, x86_64)",
}
"""Why the backends the bare GPU image lacks are not in the carried folder."""


class ParityError(RuntimeError):
    """A backend's action chunks differ from ONNX Runtime's on the CPU beyond its tolerance."""


class BackendMissing(RuntimeError):
    """The backend is not installed or has no device here: its stages are skipped, not failed."""


@dataclass
class Opened:
    """A backend ready to run one package."""

    policy: Any
    """The `Policy` whose `infer` is timed."""
    chunk: Callable[[dict[str, np.ndarray]], np.ndarray]
    """Network inputs (batch 1) -> the normalised action chunk, for the parity check."""
    detail: str
    """What was opened, for the stage record (provider, device, engine facts)."""


def open_tensorrt(package: Path, checkpoint: Path, work: Path) -> Opened:
    """Build the FP16 engine for batch 1 in a copy of `package` under `work` and load it."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as err:
        raise BackendMissing(
            f"TensorRT is not installed ({err}); {NOT_CARRIED['tensorrt']}"
        ) from None
    from vla_rft.export.tensorrt_build import build_engine
    from vla_rft.runtime.tensorrt_session import (
        EngineMismatchError,
        TensorRTModel,
        current_build_target,
    )

    try:
        current_build_target()
    except EngineMismatchError as err:
        raise BackendMissing(str(err)) from None
    copy = work / package.name
    shutil.copytree(package, copy, dirs_exist_ok=True)
    engine = build_engine(copy, "fp16", batch_sizes=(1,))
    policy = load_policy(copy, backend="tensorrt")
    if policy.backend != "tensorrt":
        TensorRTModel(engine)  # raises the error the loader warned about and fell back from
        raise RuntimeError(f"{engine}: load_policy fell back to {policy.backend}")
    facts = policy.manifest.extra.get("engine", {})
    return Opened(
        policy,
        lambda feeds: policy.chunk_model.run(feeds)[CHUNK_OUTPUT],
        f"engine built in {facts.get('build_seconds')} s, TensorRT "
        f"{facts.get('tensorrt_version')} on {facts.get('gpu')}",
    )


def open_onnxruntime(provider: str) -> Callable[[Path, Path, Path], Opened]:
    """ONNX Runtime with one execution provider (`PROVIDERS` key) and one CPU thread."""

    def open_(package: Path, checkpoint: Path, work: Path) -> Opened:
        import onnxruntime as ort

        wanted, available = PROVIDERS[provider], ort.get_available_providers()
        if wanted not in available:
            raise BackendMissing(
                f"ONNX Runtime {ort.__version__} here has no {wanted} (it has "
                f"{', '.join(available)}); {NOT_CARRIED.get(f'onnxruntime-{provider}', '')}"
            )
        policy = load_policy(package, backend="onnxruntime", providers=provider, threads=1)
        used = policy.chunk_model.providers
        if used[0] != wanted:
            raise RuntimeError(f"ONNX Runtime fell back to {used[0]} (see its log above)")
        return Opened(
            policy,
            lambda feeds: policy.chunk_model.run(feeds)[CHUNK_OUTPUT],
            f"ONNX Runtime {ort.__version__}, providers {', '.join(used)}",
        )

    return open_


def open_torch(device: str) -> Callable[[Path, Path, Path], Opened]:
    """The checkpoint in torch eager on `device` ('cuda' or 'cpu')."""

    def open_(package: Path, checkpoint: Path, work: Path) -> Opened:
        import torch

        from vla_rft.runtime.torch_policy import TorchPolicy

        if device == "cuda" and not torch.cuda.is_available():
            raise BackendMissing(f"torch {torch.__version__} sees no CUDA device")
        policy = TorchPolicy.from_checkpoint(checkpoint, device=device)

        @torch.no_grad()
        def chunk(feeds: dict[str, np.ndarray]) -> np.ndarray:
            names = (IMAGE_INPUT, INSTRUCTION_INPUT, STATE_INPUT)
            inputs = (torch.from_numpy(feeds[n]).to(device) for n in names)
            return policy.model.predict_chunk(*inputs).float().cpu().numpy()

        name = torch.cuda.get_device_name() if device == "cuda" else "the CPU"
        return Opened(policy, chunk, f"torch {torch.__version__} on {name}")

    return open_


@dataclass(frozen=True)
class Backend:
    precision: str
    atol: float | None
    """Parity tolerance against ONNX Runtime on the CPU; None for that reference itself."""
    open: Callable[[Path, Path, Path], Opened]
    """(package, checkpoint, work directory) -> Opened; BackendMissing if not installed here."""


BACKENDS = {
    "tensorrt": Backend("fp16", GPU_ATOL, open_tensorrt),
    "onnxruntime-cuda": Backend("fp32", GPU_ATOL, open_onnxruntime("cuda")),
    "torch-cuda": Backend("fp32", GPU_ATOL, open_torch("cuda")),
    "onnxruntime-cpu": Backend("fp32", None, open_onnxruntime("cpu")),
    "torch-cpu": Backend("fp32", CPU_ATOL, open_torch("cpu")),
}
REFERENCE = "onnxruntime-cpu"
"""The backend every parity check and speed-up is measured against."""


def parity_feeds(manifest: Manifest, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """`count` batch-1 inputs of the policy graph: images uniform in [-1, 1] (the range the
    transforms produce), standard normal states (normalised), and the manifest's training
    instruction embeddings in turn."""
    rng = np.random.default_rng(seed)
    known = list(manifest.extra.get(INSTRUCTIONS_KEY, {}).values())
    known = known or [rng.standard_normal(manifest.instruction_dim)]
    size = manifest.image_size
    return [
        {
            IMAGE_INPUT: rng.uniform(-1, 1, (1, 3, size, size)).astype(np.float32),
            INSTRUCTION_INPUT: np.asarray(known[i % len(known)], dtype=np.float32)[None],
            STATE_INPUT: rng.standard_normal((1, manifest.state_dim)).astype(np.float32),
        }
        for i in range(count)
    ]


def max_abs_diff(
    expected: list[np.ndarray], chunk: Callable[[dict], np.ndarray], feeds: list[dict]
) -> float:
    """Largest |chunk(feeds[i]) - expected[i]| over all inputs; NaN if any output is not finite
    (an FP16 overflow); ParityError if a shape differs."""
    worst = 0.0
    for want, feed in zip(expected, feeds, strict=True):
        got = np.asarray(chunk(feed), dtype=np.float64)
        if got.shape != want.shape:
            raise ParityError(f"output shape {list(got.shape)} != reference {list(want.shape)}")
        if not np.isfinite(got).all():
            return float("nan")
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def check_parity(
    expected: list[np.ndarray],
    chunk: Callable[[dict], np.ndarray],
    feeds: list[dict],
    atol: float,
    record: dict | None = None,
) -> float:
    """max_abs_diff, or ParityError when it exceeds `atol` (or is NaN); `record` gets the
    figure and the verdict either way."""
    worst = max_abs_diff(expected, chunk, feeds)
    if record is not None:
        record.update(max_abs_diff=worst, ok=worst <= atol)
    if not worst <= atol:
        raise ParityError(
            f"max |diff| vs {REFERENCE} over {len(feeds)} inputs is {worst:.2e} "
            f"(tolerance {atol:.0e})"
        )
    return worst


def measure_latency(policy, size: int, config: CheckConfig) -> dict[str, float]:
    """p50/p99 of `policy.infer` at batch 1 (common.time_policy)."""
    return percentiles(time_policy(policy, size, config.iters, config.warmup))


@dataclass
class Stage:
    """One step of the check and how it ended."""

    stage: str
    image: int
    backend: str
    status: str
    """ok, failed or skipped."""
    seconds: float
    detail: str
    """The result, the error, or why it was skipped."""


class Stages:
    """Runs stages, records each, never lets one stop the next; `deadline` (perf_counter
    seconds): stages not started by then are skipped."""

    def __init__(self, deadline: float = float("inf")):
        self.records: list[Stage] = []
        self.deadline = deadline

    def skip(self, stage: str, image: int, backend: str, reason: str) -> None:
        self._record(Stage(stage, image, backend, "skipped", 0.0, reason))

    def run(self, stage: str, image: int, backend: str, fn: Callable, *args) -> Any:
        """fn(*args), or None when it raised (failed; BackendMissing: skipped)."""
        if time.perf_counter() > self.deadline:
            self.skip(stage, image, backend, "the check's time budget is spent")
            return None
        start, result = time.perf_counter(), None
        try:
            result = fn(*args)
            status, detail = "ok", _describe(result)
        except BackendMissing as err:
            status, detail = "skipped", str(err)
        except Exception as err:  # a broken backend must not stop the stages after it
            status, detail = "failed", f"{type(err).__name__}: {err}"
        self._record(
            Stage(stage, image, backend, status, round(time.perf_counter() - start, 2), detail)
        )
        return result

    def _record(self, record: Stage) -> None:
        self.records.append(record)
        print(
            f"[{record.status}] {record.stage} {record.backend} {record.image} px "
            f"({record.seconds} s): {record.detail}",
            flush=True,
        )

    @property
    def failed(self) -> list[Stage]:
        return [r for r in self.records if r.status == "failed"]


def _describe(result: Any) -> str:
    if isinstance(result, Opened):
        return result.detail
    if isinstance(result, float):
        return f"max |diff| {result:.2e}"
    if isinstance(result, dict):
        return ", ".join(f"{k} {v:.3g}" for k, v in result.items())
    return ""


@dataclass(frozen=True)
class CheckConfig:
    """What `run` checks."""

    carry: Path = CARRY
    """The folder `pack` wrote."""
    out: Path = RESULTS_DIR
    """Where gpu_check.json goes."""
    sizes: tuple[int, ...] = ()
    """Image sizes to check; () = every size in the carried folder."""
    backends: tuple[str, ...] = ("tensorrt", "onnxruntime-cuda", "torch-cuda", REFERENCE)
    iters: int = 300
    """Timed `infer` calls per backend and size."""
    warmup: int = 20
    """Untimed `infer` calls before them (the first GPU calls pick kernels and allocate)."""
    parity_inputs: int = 8
    budget_s: float = 240.0
    """Stages not started within this many seconds are skipped (the check must end in 5 min)."""

    def __post_init__(self):
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")


def reference_chunks(package: Path, count: int) -> tuple[list[dict], list[np.ndarray]]:
    """(parity inputs, the chunks ONNX Runtime computes for them on the CPU in FP32)."""
    model = OnnxModel(package / POLICY_ONNX, "cpu", kind="policy", threads=1)
    feeds = parity_feeds(model.manifest, count)
    return feeds, [model.run(f)[CHUNK_OUTPUT].astype(np.float64) for f in feeds]


def environment() -> dict[str, Any]:
    """Versions of the backends' modules (None: not installed), ONNX Runtime's providers, and
    the GPU torch sees if a torch row ran (torch is not imported for this alone)."""
    found: dict[str, Any] = {}
    for module in ("onnxruntime", "tensorrt"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = None
    try:
        found["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        found["torch"] = None
    if found["onnxruntime"]:
        found["onnxruntime_providers"] = sys.modules["onnxruntime"].get_available_providers()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        found["cuda_device"] = torch.cuda.get_device_name()
    return found


def check_backend(
    stages: Stages, config: CheckConfig, name: str, size: int, reference, work: Path
) -> tuple[dict | None, dict | None]:
    """The open, parity and latency stages of one backend at one size: (latency row, parity
    row), each None when its stage did not get a figure."""
    backend = BACKENDS[name]
    row = {"image": size, "backend": name, "precision": backend.precision}
    package, checkpoint = config.carry / f"pkg{size}", config.carry / f"ckpt{size}"
    opened = stages.run("open", size, name, backend.open, package, checkpoint, work)
    if opened is None:
        for stage in ["latency"] if backend.atol is None else ["parity", "latency"]:
            stages.skip(stage, size, name, "not opened (see its open stage)")
        return None, None
    checked = None
    if backend.atol is not None and reference is None:
        stages.skip("parity", size, name, "no reference chunks (see its reference stage)")
    elif backend.atol is not None:
        feeds, expected = reference
        checked = {**row, "inputs": len(feeds), "atol": backend.atol}
        stages.run(
            "parity", size, name, check_parity, expected, opened.chunk, feeds, backend.atol, checked
        )
        checked = checked if "max_abs_diff" in checked else None
    stats = stages.run("latency", size, name, measure_latency, opened.policy, size, config)
    return ({**row, **stats} if stats else None), checked


def run_check(config: CheckConfig) -> int:
    """The stages for every carried size and backend; 0 when none failed, else 1."""
    carried = verify_folder(config.carry, "scripts/gpu/pack.sh")
    stages = Stages(time.perf_counter() + config.budget_s)
    latency, parity = [], []
    with tempfile.TemporaryDirectory() as work:
        for size in config.sizes or tuple(carried["sizes"]):
            package = config.carry / f"pkg{size}"
            reference = stages.run(
                "reference", size, REFERENCE, reference_chunks, package, config.parity_inputs
            )
            for name in config.backends:
                timed, checked = check_backend(stages, config, name, size, reference, Path(work))
                latency += [timed] if timed else []
                parity += [checked] if checked else []
    for row in latency:
        ref = [r for r in latency if r["image"] == row["image"] and r["backend"] == REFERENCE]
        if ref:
            row[f"speed-up vs {REFERENCE} (p50)"] = ref[0]["p50_ms"] / row["p50_ms"]
    print_table("stages", [dataclasses.asdict(r) for r in stages.records])
    print_table("parity", parity)
    report(
        "gpu_check",
        latency,
        config.out / "gpu_check.json",
        extra={
            "stages": [dataclasses.asdict(r) for r in stages.records],
            "failed": [f"{r.stage} {r.backend} {r.image} px" for r in stages.failed],
            "parity": parity,
            "environment": environment(),
            "iters": config.iters,
        },
    )
    return 1 if stages.failed else 0


@dataclass(frozen=True)
class PackConfig:
    """What `pack` puts in the carried folder."""

    carry: Path = CARRY
    """Written anew: pkg<size>/ (policy.onnx + policy.json), ckpt<size>/ (the checkpoint, for
    the torch rows), wheels/ and manifest.json."""
    sizes: tuple[int, ...] = (64, 224)
    wheels: Path | None = None
    """A folder of wheels for what the GPU image lacks, installed there before the check."""
    limit_mib: float = CARRY_LIMIT_MIB


def pack(config: PackConfig, repo: Path = REPO) -> dict:
    """Write the carried folder and its manifest (returned); CarryTooLarge if it and the
    repository's travelling files exceed `config.limit_mib`. `run` checks every file's sha256
    against the manifest before it starts."""
    from bench_inference import make_package  # torch: only packing exports

    from vla_rft.contract.config import load_config
    from vla_rft.models.checkpoint import RECORD_FILE, WEIGHTS_FILE, resolve_checkpoint
    from vla_rft.models.policy import PolicyConfig
    from vla_rft.training.train_policy import TrainPolicyConfig

    carry = config.carry
    start_folder(carry)
    with tempfile.TemporaryDirectory() as tmp:
        for size in config.sizes:
            recipe = SIZE_RECIPES.get(size)
            model = (
                load_config(TrainPolicyConfig, repo / recipe).model
                if recipe
                else PolicyConfig(image_size=size)
            )
            run, package = make_package(model, Path(tmp), name=str(size))
            (carry / f"pkg{size}").mkdir()
            for name in (POLICY_ONNX, manifest_path(package / POLICY_ONNX).name):
                shutil.copy2(package / name, carry / f"pkg{size}" / name)
            (carry / f"ckpt{size}").mkdir()
            for name in (WEIGHTS_FILE, RECORD_FILE):
                shutil.copy2(resolve_checkpoint(run) / name, carry / f"ckpt{size}" / name)
    wheels = copy_wheels(config.wheels, carry)
    return finish_folder(
        carry, repo, config.limit_mib,
        sizes=list(config.sizes), wheels=wheels, not_carried=NOT_CARRIED,
    )  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser, packing, check = pack_and_run_parsers(
        __doc__,
        pack=(
            "write the carried folder here (exports: needs torch)",
            "Export a random-weight policy at each size into the carried folder, with its "
            "checkpoint and any wheels, and check the size limit.",
        ),
        run=(
            "run the check on this machine (the GPU machine)",
            "Open, parity and latency stages per size and backend; gpu_check.json in --out; "
            "exit 1 if a stage failed (skipped stages are not failures).",
        ),
    )
    packing.add_argument("--carry", type=Path, default=CARRY, help=f"default: {CARRY}")
    packing.add_argument("--sizes", type=comma_list, default=("64", "224"), help="default: 64,224")
    check.add_argument("--carry", type=Path, default=CARRY, help=f"default: {CARRY}")
    check.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT") or RESULTS_DIR),
        help="folder for gpu_check.json (default: $OUT if set, else bench/results)",
    )
    check.add_argument(
        "--sizes", type=comma_list, default=(), help="image sizes (default: all carried)"
    )
    check.add_argument(
        "--backends",
        type=comma_list,
        default=CheckConfig.backends,
        help=f"comma-separated, from {', '.join(BACKENDS)} (default: "
        f"{','.join(CheckConfig.backends)}); parity is against {REFERENCE}",
    )
    check.add_argument(
        "--iters", type=int, default=CheckConfig.iters, help="timed calls per row (default 300)"
    )
    check.add_argument(
        "--warmup",
        type=int,
        default=CheckConfig.warmup,
        help=f"untimed calls before them (default {CheckConfig.warmup})",
    )
    check.add_argument(
        "--parity-inputs",
        type=int,
        default=CheckConfig.parity_inputs,
        help=f"inputs compared per backend (default {CheckConfig.parity_inputs})",
    )
    check.add_argument(
        "--budget-s",
        type=float,
        default=CheckConfig.budget_s,
        help=f"skip stages not started by then (default {CheckConfig.budget_s:g})",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = tuple(int(s) for s in args.sizes)
        if args.command == "run":
            args.config = CheckConfig(
                args.carry, args.out, args.sizes, args.backends, args.iters, args.warmup,
                args.parity_inputs, args.budget_s,
            )  # fmt: skip
        else:
            args.config = PackConfig(args.carry, args.sizes, args.wheels, args.limit_mib)
    except ValueError as err:
        (check if args.command == "run" else packing).error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = args.config
    if args.command == "pack":
        try:
            manifest = pack(config)
        except CarryTooLarge as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(
            f"{config.carry}: {manifest['carry_bytes'] / 2**20:.1f} MiB carried + "
            f"{manifest['repo_bytes'] / 2**20:.1f} MiB repository (limit {config.limit_mib:g} "
            f"MiB); sizes {', '.join(map(str, config.sizes))}; wheels: "
            f"{', '.join(manifest['wheels']) or 'none'}"
        )
        for backend, why in NOT_CARRIED.items():
            print(f"not carried, {backend}: {why}; its stages will be skipped on a bare image")
        return 0
    try:
        return run_check(config)
    except (FileNotFoundError, CarryDamaged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
