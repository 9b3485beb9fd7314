"""Action-conditioned video prediction: encode the context frames once, step a latent grid
forward with each action, decode one frame per step.

    context [N, C, 3, H, W] ──encoder──▶ z_0 [N, D, h, w]   (+ skip features, last frame)
    z_{k+1} = dynamics(z_k, a_k)                              a_k [N, A], k = 0 .. T-1
    frame_{k+1} = m * rgb + (1 - m) * last context frame      (rgb, m) = decoder(z_{k+1}, skips)

h = w = image_size / 2 ** len(channels). Everything is deterministic; no state is kept between
calls. See docs/WORLD_MODEL.md for why this design rather than the paper's VQ tokens and
autoregressive transformer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vla_rft.models.world_model.configuration_world_model import WorldModelConfig


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """Pre-norm residual block of two 3x3 convolutions; optional FiLM by a conditioning vector."""

    def __init__(self, channels: int, cond_dim: int = 0):
        super().__init__()
        self.norm1, self.norm2 = _norm(channels), _norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels) if cond_dim else None
        nn.init.zeros_(self.conv2.weight)  # starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [N, D, h, w]
        if self.film is not None:
            scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)  # [N, D, 1, 1] each
            h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(self.norm2(h)))


class GridAttention(nn.Module):
    """Self-attention over the positions of a latent grid, with a learned position embedding."""

    def __init__(self, channels: int, heads: int, size: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.pos = nn.Parameter(torch.zeros(1, size * size, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [N, h*w, D]
        q = self.norm(tokens) + self.pos
        out, _ = self.attn(q, q, q, need_weights=False)
        return x + out.transpose(1, 2).reshape(n, d, h, w)


class Encoder(nn.Module):
    """Stacked context frames -> latent grid z_0, plus each level's features for the decoder."""

    def __init__(self, config: WorldModelConfig):
        super().__init__()
        widths = config.channels
        self.stem = nn.Sequential(  # space-to-depth: no full-resolution feature maps
            nn.PixelUnshuffle(2), nn.Conv2d(12 * config.context_frames, widths[0], 3, padding=1)
        )
        self.levels = nn.ModuleList()
        for i, width in enumerate(widths):
            down = _act_conv(nn.Conv2d(widths[i - 1], width, 4, stride=2, padding=1)) if i else []
            blocks = [ResBlock(width) for _ in range(config.blocks_per_level)]
            self.levels.append(nn.Sequential(*down, *blocks))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """frames [N, C, 3, H, W] in [0, 1] -> z_0 [N, D, h, w], skips (finest first)."""
        x = self.stem(frames.flatten(1, 2) * 2 - 1)  # [N, c0, H/2, W/2]
        skips = []
        for level in self.levels:
            x = level(x)
            skips.append(x)
        return x, skips[:-1]


class Dynamics(nn.Module):
    """One action step on the latent grid: z_{k+1} = z_k + f(z_k, a_k)."""

    def __init__(self, config: WorldModelConfig):
        super().__init__()
        width = config.channels[-1]
        self.embed = nn.Sequential(
            nn.Linear(config.action_dim, config.action_embed),
            nn.SiLU(),
            nn.Linear(config.action_embed, config.action_embed),
        )
        self.blocks = nn.ModuleList(
            ResBlock(width, config.action_embed) for _ in range(config.dynamics_blocks)
        )
        self.attention = nn.ModuleList(
            GridAttention(width, config.attention_heads, config.latent_size)
            for _ in range(config.dynamics_blocks if config.attention_heads else 0)
        )

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """z [N, D, h, w], action [N, A] -> z [N, D, h, w]."""
        cond = self.embed(action)  # [N, E]
        for i, block in enumerate(self.blocks):
            z = block(z, cond)
            if self.attention:
                z = self.attention[i](z)
        return z


class Decoder(nn.Module):
    """Latent grid (+ context skips) -> RGB and a paste mask at full resolution."""

    def __init__(self, config: WorldModelConfig):
        super().__init__()
        widths = config.channels
        self.context_skips = config.context_skips
        self.levels = nn.ModuleList()
        for i in reversed(range(1, len(widths))):
            skip = widths[i - 1] if config.context_skips else 0
            self.levels.append(
                nn.ModuleList(
                    [
                        nn.Sequential(
                            *[ResBlock(widths[i]) for _ in range(config.blocks_per_level)]
                        ),
                        nn.Sequential(
                            *_act_conv(nn.ConvTranspose2d(widths[i], widths[i - 1], 4, 2, 1))
                        ),
                        _fuse(widths[i - 1], skip),
                    ]
                )
            )
        self.head = nn.Sequential(
            *[ResBlock(widths[0]) for _ in range(config.blocks_per_level)],
            _norm(widths[0]),
            nn.SiLU(),
            nn.Conv2d(widths[0], 4 * 4, 3, padding=1),
            nn.PixelShuffle(2),  # depth-to-space: [M, 16, H/2, W/2] -> [M, 4, H, W]
        )
        out = self.head[-2]  # start as "repeat the last context frame": mask logit -4 everywhere
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        if config.context_skips:
            nn.init.constant_(out.bias[12:], -4.0)  # channels 12..15 shuffle into the mask

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """z [M, D, h, w], skips (finest first) -> [M, 4, H, W] logits of (rgb, paste mask)."""
        x = z
        for (blocks, up, fuse), skip in zip(self.levels, reversed(skips), strict=True):
            x = up(blocks(x))
            if self.context_skips:
                x = fuse(torch.cat([x, skip], dim=1))
        return self.head(x)


