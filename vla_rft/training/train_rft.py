"""`vla-rft rft`: VLA-RFT, GRPO fine-tuning of the policy inside the world model.

    vla-rft rft --recipe training/cpu/rft.yaml [--set optim.steps=100 ...] [--resume]
    torchrun --nproc_per_node 2 -m vla_rft.training.train_rft --recipe ...   # data parallel

One loop, top to bottom. Each iteration: B start states (frame, state, instruction and the next
K real actions of a real episode) -> the policy samples G stochastic chunks per start -> the
world model rolls every chunk out, and the episode's real chunk for the reference (world model
against world model, so its own errors cancel) -> verified reward -> group advantages -> one
clipped policy-gradient step on the action head and the sigma net (the backbone stays frozen),
with an entropy bonus, an optional KL to the base policy and a small flow-matching loss on the
real actions whose weight grows with the measured drift from the base policy.
Checkpoints are policy checkpoints (`vla-rft eval --policy`, `vla-rft export` take them).
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from vla_rft.contract.config import ConfigError, load_config, recipe_parser, to_dict
from vla_rft.contract.manifest import IMAGE_INPUT, INSTRUCTION_INPUT, INSTRUCTIONS_KEY, STATE_INPUT
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.data.normalization import NormStats
from vla_rft.models.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from vla_rft.models.policy import VLAPolicy
from vla_rft.models.policy.chunk_head import CHAIN_STARTS
from vla_rft.models.world_model.modeling_world_model import load_world_model
from vla_rft.models.world_model.proprio import ProprioModel, previous_actions
from vla_rft.rl import (
    ADVANTAGE_SCALES,
    LOG_PROB_REDUCTIONS,
    clipped_policy_loss,
    gaussian_entropy,
    group_advantages,
    groups_with_spread,
    kl_estimate,
    reduce_log_prob,
)
from vla_rft.rl.rewards import REWARD_TERMS, RewardConfig, verified_reward
from vla_rft.rollout.replay import EpisodeReplayer, check_replayable
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.threads import adapt_threads, set_torch_threads
from vla_rft.training import distributed as dist
from vla_rft.training.imagination import (
    full_chunk_windows,
    imagine,
    policy_inputs,
    reference_rollout,
)
from vla_rft.training.optim import OptimConfig, clip_gradients, learning_rate
from vla_rft.training.sim_rollouts import SIM_REWARD_TERMS, SimRewardConfig, simulate
from vla_rft.training.tracking import RunLogger, plot_metrics

# --- config ----------------------------------------------------------------------------------

BC_SCHEDULES = ("drift", "constant")
ROLLOUTS = ("world_model", "simulator")
REFERENCE_ACTIONS = {"executed": "action", "expert": "expert_action"}
"""reference_actions -> the start-state batch's key of the actions it names."""


