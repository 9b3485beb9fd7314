"""`vla-rft train-world-model`: pre-train the action-conditioned world model on episodes.

    vla-rft train-world-model --recipe training/cpu/world_model.yaml [--set optim.steps=500]
    torchrun --nproc_per_node 2 -m vla_rft.training.train_world_model --recipe ...

Each step samples windows (context frames at t, actions t .. t+T-1, real frames t+1 .. t+T),
rolls the model out open-loop for T steps and regresses every predicted frame on the real one;
frames past the end of an episode are masked out. Batches are drawn from a generator seeded by
(seed, step, rank), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
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
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.data.normalization import NormStats
from vla_rft.models import checkpoint as ckpt_io
from vla_rft.models.world_model import WorldModel, WorldModelConfig
from vla_rft.rl.image_metrics import MOVING_THRESHOLD, moved
from vla_rft.threads import adapt_threads, set_torch_threads
from vla_rft.training import distributed as dist
from vla_rft.training.optim import OptimConfig, clip_gradients, learning_rate, use_bf16
from vla_rft.training.stored_config import stored_config
from vla_rft.training.tracking import RunLogger, plot_metrics, read_metrics

# --- config ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Where the episodes are and how windows are cut."""

    roots: tuple[str, ...] = ("data/expert200",)
    """Directories of episodes."""
    horizon: int = 16
    """Open-loop steps per training window (actions applied, frames predicted)."""
    val_fraction: float = 0.1
    """Share of episodes held out (by a hash of the name, as the data set splits)."""

    def __post_init__(self):
        if not self.roots:
            raise ValueError("data.roots: give at least one directory of episodes")
        if self.horizon < 1:
            raise ValueError(f"data.horizon must be >= 1, got {self.horizon}")


