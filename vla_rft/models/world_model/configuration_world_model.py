"""Configuration of the action-conditioned world model (see docs/WORLD_MODEL.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldModelConfig:
    """Architecture of `WorldModel`; the `cpu` and `gpu` recipes differ only in these numbers."""

    image_size: int = 64
    """Square frame size in pixels; must be divisible by 2 ** len(channels)."""
    context_frames: int = 1
    """Real frames (t-C+1 .. t) the rollout starts from."""
    action_dim: int = 4
    """Size of one action (normalised, as the data set gives it)."""
    channels: tuple[int, ...] = (32, 64, 128)
    """Encoder/decoder width per resolution level; each level halves the image size."""
    blocks_per_level: int = 1
    """Residual blocks at each encoder and decoder level."""
    dynamics_blocks: int = 3
    """Action-conditioned residual blocks applied to the latent grid once per action step."""
    attention_heads: int = 0
    """Heads of a self-attention layer after each dynamics block (0: convolutions only)."""
    action_embed: int = 64
    """Width of the action embedding that modulates (FiLM) every dynamics block."""
    context_skips: bool = True
    """Decoder sees the context frame's encoder features and pastes unchanged pixels from it."""

    def __post_init__(self):
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive widths, got {self.channels}")
        stride = 2 ** len(self.channels)
        if self.image_size < stride or self.image_size % stride:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of 2 ** len(channels) = {stride}"
            )
        for name in ("context_frames", "action_dim", "action_embed", "dynamics_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.blocks_per_level < 0:
            raise ValueError(f"blocks_per_level must be >= 0, got {self.blocks_per_level}")
        if self.attention_heads < 0 or (
            self.attention_heads and self.channels[-1] % self.attention_heads
        ):
            raise ValueError(
                f"attention_heads ({self.attention_heads}) must be >= 0 and divide the latent "
                f"width {self.channels[-1]}"
            )
        if any(c % min(8, c) for c in self.channels):
            raise ValueError(f"channels must be multiples of 8 (group norm), got {self.channels}")

    @property
    def latent_size(self) -> int:
        """Side of the latent grid the dynamics runs on."""
        return self.image_size // 2 ** len(self.channels)
