"""The policy acting inside the world model: what one VLA-RFT iteration imagines and scores.

    obs -> G sampled chunks -> world model frames (+ robot states) -> [next chunk on the imagined
    frame and state] ... -> verified reward against the reference rollout of the real actions

With `chunks=1` (the paper) every candidate is one chunk rolled out from the real start frame.
With more, the policy acts again on its own last imagined frame and estimated robot state
(`ProprioModel`), closed loop inside the world model, so candidates whose early actions drift
pay for it in later frames; the reference is the world model's rollout under the episode's real
actions over the same number of steps. `score_chunks` is the one-chunk case used by
`vla-rft reward-check`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vla_rft.contract.manifest import IMAGE_INPUT, INSTRUCTION_INPUT, STATE_INPUT
from vla_rft.data.normalization import NormStats
from vla_rft.models.policy import VLAPolicy
from vla_rft.models.world_model.proprio import ProprioModel
from vla_rft.rl.rewards import verified_reward
from vla_rft.runtime.torch_policy import TorchPolicy


def policy_inputs(
    base: TorchPolicy, frames: np.ndarray, states: np.ndarray, instructions: list[str], device
) -> dict[str, torch.Tensor]:
    """uint8 frames [B, H, W, 3], raw states [B, S], B instructions -> the policy's input."""
    image, state = base.transforms.observation(frames, states)
    embedding = np.stack([base.instructions(text) for text in instructions])
    arrays = {IMAGE_INPUT: image, INSTRUCTION_INPUT: embedding, STATE_INPUT: state}
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def repeat_rows(obs: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Each start state n times in a row: [B, ...] -> [B * n, ...]."""
    return {k: v.repeat_interleave(n, dim=0) for k, v in obs.items()}


def to_world_model_actions(actions_raw, wm_stats: NormStats) -> torch.Tensor:
    """Robot-unit actions [..., A] (CPU tensor or array) -> the world model's normalised actions,
    as the data set normalised them (ArrayStats.normalize)."""
    return torch.from_numpy(wm_stats.action.normalize(np.asarray(actions_raw)))


def full_chunk_windows(train, horizon: int, first: int = 0) -> np.ndarray:
    """Windows whose next `horizon` actions all lie inside the episode (a real reference); with
    `first` > 0, only those among each episode's first `first` frames."""
    starts = np.arange(len(train)) - train.ep_start[train.window_episode]
    lengths = (train.ep_end - train.ep_start)[train.window_episode]
    keep = starts + horizon <= lengths
    if first:
        keep &= starts < first
    return np.flatnonzero(keep)


def reference_rollout(world_model, context: np.ndarray, real_raw, wm_stats: NormStats):
    """The world model's rollout under the episode's REAL actions (not a re-sample from the
    policy, the released code's defect): context uint8 [B, C, H, W, 3], real_raw [B, T, A] robot
    units -> frames [B, T, H, W, 3]."""
    return world_model.rollout(context, to_world_model_actions(real_raw, wm_stats)[:, None])[:, 0]


def score_chunks(world_model, context, candidates_raw, real_raw, wm_stats: NormStats, reward):
    """Verified rewards of one-chunk candidates against the reference rollout.

    context uint8 [B, C, H, W, 3]; candidates_raw [B, G, K, A] and real_raw [B, K, A] in robot
    units -> (rewards [B, G], terms {name: [B, G]}).
    """
    reference = reference_rollout(world_model, context, real_raw, wm_stats)
    predicted = world_model.rollout(context, to_world_model_actions(candidates_raw, wm_stats))
    return verified_reward(
        predicted, reference, reward.pixel_weight, reward.perceptual_weight, reward.perceptual
    )


@dataclass
class Candidates:
    """G sampled candidates of `chunks` policy chunks from each of B start states: what the
    update needs of them, wherever they were rolled out."""

    observations: list[dict[str, torch.Tensor]]
    """Per chunk, the policy's input [B*G, ...] it sampled from (real start, then rolled out)."""
    trajectories: list[torch.Tensor]
    """Per chunk, the sampler's chains [B*G, S + 1, K, A]."""
    log_prob: torch.Tensor
    """[B*G] log-density of all the chunks under the policy that sampled them."""
    actions: np.ndarray
    """[B, G, T, A] robot units, T = chunks * K."""

    def chain_log_prob(self, policy: VLAPolicy) -> torch.Tensor:
        """[B*G] log-density of the same chunks under `policy` (differentiable)."""
        pairs = zip(self.observations, self.trajectories, strict=True)
        return torch.stack([policy.log_prob(obs, traj) for obs, traj in pairs]).sum(0)


@dataclass
class Imagination(Candidates):
    """The candidates rolled out in the world model."""

    frames: torch.Tensor
    """[B, G, T, H, W, 3] imagined frames in [0, 1]; frame t follows actions 0..t."""


@torch.no_grad()
def imagine(
    policy: VLAPolicy,
    base: TorchPolicy,
    world_model,
    wm_stats: NormStats,
    batch: dict,
    obs: dict[str, torch.Tensor],
    group_size: int,
    chunks: int,
    noise: torch.Generator | None,
    proprio: ProprioModel | None = None,
    previous_action: np.ndarray | None = None,
    noise_scale: float = 1.0,
    start: str = "zero",
) -> Imagination:
    """Sample G chunks per start state and roll them out, `chunks` times in closed loop.

    batch: start states as `WindowDataset.get_batch` gives them (raw, not normalised): "image"
    uint8 [B, C, H, W, 3], "state" [B, S], "instruction" B strings; obs: the policy's input for
    them [B, ...]; previous_action [B, A]: the action each episode took before its start step.
    proprio and previous_action are needed only for chunks > 1; noise_scale 0 imagines the
    deterministic policy; start: each chain's x_0 (`ChunkHead.sample`).
    """
    if chunks > 1 and (proprio is None or previous_action is None):
        raise ValueError("imagining more than one chunk needs a ProprioModel and previous_action")
    g, device = group_size, obs[IMAGE_INPUT].device
    b = len(obs[IMAGE_INPUT])
    state = world_model.start(batch["image"], g)
    current = repeat_rows(obs, g)
    robot_state = np.repeat(batch["state"], g, axis=0)
    previous = None if previous_action is None else np.repeat(previous_action, g, axis=0)
    instructions = [text for text in batch["instruction"] for _ in range(g)]
    observations, trajectories, actions, frames = [], [], [], []
    log_prob = torch.zeros(b * g, device=device)
    for c in range(chunks):
        if c:  # act on the last imagined frame and the estimated state
            last = (frames[-1][:, -1] * 255).round().to(torch.uint8).cpu().numpy()
            current = policy_inputs(base, last, robot_state, instructions, device)
        sample = policy.head.sample(policy.encode_batch(current), noise, noise_scale, start)
        raw = base.transforms.action(sample.actions.cpu().numpy())  # robot units, clipped
        segment, state = world_model.imagine(state, to_world_model_actions(raw, wm_stats))
        if c + 1 < chunks:
            robot_state = proprio.rollout(robot_state, raw, previous)[:, -1]
            previous = raw[:, -1]
        observations.append(current)
        trajectories.append(sample.trajectory)
        log_prob += sample.log_prob
        actions.append(raw)
        frames.append(segment)
    return Imagination(
        observations,
        trajectories,
        log_prob,
        np.concatenate(actions, axis=1).reshape(b, g, -1, raw.shape[-1]),
        torch.cat(frames, dim=1).unflatten(0, (b, g)),
    )
