"""ONNX Runtime sessions for exported models, with their manifests checked on load.

Execution providers are picked from what is installed (TensorRT, then CUDA, then CPU) unless a
preference names one. A missing, corrupted or mismatched file gives a ModelFileError that names
the file and the fault; nothing crashes later on a wrong input. A file whose bytes differ from
the sha256 in its manifest (flipped bits, an edited weight) is refused before it is opened.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vla_rft.contract.manifest import (
    ONNX_METADATA_KEY,
    Manifest,
    ManifestError,
    changed_files,
    manifest_path,
    read_manifest,
)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
"""Short names accepted by `choose_providers`, in order of preference for 'auto'."""

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
}


log = logging.getLogger(__name__)


class ModelFileError(ValueError):
    """A model file that cannot be used; names the file and the reason."""


class ModelIntegrityError(ModelFileError):
    """A model file whose content is not what its manifest recorded (damaged or altered)."""


def read_verified_manifest(path: Path) -> Manifest:
    """The manifest beside `path`, after checking the file against the sha256 it records.

    ModelIntegrityError on a mismatch; a manifest from before the hash was recorded loads with a
    warning (re-export the package to get the check)."""
    try:
        manifest = read_manifest(path)
    except ManifestError as err:
        raise ModelFileError(str(err)) from None
    if manifest.file_sha256 is None:
        log.warning("%s: its manifest records no sha256 (an older export); not verified", path)
    elif changed_files(path.parent, {path.name: manifest.file_sha256}):
        raise ModelIntegrityError(
            f"{path}: content differs from the sha256 recorded in {manifest_path(path).name} "
            "(damaged or altered); refusing to load it"
        )
    return manifest


def choose_providers(preference: str = "auto") -> list[str]:
    """ONNX Runtime providers for 'auto' (best installed first) or one of PROVIDERS."""
    available = ort.get_available_providers()
    if preference == "auto":
        return [p for p in PROVIDERS.values() if p in available]
    if preference not in PROVIDERS:
        raise ValueError(
            f"unknown provider {preference!r}; choose auto or one of {list(PROVIDERS)}"
        )
    wanted = PROVIDERS[preference]
    if wanted not in available:
        raise ValueError(f"{wanted} is not available here (installed: {', '.join(available)})")
    return [wanted] if wanted == PROVIDERS["cpu"] else [wanted, PROVIDERS["cpu"]]


class OnnxModel:
    """One exported graph: `run({input: array}) -> {output: array}`, inputs checked."""

    def __init__(
        self, path: str | Path, providers: str = "auto", kind: str | None = None, threads: int = 0
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: no such model file")
        self.manifest = read_verified_manifest(self.path)
        if kind is not None and self.manifest.kind != kind:
            raise ModelFileError(f"{self.path}: holds a {self.manifest.kind!r}, expected {kind!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if threads != 0:  # a fixed pool should sleep between calls, not spin on the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=choose_providers(providers)
            )
        except Exception as err:  # onnxruntime raises its own exception types per failure
            raise ModelFileError(f"{self.path}: ONNX Runtime cannot load it ({err})") from None
        self._check_against_manifest()

    def _check_against_manifest(self) -> None:
        embedded = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        if embedded is None:
            raise ModelFileError(f"{self.path}: the ONNX metadata holds no vla_rft manifest")
        try:
            inside = Manifest.from_json(embedded, str(self.path))
        except ManifestError as err:
            raise ModelFileError(str(err)) from None
        if inside != replace(self.manifest, file_sha256=None):
            raise ModelFileError(
                f"{self.path}: the manifest beside the file does not match the one inside it "
                "(files from different exports?)"
            )
        graph = {i.name: _ORT_TYPES.get(i.type, i.type) for i in self.session.get_inputs()}
        declared = {s.name: s.dtype for s in self.manifest.inputs}
        if graph != declared:
            raise ModelFileError(f"{self.path}: graph inputs {graph} != manifest {declared}")

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for spec in self.manifest.inputs:
            if spec.name not in feeds:
                raise ValueError(f"{self.path.name}: missing input {spec.name!r}")
            array = feeds[spec.name]
            fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
            if array.ndim != len(spec.shape) or any(array.shape[i] != d for i, d in fixed):
                raise ValueError(
                    f"{self.path.name}: input {spec.name!r} must have shape {list(spec.shape)}, "
                    f"got {list(array.shape)}"
                )
        feeds = {
            s.name: np.ascontiguousarray(feeds[s.name], dtype=s.dtype) for s in self.manifest.inputs
        }
        outputs = self.session.run(None, feeds)
        return {o.name: v for o, v in zip(self.session.get_outputs(), outputs, strict=True)}
