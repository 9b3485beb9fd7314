"""`vla-rft train-policy`: behaviour cloning of the VLA policy on recorded episodes.

    vla-rft train-policy --recipe training/cpu/policy.yaml [--set optim.steps=500 ...] [--resume]
    torchrun --nproc_per_node 2 -m vla_rft.training.train_policy --recipe ...   # data parallel

One loop, top to bottom: data windows (image, state, instruction, action chunk) -> the policy's
flow-matching (or Gaussian) loss -> AdamW with warm-up and cosine decay. Instructions are encoded
once by the frozen sentence encoder; their embeddings go into every checkpoint with the config
and the normalisation statistics, so `TorchPolicy.from_checkpoint` needs nothing else.
Runs write TensorBoard scalars, metrics.jsonl, curves.png and safetensors checkpoints to
`run_dir`; the RNG is re-seeded from the step, so a resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses
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
from vla_rft.contract.manifest import (
    ACTION_RANGE_KEY,
    EMBODIMENT_KEY,
    IMAGE_INPUT,
    INSTRUCTION_INPUT,
    INSTRUCTIONS_KEY,
    POLICY_CONFIG_KEY,
    STATE_INPUT,
    camera_input,
)
from vla_rft.data import WindowConfig, WindowDataset, build_datasets
from vla_rft.models.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from vla_rft.models.policy import PolicyConfig, VLAPolicy
from vla_rft.runtime.transforms import ImageTransform
from vla_rft.threads import adapt_threads, set_torch_threads
from vla_rft.training import distributed as dist
from vla_rft.training.optim import OptimConfig, clip_gradients, learning_rate
from vla_rft.training.tracking import RunLogger, plot_metrics

# --- config ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Which episodes to learn from."""

    roots: tuple[str, ...] = ("data/expert200",)
    """Directories of episodes (`vla-rft collect` output)."""
    val_fraction: float = 0.1
    """Share of episodes held out (by a stable hash of the name)."""
    episodes_per_task: int = 0
    """Use at most this many training episodes per task, first by name (0: all)."""


@dataclass(frozen=True)
class TrainPolicyConfig:
    """A behaviour-cloning run."""

    model: PolicyConfig = field(default_factory=PolicyConfig)
    """The policy (state_dim and action_dim are taken from the data)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The episodes."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(steps=3000, batch_size=64, lr=3e-4, warmup_steps=200)
    )
    """Optimiser and schedule; batch_size counts windows."""
    run_dir: str = "runs/policy/default"
    """Where checkpoints, logs and curves go."""
    augment_shift: int = 0
    """Random image shift of up to this many pixels during training (DrQ); 0: none."""
    seed: int = 0
    """Seed of initialisation, batch order, noise and augmentation."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""
    threads: int = 2
    """CPU threads per process (`vla_rft.threads.set_torch_threads`)."""
    log_every: int = 25
    """Steps between training-loss logs."""
    eval_every: int = 250
    """Steps between validation passes (and at the end)."""
    val_windows: int = 512
    """Validation windows per pass (a fixed subset)."""
    save_every: int = 500
    """Steps between checkpoints (and at the end)."""
    keep_last: int = 2
    """Checkpoints kept."""

    def __post_init__(self):
        if self.augment_shift < 0 or self.threads < 1:
            raise ValueError("augment_shift must be >= 0 and threads >= 1")
        if min(self.log_every, self.eval_every, self.save_every, self.val_windows) < 1:
            raise ValueError("log_every, eval_every, save_every and val_windows must be >= 1")


# --- batches ---------------------------------------------------------------------------------


