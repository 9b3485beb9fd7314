"""The VLA policy: camera image + instruction embedding + robot state -> a chunk of actions.

    image [B, 3, S, S] ──CNN, flattened──▶ v [B, D] ─────────┐
    instruction embedding [B, E] ──Linear+LN──▶ l [B, D] ─────┼──▶ MLP ──▶ fused [B, D]
    state [B, state_dim] ──Linear──▶ s [B, D] ───────────────┘
    observation tokens [v, l, s, fused] [B, 4, D]; summary = fused
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

from vla_rft.contract.manifest import IMAGE_INPUT, INSTRUCTION_INPUT, STATE_INPUT
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
        self.fuse = nn.Sequential(
            nn.Linear(3 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.LayerNorm(d)
        )
        self.head = HEAD_CLASSES[config.head](config)

    # --- observation ---------------------------------------------------------------------------

    def encode(
        self, image: torch.Tensor, instruction_embedding: torch.Tensor, state: torch.Tensor
    ) -> ObsFeatures:
        """Observation tokens from normalised inputs (shapes in the module docstring)."""
        self._check_inputs(image, instruction_embedding, state)
        parts = [
            self.vision(image),  # [B, D]
            self.instruction_proj(instruction_embedding),  # [B, D]
            self.state_proj(state),  # [B, D]
        ]
        fused = self.fuse(torch.cat(parts, dim=-1))  # [B, D]
        return ObsFeatures(torch.stack([*parts, fused], dim=1), fused)  # tokens [B, 4, D]

    def encode_batch(self, obs: dict[str, torch.Tensor]) -> ObsFeatures:
        return self.encode(obs[IMAGE_INPUT], obs[INSTRUCTION_INPUT], obs[STATE_INPUT])

    def _check_inputs(self, image, instruction_embedding, state) -> None:
        c, b = self.config, image.shape[0]
        expected = {
            "image": (image, (b, 3, c.image_size, c.image_size)),
            "instruction_embedding": (instruction_embedding, (b, c.instruction_dim)),
            "state": (state, (b, c.state_dim)),
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
        self, image: torch.Tensor, instruction_embedding: torch.Tensor, state: torch.Tensor
    ) -> torch.Tensor:
        """The deterministic chunk [B, K, A] (normalised); no data-dependent control flow."""
        return self.head.deterministic(self.encode(image, instruction_embedding, state))

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

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class ChunkPredictor(nn.Module):
    """The deployment graph for export: (image, instruction_embedding, state) -> chunk."""

    def __init__(self, policy: VLAPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, image, instruction_embedding, state):
        return self.policy.predict_chunk(image, instruction_embedding, state)
