"""`vla-rft eval-world-model`: open-loop rollouts of a trained world model on held-out episodes.

    vla-rft eval-world-model --checkpoint runs/world_model/cpu                  # its val split
    vla-rft eval-world-model --checkpoint runs/world_model/cpu --data data/expert_eval --split all

Windows start every `--stride` steps of every episode. From the real context frames at step s the
model predicts frames s+1 .. s+H under the episode's actions s .. s+H-1; step h is scored only on
windows whose frame s+h is real (episodes end at success, so long horizons have fewer windows;
the count per step is reported). Next to each prediction:

- repeat_last: the baseline that repeats the last real context frame;
- other_actions: the same start frames rolled out under the actions of another episode (same
  task when there is one) from the same step; real actions must match the real frames better.
  Its margin (PSNR under real minus under other actions) is the action-sensitivity number,
  over the whole frame and over the pixels that moved in the real episode (the arm, the object).

Writes metrics.json, psnr_per_step.png and strip.png (rows: real, predicted under real actions,
predicted under other actions) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from vla_rft.data import EpisodeIndex, WindowConfig, WindowDataset
from vla_rft.data.normalization import NormStats
from vla_rft.models.checkpoint import CheckpointError
from vla_rft.models.world_model import WorldModel, load_world_model
from vla_rft.rl.image_metrics import masked_psnr, moved, psnr, ssim
from vla_rft.threads import set_torch_threads

VARIANTS = ("model", "repeat_last", "other_actions")
METRICS = ("psnr", "psnr_moving", "ssim")
"""Per step and variant; psnr_moving: PSNR on the pixels that moved in the real episode since the
context frame (the arm, the object), so the static scene does not dilute the number that matters."""


def eval_windows(ds: WindowDataset, horizon: int, stride: int) -> list[tuple[int, int, int]]:
    """(global step index, episode, real future frames n <= horizon) for every start."""
    out = []
    for e, (start, end) in enumerate(zip(ds.ep_start, ds.ep_end, strict=True)):
        for s in range(start, end - 1, stride):
            out.append((int(s), e, int(min(horizon, end - 1 - s))))
    return out


def other_actions(ds: WindowDataset, windows, horizon: int, seed: int = 0) -> np.ndarray:
    """Actions [N, horizon, A] of another episode from the same step, same task if possible."""
    rng = np.random.default_rng(seed)
    lengths = ds.ep_end - ds.ep_start
    out = []
    for s, e, n in windows:
        step = s - ds.ep_start[e]
        long_enough = [o for o in range(len(lengths)) if o != e and lengths[o] > step + n]
        if not long_enough:  # then the other actions end early and their last one repeats
            long_enough = [o for o in range(len(lengths)) if o != e and lengths[o] > step]
        same_task = [o for o in long_enough if ds.tasks[o] == ds.tasks[e]]
        pool = same_task or long_enough or [e]
        o = pool[rng.integers(len(pool))]
        idx = np.minimum(ds.ep_start[o] + step + np.arange(horizon), ds.ep_end[o] - 1)
        out.append(ds.actions[idx])
    return np.stack(out)


def score_windows(model: WorldModel, ds: WindowDataset, windows, horizon: int, batch: int):
    """Per-window, per-step PSNR and SSIM [N, horizon] for each variant (NaN past the real end)."""
    n_win = len(windows)
    scores = {f"{m}/{v}": np.full((n_win, horizon), np.nan) for m in METRICS for v in VARIANTS}
    scores["moved_fraction"] = np.full((n_win, horizon), np.nan)
    others = other_actions(ds, windows, horizon)
    order = np.argsort([-w[2] for w in windows], kind="stable")  # long windows first
    for lo in range(0, n_win, batch):
        rows = order[lo : lo + batch]
        t = max(windows[i][2] for i in rows)
        b = ds.get_batch(np.array([windows[i][0] for i in rows]))
        actions = np.stack([b["action"][:, :t], others[rows, :t]], axis=1)  # [B, 2, t, A]
        pred = model.rollout(b["image"], actions)  # [B, 2, t, H, W, 3]
        real = torch.from_numpy(b["future_image"][:, :t]).float() / 255  # [B, t, H, W, 3]
        last = torch.from_numpy(b["image"][:, -1:]).float().expand_as(real) / 255
        mask = moved(real, last)  # [B, t, H, W, 1]
        fraction = mask.float().mean(dim=(-3, -2, -1)).numpy()
        for name, frames in (
            ("model", pred[:, 0]),
            ("repeat_last", last),
            ("other_actions", pred[:, 1]),
        ):
            values = {
                "psnr": psnr(frames, real).numpy(),
                "psnr_moving": masked_psnr(frames, real, mask).numpy(),
                "ssim": ssim(frames, real).numpy(),
            }
            for j, i in enumerate(rows):
                n = windows[i][2]
                for metric, v in values.items():
                    scores[f"{metric}/{name}"][i, :n] = v[j, :n]
                scores["moved_fraction"][i, :n] = fraction[j, :n]
    return scores


def action_margin(real: np.ndarray, other: np.ndarray, chunk: int) -> dict:
    """PSNR under the real actions [N, horizon] against under another episode's: the mean margin
    in dB, per chunk, and the fraction of windows whose mean MSE is lower under the real ones
    (windows without a score, NaN throughout, are left out)."""
    margin = real - other
    scored = np.isfinite(margin).any(axis=1)
    mse_real = np.nanmean(10 ** (-real[scored] / 10), axis=1)
    mse_other = np.nanmean(10 ** (-other[scored] / 10), axis=1)
    return {
        "psnr_margin_db": float(np.nanmean(margin)),
        "psnr_margin_db_per_chunk": [
            float(np.nanmean(margin[:, c : c + chunk])) for c in range(0, margin.shape[1], chunk)
        ],
        "real_better_fraction": float(np.mean(mse_real < mse_other)),
    }


def summarise(scores: dict, horizon: int, chunk: int) -> dict:
    """Means per step, the baseline verdict and the action-sensitivity margins (whole frame, and
    the pixels that moved)."""
    with warnings.catch_warnings():  # a step where no window's pixels moved has no psnr_moving
        warnings.simplefilter("ignore", RuntimeWarning)
        per_step = {k: np.nanmean(v, axis=0).tolist() for k, v in scores.items()}
        count = np.isfinite(scores["psnr/model"]).sum(axis=0)
        gap = np.array(per_step["psnr/model"]) - np.array(per_step["psnr/repeat_last"])
        whole = action_margin(scores["psnr/model"], scores["psnr/other_actions"], chunk)
        ssim_margin = np.nanmean(scores["ssim/model"] - scores["ssim/other_actions"])
        moving = action_margin(
            scores["psnr_moving/model"], scores["psnr_moving/other_actions"], chunk
        )
        moving["moved_pixel_fraction"] = float(np.nanmean(scores["moved_fraction"]))
    return {
        "horizon": horizon,
        "windows_per_step": count.tolist(),
        "per_step": per_step,
        "beats_repeat_last_every_step": bool((gap > 0).all()),
        "min_psnr_gain_over_repeat_last_db": float(gap.min()),
        "min_gain_at_step": int(gap.argmin()) + 1,
        "action_sensitivity": {**whole, "ssim_margin": float(ssim_margin)},
        "action_sensitivity_moving": moving,
    }


def table(summary: dict, chunk: int) -> str:
    ps, n = summary["per_step"], summary["windows_per_step"]
    lines = [
        "| step | windows | PSNR model | PSNR repeat-last | PSNR other actions "
        "| SSIM model | SSIM repeat-last | SSIM other actions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in sorted({1, *range(chunk, summary["horizon"] + 1, chunk), summary["horizon"]}):
        i = h - 1
        lines.append(
            f"| {h} | {n[i]} | {ps['psnr/model'][i]:.2f} | {ps['psnr/repeat_last'][i]:.2f} "
            f"| {ps['psnr/other_actions'][i]:.2f} | {ps['ssim/model'][i]:.3f} "
            f"| {ps['ssim/repeat_last'][i]:.3f} | {ps['ssim/other_actions'][i]:.3f} |"
        )
    a = summary["action_sensitivity"]
    gain, at = summary["min_psnr_gain_over_repeat_last_db"], summary["min_gain_at_step"]
    per_chunk = ", ".join(f"{m:+.2f}" for m in a["psnr_margin_db_per_chunk"])
    lines += [
        "",
        f"beats repeat-last at every step 1..{summary['horizon']}: "
        f"{summary['beats_repeat_last_every_step']} (smallest gain {gain:+.2f} dB at step {at})",
        f"action sensitivity: real actions beat other-episode actions by "
        f"{a['psnr_margin_db']:+.2f} dB PSNR ({a['ssim_margin']:+.3f} SSIM); real better in "
        f"{100 * a['real_better_fraction']:.0f}% of windows; per chunk (dB): {per_chunk}",
    ]
    m = summary["action_sensitivity_moving"]
    per_chunk = ", ".join(f"{v:+.2f}" for v in m["psnr_margin_db_per_chunk"])
    lines.append(
        f"... on the pixels that moved in the real episode ({100 * m['moved_pixel_fraction']:.1f}% "
        f"of them): {m['psnr_margin_db']:+.2f} dB; real better in "
        f"{100 * m['real_better_fraction']:.0f}% of windows; per chunk (dB): {per_chunk}"
    )
    return "\n".join(lines)


def save_strip(
    model, ds: WindowDataset, out: Path, episodes: int, horizon: int, every: int
) -> Path:
    """Real frames over predicted ones (real actions, then other-episode actions), from step 0."""
    picks = np.linspace(0, len(ds.ep_start) - 1, episodes).round().astype(int)
    blocks = []
    for e in dict.fromkeys(picks.tolist()):
        windows = [(int(ds.ep_start[e]), e, int(min(horizon, ds.ep_end[e] - ds.ep_start[e] - 1)))]
        n = windows[0][2]
        b = ds.get_batch(np.array([windows[0][0]]))
        acts = np.stack([b["action"][:, :n], other_actions(ds, windows, horizon)[:, :n]], axis=1)
        pred = (model.rollout(b["image"], acts)[0].numpy() * 255).round().astype(np.uint8)
        steps = list(range(0, n + 1, every))
        real = [b["image"][0, -1], *b["future_image"][0, :n]]
        rows = [real, [b["image"][0, -1], *pred[0]], [b["image"][0, -1], *pred[1]]]
        grid = np.concatenate([np.concatenate([r[k] for k in steps], axis=1) for r in rows], 0)
        blocks.append((ds.episode_names[e], steps, grid))
    width = max(g.shape[1] for _, _, g in blocks)
    scale = max(1, 128 // ds.images.shape[1])
    panels = []
    for name, steps, grid in blocks:
        grid = np.pad(grid, ((0, 0), (0, width - grid.shape[1]), (0, 0)))
        grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        label = np.full((18, grid.shape[1], 3), 255, np.uint8)
        text = (
            f"{name}: rows real / predicted (real actions) / predicted (other actions); "
            f"steps {steps[0]}..{steps[-1]} every {every}"
        )
        cv2.putText(label, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        panels += [label, grid]
    path = out / "strip.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(panels, 0), cv2.COLOR_RGB2BGR))
    return path


def plot_per_step(summary: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, summary["horizon"] + 1)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 3.5))
    titles = {"psnr": "PSNR", "psnr_moving": "PSNR on the pixels that moved", "ssim": "SSIM"}
    for ax, metric in zip(axes, METRICS, strict=True):
        for v in VARIANTS:
            ax.plot(steps, summary["per_step"][f"{metric}/{v}"], label=v.replace("_", " "))
        ax.set_xlabel("horizon step")
        ax.set_title(titles[metric])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    path = out / "psnr_per_step.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="vla-rft eval-world-model",
        description="Open-loop world-model rollouts on held-out episodes, against real frames.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint or run directory")
    p.add_argument(
        "--data", type=Path, nargs="+", help="episode directories (default: training data)"
    )
    p.add_argument(
        "--split", choices=("val", "all"), default="val", help="episodes to use (default: val)"
    )
    p.add_argument(
        "--horizon", type=int, default=64, help="predicted steps (default: 64 = 8 chunks of 8)"
    )
    p.add_argument(
        "--chunk", type=int, default=8, help="action chunk length for the table (default: 8)"
    )
    p.add_argument("--stride", type=int, default=8, help="steps between window starts (default: 8)")
    p.add_argument("--batch", type=int, default=32, help="windows per rollout call (default: 32)")
    p.add_argument(
        "--strip-episodes", type=int, default=4, help="episodes in strip.png (default: 4)"
    )
    p.add_argument("--strip-every", type=int, default=8, help="steps between strip columns")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--out", type=Path, help="output directory (default: <run>/eval-<data>-<split>)")
    args = p.parse_args(argv)
    if args.horizon < 1 or args.stride < 1 or args.batch < 1:
        p.error("--horizon, --stride and --batch must be >= 1")
    set_torch_threads(args.threads)
    try:
        model, ckpt = load_world_model(args.checkpoint)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ckpt.norm_stats is None:
        print(f"error: {ckpt.path} has no normalisation statistics", file=sys.stderr)
        return 2
    cfg = model.config
    roots = args.data or [Path(r) for r in ckpt.config["data"]["roots"]]
    try:
        index = EpisodeIndex(roots, image_size=cfg.image_size)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    val_fraction = ckpt.config["data"]["val_fraction"]
    ids = index.split(val_fraction)[1] if args.split == "val" else list(range(len(index)))
    if not ids:
        print(
            f"error: no {args.split} episodes under {', '.join(map(str, roots))}", file=sys.stderr
        )
        return 2
    window = WindowConfig(cfg.context_frames, args.horizon, args.horizon, cfg.image_size, 0.0)
    ds = WindowDataset(index, ids, window, NormStats.from_dict(ckpt.norm_stats))
    windows = eval_windows(ds, args.horizon, args.stride)
    print(
        f"{ckpt.path} (step {ckpt.step}): {len(ids)} {args.split} episodes, {len(windows)} windows"
    )

    scores = score_windows(model, ds, windows, args.horizon, args.batch)
    summary = summarise(scores, args.horizon, args.chunk)
    summary.update(checkpoint=str(ckpt.path), step=ckpt.step, episodes=ds.episode_names,
                   data=[str(r) for r in roots], split=args.split, stride=args.stride)  # fmt: skip
    out = args.out or ckpt.path.parent.parent / f"eval-{Path(roots[0]).name}-{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    print(table(summary, args.chunk))
    strip = save_strip(model, ds, out, args.strip_episodes, args.horizon, args.strip_every)
    print(f"\nwritten: {out / 'metrics.json'}, {plot_per_step(summary, out)}, {strip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
