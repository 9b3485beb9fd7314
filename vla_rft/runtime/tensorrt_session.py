"""TensorRT engines for exported policies: build facts checked before use.

An engine only runs on the TensorRT version and GPU it was built for. `check_engine_manifest`
compares the engine's manifest with this machine and raises EngineMismatchError with the
difference, so the loader can fall back to ONNX Runtime instead of crashing the node. Running an
engine needs `tensorrt` and `cuda-python` (the `gpu` extra) and an NVIDIA GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_rft.runtime.onnx_session import ModelFileError, read_verified_manifest


class EngineMismatchError(ModelFileError):
    """The engine was built for another TensorRT version or GPU, or cannot be loaded here."""


def current_build_target() -> dict[str, str]:
    """{'tensorrt_version', 'gpu'} of this machine; EngineMismatchError when there is none."""
    try:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart
    except ImportError as err:
        raise EngineMismatchError(f"TensorRT is not usable here ({err})") from None
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise EngineMismatchError(f"no CUDA device ({err})")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"tensorrt_version": trt.__version__, "gpu": name.strip("\x00 ")}


def check_engine_manifest(engine_path: Path, built: dict, here: dict) -> None:
    """Raise EngineMismatchError naming each build fact that differs from this machine."""
    diffs = [
        f"{key}: built for {built.get(key)!r}, this machine has {here[key]!r}"
        for key in ("tensorrt_version", "gpu")
        if built.get(key) != here[key]
    ]
    if diffs:
        raise EngineMismatchError(
            f"{engine_path}: engine does not fit this machine ({'; '.join(diffs)})"
        )


class TensorRTModel:
    """A deserialised engine with `run(feeds) -> outputs` like OnnxModel (batch 1 buffers)."""

    def __init__(self, path: str | Path):
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self.path = Path(path)
        self.manifest = read_verified_manifest(self.path)
        check_engine_manifest(
            self.path, self.manifest.extra.get("engine", {}), current_build_target()
        )
        self._cudart = cudart
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EngineMismatchError(f"{self.path}: TensorRT could not deserialise the engine")
        self.engine, self.context = engine, engine.create_execution_context()
        _, self.stream = cudart.cudaStreamCreate()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._cudart.cudaFree(ptr)
            _, ptr = self._cudart.cudaMalloc(nbytes)
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        h2d, d2h = (
            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
        )
        for spec in self.manifest.inputs:
            array = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
            ptr = self._device_buffer(spec.name, array.nbytes)
            cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, h2d, self.stream)
            self.context.set_input_shape(spec.name, array.shape)
            self.context.set_tensor_address(spec.name, ptr)
        outputs = {}
        for spec in self.manifest.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            outputs[spec.name] = np.empty(shape, dtype=spec.dtype)
            ptr = self._device_buffer(spec.name, outputs[spec.name].nbytes)
            self.context.set_tensor_address(spec.name, ptr)
        self.context.execute_async_v3(self.stream)
        for name, array in outputs.items():
            cudart.cudaMemcpyAsync(
                array.ctypes.data, self._buffers[name][0], array.nbytes, d2h, self.stream
            )
        cudart.cudaStreamSynchronize(self.stream)
        return outputs
