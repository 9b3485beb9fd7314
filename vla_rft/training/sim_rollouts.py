"""The policy acting in the simulator instead of the world model: the ceiling of VLA-RFT's update.

    recorded start state (replayed in MuJoCo) -> G sampled chunks -> executed in the simulator,
    closed loop on its real frames for `chunks` chunks -> reward from the task's own success
    and progress

`vla-rft rft --set rollouts=simulator` runs the same GRPO update as the world-model loop on these
candidates. With a perfect world model and a perfect reward, this is what the update on the
action head can do at best here: if it cannot lift the policy, no world-model reward can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vla_rft.contract.constants import OBS_STATE, REPLAN_EVERY
from vla_rft.models.policy import VLAPolicy
from vla_rft.rollout.replay import StartState
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.training.imagination import Candidates, policy_inputs, repeat_rows

SIM_REWARD_TERMS = ("success", "progress")
"""The terms `candidate_rewards` reports beside the reward."""
DENSE_REWARD_MAX = 10.0
"""Meta-World's dense reward lies in [0, 10] (10 once the task is solved)."""


@dataclass(frozen=True)
class SimRewardConfig:
    """The reward of a candidate executed in the simulator."""

    success_weight: float = 1.0
    """Reward when the task succeeded during the candidate."""
    progress_weight: float = 0.1
    """Weight of Meta-World's dense reward (task progress, scaled to [0, 1]) after the
    candidate's last step."""
    to_episode_end: bool = False
    """After its sampled chunks, a candidate plays on as the evaluation does (the policy's
    noise-free chunk, a new one every REPLAN_EVERY ticks) until success or the step limit, and
    success and progress are read there: the reward of the whole episode. The update still
    scores only the sampled chunks."""

    def __post_init__(self):
        if self.success_weight < 0 or self.progress_weight < 0:
            raise ValueError("success_weight and progress_weight must be >= 0")
        if self.success_weight == self.progress_weight == 0:
            raise ValueError("success_weight and progress_weight cannot both be 0")


@dataclass
class SimRollouts(Candidates):
    """The candidates executed in the simulator, and their rewards."""

    rewards: torch.Tensor
    """[B, G] success_weight * success + progress_weight * progress."""
    terms: dict[str, torch.Tensor]
    """"success" (0/1) and "progress" (dense reward / 10 at the last executed step), [B, G]."""


def candidate_rewards(success: np.ndarray, dense: np.ndarray, reward: SimRewardConfig):
    """success bool [B, G], dense reward [B, G] in [0, 10] -> (rewards [B, G], terms)."""
    values = (success.astype(np.float32), (dense / DENSE_REWARD_MAX).astype(np.float32))
    terms = {name: torch.from_numpy(v) for name, v in zip(SIM_REWARD_TERMS, values, strict=True)}
    rewards = reward.success_weight * terms["success"] + reward.progress_weight * terms["progress"]
    return rewards, terms


class _Played:
    """Where each of the B x G candidates stands in its own simulated episode, and how it went."""

    def __init__(self, starts: list[StartState], group_size: int):
        self.starts, self.group_size = starts, group_size
        n = len(starts) * group_size
        self.frames: list = [None] * n  # what each candidate's policy looks at next
        self.states: list = [None] * n
        self.moments = [s.snapshot for s in starts for _ in range(group_size)]
        self.success, self.dense, self.over = np.zeros(n, bool), np.zeros(n), np.zeros(n, bool)

    def execute(self, rows, actions: np.ndarray, observe: bool) -> None:
        """Candidate rows[j] takes actions[j] [T, A] (robot units) from where it stands, up to
        its episode's end; with `observe`, its next frame and state are rendered (only where the
        policy looks next: most of a step's cost) and its new moment kept."""
        for i, chunk in zip(rows, actions, strict=True):
            robot = self.starts[i // self.group_size].robot
            sim_obs = robot.restore(self.moments[i], render=False)
            for action in chunk if not self.over[i] else ():
                sim_obs, succeeded, done, info = robot.step(action, render=False)
                self.success[i] |= succeeded
                self.dense[i] = info["reward"]
                if done:
                    self.over[i] = True
                    break
            if observe:
                self.frames[i], self.states[i] = robot.render(), sim_obs[OBS_STATE]
                self.moments[i] = robot.snapshot()


@torch.no_grad()
def simulate(
    policy: VLAPolicy,
    base: TorchPolicy,
    starts: list[StartState],
    obs: dict[str, torch.Tensor],
    instructions: list[str],
    group_size: int,
    chunks: int,
    noise: torch.Generator | None,
    reward: SimRewardConfig,
    start: str = "zero",
) -> SimRollouts:
    """Sample G chunks per start state and execute them in the simulator, `chunks` times in
    closed loop (each candidate's next chunk is sampled on its own simulated frame and state).

    starts: B live start states (`EpisodeReplayer.start`, one slot each); obs: the policy's
    input for them [B, ...]; instructions: B strings. A candidate whose episode ends (success or
    the step limit) stops there; chunks sampled after that are not executed. With
    `reward.to_episode_end` the candidates then play on to their episode's end.
    """
    b, g = len(starts), group_size
    n = b * g
    device = obs[next(iter(obs))].device
    current = repeat_rows(obs, g)
    texts = [text for text in instructions for _ in range(g)]
    played = _Played(starts, g)
    observations, trajectories, actions = [], [], []
    log_prob = torch.zeros(n, device=device)
    for c in range(chunks):
        if c:
            current = policy_inputs(
                base, np.stack(played.frames), np.stack(played.states), texts, device
            )
        sample = policy.head.sample(policy.encode_batch(current), noise, 1.0, start)
        raw = base.transforms.action(sample.actions.cpu().numpy())  # [n, K, A] robot units
        observe = c + 1 < chunks or reward.to_episode_end
        played.execute(range(n), raw, observe)
        observations.append(current)
        trajectories.append(sample.trajectory)
        log_prob += sample.log_prob
        actions.append(raw)
    while reward.to_episode_end and not played.over.all():
        live = np.flatnonzero(~played.over)
        inputs = policy_inputs(
            base, np.stack([played.frames[i] for i in live]),
            np.stack([played.states[i] for i in live]), [texts[i] for i in live], device,
        )  # fmt: skip
        chunk = policy.predict_chunk(*policy.inputs(inputs))  # the deployed chunk
        played.execute(live, base.transforms.action(chunk.cpu().numpy())[:, :REPLAN_EVERY], True)
    rewards, terms = candidate_rewards(
        played.success.reshape(b, g), played.dense.reshape(b, g), reward
    )
    return SimRollouts(
        observations,
        trajectories,
        log_prob,
        np.concatenate(actions, axis=1).reshape(b, g, -1, raw.shape[-1]),
        rewards,
        terms,
    )
