"""The VLA policy: camera images + instruction embedding + robot state -> a chunk of actions.

    image of camera i [B, 3, S, S] ──CNN, flattened (shared)──▶ + e_i ──▶ v_i [B, D] ──┐
    instruction embedding [B, E] ──Linear+LN──▶ l [B, D] ──────────────────────────────┼─▶ MLP
    state [B, state_dim] ──Linear──▶ s [B, D] ──────────────────────────────────────────┘   │
    observation tokens [v_1 .. v_N, l, s, fused] [B, N + 3, D]; summary = fused ◀──────────┘

N cameras (`PolicyConfig.cameras`, main first) share one vision encoder; e_i is a learned
embedding per camera (none with one camera, which keeps one-camera checkpoints as they were).
                                  │
      chunk head (flow | gaussian): a transformer over the K chunk tokens, conditioned on the
      summary (added to every token) and cross-attending to the observation tokens
                                  ▼
                    actions [B, K, A] (normalised)

Inputs and outputs are the normalised tensors of `vla_rft.runtime.transforms`; the instruction
arrives as an embedding from the separate, frozen sentence encoder (text_encoder.py), so the
network exports to ONNX with the embedding as an input and the robot caches it per instruction.
"""

from __future__ import annotations

import torch
from torch import nn

from vla_rft.contract.manifest import IMAGE_INPUT, INSTRUCTION_INPUT, STATE_INPUT, camera_input
from vla_rft.models.policy.chunk_head import ChunkHead, ChunkSample, ObsFeatures
from vla_rft.models.policy.configuration_policy import PolicyConfig
from vla_rft.models.policy.flow_head import FlowMatchingHead
from vla_rft.models.policy.gaussian_head import GaussianChunkHead
from vla_rft.models.policy.vision import VisionEncoder


HEAD_CLASSES: dict[str, type[ChunkHead]] = {
    "flow": FlowMatchingHead,
    "gaussian": GaussianChunkHead,
}


class VLAPolicy(nn.Module):
    """forward(batch) -> (loss, metrics) for behaviour cloning; predict_chunk for deployment;
    sample_chunk / log_prob for reinforcement fine-tuning."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        d = config.width
        self.vision = VisionEncoder(config.vision_channels, d, config.image_size, config.cell_dim)
        self.instruction_proj = nn.Sequential(nn.Linear(config.instruction_dim, d), nn.LayerNorm(d))
        self.state_proj = nn.Linear(config.state_dim, d)
        n = len(config.cameras)
        self.camera_embedding = nn.Parameter(torch.randn(n, d) * 0.02) if n > 1 else None
        self.fuse = nn.Sequential(
            nn.Linear((n + 2) * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.LayerNorm(d)
        )
        self.head = HEAD_CLASSES[config.head](config)

    # --- observation ---------------------------------------------------------------------------

    def encode(
        self,
        image: torch.Tensor,
        instruction_embedding: torch.Tensor,
        state: torch.Tensor,
        *camera_images: torch.Tensor,
    ) -> ObsFeatures:
        """Observation tokens from normalised inputs (shapes in the module docstring);
        `camera_images`: one per further camera, in `config.further_cameras` order."""
        self._check_inputs(image, instruction_embedding, state, camera_images)
        images = [image, *camera_images]
        views = self.vision(torch.cat(images)).view(len(images), *image.shape[:1], -1)  # [N, B, D]
        if self.camera_embedding is not None:
            views = views + self.camera_embedding[:, None]
        parts = [
            *views,  # N x [B, D]
            self.instruction_proj(instruction_embedding),  # [B, D]
            self.state_proj(state),  # [B, D]
        ]
        fused = self.fuse(torch.cat(parts, dim=-1))  # [B, D]
        return ObsFeatures(torch.stack([*parts, fused], dim=1), fused)  # tokens [B, N + 3, D]

    def encode_batch(self, obs: dict[str, torch.Tensor]) -> ObsFeatures:
        return self.encode(*self.inputs(obs))

    def inputs(self, obs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The positional inputs of `encode` and `predict_chunk` from a batch dict."""
        cameras = [obs[camera_input(name)] for name in self.config.further_cameras]
        return [obs[IMAGE_INPUT], obs[INSTRUCTION_INPUT], obs[STATE_INPUT], *cameras]

    def _check_inputs(self, image, instruction_embedding, state, camera_images) -> None:
        c, b = self.config, image.shape[0]
        if len(camera_images) != len(c.further_cameras):
            raise ValueError(
                f"the policy sees the cameras {list(c.cameras)}: give {len(c.further_cameras)} "
                f"further images, not {len(camera_images)}"
            )
        square = (b, 3, c.image_size, c.image_size)
        expected = {
            "image": (image, square),
            "instruction_embedding": (instruction_embedding, (b, c.instruction_dim)),
            "state": (state, (b, c.state_dim)),
            **{
                camera_input(name): (tensor, square)
                for name, tensor in zip(c.further_cameras, camera_images, strict=True)
            },
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must have shape {list(shape)}, got {list(tensor.shape)}")

    # --- behaviour cloning ---------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of the head (flow matching or MSE) on a batch of normalised real actions.

        batch: the observation keys plus "action" [B, K, A] and "action_pad" bool [B, K].
        """
        obs = self.encode_batch(batch)
        per_sample = self.head.loss(obs, batch["action"], ~batch["action_pad"])  # [B]
        loss = per_sample.mean()
        return loss, {"loss": loss.item()}

    # --- deployment ----------------------------------------------------------------------------

    def predict_chunk(
        self,
        image: torch.Tensor,
        instruction_embedding: torch.Tensor,
        state: torch.Tensor,
        *camera_images: torch.Tensor,
    ) -> torch.Tensor:
        """The deterministic chunk [B, K, A] (normalised); no data-dependent control flow."""
        return self.head.deterministic(
            self.encode(image, instruction_embedding, state, *camera_images)
        )

    # --- reinforcement fine-tuning -------------------------------------------------------------

    def sample_chunk(
        self,
        obs: dict[str, torch.Tensor],
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
    ) -> ChunkSample:
        """A stochastic chunk, its log-probability and the chain that recomputes it."""
        return self.head.sample(self.encode_batch(obs), generator, noise_scale)

    def log_prob(self, obs: dict[str, torch.Tensor], trajectory: torch.Tensor) -> torch.Tensor:
        """Log-probability [B] of recorded chains [B, S + 1, K, A] (ChunkSample.trajectory)."""
        return self.head.log_prob(self.encode_batch(obs), trajectory)

    def backbone_modules(self) -> list[nn.Module]:
        """The observation encoder: vision, instruction and state projections, fusion MLP."""
        return [self.vision, self.instruction_proj, self.state_proj, self.fuse]

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or restart) training the observation encoder; the head and sigma net train."""
        for module in self.backbone_modules():
            module.requires_grad_(not frozen)
        if self.camera_embedding is not None:
            self.camera_embedding.requires_grad_(not frozen)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class ChunkPredictor(nn.Module):
    """The deployment graph for export: (image, instruction_embedding, state, one image per
    further camera) -> chunk."""

    def __init__(self, policy: VLAPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, image, instruction_embedding, state, *camera_images):
        return self.policy.predict_chunk(image, instruction_embedding, state, *camera_images)
