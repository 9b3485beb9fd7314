"""Manifests: what an exported file is, so that a robot never runs a model with the wrong inputs,
statistics or hardware.

Every export `X.onnx` carries its manifest twice: as JSON in the ONNX metadata (key
`vla_rft.manifest`) and as `X.json` beside it. An engine `X.engine` has `X.engine.json`, which
adds the TensorRT version, the GPU and the precision it was built for. The JSON beside a file
also records the file's sha256 (`file_sha256`; the copy inside the ONNX cannot hold its own
file's hash), which the runtime checks before loading it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

MANIFEST_SCHEMA_VERSION = 1
SUPPORTED_MANIFEST_SCHEMA_VERSIONS = (1,)
ONNX_METADATA_KEY = "vla_rft.manifest"

# --- A model package: its files, their inputs and outputs, a checkpoint's records ---------------
POLICY_ONNX = "policy.onnx"
POLICY_ENGINE = "policy.engine"
TEXT_ENCODER_ONNX = "text_encoder.onnx"
TOKENIZER_JSON = "tokenizer.json"
WORLD_MODEL_ENCODE_ONNX = "world_model_encode.onnx"
WORLD_MODEL_STEP_ONNX = "world_model_step.onnx"

IMAGE_INPUT = "image"
"""Policy input: float32 [B, 3, S, S] in [-1, 1] (`runtime.transforms.ImageTransform`), the
main camera's frame."""


def camera_input(name: str) -> str:
    """Policy input of the further camera `name`: like IMAGE_INPUT, that camera's frame."""
    return f"{IMAGE_INPUT}_{name}"


INSTRUCTION_INPUT = "instruction_embedding"
"""Policy input: float32 [B, E], the sentence encoder's embedding of the instruction."""
STATE_INPUT = "state"
"""Policy input: float32 [B, S], the normalised robot state."""
CHUNK_OUTPUT = "action_chunk"
"""Policy output: float32 [B, K, A], a normalised action chunk."""

CONTEXT_INPUT, LATENT, LAST_FRAME, WM_ACTION, NEXT_LATENT, FRAME = (
    "context", "latent", "last_frame", "action", "next_latent", "frame",
)  # fmt: skip
"""Inputs and outputs of the world model's encode and step graphs (docs/EXPORT.md)."""

POLICY_CONFIG_KEY = "policy_config"
ACTION_RANGE_KEY = "action_range"
INSTRUCTIONS_KEY = "instruction_embeddings"
EMBODIMENT_KEY = "embodiment"
IMAGE_FIT_KEY = "image_fit"
CAMERAS_KEY = "cameras"
"""Keys of a policy checkpoint's `extra` record; INSTRUCTIONS_KEY also of a policy manifest's
`extra`: the training instructions' embeddings. EMBODIMENT_KEY: the robot it was trained for
(`EmbodimentSpec.summary()`), which export copies into the manifest's `embodiment`.
IMAGE_FIT_KEY (a policy manifest's `extra`): how camera frames become the square input
(`contract.image.IMAGE_FIT`); a runtime refuses a fit it does not implement.
CAMERAS_KEY (a policy manifest's `extra`): the cameras it sees, main first, each
{name, topic, input, size, image_fit} (topic: where the training episodes' robot published it,
None if not recorded); absent in older, one-camera exports."""


class ManifestError(ValueError):
    """A model file whose manifest is missing, unreadable or does not match; names the file."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an exported graph."""

    name: str
    shape: tuple[int | str, ...]
    """Dimensions; strings are dynamic (e.g. 'batch')."""
    dtype: str
    """numpy dtype name, e.g. 'float32', 'int64'."""

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        return cls(d["name"], tuple(d["shape"]), d["dtype"])


@dataclass(frozen=True)
class Manifest:
    """Facts about one exported model file."""

    kind: str
    """'policy', 'text_encoder', 'world_model_encode' or 'world_model_step'."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    image_size: int | None = None
    """Square image side the graph expects (None: no image input)."""
    state_dim: int | None = None
    action_dim: int | None = None
    chunk_size: int | None = None
    """Actions per predicted chunk."""
    instruction_dim: int | None = None
    """Size of the instruction embedding."""
    norm_stats: dict | None = None
    """NormStats.to_dict() of the training data (state and action)."""
    checkpoint_sha256: str | None = None
    """Hash of the checkpoint weights the export came from."""
    data_fingerprint: str | None = None
    """EpisodeIndex.fingerprint() of the data the checkpoint was trained on."""
    source: str | None = None
    """Path of the checkpoint (for people; the hash is the identity)."""
    embodiment: dict | None = None
    """`EmbodimentSpec.summary()` of the robot the model was trained for (None: not recorded,
    an older export); the policy node refuses a package made for another robot."""
    extra: dict = field(default_factory=dict)
    """Kind-specific facts (opset, tokenizer file, model config, engine build facts, ...)."""
    schema_version: int = MANIFEST_SCHEMA_VERSION
    file_sha256: str | None = None
    """sha256 of the model file itself; only in the JSON beside it (None: an older export)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "manifest") -> Manifest:
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ManifestError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: a manifest is a JSON object, not {type(d).__name__}")
        version = d.get("schema_version")
        if version not in SUPPORTED_MANIFEST_SCHEMA_VERSIONS:
            raise ManifestError(
                f"{where}: unknown manifest schema version {version!r} "
                f"(this vla_rft reads {SUPPORTED_MANIFEST_SCHEMA_VERSIONS})"
            )
        try:
            d["inputs"] = tuple(TensorSpec.from_dict(x) for x in d["inputs"])
            d["outputs"] = tuple(TensorSpec.from_dict(x) for x in d["outputs"])
            return cls(**d)
        except (KeyError, TypeError) as err:
            raise ManifestError(f"{where}: malformed manifest ({err})") from None

    def input(self, name: str) -> TensorSpec:
        return next(s for s in self.inputs if s.name == name)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def changed_files(root: str | Path, digests: dict[str, str]) -> list[str]:
    """The paths of `digests` (relative to `root`) that are missing or whose sha256 differs from
    the recorded one: empty when every file is intact. `vla-rft models verify` and the loaders
    (model files, checkpoints) all check with this."""
    root = Path(root)
    return [
        rel
        for rel, digest in digests.items()
        if not (root / rel).is_file() or sha256_file(root / rel) != digest
    ]


def manifest_path(model_path: str | Path) -> Path:
    """`X.onnx` -> `X.json`; `X.engine` -> `X.engine.json`."""
    model_path = Path(model_path)
    if model_path.suffix == ".onnx":
        return model_path.with_suffix(".json")
    return model_path.with_name(model_path.name + ".json")


def write_manifest(model_path: str | Path, manifest: Manifest) -> Path:
    """`manifest`, with the model file's sha256, as the JSON beside the (finished) file."""
    path = manifest_path(model_path)
    path.write_text(replace(manifest, file_sha256=sha256_file(model_path)).to_json())
    return path


def read_manifest(model_path: str | Path) -> Manifest:
    """The JSON manifest beside a model file."""
    path = manifest_path(model_path)
    if not path.is_file():
        raise ManifestError(f"{model_path}: no manifest beside it (expected {path.name})")
    return Manifest.from_json(path.read_bytes(), where=str(path))
