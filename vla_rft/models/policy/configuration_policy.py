"""The policy's shape: vision encoder, observation tokens, action-chunk head, sampler bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vla_rft.contract.policy import DEFAULT_CAMERAS

HEADS = ("flow", "gaussian")
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""A camera name: it names the camera's input of the exported graph (`image_<name>`)."""


@dataclass(frozen=True)
class PolicyConfig:
    """A vision-language-action policy that predicts a chunk of normalised actions."""

    image_size: int = 64
    """Side of the square RGB image the vision encoder sees, pixels."""
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    """The cameras it sees, main first (the robot's main camera, whatever its name; the others
    by name from the episodes and the robot's spec): one vision encoder for all, plus a learned
    embedding per camera when there are several."""
    state_dim: int = 4
    """Robot state entries (set from the data by the trainer)."""
    action_dim: int = 4
    """Action entries (set from the data by the trainer)."""
    chunk_size: int = 8
    """Actions predicted per call (the paper uses 8)."""
    instruction_dim: int = 384
    """Size of the sentence embedding the policy takes as input (all-MiniLM-L6-v2: 384)."""
    vision_channels: tuple[int, ...] = (16, 32, 64)
    """Channels of the convolutional stages; each halves the image."""
    cell_dim: int = 32
    """Channels per cell of the last feature map, which is flattened into the image feature."""
    width: int = 128
    """Width of the observation features and of the chunk decoder's tokens."""
    heads: int = 4
    """Attention heads of the chunk decoder."""
    decoder_layers: int = 3
    """Layers of the chunk transformer (self-attention over the chunk, cross-attention to the
    observation tokens)."""
    head: str = "flow"
    """Action head: "flow" (flow matching, as in the paper) or "gaussian" (one-shot chunk)."""
    flow_steps: int = 10
    """Euler steps from noise to actions (the paper uses 10)."""
    flow_samples: int = 4
    """(noise, time) draws per observation in the flow-matching loss: the observation is encoded
    once, so more draws cut the loss's variance for a fraction of a step's cost."""
    sigma_min: float = 0.08
    """Lower bound of the stochastic sampler's per-dimension noise scale (normalised units)."""
    sigma_max: float = 0.2
    """Upper bound of the stochastic sampler's per-dimension noise scale."""

    def __post_init__(self):
        positive = ("state_dim", "action_dim", "chunk_size", "instruction_dim", "flow_steps")
        for name in (*positive, "flow_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        bad = [c for c in self.cameras if not isinstance(c, str) or not CAMERA_NAME.fullmatch(c)]
        if not self.cameras or bad or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(
                f"cameras must be distinct names of letters, digits and _, main first; got "
                f"{list(self.cameras)}"
            )
        if not self.vision_channels or min(self.vision_channels) < 1:
            raise ValueError(f"vision_channels must be positive, got {self.vision_channels}")
        if self.image_size % 2 ** len(self.vision_channels):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2^{len(self.vision_channels)} "
                "(one halving per vision stage)"
            )
        if self.width < 2 or self.width % self.heads or self.width % 2:
            raise ValueError(f"width ({self.width}) must be an even multiple of heads")
        if self.cell_dim < 1 or self.decoder_layers < 1:
            raise ValueError("cell_dim and decoder_layers must be >= 1")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}"
            )

    @property
    def further_cameras(self) -> tuple[str, ...]:
        """The cameras beside the main one."""
        return self.cameras[1:]

    @property
    def grid(self) -> int:
        """Side of the image-cell grid the vision encoder outputs."""
        return self.image_size // 2 ** len(self.vision_channels)
