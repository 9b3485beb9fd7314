"""The policy on the robot: exported graphs behind the one `Policy` interface, no torch.

A model package (what `vla-rft export` writes into `models/<name>/`):

    policy.onnx (+ policy.json)              (image, instruction_embedding, state, image_<camera>
                                             per further camera) -> action_chunk
    text_encoder.onnx (+ text_encoder.json)  (input_ids, attention_mask) -> embedding
    tokenizer.json                           the instruction tokenizer
    policy.engine (+ policy.engine.json)     optional TensorRT engine of policy.onnx
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla_rft.contract.constants import OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE
from vla_rft.contract.image import IMAGE_FIT
from vla_rft.contract.instruction import InstructionTokenizer
from vla_rft.contract.manifest import (
    ACTION_RANGE_KEY,
    CAMERAS_KEY,
    CHUNK_OUTPUT,
    IMAGE_FIT_KEY,
    IMAGE_INPUT,
    INSTRUCTION_INPUT,
    POLICY_ONNX,
    STATE_INPUT,
    TEXT_ENCODER_ONNX,
    TOKENIZER_JSON,
    camera_input,
)
from vla_rft.contract.policy import DEFAULT_CAMERAS, PolicySpec
from vla_rft.runtime.onnx_session import ModelFileError, OnnxModel
from vla_rft.runtime.transforms import (
    InstructionCache,
    PolicyTransforms,
    embedding_table,
    further_images,
)


class ExportedPolicy:
    """infer(obs) -> {'action': float32 [K, A] robot units, 'action_normalized': [K, A]}.

    `chunk_model` is anything with `run(feeds) -> outputs` and a `manifest` (an OnnxModel or a
    TensorRT engine runner); the text encoder always runs on ONNX Runtime (once per sentence).
    """

    def __init__(self, chunk_model, instructions: InstructionCache, backend: str):
        manifest = chunk_model.manifest
        if manifest.kind != "policy" or manifest.norm_stats is None:
            raise ModelFileError(f"{chunk_model.path}: not a policy export with statistics")
        self.chunk_model = chunk_model
        self.instructions = instructions
        self.backend = backend
        self.manifest = manifest
        fit = manifest.extra.get(IMAGE_FIT_KEY, IMAGE_FIT)  # older exports: square frames only
        if fit != IMAGE_FIT:
            raise ModelFileError(
                f"{chunk_model.path}: frames are fitted with {fit!r}; this runtime implements "
                f"{IMAGE_FIT!r}"
            )
        low, high = manifest.extra.get(ACTION_RANGE_KEY, (-1.0, 1.0))
        self.transforms = PolicyTransforms.from_stats(
            manifest.image_size, manifest.norm_stats, low, high
        )
        cameras = manifest.extra.get(CAMERAS_KEY)  # older exports: one camera
        self.spec = PolicySpec(
            manifest.state_dim, manifest.action_dim, manifest.chunk_size, manifest.image_size,
            manifest.embodiment, tuple(c["name"] for c in cameras) if cameras else DEFAULT_CAMERAS,
        )  # fmt: skip

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        embedding = self.instructions(obs[OBS_INSTRUCTION])  # [E], encoded once per sentence
        image, state = self.transforms.observation(obs[OBS_IMAGE], obs[OBS_STATE])
        feeds = {
            IMAGE_INPUT: image[None],
            INSTRUCTION_INPUT: embedding[None],
            STATE_INPUT: state[None],
        }
        for name, frame in zip(
            self.spec.cameras[1:], further_images(obs, self.spec.cameras), strict=True
        ):
            feeds[camera_input(name)] = self.transforms.image(frame)[None]
        chunk = self.chunk_model.run(feeds)[CHUNK_OUTPUT][0]  # [K, A] normalised
        return {"action": self.transforms.action(chunk), "action_normalized": chunk}

    def reset(self) -> None:
        """Nothing carries over between episodes (the instruction cache is not episode state)."""


def onnx_instruction_cache(
    package: Path, known: object, providers: str = "auto", threads: int = 1
) -> InstructionCache:
    """`known`: the training instructions' embeddings as the policy's manifest stores them
    (ModelFileError if malformed); any other sentence is encoded by the exported MiniLM and its
    tokenizer, both loaded on first use."""
    known = embedding_table(known, str(package / POLICY_ONNX), ModelFileError)
    model: OnnxModel | None = None
    tokenizer: InstructionTokenizer | None = None

    def encode(text: str) -> np.ndarray:
        nonlocal model, tokenizer
        if model is None:
            model = OnnxModel(
                package / TEXT_ENCODER_ONNX, providers, kind="text_encoder", threads=threads
            )
            tokenizer = InstructionTokenizer(package / TOKENIZER_JSON)
        ids, mask = tokenizer([text])
        return model.run({"input_ids": ids, "attention_mask": mask})["embedding"][0]

    return InstructionCache(known, encode)
