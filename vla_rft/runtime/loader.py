"""One factory for every policy backend: `load_policy(path, backend) -> Policy`.

backend      path                                   runs on
onnxruntime  a model package (vla-rft export)       ONNX Runtime (TensorRT, CUDA or CPU EP)
tensorrt     a model package with policy.engine     TensorRT; falls back to ONNX Runtime,
                                                    with a warning, if the engine cannot run
torch        a checkpoint or a training run         torch (development; needs `training`)
auto         a model package                        TensorRT if usable, else ONNX Runtime
"""

from __future__ import annotations

import logging
from pathlib import Path

from vla_rft.contract.constants import BACKENDS
from vla_rft.contract.manifest import INSTRUCTIONS_KEY, POLICY_ENGINE, POLICY_ONNX
from vla_rft.contract.policy import Policy
from vla_rft.runtime.exported_policy import ExportedPolicy, onnx_instruction_cache
from vla_rft.runtime.onnx_session import ModelFileError, ModelIntegrityError, OnnxModel

log = logging.getLogger(__name__)


def load_policy(
    path: str | Path, backend: str = "auto", providers: str = "auto", threads: int = 1
) -> Policy:
    """The policy at `path` on `backend`; ModelFileError names what is missing or broken, and
    ModelIntegrityError a file that differs from the sha256 its manifest records (never a
    reason to fall back from TensorRT: the package itself is suspect).

    `threads`: ONNX Runtime's CPU threads per session (0: one per core, spinning between
    calls). One thread keeps a control loop's tail latency low beside other processes.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model")
    if backend == "torch":
        from vla_rft.runtime.torch_policy import TorchPolicy  # training-side dependency

        return TorchPolicy.from_checkpoint(path)
    if not (path / POLICY_ONNX).is_file():
        raise ModelFileError(
            f"{path}: not a model package (no {POLICY_ONNX}; run `vla-rft export`, or --backend "
            "torch for a training checkpoint)"
        )
    engine = path / POLICY_ENGINE
    if backend == "tensorrt" or (backend == "auto" and engine.is_file()):
        try:
            from vla_rft.runtime.tensorrt_session import TensorRTModel

            model = TensorRTModel(engine)
            instructions = _instructions(path, model, providers, threads)
            return ExportedPolicy(model, instructions, "tensorrt")
        except ModelIntegrityError:
            raise
        except (ModelFileError, ImportError, OSError) as err:
            log.warning("TensorRT engine unusable, falling back to ONNX Runtime: %s", err)
    model = OnnxModel(path / POLICY_ONNX, providers, kind="policy", threads=threads)
    instructions = _instructions(path, model, providers, threads)
    return ExportedPolicy(model, instructions, f"onnxruntime ({model.providers[0]})")


def _instructions(package: Path, model, providers: str, threads: int):
    """The instruction cache from the (verified) policy manifest of `model`."""
    known = model.manifest.extra.get(INSTRUCTIONS_KEY, {})
    return onnx_instruction_cache(package, known, providers, threads)