def _act_conv(conv: nn.Conv2d | nn.ConvTranspose2d) -> list[nn.Module]:
    """Pre-activation: norm, SiLU, then the (resampling) convolution."""
    return [_norm(conv.in_channels), nn.SiLU(), conv]


def _fuse(channels: int, skip: int) -> nn.Module:
    return nn.Conv2d(channels + skip, channels, 1) if skip else nn.Identity()


@dataclass
class ImaginationState:
    """Where N imagined rollouts stand: the latent grid after the last action, plus what the
    decoder keeps from each rollout's context (its skip features and last real frame)."""

    z: torch.Tensor
    """[N, D, h, w] latent grid."""
    skips: list[torch.Tensor]
    """Encoder features of the context, one [N, ...] per level."""
    last: torch.Tensor
    """[N, 3, H, W] last context frame in [0, 1] (pixels the decoder may paste)."""


class WorldModel(nn.Module):
    """Predicts the frames that follow context frames under a sequence of actions."""

    def __init__(self, config: WorldModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dynamics = Dynamics(config)
        self.decoder = Decoder(config)

    # --- training path: channels-first tensors -------------------------------------------------

    def encode(self, context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """context [N, C, 3, H, W] in [0, 1] -> z_0 [N, D, h, w], skips."""
        return self.encoder(context)

    def decode(
        self, z: torch.Tensor, skips: list[torch.Tensor], last: torch.Tensor
    ) -> torch.Tensor:
        """z [N, T, D, h, w], skips [N, ...], last context frame [N, 3, H, W] -> [N, T, 3, H, W]."""
        n, t = z.shape[:2]
        rep = [s.unsqueeze(1).expand(-1, t, *s.shape[1:]).flatten(0, 1) for s in skips]
        out = self.decoder(z.flatten(0, 1), rep).unflatten(0, (n, t)).float()  # [N, T, 4, H, W]
        rgb = torch.sigmoid(out[:, :, :3])
        if not self.config.context_skips:
            return rgb
        mask = torch.sigmoid(out[:, :, 3:])  # [N, T, 1, H, W]
        return mask * rgb + (1 - mask) * last.unsqueeze(1)

    def forward(
        self, context: torch.Tensor, actions: torch.Tensor, steps: list[int] | None = None
    ) -> torch.Tensor:
        """context [N, C, 3, H, W] in [0, 1], actions [N, T, A] -> frames [N, T', 3, H, W].

        Frame k follows actions 0..k; `steps` picks which of the T frames are decoded (all by
        default, T' = T), which saves the decoder's cost in training.
        """
        z, skips = self.encode(context)
        latents = []
        for k in range(actions.shape[1]):
            z = self.dynamics(z, actions[:, k])
            latents.append(z)
        latents = latents if steps is None else [latents[k] for k in steps]
        return self.decode(torch.stack(latents, dim=1), skips, context[:, -1])

    # --- the API the fine-tuning stage uses ----------------------------------------------------

    @torch.no_grad()
    def rollout(self, context_frames, actions, max_rows: int = 64) -> torch.Tensor:
        """Roll G action sequences out from each of B start states.

        context_frames: [B, C, H, W, 3], uint8 or float in [0, 1] (numpy or torch)
        actions:        [B, G, T, A] float, normalised as the data set gives them
        returns:        [B, G, T, H, W, 3] float32 in [0, 1]; frame k follows actions 0..k
        Each start state is encoded once; `max_rows` rollouts run at a time. Same inputs, same
        outputs (no dropout or batch statistics: train and eval mode roll out alike).
        """
        context, acts = self._check_rollout_inputs(context_frames, actions)
        b, g = acts.shape[:2]
        state = self._start(context, g)
        frames, _ = self.imagine(state, acts.flatten(0, 1), max_rows)
        return frames.unflatten(0, (b, g))

    @torch.no_grad()
    def start(self, context_frames, repeats: int = 1) -> ImaginationState:
        """The imagination state of B start states, each repeated `repeats` times in a row.

        context_frames: [B, C, H, W, 3], uint8 or float in [0, 1] -> a state of B * repeats rows
        that `imagine` advances (DreamerV3 style: the caller holds the state, the model none).
        """
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        return self._start(self._check_context(context_frames), repeats)

    def _start(self, context: torch.Tensor, repeats: int) -> ImaginationState:
        z, skips = self.encode(context)  # [B, D, h, w]

        def per_row(x: torch.Tensor) -> torch.Tensor:  # [B, ...] -> [B*G, ...]
            return x.repeat_interleave(repeats, dim=0)

        return ImaginationState(per_row(z), [per_row(s) for s in skips], per_row(context[:, -1]))

    @torch.no_grad()
    def imagine(
        self, state: ImaginationState, actions, max_rows: int = 64
    ) -> tuple[torch.Tensor, ImaginationState]:
        """Advance N imagined rollouts by T actions each.

        state: N rows (from `start` or a previous `imagine`); actions [N, T, A] normalised
        returns (frames [N, T, H, W, 3] float32 in [0, 1], the state after the last action).
        Rolling T1 then T2 actions gives the same frames as rolling T1 + T2 at once.
        """
        acts, n = self._check_actions(actions, state.z.device), len(state.z)
        if acts.shape[0] != n:
            raise ValueError(f"actions are for {acts.shape[0]} rollouts, the state holds {n}")
        frames, latents = [], []
        for lo in range(0, n, max_rows):
            rows = slice(lo, lo + max_rows)
            zr, skips_r, per_step = state.z[rows], [s[rows] for s in state.skips], []
            for k in range(acts.shape[1]):  # decoding step by step keeps memory at max_rows frames
                zr = self.dynamics(zr, acts[rows, k])
                per_step.append(self.decode(zr[:, None], skips_r, state.last[rows]))
            frames.append(torch.cat(per_step, dim=1))
            latents.append(zr)
        out = torch.cat(frames).permute(0, 1, 3, 4, 2).contiguous()  # [N, T, H, W, 3]
        return out, ImaginationState(torch.cat(latents), state.skips, state.last)

    def _check_rollout_inputs(self, context_frames, actions) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked float32 tensors: frames [B, C, 3, H, W] in [0, 1], actions [B, G, T, A]."""
        ctx = self._check_context(context_frames)
        acts = torch.as_tensor(actions)
        if (
            acts.ndim != 4
            or acts.shape[0] != ctx.shape[0]
            or acts.shape[-1] != self.config.action_dim
        ):
            raise ValueError(
                f"actions must be [B={ctx.shape[0]}, G, T, {self.config.action_dim}], "
                f"got {tuple(acts.shape)}"
            )
        if acts.shape[1] < 1 or acts.shape[2] < 1:
            raise ValueError(f"actions need G >= 1 and T >= 1, got {tuple(acts.shape)}")
        return ctx, self._check_actions(acts.flatten(0, 1), ctx.device).unflatten(0, acts.shape[:2])

    def _check_actions(self, actions, device) -> torch.Tensor:
        """Checked float32 actions [N, T, A] with T >= 1."""
        acts = torch.as_tensor(actions)
        a = self.config.action_dim
        if acts.ndim != 3 or acts.shape[-1] != a or acts.shape[1] < 1:
            raise ValueError(f"actions must be [N, T >= 1, {a}], got {tuple(acts.shape)}")
        acts = acts.to(device=device, dtype=torch.float32)
        if not torch.isfinite(acts).all():
            raise ValueError("actions contain NaN or infinite values")
        return acts

    def _check_context(self, context_frames) -> torch.Tensor:
        """Checked float32 frames [B, C, 3, H, W] in [0, 1] from [B, C, H, W, 3]."""
        cfg = self.config
        device = next(self.parameters()).device
        ctx = torch.as_tensor(context_frames)
        want = (cfg.context_frames, cfg.image_size, cfg.image_size, 3)
        if ctx.ndim != 5 or tuple(ctx.shape[1:]) != want:
            raise ValueError(
                f"context_frames must be [B, {', '.join(map(str, want))}], got {tuple(ctx.shape)}"
            )
        if ctx.dtype == torch.uint8:
            ctx = ctx.to(device=device, dtype=torch.float32) / 255
        elif ctx.is_floating_point():
            ctx = ctx.to(device=device, dtype=torch.float32)
            if not torch.isfinite(ctx).all():
                raise ValueError("context_frames contain NaN or infinite values")
            if ctx.min() < -1e-3 or ctx.max() > 1 + 1e-3:
                raise ValueError(
                    "float context_frames must be in [0, 1] (pass uint8 for 0..255 images), "
                    f"got values in [{float(ctx.min()):.3g}, {float(ctx.max()):.3g}]"
                )
        else:
            raise ValueError(f"context_frames must be uint8 or float, got {ctx.dtype}")
        return ctx.permute(0, 1, 4, 2, 3)  # [B, C, 3, H, W]


def load_world_model(path: str | Path, device: str | torch.device = "cpu"):
    """A trained world model in eval mode from a checkpoint (or a run's latest) -> (model, ckpt).

    `ckpt.norm_stats` holds the action statistics the model's actions are normalised with.
    """
    from vla_rft.models.checkpoint import load_checkpoint, load_weights
    from vla_rft.contract.config import ConfigError, from_dict

    ckpt = load_checkpoint(path)
    try:
        config = from_dict(WorldModelConfig, ckpt.config["model"], prefix="model.")
    except (KeyError, TypeError, ConfigError, ValueError) as err:
        raise ValueError(f"{ckpt.path}: not a world-model checkpoint ({err})") from None
    model = WorldModel(config)
    load_weights(model, ckpt)
    return model.to(device).eval(), ckpt
