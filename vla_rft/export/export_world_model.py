"""A trained world model -> two ONNX graphs, so that imagined rollouts run without torch:

    world_model_encode.onnx   context [B, C, 3, H, W] in [0, 1] -> latent, skip_0 .. skip_{L-2}
    world_model_step.onnx     latent, skips, last_frame [B, 3, H, W], action [B, A]
                              -> next_latent, frame [B, 3, H, W] in [0, 1]

The step is `WorldModel.dynamics` followed by one frame of `WorldModel.decode`, exactly as
`WorldModel.rollout` runs it; `vla_rft.runtime.world_model_session.OnnxWorldModel` chains the
two graphs into the same rollout, and the export checks that whole rollout against torch.
Actions are the world model's normalised actions (its checkpoint's statistics, in the manifest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vla_rft.contract.manifest import (
    CONTEXT_INPUT,
    FRAME,
    LAST_FRAME,
    LATENT,
    NEXT_LATENT,
    WM_ACTION,
    WORLD_MODEL_ENCODE_ONNX,
    WORLD_MODEL_STEP_ONNX,
    Manifest,
    sha256_file,
)
from vla_rft.export.onnx_export import export_onnx


def skip_names(model) -> list[str]:
    """Names of the encoder's skip features (one per level but the coarsest; none without
    context skips)."""
    levels = len(model.config.channels) - 1 if model.config.context_skips else 0
    return [f"skip_{i}" for i in range(levels)]


class WorldModelEncode(nn.Module):
    """context [B, C, 3, H, W] -> (latent [B, D, h, w], *skips)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, context: torch.Tensor):
        z, skips = self.model.encode(context)
        return (z, *skips) if self.model.config.context_skips else (z,)


class WorldModelStep(nn.Module):
    """(latent, *skips, last_frame, action) -> (next_latent, frame [B, 3, H, W])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor, *rest: torch.Tensor):
        *skips, last, action = rest
        z = self.model.dynamics(latent, action)  # [B, D, h, w]
        frame = self.model.decode(z[:, None], list(skips), last)[:, 0]  # [B, 3, H, W]
        return z, frame


def export_world_model(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Manifest]:
    """A world-model checkpoint (or run) -> the encode and step graphs in `out_dir`, with
    manifests; each graph is checked against torch on fresh inputs."""
    from vla_rft.contract.config import to_dict
    from vla_rft.models.checkpoint import WEIGHTS_FILE
    from vla_rft.models.world_model.modeling_world_model import load_world_model

    model, ckpt = load_world_model(checkpoint)
    cfg = model.config
    out_dir = Path(out_dir)
    rng = np.random.default_rng(0)
    size, frames = cfg.image_size, cfg.context_frames
    context = rng.uniform(0, 1, (1, frames, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        encoded = [t.numpy() for t in WorldModelEncode(model)(torch.from_numpy(context))]
    skips = skip_names(model)
    common = {
        "image_size": size,
        "action_dim": cfg.action_dim,
        "norm_stats": ckpt.norm_stats,
        "checkpoint_sha256": sha256_file(ckpt.path / WEIGHTS_FILE),
        "data_fingerprint": ckpt.data_fingerprint,
        "source": str(ckpt.path),
    }
    extra = {"world_model_config": to_dict(cfg), "skips": skips, "step": ckpt.step}
    batch = {0: "batch"}

    encode_outputs = [LATENT, *skips]
    manifests = {
        WORLD_MODEL_ENCODE_ONNX: export_onnx(
            WorldModelEncode(model),
            {CONTEXT_INPUT: context},
            encode_outputs,
            {name: batch for name in (CONTEXT_INPUT, *encode_outputs)},
            out_dir / WORLD_MODEL_ENCODE_ONNX,
            Manifest(kind="world_model_encode", inputs=(), outputs=(), **common, extra=extra),
            make_inputs=lambda b, r: {
                CONTEXT_INPUT: r.uniform(0, 1, (b, *context.shape[1:])).astype(np.float32)
            },
        )
    }
    step_example = dict(zip(encode_outputs, encoded, strict=True))
    step_example[LAST_FRAME] = context[:, -1]
    step_example[WM_ACTION] = rng.standard_normal((1, cfg.action_dim)).astype(np.float32)

    def step_inputs(b: int, r: np.random.Generator) -> dict[str, np.ndarray]:
        fresh = r.uniform(0, 1, (b, *context.shape[1:])).astype(np.float32)
        with torch.no_grad():
            state = [t.numpy() for t in WorldModelEncode(model)(torch.from_numpy(fresh))]
        feeds = dict(zip(encode_outputs, state, strict=True))
        feeds[LAST_FRAME] = fresh[:, -1]
        feeds[WM_ACTION] = r.standard_normal((b, cfg.action_dim)).astype(np.float32)
        return feeds

    step_names = [*step_example, NEXT_LATENT, FRAME]
    manifests[WORLD_MODEL_STEP_ONNX] = export_onnx(
        WorldModelStep(model),
        step_example,
        [NEXT_LATENT, FRAME],
        {name: batch for name in step_names},
        out_dir / WORLD_MODEL_STEP_ONNX,
        Manifest(kind="world_model_step", inputs=(), outputs=(), **common, extra=extra),
        make_inputs=step_inputs,
    )
    return manifests