@dataclass(frozen=True)
class TrainWorldModelConfig:
    """A world-model training run: model, data, optimiser and bookkeeping."""

    run_dir: str = "runs/world_model/default"
    """Where checkpoints, logs and curves go."""
    seed: int = 0
    """Seeds the model's initial weights and the batch order."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""
    threads: int = 2
    """CPU threads per process for torch."""
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """Architecture."""
    data: DataConfig = field(default_factory=DataConfig)
    """Episodes and windows."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            steps=2000, batch_size=16, lr=1e-3, warmup_steps=100, final_lr_fraction=0.05
        )
    )
    """Optimiser and schedule; batch_size counts windows."""
    l1_weight: float = 0.5
    """Weight of the L1 pixel loss added to the MSE (sharper frames)."""
    moving_weight: float = 0.0
    """Extra loss weight on the pixels that moved since the last context frame (the arm, the
    object): each counts 1 + moving_weight in the frame's weighted mean (0: all pixels alike)."""
    moving_threshold: float = MOVING_THRESHOLD
    """A pixel moved where a channel differs from the last context frame by more than this."""
    action_margin_weight: float = 0.0
    """Weight of a hinge asking each window's prediction under its real actions to beat, by
    action_margin_db of PSNR, its prediction under another window's actions (0: off; doubles
    the rollouts per step)."""
    action_margin_db: float = 2.0
    """The PSNR gap (dB, mean over a window's scored frames) the hinge asks for."""
    decoded_frames: int = 0
    """Frames of each window decoded and scored per step: the first and random others (0: all)."""
    bf16: bool = False
    """Forward and backward under bfloat16 autocast (GPUs, CPUs with AVX512-BF16 or AMX; on
    other CPUs float32 is used, with a warning: emulated bfloat16 is about 12x slower)."""
    log_every: int = 20
    """Steps between logged training scalars."""
    eval_every: int = 250
    """Steps between validation passes (and at the end)."""
    val_windows: int = 64
    """Fixed validation windows scored at each validation pass."""
    save_every: int = 500
    """Steps between checkpoints (and at the end)."""
    keep_last: int = 2
    """Checkpoints kept on disk."""
    init_from: str = ""
    """Fine-tune: start from this checkpoint (or run) instead of random weights, keeping its
    normalisation statistics; its model config must equal `model` ("" = from scratch)."""

    def __post_init__(self):
        for name in ("log_every", "eval_every", "val_windows", "save_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.decoded_frames < 0:
            raise ValueError(f"decoded_frames must be >= 0, got {self.decoded_frames}")
        if self.moving_weight < 0:
            raise ValueError(f"moving_weight must be >= 0, got {self.moving_weight}")
        if not 0 < self.moving_threshold < 1:
            raise ValueError(f"moving_threshold must be in (0, 1), got {self.moving_threshold}")
        if self.action_margin_weight < 0:
            raise ValueError(f"action_margin_weight must be >= 0, got {self.action_margin_weight}")
        if self.action_margin_db <= 0:
            raise ValueError(f"action_margin_db must be > 0, got {self.action_margin_db}")


# --- data --------------------------------------------------------------------------------------


def load_data(config: TrainWorldModelConfig, progress: bool, stats: NormStats | None = None):
    """Train and validation windows of (context frames, T actions, T future frames); `stats`
    fixes the normalisation (a fine-tuned model keeps its parent's)."""
    window = WindowConfig(
        context_frames=config.model.context_frames,
        action_horizon=config.data.horizon,
        future_frames=config.data.horizon,
        image_size=config.model.image_size,
        val_fraction=config.data.val_fraction,
    )
    train, val, index = build_datasets(list(config.data.roots), window, progress, stats)
    action_dim = train.actions.shape[1]
    if action_dim != config.model.action_dim:
        raise ConfigError(
            f"model.action_dim is {config.model.action_dim} but the data has {action_dim}"
        )
    return train, val, index


def window_starts(ds) -> np.ndarray:
    """Global step indices that have at least one real future frame (not an episode's last)."""
    last = np.zeros(len(ds), dtype=bool)
    last[ds.ep_end - 1] = True
    return np.flatnonzero(~last)


def to_tensors(batch: dict, device: torch.device):
    """-> context [N, C, 3, H, W], actions [N, T, A], target [N, T, 3, H, W], valid [N, T]."""

    def frames(x):  # uint8 [N, T, H, W, 3] -> float [N, T, 3, H, W] in [0, 1]
        return torch.from_numpy(x).to(device).permute(0, 1, 4, 2, 3).float() / 255

    return (
        frames(batch["image"]),
        torch.from_numpy(batch["action"]).to(device),
        frames(batch["future_image"]),
        torch.from_numpy(~batch["future_pad"]).to(device),
    )


def pixel_loss(
    pred, target, valid, l1_weight: float, last=None, moving_weight=0.0,
    moving_threshold=MOVING_THRESHOLD,
):  # fmt: skip
    """Mean over real frames of MSE + l1_weight * L1, each frame's a mean over its pixels in which
    a pixel that moved since `last` counts 1 + moving_weight; also the plain MSE per frame.

    pred, target [N, T, 3, H, W], valid [N, T] bool, last [N, 3, H, W] (the last context frame;
    needed when moving_weight > 0) -> (loss [], mse [N, T])."""
    diff = pred - target
    mse = diff.square().mean(dim=(2, 3, 4))  # [N, T]
    error = (diff.square() + l1_weight * diff.abs()).mean(dim=2)  # per pixel [N, T, H, W]
    if moving_weight > 0:
        frames = target.movedim(2, -1)  # image_metrics' channels-last layout
        reference = last.unsqueeze(1).movedim(2, -1).expand_as(frames)
        mask = moved(frames, reference, moving_threshold)[..., 0]  # [N, T, H, W]
        weight = 1 + moving_weight * mask.float()
        per_frame = (error * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
    else:
        per_frame = error.mean(dim=(2, 3))
    w = valid.float()
    return (per_frame * w).sum() / w.sum().clamp_min(1), mse


def action_margin_loss(mse_real, mse_other, valid, margin_db: float):
    """Hinge on each window's PSNR gap between another window's actions and its real ones:
    mean over windows of max(0, margin_db - gap), the gap being the mean over the window's real
    frames of 10 log10(mse_other / mse_real).

    mse_real, mse_other [N, T] (per-frame MSE against the real frames), valid [N, T] bool
    -> (loss [], gap [N] in dB)."""
    w = valid.float()
    ratio = mse_other.clamp_min(1e-10) / mse_real.clamp_min(1e-10)
    gap = (10 * torch.log10(ratio) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1)  # [N]
    scored = w.sum(dim=1) > 0
    return torch.relu(margin_db - gap)[scored].sum() / scored.sum().clamp_min(1), gap


def other_rows(tasks: list[str]) -> np.ndarray:
    """For each window of a batch, another window to borrow actions from: the next one (cyclic)
    of the same task, or the next one of any task where its task is alone. tasks [N] -> [N]."""
    n = len(tasks)
    if n < 2:
        raise ValueError(f"a counterfactual needs at least 2 windows per batch, got {n}")
    out = np.empty(n, dtype=np.int64)
    for i, task in enumerate(tasks):
        later = [(i + k) % n for k in range(1, n)]
        out[i] = next((j for j in later if tasks[j] == task), later[0])
    return out


def loss_terms(config: TrainWorldModelConfig, context: torch.Tensor) -> tuple:
    """pixel_loss's arguments after `valid` for this recipe and context [N, C, 3, H, W]."""
    return config.l1_weight, context[:, -1], config.moving_weight, config.moving_threshold


@torch.no_grad()
def validate(model: WorldModel, val, idx: np.ndarray, config, device) -> dict[str, float]:
    """Loss and PSNR at the first and last horizon step, next to repeating the last real frame."""
    model.eval()
    rows = {"loss": [], "mse": [], "base": [], "valid": []}
    for s in range(0, len(idx), 32):
        context, actions, target, valid = to_tensors(val.get_batch(idx[s : s + 32]), device)
        pred = model(context, actions)
        loss, mse = pixel_loss(pred, target, valid, *loss_terms(config, context))
        rows["loss"].append(loss.item() * len(context))
        rows["mse"].append(mse)
        rows["base"].append((context[:, -1:] - target).square().mean(dim=(2, 3, 4)))
        rows["valid"].append(valid)
    model.train()
    mse, base, valid = (torch.cat(rows[k]) for k in ("mse", "base", "valid"))
    out = {"loss/val": sum(rows["loss"]) / len(idx)}
    for h in sorted({1, config.data.horizon}):
        v = valid[:, h - 1]
        for name, m in (("model", mse), ("repeat_last", base)):
            out[f"val_psnr_h{h}/{name}"] = (
                (-10 * torch.log10(m[v, h - 1].clamp_min(1e-10))).mean().item()
            )
    return out


# --- training ----------------------------------------------------------------------------------


def train(
    config: TrainWorldModelConfig,
    resume: bool = False,
    progress: bool = True,
    *,
    make_world_model: Callable[[WorldModelConfig], WorldModel] = WorldModel,
) -> Path:
    """Train (or resume) a run; returns the final checkpoint's path (None on ranks other than 0)."""
    info = dist.init_distributed(config.device)
    set_torch_threads(config.threads)
    run_dir = Path(config.run_dir)
    per_rank = dist.per_process(config.optim.batch_size, info)
    if config.action_margin_weight > 0 and per_rank < 2:
        raise ConfigError(f"action_margin_weight needs >= 2 windows per process, got {per_rank}")
    parent = ckpt_io.load_checkpoint(config.init_from) if config.init_from else None
    if parent is not None and stored_config(TrainWorldModelConfig, parent).model != config.model:
        raise ConfigError(f"init_from {parent.path}: its model config differs from the recipe's")
    parent_stats = NormStats.from_dict(parent.norm_stats) if parent else None
    if not info.is_main:  # rank 0 fills the episode cache first, the others then read it
        dist.barrier(info)
    train_ds, val_ds, index = load_data(config, progress and info.is_main, parent_stats)
    if info.is_main:
        dist.barrier(info)
    starts = window_starts(train_ds)
    fingerprint = index.fingerprint()

    torch.manual_seed(config.seed)
    model = make_world_model(config.model).to(info.device)
    bf16 = use_bf16(config.bf16, info.device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    step = 0
    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise ConfigError(f"{run_dir} already holds checkpoints: pass --resume or another run_dir")
    if resume and latest is not None:
        ckpt = ckpt_io.load_checkpoint(latest, with_optimizer=True)
        if stored_config(TrainWorldModelConfig, ckpt).model != config.model:
            raise ConfigError(
                f"{latest}: its model config differs from the recipe's; cannot resume"
            )
        if ckpt.data_fingerprint != fingerprint and info.is_main:
            print(
                f"warning: resuming on different data than {latest} was trained on", file=sys.stderr
            )
        ckpt_io.load_weights(model, ckpt)
        if ckpt.optimizer is not None:
            optimizer.load_state_dict(ckpt.optimizer)
        step = ckpt.step
    elif parent is not None:
        ckpt_io.load_weights(model, parent)
    ddp_model = dist.wrap_ddp(model, info)
    logger = RunLogger(run_dir, info)
    if info.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    val_idx = None
    if val_ds is not None:
        val_starts = window_starts(val_ds)
        pick = np.random.default_rng(0).permutation(len(val_starts))[: config.val_windows]
        val_idx = np.sort(val_starts[pick])

    def save(at: int) -> Path | None:
        if not info.is_main:
            return None
        return ckpt_io.save_checkpoint(
            run_dir, at, model, to_dict(config), train_ds.stats.to_dict(), fingerprint,
            optimizer_state=optimizer.state_dict(), keep_last=config.keep_last,
            extra={"world_size": info.world_size, "train_windows": len(starts)},
        )  # fmt: skip

    if info.is_main:
        params = sum(p.numel() for p in model.parameters())
        print(
            f"world model: {params / 1e6:.2f} M parameters, latent {config.model.latent_size}x"
            f"{config.model.latent_size}; {len(starts)} training windows of "
            f"{config.data.horizon} steps; {info.world_size} process(es); run dir {run_dir}"
        )
    bar = tqdm(total=config.optim.steps, initial=step, disable=not (progress and info.is_main))
    model.train()
    tic = time.perf_counter()
    while step < config.optim.steps:
        adapt_threads()
        # batch [per_rank windows] drawn by (seed, step, rank)
        rng = np.random.default_rng([config.seed, step, info.rank])
        batch = train_ds.get_batch(np.sort(rng.choice(starts, per_rank)))
        context, actions, target, valid = to_tensors(batch, info.device)
        lr = learning_rate(step, config.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr

        horizon, keep = config.data.horizon, config.decoded_frames
        later = (1 + rng.permutation(horizon - 1)[: keep - 1]).tolist()
        steps = [0, *sorted(later)] if 0 < keep < horizon else None  # always the first frame
        if steps is not None:
            target, valid = target[:, steps], valid[:, steps]
        contrast = config.action_margin_weight > 0
        if contrast:  # one forward over the real actions and another window's, [2N, ...]
            other = torch.from_numpy(other_rows(batch["instruction"])).to(actions.device)
            context, actions = context.repeat(2, 1, 1, 1, 1), torch.cat([actions, actions[other]])
        with torch.autocast(info.device.type, torch.bfloat16, enabled=bf16):
            pred = ddp_model(context, actions, steps).float()  # [N (or 2N), T', 3, H, W]
        if contrast:
            pred, pred_other = pred.chunk(2)
            context = context[: len(pred)]
        loss, mse = pixel_loss(pred, target, valid, *loss_terms(config, context))
        if contrast:
            mse_other = (pred_other - target).square().mean(dim=(2, 3, 4))
            margin, gap = action_margin_loss(mse, mse_other, valid, config.action_margin_db)
            loss = loss + config.action_margin_weight * margin
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: the loss is {loss.item()}; lower optim.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        step += 1
        bar.update()

        if step % config.log_every == 0 or step == config.optim.steps:
            elapsed = time.perf_counter() - tic
            scalars = {
                "loss/train": dist.all_reduce_mean(loss.item(), info),
                "optim/lr": lr,
                "optim/grad_norm": grad_norm,
                "time/step_s": elapsed / config.log_every,
            }
            if contrast:
                scalars["loss/action_margin"] = dist.all_reduce_mean(margin.item(), info)
                scalars["train/action_gap_db"] = dist.all_reduce_mean(gap.mean().item(), info)
            logger.log(step, scalars)
            bar.set_postfix(loss=f"{scalars['loss/train']:.4f}")
            tic = time.perf_counter()
        if (
            val_idx is not None
            and info.is_main
            and (step % config.eval_every == 0 or step == config.optim.steps)
        ):
            logger.log(step, validate(model, val_ds, val_idx, config, info.device))
        if step % config.save_every == 0 or step == config.optim.steps:
            save(step)
        dist.barrier(info)
    bar.close()
    logger.close()
    if info.is_main:
        logged = {k for row in read_metrics(run_dir) for k in row}
        psnr = sorted(k for k in logged if k.startswith("val_psnr"))
        margin = [k for k in ("loss/action_margin", "train/action_gap_db") if k in logged]
        plot_metrics(run_dir, ["loss/train", "loss/val", *psnr, *margin], run_dir / "curves.png",
                     title=f"world model: {run_dir.name}")  # fmt: skip
    digest = hashlib.sha256(
        b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())
    ).hexdigest()[:16]
    print(f"rank {info.rank}: finished at step {step}, weights {digest}")
    dist.cleanup(info)
    return ckpt_io.latest_checkpoint(run_dir) if info.is_main else None


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(
        "vla-rft train-world-model",
        "Pre-train the action-conditioned world model (see docs/WORLD_MODEL.md).",
        "training/cpu/world_model.yaml",
        "optim.steps=100",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(TrainWorldModelConfig, args.recipe, args.set)
        path = train(config, resume=args.resume, progress=not args.quiet)
    except (ConfigError, ValueError, FileNotFoundError, ckpt_io.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if path is not None:
        print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