@dataclass(frozen=True)
class GRPOConfig:
    """Group sampling and the policy update (defaults: the paper's)."""

    group_size: int = 16
    """G: chunks sampled per start state."""
    clip: float = 0.2
    """PPO ratio clip."""
    dual_clip: float = 3.0
    """Cap on the loss of negative-advantage samples, as a multiple of |A|."""
    sigma_lr: float = 1e-5
    """Peak learning rate of the sigma net, on the schedule of optim (optim.lr: the head's)."""
    entropy_weight: float = 0.003
    """Bonus on the entropy of the sampler's Gaussian steps."""
    kl_weight: float = 0.0
    """Weight of the k3 KL estimate to the base policy (0: off, as in the paper)."""
    pg_weight: float = 1.0
    """Weight of the clipped policy-gradient loss (0: a supervised control without the reward)."""
    bc_weight: float = 0.01
    """Flow-matching loss on the real actions at full drift."""
    bc_schedule: str = "drift"
    """'drift': BC weight grows with the drift up to bc_weight (the paper); 'constant': always."""
    drift_scale: float = 0.05
    """Drift (mean |chunk - base chunk|, normalised units) at which the BC weight is full."""
    chunks: int = 1
    """Policy chunks per imagined rollout (1: the paper; more: closed loop on imagined frames)."""
    log_prob_reduction: str = "mean"
    """'mean' (the released code) or 'sum' (runs before issue 18) over a chunk's S x K x A
    Gaussian terms, for the ratio, the KL and the entropy bonus."""
    chain_start: str = "zero"
    """x_0 of the sampled chains: 'zero' (the deployed chain's start) or 'noise' (N(0, I))."""
    advantage_scale: str = "group"
    """Advantages divided by each group's reward std ('group') or one std for the batch."""
    min_group_spread: float = 0.0
    """Groups whose reward std is below this are left out of the policy gradient (0: none)."""
    backbone_lr: float = 0.0
    """Peak lr of the observation encoder, which then learns from the same loss as the head, on
    the head's schedule (0: frozen, only the head and sigma net learn)."""
    update_epochs: int = 1
    """Optimiser steps on each batch of rollouts, the ratio's denominator fixed at the rollouts'
    log-probs (PPO's epochs; 1: the paper's on-policy step, where the clip never acts)."""
    skip_empty_batches: bool = False
    """Take no optimiser step where no group keeps a policy gradient (False: such a step still
    applies the BC and entropy terms, each a full Adam step on its own)."""

    def __post_init__(self):
        if self.group_size < 2 or self.chunks < 1:
            raise ValueError("need group_size >= 2 and chunks >= 1")
        if self.backbone_lr < 0:
            raise ValueError(f"backbone_lr must be >= 0, got {self.backbone_lr}")
        if self.update_epochs < 1:
            raise ValueError(f"update_epochs must be >= 1, got {self.update_epochs}")
        if self.sigma_lr < 0 or self.drift_scale <= 0:
            raise ValueError("sigma_lr must be >= 0 and drift_scale > 0")
        if self.pg_weight < 0 or self.bc_weight < 0:
            raise ValueError("pg_weight and bc_weight must be >= 0")
        choices = {
            "bc_schedule": BC_SCHEDULES,
            "log_prob_reduction": LOG_PROB_REDUCTIONS,
            "chain_start": CHAIN_STARTS,
            "advantage_scale": ADVANTAGE_SCALES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.min_group_spread < 0:
            raise ValueError(f"min_group_spread must be >= 0, got {self.min_group_spread}")


@dataclass(frozen=True)
class TrainRFTConfig:
    """A VLA-RFT run."""

    policy: str = "runs/policy/cpu"
    """Base policy: checkpoint or run directory (its latest)."""
    world_model: str = "runs/world_model/cpu"
    """World model: checkpoint or run directory."""
    data: tuple[str, ...] = ("data/expert200",)
    """Episode directories the start states come from (training split only)."""
    start_steps: int = 0
    """Start states only from each episode's first start_steps frames (1: the frame each
    collect-corrections takeover began at, the policy's own state); 0: from any frame."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            steps=400, batch_size=16, lr=1e-6, weight_decay=0.0, warmup_steps=20,
            final_lr_fraction=1.0,
        )
    )  # fmt: skip
    """Optimiser and schedule of the action head, one step per iteration; batch_size counts
    start states (B), lr is the head's peak learning rate."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    """Sampling and update."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The verified reward (rollouts: world_model)."""
    rollouts: str = "world_model"
    """Where the candidates are rolled out and scored: 'world_model' (VLA-RFT) or 'simulator'
    (the ceiling: MuJoCo from the recorded start states, reward from success and progress;
    start states must come from episodes recorded in the simulator)."""
    sim_reward: SimRewardConfig = field(default_factory=SimRewardConfig)
    """The simulator's reward (rollouts: simulator)."""
    reference_actions: str = "executed"
    """The real actions the reference rollout and the flow-matching regulariser use: 'executed'
    (what the robot did: the noisy expert in `collect --noise` data) or 'expert' (the scripted
    expert's clean actions, which `vla-rft collect` records beside them)."""
    run_dir: str = "runs/rft/default"
    """Where checkpoints, logs and curves go."""
    seed: int = 0
    """Seed of start-state sampling and of the sampler's noise."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""
    threads: int = 2
    """CPU threads per process."""
    log_every: int = 5
    """Iterations between logged scalars."""
    save_every: int = 50
    """Iterations between checkpoints (and at the end)."""
    keep_last: int = 2
    """Checkpoints kept."""

    def __post_init__(self):
        if self.start_steps < 0:
            raise ValueError(f"start_steps must be >= 0, got {self.start_steps}")
        if self.rollouts not in ROLLOUTS:
            raise ValueError(f"rollouts must be one of {ROLLOUTS}, got {self.rollouts!r}")
        if self.reference_actions not in REFERENCE_ACTIONS:
            raise ValueError(
                f"reference_actions must be one of {tuple(REFERENCE_ACTIONS)}, "
                f"got {self.reference_actions!r}"
            )


# --- the pieces of one iteration ------------------------------------------------------------


def sampler_entropy(
    policy: VLAPolicy, obs: dict[str, torch.Tensor], reduction: str = "sum"
) -> torch.Tensor:
    """Entropy of the sampler's Gaussian steps (a scalar): per step summed over the K x A
    dimensions ('sum') or averaged over them ('mean'), then averaged over steps and batch."""
    pooled = policy.encode_batch(obs).pooled
    head = policy.head
    steps = [
        head.sigma(pooled, pooled.new_full((len(pooled),), k / head.steps))
        for k in range(head.steps)
    ]  # S x [B, K, A]
    per_step = gaussian_entropy(torch.stack(steps, 1).flatten(2))  # [B, S]
    return reduce_log_prob(per_step, math.prod(head.chunk_shape), reduction).mean()


def check_start_frames(episodes, image_size: int, world_model: str) -> None:
    """Refuse start states whose frames were recorded smaller than the world model's
    image_size: upscaled, they are frames the world model never saw (ConfigError).

    episodes: `CachedEpisode`s; the recorded size is `meta["extra"]["image_size"]` as `vla-rft
    collect` writes it (episodes without it, e.g. imported ones, are not checked)."""
    recorded: dict[int, list[str]] = {}
    for episode in episodes:
        size = episode.meta.get("extra", {}).get("image_size")
        if size is not None and size < image_size:
            recorded.setdefault(int(size), []).append(episode.name)
    if recorded:
        found = "; ".join(
            f"{len(names)} at {size} px (e.g. {names[0]})" for size, names in recorded.items()
        )
        raise ConfigError(
            f"the world model {world_model} works at {image_size} px but start-state episodes "
            f"were recorded smaller: {found}. Take start states from episodes recorded at "
            f"{image_size} px (vla-rft collect --image-size {image_size}), e.g. the world "
            "model's own data"
        )


# --- training --------------------------------------------------------------------------------


def curve_keys(in_simulator: bool) -> list[str]:
    """The metrics curves.png plots, one panel each: the reward and its terms, the policy's
    distance from the base, and the group filter."""
    terms = SIM_REWARD_TERMS if in_simulator else REWARD_TERMS
    return [
        "reward/mean",
        "reward/std_in_group",
        *(f"reward/{name}" for name in terms),
        "policy/kl_to_base",
        "policy/action_error",
        "policy/entropy",
        "policy/clip_fraction",
        "lr/head",
        "grpo/dropped_groups",
        "grpo/empty_batches",
    ]


def train(
    config: TrainRFTConfig,
    resume: bool = False,
    progress: bool = True,
    *,
    make_policy: Callable[[str], TorchPolicy] = TorchPolicy.from_checkpoint,
    make_world_model: Callable[[str], tuple] = load_world_model,
) -> Path:
    """Fine-tune the policy in the world model; returns the last checkpoint."""
    info = dist.init_distributed(config.device)
    set_torch_threads(config.threads)
    g, optim = config.grpo, config.optim
    run_dir = Path(config.run_dir)
    per_rank = dist.per_process(optim.batch_size, info)
    if not resume and latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds checkpoints: pass --resume or another run_dir")

    # --- models ----------------------------------------------------------------------------
    base_ckpt = load_checkpoint(config.policy)
    base = make_policy(str(base_ckpt.path))
    policy = base.model.to(info.device).eval()  # eval: sampling and update see the same net
    if policy.config.further_cameras:
        raise ConfigError(
            f"{base_ckpt.path}: the policy sees the cameras {list(policy.config.cameras)}; the "
            "world model imagines only the main camera, so RFT takes one-camera policies"
        )
    reference_policy = copy.deepcopy(policy).eval().requires_grad_(False)  # the base, for KL
    in_simulator = config.rollouts == "simulator"
    world_model = wm_ckpt = wm_stats = replayer = None
    if not in_simulator:
        world_model, wm_ckpt = make_world_model(config.world_model)
        world_model = world_model.to(info.device).eval()
        wm_stats = NormStats.from_dict(wm_ckpt.norm_stats)
    chunk = policy.config.chunk_size
    log_prob_terms = g.chunks * policy.head.steps * math.prod(policy.head.chunk_shape)

    def reduced(total: torch.Tensor) -> torch.Tensor:
        return reduce_log_prob(total, log_prob_terms, g.log_prob_reduction)

    policy.freeze_backbone(frozen=g.backbone_lr == 0)
    policy.head.requires_grad_(True)  # includes the sigma net, frozen during behaviour cloning
    sigma_params = list(policy.head.sigma.parameters())
    head_params = [p for n, p in policy.head.named_parameters() if not n.startswith("sigma.")]
    backbone_params = [
        p for n, p in policy.named_parameters() if p.requires_grad and not n.startswith("head.")
    ]
    param_groups = [(head_params, optim.lr), (sigma_params, g.sigma_lr)]
    if backbone_params:
        param_groups.append((backbone_params, g.backbone_lr))
    peaks = [lr for _, lr in param_groups]
    trained = [p for params, _ in param_groups for p in params]
    optimizer = torch.optim.AdamW(
        [{"params": params, "lr": lr} for params, lr in param_groups],
        weight_decay=optim.weight_decay,
    )
    start, seconds_before = 0, 0.0
    if resume and latest_checkpoint(run_dir) is not None:
        ckpt = load_checkpoint(run_dir, with_optimizer=True)
        load_weights(policy, ckpt)
        optimizer.load_state_dict(ckpt.optimizer)
        start, seconds_before = ckpt.step, ckpt.extra.get("train_seconds", 0.0)

    # --- start states ----------------------------------------------------------------------
    window = WindowConfig(
        context_frames=1 if in_simulator else world_model.config.context_frames,
        action_horizon=chunk * g.chunks,
        image_size=policy.config.image_size if in_simulator else world_model.config.image_size,
        normalize=False,
    )
    train_set, _, index = build_datasets(
        list(config.data), window, progress=progress and info.is_main
    )
    if in_simulator:
        try:
            check_replayable(index.episodes)
        except ValueError as err:
            raise ConfigError(f"rollouts: simulator: {err}") from None
        replayer = EpisodeReplayer(window.image_size)
        metas = {e.name: e.meta for e in index.episodes}
    else:
        check_start_frames(index.episodes, window.image_size, str(wm_ckpt.path))
    real = REFERENCE_ACTIONS[config.reference_actions]  # the batch's key of the real actions
    if config.reference_actions == "expert" and not train_set.has_expert_actions.all():
        lacking = [n for n, has in zip(train_set.episode_names, train_set.has_expert_actions,
                                       strict=True) if not has]  # fmt: skip
        raise ConfigError(
            f"reference_actions: expert, but {len(lacking)} start-state episode(s) did not record "
            f"the expert's clean actions (e.g. {lacking[0]}); collect them again with this "
            "version of vla-rft collect, or use reference_actions: executed"
        )
    candidates = full_chunk_windows(train_set, chunk * g.chunks, config.start_steps)
    where = f" (each episode's first {config.start_steps} frames)" if config.start_steps else ""
    if len(candidates) < per_rank:
        raise ConfigError(
            f"only {len(candidates)} start states{where} in {', '.join(config.data)}, fewer than "
            f"the {per_rank} each process draws per step without replacement (its share of "
            f"batch_size {optim.batch_size}): lower batch_size, raise start_steps or add episodes"
        )
    proprio = previous = None  # the robot state in imagination, needed after the first chunk
    if g.chunks > 1 and not in_simulator:
        proprio = ProprioModel.fit(train_set.states, train_set.actions, train_set.ep_start)
        previous = previous_actions(train_set.actions, train_set.ep_start)  # [N, A]
    unknown = set(train_set.instructions) - set(base_ckpt.extra[INSTRUCTIONS_KEY])
    if unknown:
        raise ConfigError(f"the base policy was not trained on the instructions {sorted(unknown)}")

    logger = RunLogger(run_dir, info)
    extra = {
        **base_ckpt.extra,
        "rft": {
            "base_policy": str(base_ckpt.path),
            "rollouts": config.rollouts,
            **(
                {}
                if in_simulator
                else {
                    "world_model": str(wm_ckpt.path),
                    "world_model_data": wm_ckpt.data_fingerprint,
                }
            ),
        },
    }
    if info.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        trainable = sum(p.numel() for p in trained)
        trains = "head + sigma net" + (" + encoder" if backbone_params else "")
        print(
            f"RFT: {trainable / 1e6:.2f} M trainable parameters ({trains}); "
            f"{len(candidates)} start states{where} from {len(train_set.episode_names)} episodes; "
            f"B={optim.batch_size} x G={g.group_size} rollouts of {g.chunks} x {chunk} frames "
            f"per iteration in the {config.rollouts.replace('_', ' ')}, "
            f"{info.world_size} process(es) on {info.device}"
        )

    def save(step: int, seconds: float) -> Path:
        return save_checkpoint(
            run_dir,
            step,
            policy,
            base_ckpt.config,
            base_ckpt.norm_stats,
            index.fingerprint(),
            optimizer_state=optimizer.state_dict(),
            extra={**extra, "train_seconds": seconds},
            keep_last=config.keep_last,
        )

    # --- loop ------------------------------------------------------------------------------
    t0, last = time.perf_counter(), None
    dropped, since_log = 0, 0  # groups left out of the policy gradient since the last log
    empty = 0  # steps since the last log where no process kept a group
    bar = tqdm(
        range(start, optim.steps),
        disable=not (progress and info.is_main),
        initial=start,
        total=optim.steps,
    )
    for step in bar:
        adapt_threads()
        rng = np.random.default_rng((config.seed, step, info.rank))
        noise = torch.Generator().manual_seed(int(rng.integers(2**62)))
        picks = np.sort(rng.choice(candidates, per_rank, replace=False))
        batch = train_set.get_batch(picks)  # raw: "action" [B, chunks * K, A] robot units
        obs = policy_inputs(
            base, batch["image"][:, -1], batch["state"], batch["instruction"], info.device
        )

        # rollouts, rewards, advantages (no gradient)
        with torch.no_grad():
            if in_simulator:
                names = [train_set.episode_names[e] for e in batch["episode_index"]]
                starts = [
                    replayer.start(train_set, int(w), metas[name], name, slot)
                    for slot, (w, name) in enumerate(zip(picks, names, strict=True))
                ]
                rolled = simulate(
                    policy, base, starts, obs, batch["instruction"], g.group_size, g.chunks,
                    noise, config.sim_reward, g.chain_start,
                )  # fmt: skip
                rewards, terms = rolled.rewards, rolled.terms
            else:
                rolled = imagine(
                    policy,
                    base,
                    world_model,
                    wm_stats,
                    batch,
                    obs,
                    g.group_size,
                    g.chunks,
                    noise,
                    proprio,
                    None if previous is None else previous[picks],
                    start=g.chain_start,
                )
                reference = reference_rollout(world_model, batch["image"], batch[real], wm_stats)
                r = config.reward
                rewards, terms = verified_reward(
                    rolled.frames, reference, r.pixel_weight, r.perceptual_weight, r.perceptual
                )  # [B, G]
            keep = groups_with_spread(rewards, g.min_group_spread)  # [B]
            advantages = group_advantages(rewards, scale=g.advantage_scale, keep=keep)
            advantages = advantages.flatten().to(info.device)  # [B*G]
            kept_samples = keep.repeat_interleave(g.group_size).to(info.device)  # [B*G]
            dropped, since_log = dropped + int((~keep).sum()), since_log + 1
            no_gradient = dist.all_reduce_mean(float(keep.any()), info) == 0
            empty += int(no_gradient)
            base_log_prob = reduced(rolled.chain_log_prob(reference_policy))
            inputs = (obs[IMAGE_INPUT], obs[INSTRUCTION_INPUT], obs[STATE_INPUT])
            deterministic = policy.predict_chunk(*inputs)  # [B, K, A] normalised
            drift = (deterministic - reference_policy.predict_chunk(*inputs)).abs().mean()

        # update_epochs clipped policy-gradient steps on the head and the sigma net
        lrs = [learning_rate(step, optim, peak) for peak in peaks]
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        real_normalised = torch.from_numpy(
            base.transforms.action.normalizer.normalize(batch[real][:, :chunk])
        ).to(info.device)  # the first chunk's real actions [B, K, A]
        bc_coef = g.bc_weight
        if g.bc_schedule == "drift":
            bc_coef *= min(float(drift) / g.drift_scale, 1.0)
        clip_fractions = []
        for _ in range(g.update_epochs):
            log_prob = reduced(rolled.chain_log_prob(policy))  # [B*G]
            pg_loss, pg_stats = clipped_policy_loss(
                log_prob, reduced(rolled.log_prob), advantages, g.clip, g.dual_clip, kept_samples
            )
            entropy = sampler_entropy(policy, obs, g.log_prob_reduction)
            kl = kl_estimate(log_prob, base_log_prob, "k3").mean()
            bc_loss = policy.head.loss(
                policy.encode_batch(obs),
                real_normalised,
                torch.ones(real_normalised.shape[:2], dtype=torch.bool, device=info.device),
            )
            loss = (
                g.pg_weight * pg_loss
                - g.entropy_weight * entropy
                + g.kl_weight * kl
                + bc_coef * bc_loss.mean()
            )
            clip_fractions.append(float(pg_stats["clip_fraction"]))
            if no_gradient and g.skip_empty_batches:
                break  # logged, not applied
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(trained, info)
            clip_gradients(trained, optim.grad_clip)
            optimizer.step()

        done = step + 1
        if done % config.log_every == 0 or done == optim.steps:
            scalars = {
                "reward/mean": rewards.mean(),
                "reward/std_in_group": rewards.std(1).mean(),
                **{f"reward/{name}": term.mean() for name, term in terms.items()},
                "policy/kl_to_base": kl,
                "policy/drift": drift,
                "policy/action_error": (deterministic - real_normalised).abs().mean(),
                "policy/entropy": entropy,
                "policy/clip_fraction": float(np.mean(clip_fractions)),
                "loss/policy_gradient": pg_loss,
                "loss/bc": bc_loss.mean(),
                "lr/head": lrs[0],
                "lr/sigma": lrs[1],
                "time/s_per_step": (time.perf_counter() - t0) / (done - start),
            }
            scalars = {k: dist.all_reduce_mean(v, info) for k, v in scalars.items()}
            scalars["grpo/dropped_groups"] = info.world_size * dist.all_reduce_mean(
                dropped / since_log, info
            )  # per step, over all processes
            scalars["grpo/empty_batches"] = empty / since_log
            dropped, since_log, empty = 0, 0, 0
            logger.log(done, scalars)
            bar.set_postfix(
                reward=f"{scalars['reward/mean']:.4f}", kl=f"{scalars['policy/kl_to_base']:.2e}"
            )
        if done % config.save_every == 0 or done == optim.steps:
            if info.is_main:
                last = save(done, seconds_before + time.perf_counter() - t0)
            dist.barrier(info)

    # --- wrap up ---------------------------------------------------------------------------
    if replayer is not None:
        replayer.close()
    if info.is_main:
        logger.close()
        plot_metrics(
            run_dir,
            curve_keys(in_simulator),
            run_dir / "curves.png",
            title=f"VLA-RFT: {run_dir.name}",
        )
        seconds = seconds_before + time.perf_counter() - t0
        print(
            f"fine-tuned to step {optim.steps} in {seconds:.0f} s ({seconds / 60:.1f} min); "
            f"checkpoint {last}; curves {run_dir / 'curves.png'}"
        )
    weights = b"".join(p.detach().cpu().numpy().tobytes() for p in trained)
    digest = hashlib.sha256(weights).hexdigest()[:16]
    # the same on every rank: each averages the gradients of all
    print(f"rank {info.rank}: finished at step {optim.steps}, trained weights {digest}")
    dist.cleanup(info)
    return last or latest_checkpoint(run_dir)


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(
        "vla-rft rft", __doc__.split("\n")[0], "training/cpu/rft.yaml", "optim.steps=100"
    )
    parser.add_argument("--policy", help="base policy checkpoint or run (overrides the recipe)")
    parser.add_argument(
        "--world-model", help="world model checkpoint or run (overrides the recipe)"
    )
    args = parser.parse_args(argv)
    overrides = list(args.set)
    overrides += [f"policy={args.policy}"] if args.policy else []
    overrides += [f"world_model={args.world_model}"] if args.world_model else []
    try:
        config = load_config(TrainRFTConfig, args.recipe, overrides)
        train(config, resume=args.resume, progress=not args.quiet)
    except (ValueError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
