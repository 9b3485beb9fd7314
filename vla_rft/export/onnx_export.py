"""Torch modules -> ONNX files with manifests, checked against torch on fresh random inputs.

Each export writes `X.onnx` with its manifest in the ONNX metadata and `X.json` beside it, runs
ONNX Runtime (CPU, FP32) against torch on new random inputs at two batch sizes and records the
largest difference in the manifest. A difference above the tolerance is an error: a file that
does not compute what was trained is never left looking usable.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from vla_rft.contract.manifest import ONNX_METADATA_KEY, Manifest, TensorSpec, write_manifest

OPSET = 17
PARITY_ATOL = 1e-4
"""Largest |ONNX Runtime - torch| accepted for an FP32 CPU export."""


class ParityError(RuntimeError):
    """ONNX Runtime does not reproduce torch within the tolerance."""


def _spec(name: str, array: np.ndarray, dynamic: dict[int, str]) -> TensorSpec:
    shape = tuple(dynamic.get(i, d) for i, d in enumerate(array.shape))
    return TensorSpec(name, shape, str(array.dtype))


def export_onnx(
    module: torch.nn.Module,
    example: dict[str, np.ndarray],
    output_names: list[str],
    dynamic: dict[str, dict[int, str]],
    path: Path,
    manifest: Manifest,
    make_inputs=None,
    atol: float = PARITY_ATOL,
) -> Manifest:
    """Export `module(*example.values())` to `path`; returns the manifest written with it.

    example: input name -> array (batch first); dynamic: tensor name -> {axis: dim name};
    make_inputs(batch, rng) -> fresh inputs for the parity check (default: like `example`).
    """
    module = module.eval()
    names = list(example)
    tensors = tuple(torch.from_numpy(example[n]) for n in names)
    with torch.no_grad():
        outputs = module(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    manifest = dataclasses.replace(
        manifest,
        inputs=tuple(_spec(n, example[n], dynamic.get(n, {})) for n in names),
        outputs=tuple(
            _spec(n, o.numpy(), dynamic.get(n, {}))
            for n, o in zip(output_names, outputs, strict=True)
        ),
        extra={**manifest.extra, "opset": OPSET, "torch": torch.__version__},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module,
            tensors,
            str(path),
            input_names=names,
            output_names=output_names,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    max_diff = check_parity(module, path, make_inputs or _like(example), names, output_names, atol)
    manifest = dataclasses.replace(
        manifest, extra={**manifest.extra, "parity_max_abs_diff": max_diff}
    )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {ONNX_METADATA_KEY: manifest.to_json()})
    onnx.save(model, str(path))
    write_manifest(path, manifest)
    return manifest


def _like(example: dict[str, np.ndarray]):
    def make(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for name, a in example.items():
            shape = (batch, *a.shape[1:])
            if a.dtype.kind == "f":
                out[name] = rng.standard_normal(shape).astype(a.dtype)
            else:
                out[name] = np.repeat(a[:1], batch, axis=0)
        return out

    return make


def check_parity(module, path: Path, make_inputs, names, output_names, atol: float) -> float:
    """Largest |ONNX Runtime - torch| over fresh inputs at batch 1 and 3; ParityError above atol."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1234)
    worst = 0.0
    for batch in (1, 3):
        feeds = make_inputs(batch, rng)
        with torch.no_grad():
            expected = module(*(torch.from_numpy(feeds[n]) for n in names))
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(output_names, {n: feeds[n] for n in names})
        for e, g in zip(expected, got, strict=True):
            worst = max(worst, float(np.abs(e.numpy() - g).max()))
    if worst > atol:
        raise ParityError(f"{path}: ONNX Runtime differs from torch by {worst:.2e} (> {atol:.0e})")
    return worst
