"""The torch backend of the `Policy` interface: a trained checkpoint behind `infer(obs)`.

    policy = TorchPolicy.from_checkpoint("runs/policy/cpu")   # a checkpoint or a run directory
    out = policy.infer({"image": uint8 [H, W, 3], "state": float32 [S], "instruction": str})
    out["action"]   # float32 [K, A], robot units, clipped to the robot's range

Pre- and post-processing are `vla_rft.runtime.transforms`, shared with the ONNX backend and the
policy node. The training instructions' embeddings travel in the checkpoint; the sentence encoder
is loaded only when the policy meets a new instruction. This backend imports torch, so the
package's __init__ does not import it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_rft.contract.config import ConfigError, from_dict
from vla_rft.contract.constants import ACTION, OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE
from vla_rft.contract.manifest import (
    ACTION_RANGE_KEY,
    EMBODIMENT_KEY,
    INSTRUCTIONS_KEY,
    POLICY_CONFIG_KEY,
)
from vla_rft.contract.policy import PolicySpec
from vla_rft.models.checkpoint import CheckpointError, load_checkpoint, load_weights
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.runtime.transforms import (
    InstructionCache,
    PolicyTransforms,
    embedding_table,
    further_images,
)


def _lazy_sentence_encoder(device: str):
    encoder = None

    def encode(text: str) -> np.ndarray:
        nonlocal encoder
        if encoder is None:
            from vla_rft.models.policy.text_encoder import SentenceEncoder

            encoder = SentenceEncoder(device=device)
        return encoder(text)

    return encode


class TorchPolicy:
    """`Policy` with a VLAPolicy on `device`; deterministic chunks (the flow from x_0 = 0)."""

    def __init__(
        self,
        model: VLAPolicy,
        transforms: PolicyTransforms,
        instructions: InstructionCache,
        device: str | torch.device = "cpu",
        embodiment: dict | None = None,
    ):
        self.model = model.eval().to(device)
        self.transforms = transforms
        self.instructions = instructions
        self.device = torch.device(device)
        cfg = model.config
        self.spec = PolicySpec(
            cfg.state_dim, cfg.action_dim, cfg.chunk_size, cfg.image_size, embodiment, cfg.cameras
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "cpu", flow_steps: int | None = None
    ) -> TorchPolicy:
        """Load a policy checkpoint (or a run directory's latest); CheckpointError if it is not
        a policy checkpoint or its weights do not fit. `flow_steps`: integrate the flow head in
        that many Euler steps instead of the trained number (no weight depends on it)."""
        ckpt = load_checkpoint(path)
        missing = [k for k in (POLICY_CONFIG_KEY, INSTRUCTIONS_KEY) if k not in ckpt.extra]
        if missing or not ckpt.norm_stats:
            raise CheckpointError(
                f"{ckpt.path}: not a policy checkpoint (missing {missing or ['norm_stats']})"
            )
        try:
            config = from_dict(PolicyConfig, ckpt.extra[POLICY_CONFIG_KEY])
            if flow_steps is not None:
                config = replace(config, flow_steps=flow_steps)
        except (ConfigError, ValueError) as err:
            raise CheckpointError(f"{ckpt.path}: bad policy config ({err})") from None
        model = VLAPolicy(config)
        load_weights(model, ckpt)
        low, high = ckpt.extra.get(ACTION_RANGE_KEY, (-1.0, 1.0))
        transforms = PolicyTransforms.from_stats(config.image_size, ckpt.norm_stats, low, high)
        known = embedding_table(ckpt.extra[INSTRUCTIONS_KEY], str(ckpt.path), CheckpointError)
        instructions = InstructionCache(known, _lazy_sentence_encoder(device))
        return cls(model, transforms, instructions, device, ckpt.extra.get(EMBODIMENT_KEY))

    @torch.no_grad()
    def infer_batch(
        self,
        images: np.ndarray,
        states: np.ndarray,
        instructions: list[str],
        camera_images: list[np.ndarray] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [B, H, W, 3], float [B, S], B strings, uint8 [B, H, W, 3] per further camera
        -> (actions [B, K, A] robot units, normalised chunks [B, K, A])."""
        image, state = self.transforms.observation(images, states)
        cameras = [self.transforms.image(frames) for frames in camera_images]
        embedding = np.stack([self.instructions(text) for text in instructions])
        if not len(image) == len(state) == len(embedding):
            raise ValueError(
                f"batch sizes differ: {len(image)} images, {len(state)} states, "
                f"{len(embedding)} instructions"
            )
        chunk = self.model.predict_chunk(
            *(torch.from_numpy(a).to(self.device) for a in (image, embedding, state, *cameras))
        )
        chunk = chunk.float().cpu().numpy()
        return self.transforms.action(chunk), chunk

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        missing = [k for k in (OBS_IMAGE, OBS_STATE, OBS_INSTRUCTION) if k not in obs]
        if missing:
            raise ValueError(f"the observation lacks {missing}; it has {sorted(obs)}")
        image, state = np.asarray(obs[OBS_IMAGE]), np.asarray(obs[OBS_STATE])
        if image.ndim != 3 or state.ndim != 1:
            raise ValueError(
                f"infer takes one observation: image [H, W, 3] and state [S], got image "
                f"{list(image.shape)} and state {list(state.shape)}"
            )
        cameras = [frame[None] for frame in further_images(obs, self.spec.cameras)]
        actions, normalised = self.infer_batch(
            image[None], state[None], [obs[OBS_INSTRUCTION]], cameras
        )
        return {ACTION: actions[0], "action_normalized": normalised[0]}

    def reset(self) -> None:
        """Nothing to forget: the policy sees one observation per call."""