def window_order(n: int, batch_size: int, step: int, seed: int, info: dist.DistInfo):
    """Window indices [batch_size] for `step` on this rank (batch_size: this rank's share): a
    fresh permutation per epoch, split between ranks, a pure function of the step (so resuming
    replays the same batches)."""
    per_rank = n // info.world_size
    per_epoch = max(per_rank // batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    order = np.random.default_rng((seed, epoch)).permutation(n)[info.rank :: info.world_size]
    return np.resize(order, per_epoch * batch_size)[pos * batch_size : (pos + 1) * batch_size]


def to_tensors(
    batch: dict,
    embeddings: dict[str, np.ndarray],
    images: ImageTransform,
    device,
    cameras: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """A data-set batch as the policy's input (images through the shared transform);
    `cameras`: the further cameras of the batch's camera_images, in order."""
    arrays = {
        IMAGE_INPUT: images(batch["image"][:, -1]),  # [B, 3, S, S] float in [-1, 1]
        INSTRUCTION_INPUT: np.stack([embeddings[t] for t in batch["instruction"]]),  # [B, E]
        STATE_INPUT: batch["state"],  # [B, S] normalised
        "action": batch["action"],  # [B, K, A] normalised
        "action_pad": batch["action_pad"],  # [B, K]
        **{camera_input(c): images(batch["camera_images"][:, i]) for i, c in enumerate(cameras)},
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def random_shift(image: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image [B, 3, S, S] by up to `pad` pixels, edges replicated."""
    if pad == 0:
        return image
    s = image.shape[-1]
    padded = torch.nn.functional.pad(image, (pad,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, image.shape[0])).tolist()
    return torch.stack([p[:, y : y + s, x : x + s] for p, x, y in zip(padded, dx, dy, strict=True)])


def subset_per_task(train: WindowDataset, index, per_task: int, config: WindowConfig):
    """The same data set restricted to the first `per_task` episodes of each task."""
    if per_task <= 0:
        return train
    names = set(train.episode_names)
    chosen: dict[str, list[int]] = {}
    for i, ep in enumerate(index.episodes):
        if ep.name in names and len(chosen.setdefault(ep.meta["task"], [])) < per_task:
            chosen[ep.meta["task"]].append(i)
    ids = sorted(i for task_ids in chosen.values() for i in task_ids)
    return WindowDataset(index, ids, config, train.stats)


@torch.no_grad()
def validate(policy: VLAPolicy, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Flow (or MSE) loss and the deterministic chunk's error on held-out windows."""
    policy.eval()
    loss, _ = policy(batch)
    chunk = policy.predict_chunk(*policy.inputs(batch))
    valid = (~batch["action_pad"]).float()[..., None]  # [B, K, 1]
    mse = (((chunk - batch["action"]) ** 2) * valid).sum() / (valid.sum() * chunk.shape[-1])
    policy.train()
    return {"loss/val": loss.item(), "action_mse/val": mse.item()}


# --- training --------------------------------------------------------------------------------


def default_text_encoder():
    from vla_rft.models.policy.text_encoder import SentenceEncoder

    return SentenceEncoder()


def train(
    config: TrainPolicyConfig,
    resume: bool = False,
    progress: bool = True,
    *,
    make_policy: Callable[[PolicyConfig], VLAPolicy] = VLAPolicy,
    make_text_encoder: Callable[[], object] = default_text_encoder,
) -> Path:
    """Run behaviour cloning; returns the last checkpoint. `make_text_encoder()` returns an
    object with `encode(list[str]) -> [N, E]` (and optionally `fingerprint()`)."""
    info = dist.init_distributed(config.device)
    set_torch_threads(config.threads)
    run_dir = Path(config.run_dir)
    per_rank = dist.per_process(config.optim.batch_size, info)
    if not resume and latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds checkpoints: pass --resume or another run_dir")

    # --- data ------------------------------------------------------------------------------
    window = WindowConfig(
        action_horizon=config.model.chunk_size,
        image_size=config.model.image_size,
        val_fraction=config.data.val_fraction,
        cameras=config.model.further_cameras,
    )
    train_set, val_set, index = build_datasets(
        list(config.data.roots), window, progress=progress and info.is_main
    )
    train_set = subset_per_task(train_set, index, config.data.episodes_per_task, window)
    encoder = make_text_encoder()
    texts = sorted(set(train_set.instructions) | set(val_set.instructions if val_set else []))
    embeddings = dict(zip(texts, encoder.encode(texts), strict=True))
    images = ImageTransform(config.model.image_size)
    cameras = config.model.further_cameras
    val_batch = None
    if val_set is not None:
        val_idx = np.random.default_rng(config.seed).permutation(len(val_set))[: config.val_windows]
        val_batch = to_tensors(
            val_set.get_batch(np.sort(val_idx)), embeddings, images, info.device, cameras
        )

    # --- model and optimiser ---------------------------------------------------------------
    model_config = dataclasses.replace(
        config.model,
        state_dim=train_set.states.shape[1],
        action_dim=train_set.actions.shape[1],
        instruction_dim=len(next(iter(embeddings.values()))),
    )
    torch.manual_seed(config.seed)
    policy = make_policy(model_config).to(info.device)
    policy.head.sigma.requires_grad_(False)  # behaviour cloning has no signal for the noise scale
    optimizer = torch.optim.AdamW(
        policy.trainable_parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    start, seconds_before = 0, 0.0
    if resume and latest_checkpoint(run_dir) is not None:
        ckpt = load_checkpoint(run_dir, with_optimizer=True)
        load_weights(policy, ckpt)
        optimizer.load_state_dict(ckpt.optimizer)
        start, seconds_before = ckpt.step, ckpt.extra.get("train_seconds", 0.0)
    model = dist.wrap_ddp(policy, info)
    extra = {
        POLICY_CONFIG_KEY: to_dict(model_config),
        INSTRUCTIONS_KEY: {t: e.tolist() for t, e in embeddings.items()},
        ACTION_RANGE_KEY: [-1.0, 1.0],
        EMBODIMENT_KEY: index.embodiment(),
        "text_encoder": getattr(encoder, "fingerprint", lambda: "custom")(),
        "parameters": sum(p.numel() for p in policy.parameters()),
    }
    logger = RunLogger(run_dir, info)
    if info.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        print(
            f"policy: {extra['parameters'] / 1e6:.2f} M parameters, {config.model.head} head; "
            f"{len(train_set)} training windows from {len(train_set.episode_names)} episodes, "
            f"{info.world_size} process(es) on {info.device}"
        )

    def save(step: int, seconds: float) -> Path:
        return save_checkpoint(
            run_dir,
            step,
            policy,
            to_dict(config),
            train_set.stats.to_dict(),
            index.fingerprint(),
            optimizer_state=optimizer.state_dict(),
            extra={**extra, "train_seconds": seconds},
            keep_last=config.keep_last,
        )

    # --- loop ------------------------------------------------------------------------------
    policy.train()
    t0, last = time.perf_counter(), None
    bar = tqdm(
        range(start, config.optim.steps),
        disable=not (progress and info.is_main),
        initial=start,
        total=config.optim.steps,
    )
    for step in bar:
        adapt_threads()
        torch.manual_seed(config.seed + step * info.world_size + info.rank)
        idx = window_order(len(train_set), per_rank, step, config.seed, info)
        batch = to_tensors(train_set.get_batch(idx), embeddings, images, info.device, cameras)
        for key in (IMAGE_INPUT, *map(camera_input, cameras)):
            batch[key] = random_shift(batch[key], config.augment_shift)
        lr = learning_rate(step, config.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, _ = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(policy.trainable_parameters(), config.optim.grad_clip)
        optimizer.step()

        done = step + 1
        if done % config.log_every == 0 or done == config.optim.steps:
            loss_mean = dist.all_reduce_mean(loss, info)
            elapsed = time.perf_counter() - t0
            logger.log(
                done,
                {
                    "loss/train": loss_mean,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "steps_per_s": (done - start) / elapsed,
                },
            )
            bar.set_postfix(loss=f"{loss_mean:.4f}")
        if (
            info.is_main
            and val_batch is not None
            and (done % config.eval_every == 0 or done == config.optim.steps)
        ):
            logger.log(done, validate(policy, val_batch))
        if done % config.save_every == 0 or done == config.optim.steps:
            if info.is_main:
                last = save(done, seconds_before + time.perf_counter() - t0)
            dist.barrier(info)

    # --- wrap up ---------------------------------------------------------------------------
    if info.is_main:
        logger.close()
        plot_metrics(run_dir, ["loss/train", "loss/val", "action_mse/val"], run_dir / "curves.png")
        seconds = seconds_before + time.perf_counter() - t0
        print(f"trained to step {config.optim.steps} in {seconds:.0f} s; checkpoint {last}")
    dist.cleanup(info)
    return last or latest_checkpoint(run_dir)


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(
        "vla-rft train-policy",
        __doc__.split("\n")[0],
        "training/cpu/policy.yaml",
        "optim.steps=100",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(TrainPolicyConfig, args.recipe, args.set)
    except ValueError as err:  # ConfigError or a field's own check
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        train(config, resume=args.resume, progress=not args.quiet)
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
