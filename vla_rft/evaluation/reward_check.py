"""`vla-rft reward-check`: does the verified reward rank better action chunks higher?

    vla-rft reward-check --policy runs/policy/cpu --world-model runs/world_model/cpu \
        --data data/expert200 --starts 24 --out runs/reward_check

On held-out start states (validation episodes recorded by `vla-rft collect`), it scores in the
world model the expert's own chunk, the base policy's deterministic chunk, stochastic samples of
the base policy and random chunks, exactly as the fine-tuning stage does. Then it executes the
same chunks in the simulator from the same state (`vla_rft/rollout/replay.py`: the episode is
replayed from its seed up to the start step; a correction episode from `vla-rft
collect-corrections` through the policy's actions before the takeover), lets the base policy
finish the episode and records real success.
Reported: mean reward per kind of chunk, and the Spearman rank correlation between the reward
and real success (pooled, and within each start state's group, which is what GRPO's advantages
use). Also, inside each group of the policy's own chunks, the rank correlation between the reward
and closeness to the expert's actions: whether GRPO's advantages point towards the expert at all.
With `--chunks N` every candidate is N chunks long and the policy's candidates are imagined as
`vla-rft rft --set grpo.chunks=N` imagines them: closed loop on the world model's frames.
`--chain-start noise` samples the policy's chunks from x_0 ~ N(0, I), as `grpo.chain_start=noise`.
`--start-steps N` draws start states among each held-out episode's first N frames, as the rft
recipe's `start_steps` (`--start-steps 1`: episode starts only, the whole-episode recipe's).
Last, the gate before any RL on the reward (issue 18): within the policy's groups, Spearman with
real success above GATE_SPEARMAN and at least GATE_MIXED_FRACTION of the groups mixed; the same
test for Meta-World's own progress after the chunk bounds what a learned progress reward can do.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vla_rft.contract.constants import ACTION
from vla_rft.data import WindowConfig, build_datasets
from vla_rft.data.normalization import NormStats
from vla_rft.models.policy.chunk_head import CHAIN_STARTS
from vla_rft.models.world_model.modeling_world_model import load_world_model
from vla_rft.models.world_model.proprio import ProprioModel
from vla_rft.rl.rewards import RewardConfig
from vla_rft.rollout.replay import EpisodeReplayer, StartState
from vla_rft.runtime.chunk_broker import ChunkBroker, ChunkBrokerConfig
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.threads import set_torch_threads
from vla_rft.training.imagination import (
    full_chunk_windows,
    imagine,
    policy_inputs,
    score_chunks,
)

KINDS = ("expert", "policy", "policy_sample", "random")
GATE_SPEARMAN = 0.5
"""The gate before RL on a reward (issue 18): within the policy's own groups, the mean
Spearman(reward, real success) must exceed this ..."""
GATE_MIXED_FRACTION = 1 / 3
"""... and at least this fraction of the groups must have mixed outcomes (the rest carry no
success signal for GRPO's advantages)."""
REFERENCES = ("executed", "expert")
"""The expert chunk and the reference: the episode's executed actions or the expert's clean ones
(recorded by `vla-rft collect`), as `vla-rft rft --set reference_actions=...`."""


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # ties share their mean rank
            r[v == value] = r[v == value].mean()
        return r

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def candidate_chunks(
    real: np.ndarray,
    samples: int,
    rng: np.random.Generator,
    imagine_policy: Callable[[int, torch.Generator, float], np.ndarray],
) -> tuple[list[str], np.ndarray]:
    """Kinds and candidates [N, T, A] in robot units for one start state: the expert's real
    actions [T, A], the policy's as `imagine_policy(n, generator, noise_scale) -> [n, T, A]`
    imagines them (deterministic, then `samples` sampled), and two random sequences."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sampled = imagine_policy(samples, generator, 1.0)
    det = imagine_policy(1, generator, 0.0)[0]  # noise 0: the deployed deterministic chunks
    chunks = [real, det, *sampled, *rng.uniform(-1, 1, (2, *real.shape)).astype(np.float32)]
    kinds = ["expert", "policy", *["policy_sample"] * samples, "random", "random"]
    return kinds, np.stack(chunks).astype(np.float32)


def execute(start: StartState, chunk: np.ndarray, base: TorchPolicy) -> tuple[bool, float]:
    """From the recorded start state, run `chunk`, then let the base policy finish.

    Returns (success, Meta-World's dense reward right after the chunk)."""
    robot = start.robot
    obs = robot.restore(start.snapshot)
    done = success = False
    dense = 0.0
    for action in chunk:
        obs, success, done, info = robot.step(action)
        dense = info["reward"]
        if done:
            return success, dense
    broker = ChunkBroker(ChunkBrokerConfig(replan_every=base.model.config.chunk_size))
    while not done:
        if broker.needs_chunk():
            broker.add_chunk(base.infer(obs)[ACTION])
        obs, success, done, _ = robot.step(broker.next_action())
    return success, dense


def reward_check(
    policy_path,
    world_model_path,
    data,
    starts: int,
    samples: int,
    seed: int,
    max_steps: int = 150,
    progress: bool = True,
    chunks: int = 1,
    chain_start: str = "zero",
    reference: str = "executed",
    start_steps: int = 0,
) -> dict:
    if start_steps < 0:
        raise ValueError(f"start_steps must be >= 0, got {start_steps}")
    if chunks < 1 or starts < 1 or samples < 1:
        raise ValueError(
            f"chunks, starts and samples must be >= 1, got {chunks}, {starts}, {samples}"
        )
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if chain_start not in CHAIN_STARTS:
        raise ValueError(f"chain_start must be one of {CHAIN_STARTS}, got {chain_start!r}")
    base = TorchPolicy.from_checkpoint(policy_path)
    world_model, wm_ckpt = load_world_model(world_model_path)
    wm_stats = NormStats.from_dict(wm_ckpt.norm_stats)
    chunk = base.model.config.chunk_size
    window = WindowConfig(
        context_frames=world_model.config.context_frames,
        action_horizon=chunk * chunks,
        image_size=world_model.config.image_size,
        normalize=False,
        val_fraction=0.1,
    )
    train, val, index = build_datasets(list(data), window)
    if val is None:
        raise ValueError("no validation episodes: the check needs held-out start states")
    if reference == "expert" and not val.has_expert_actions.all():
        raise ValueError(
            "--reference expert: some held-out episodes did not record the expert's clean "
            "actions; collect them with this version of vla-rft collect"
        )
    proprio = ProprioModel.fit(train.states, train.actions, train.ep_start) if chunks > 1 else None
    rng = np.random.default_rng(seed)
    windows = full_chunk_windows(val, chunk * chunks, start_steps)
    if not len(windows):
        raise ValueError(
            f"no held-out start state has {chunk * chunks} recorded actions after it"
            + (f" among its episode's first {start_steps} frames" if start_steps else "")
        )
    picks = np.sort(rng.choice(windows, min(starts, len(windows)), replace=False))
    metas = {e.name: e.meta for e in index.episodes}
    replayer = EpisodeReplayer(val.images.shape[1], max_steps)
    rows = []
    for i in tqdm(picks, desc="start states", disable=not progress):
        batch = val.get_batch(np.array([i]))
        name = val.episode_names[batch["episode_index"][0]]
        meta, t = metas[name], int(batch["step"][0])
        first = val.ep_start[batch["episode_index"][0]]
        episode_actions = val.actions[first : first + t]  # raw actions before the start step
        obs = policy_inputs(
            base, batch["image"][:, -1], batch["state"], batch["instruction"], "cpu"
        )
        previous = episode_actions[-1:] if t else np.zeros((1, batch["action"].shape[-1]))

        def imagine_policy(n, generator, noise_scale, batch=batch, obs=obs, previous=previous):
            return imagine(
                base.model, base, world_model, wm_stats, batch, obs, n, chunks, generator,
                proprio, previous, noise_scale, chain_start,
            ).actions[0]  # fmt: skip

        real = batch["expert_action" if reference == "expert" else "action"]
        kinds, candidates = candidate_chunks(real[0], samples, rng, imagine_policy)
        rewards, _ = score_chunks(
            world_model,
            batch["image"],
            torch.from_numpy(candidates)[None],
            torch.from_numpy(real),
            wm_stats,
            RewardConfig(),
        )
        start = replayer.start(val, int(i), meta, name)
        for kind, chunk_actions, reward in zip(kinds, candidates, rewards[0].tolist(), strict=True):
            success, dense = execute(start, chunk_actions, base)
            rows.append(
                {
                    "start": int(i),
                    "episode": name,
                    "step": t,
                    "kind": kind,
                    "reward": reward,
                    "success": bool(success),
                    "dense_reward": dense,
                    "action_error": float(np.abs(chunk_actions - candidates[0]).mean()),
                }
            )
    replayer.close()
    return summarize(rows)


def within_starts(
    rows: list[dict],
    kinds: tuple[str, ...],
    against: Callable[[dict], float] = lambda r: r["success"],
    score: str = "reward",
) -> list[float]:
    """Spearman(row[score], against(row)) inside each start state's chunks of `kinds`, for the
    starts where both vary (success: where those chunks have mixed outcomes)."""
    out = []
    for start in sorted({r["start"] for r in rows}):
        group = [r for r in rows if r["start"] == start and r["kind"] in kinds]
        rho = spearman(
            np.array([r[score] for r in group]), np.array([against(r) for r in group], float)
        )
        if np.isfinite(rho):
            out.append(rho)
    return out


def gate(rows: list[dict], kinds: tuple[str, ...]) -> dict:
    """Whether RL on this reward is worth running (GATE_SPEARMAN, GATE_MIXED_FRACTION), over
    the groups of `kinds`; and the same test for the simulator's own progress after the chunk
    (Meta-World's dense reward), which bounds any learned progress reward."""
    outcomes: dict[int, set[bool]] = {}
    for r in rows:
        if r["kind"] in kinds:
            outcomes.setdefault(r["start"], set()).add(r["success"])
    mixed = sum(len(o) > 1 for o in outcomes.values())
    mixed_fraction = mixed / len(outcomes) if outcomes else 0.0
    enough = mixed_fraction >= GATE_MIXED_FRACTION - 1e-9
    rho, rho_progress = (
        float(np.mean(v)) if v else float("nan")
        for v in (within_starts(rows, kinds), within_starts(rows, kinds, score="dense_reward"))
    )
    return {
        "groups": len(outcomes),
        "mixed_fraction": mixed_fraction,
        "spearman": rho,
        "passed": bool(enough and rho > GATE_SPEARMAN),
        "progress_spearman": rho_progress,
        "progress_passed": bool(enough and rho_progress > GATE_SPEARMAN),
    }


def summarize(rows: list[dict]) -> dict:
    reward = np.array([r["reward"] for r in rows])
    success = np.array([r["success"] for r in rows], float)
    dense = np.array([r["dense_reward"] for r in rows])
    within = within_starts(rows, KINDS)
    policy_kinds = ("policy", "policy_sample")
    group = within_starts(rows, policy_kinds)  # what GRPO's advantages see
    closeness = within_starts(rows, policy_kinds, lambda r: -r["action_error"])
    by_kind = {
        k: {
            "chunks": int(sum(r["kind"] == k for r in rows)),
            "mean_reward": float(np.mean([r["reward"] for r in rows if r["kind"] == k])),
            "success_rate": float(np.mean([r["success"] for r in rows if r["kind"] == k])),
            "action_error": float(np.mean([r["action_error"] for r in rows if r["kind"] == k])),
        }
        for k in KINDS
        if any(r["kind"] == k for r in rows)
    }
    return {
        "by_kind": by_kind,
        "spearman_reward_success": spearman(reward, success),
        "spearman_reward_dense_reward": spearman(reward, dense),
        "spearman_within_start_mean": float(np.mean(within)) if within else float("nan"),
        "starts_with_mixed_outcomes": len(within),
        "spearman_within_policy_group_mean": float(np.mean(group)) if group else float("nan"),
        "policy_groups_with_mixed_outcomes": len(group),
        "spearman_within_policy_group_reward_closeness": (
            float(np.mean(closeness)) if closeness else float("nan")
        ),
        "policy_groups": len(closeness),
        "gate": gate(rows, policy_kinds),
        "rows": rows,
    }


def markdown(summary: dict) -> str:
    lines = [
        "| chunk | n | mean verified reward | real success after it | mean abs. action error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, s in summary["by_kind"].items():
        lines.append(
            f"| {kind} | {s['chunks']} | {s['mean_reward']:.4f} | {100 * s['success_rate']:.0f}% "
            f"| {s['action_error']:.3f} |"
        )
    lines += [
        "",
        f"Spearman(reward, real success), pooled: {summary['spearman_reward_success']:.3f}",
        f"Spearman(reward, success) within a start state, mean over the "
        f"{summary['starts_with_mixed_outcomes']} starts with mixed outcomes: "
        f"{summary['spearman_within_start_mean']:.3f}",
        f"... among the policy's own chunks only (a GRPO group), mean over the "
        f"{summary['policy_groups_with_mixed_outcomes']} groups with mixed outcomes: "
        f"{summary['spearman_within_policy_group_mean']:.3f}",
        f"Spearman(reward, closeness to the expert's actions) among the policy's own chunks, "
        f"mean over {summary['policy_groups']} groups: "
        f"{summary['spearman_within_policy_group_reward_closeness']:.3f}",
        f"Spearman(reward, Meta-World dense reward after the chunk): "
        f"{summary['spearman_reward_dense_reward']:.3f}",
        "",
        _gate_line(summary["gate"]),
    ]
    return "\n".join(lines)


def _gate_line(g: dict) -> str:
    def verdict(passed: bool) -> str:
        return "PASS" if passed else "FAIL"

    return (
        f"gate for RL: {verdict(g['passed'])} (within the policy's groups: Spearman(reward, "
        f"success) {g['spearman']:.3f}, must be > {GATE_SPEARMAN}; groups with mixed outcomes "
        f"{100 * g['mixed_fraction']:.0f}% of {g['groups']}, must be >= "
        f"{100 * GATE_MIXED_FRACTION:.0f}%). The simulator's own progress after the chunk, the "
        f"best a learned progress reward can do: {verdict(g['progress_passed'])} (Spearman "
        f"{g['progress_spearman']:.3f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vla-rft reward-check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--policy", required=True, help="base policy checkpoint or run")
    parser.add_argument("--world-model", required=True, help="world model checkpoint or run")
    parser.add_argument("--data", nargs="+", default=["data/expert200"], help="episode directories")
    parser.add_argument("--starts", type=int, default=24, help="held-out start states (default 24)")
    parser.add_argument(
        "--samples", type=int, default=6, help="policy samples per start (default 6)"
    )
    parser.add_argument(
        "--chunks",
        type=int,
        default=1,
        help="chunks per candidate; the policy's are imagined closed loop (default 1)",
    )
    parser.add_argument(
        "--chain-start",
        choices=CHAIN_STARTS,
        default="zero",
        help="x_0 of the policy's sampled chains, as grpo.chain_start (default zero)",
    )
    parser.add_argument(
        "--reference",
        choices=REFERENCES,
        default="executed",
        help="the expert's chunk and the reference rollout: the executed (noisy) actions or the "
        "expert's clean ones, as reference_actions in the rft recipe (default executed)",
    )
    parser.add_argument(
        "--start-steps",
        type=int,
        default=0,
        help="start states only among each held-out episode's first N frames, as the rft "
        "recipe's start_steps (default 0: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/reward_check"))
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    set_torch_threads(2)
    try:
        summary = reward_check(
            args.policy,
            args.world_model,
            args.data,
            args.starts,
            args.samples,
            args.seed,
            progress=not args.quiet,
            chunks=args.chunks,
            chain_start=args.chain_start,
            reference=args.reference,
            start_steps=args.start_steps,
        )
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reward_check.json").write_text(json.dumps(summary, indent=1))
    (args.out / "reward_check.md").write_text(markdown(summary) + "\n")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
