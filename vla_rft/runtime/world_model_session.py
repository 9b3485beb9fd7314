"""Imagined rollouts from an exported world model, with ONNX Runtime only (no torch).

    world = OnnxWorldModel("models/world-model-v1")
    frames = world.rollout(context_frames, actions)   # uint8 [B, C, H, W, 3], [B, T, A] robot units
                                                      # -> float32 [B, T, H, W, 3] in [0, 1]

The same computation as `WorldModel.rollout` for one action sequence per start state: encode the
context once, then one step graph per action (see vla_rft/export/export_world_model.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_rft.contract.manifest import (
    CONTEXT_INPUT,
    FRAME,
    LAST_FRAME,
    LATENT,
    NEXT_LATENT,
    WM_ACTION,
    WORLD_MODEL_ENCODE_ONNX,
    WORLD_MODEL_STEP_ONNX,
)
from vla_rft.data.normalization import NormStats
from vla_rft.runtime.onnx_session import ModelFileError, OnnxModel


class OnnxWorldModel:
    """The encode and step graphs of one export, checked to come from the same checkpoint."""

    def __init__(self, package: str | Path, providers: str = "auto", threads: int = 1):
        package = Path(package)
        self.encoder = OnnxModel(
            package / WORLD_MODEL_ENCODE_ONNX, providers, "world_model_encode", threads
        )
        self.step = OnnxModel(
            package / WORLD_MODEL_STEP_ONNX, providers, "world_model_step", threads
        )
        if self.encoder.manifest.checkpoint_sha256 != self.step.manifest.checkpoint_sha256:
            raise ModelFileError(
                f"{package}: the encode and step graphs come from different checkpoints"
            )
        manifest = self.encoder.manifest
        self.skips = list(manifest.extra["skips"])
        self.stats = NormStats.from_dict(manifest.norm_stats)
        self.context_frames = manifest.input(CONTEXT_INPUT).shape[1]
        self.image_size, self.action_dim = manifest.image_size, manifest.action_dim

    def rollout(self, context_frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """uint8 context [B, C, H, W, 3] and actions [B, T, A] in robot units -> frames
        float32 [B, T, H, W, 3] in [0, 1]; frame k follows actions 0..k."""
        context, actions = np.asarray(context_frames), np.asarray(actions, dtype=np.float32)
        want = (self.context_frames, self.image_size, self.image_size, 3)
        if context.dtype != np.uint8 or context.ndim != 5 or context.shape[1:] != want:
            raise ValueError(
                f"context_frames must be uint8 [B, {', '.join(map(str, want))}], "
                f"got {context.dtype} {list(context.shape)}"
            )
        if actions.ndim != 3 or actions.shape[0] != context.shape[0]:
            raise ValueError(
                f"actions must be [B, T, {self.action_dim}], got {list(actions.shape)}"
            )
        if actions.shape[2] != self.action_dim or not np.isfinite(actions).all():
            raise ValueError(f"actions must be finite with {self.action_dim} entries per step")
        chw = context.transpose(0, 1, 4, 2, 3).astype(np.float32) / 255  # [B, C, 3, H, W]
        state = self.encoder.run({CONTEXT_INPUT: chw})
        last, frames = chw[:, -1], []
        normalised = self.stats.action.normalize(actions)
        for k in range(actions.shape[1]):
            out = self.step.run({**state, LAST_FRAME: last, WM_ACTION: normalised[:, k]})
            state = {**state, LATENT: out[NEXT_LATENT]}
            frames.append(out[FRAME])
        return np.stack(frames, 1).transpose(0, 1, 3, 4, 2)  # [B, T, H, W, 3]
