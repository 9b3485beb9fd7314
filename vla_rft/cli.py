"""`vla-rft`: the command line of the whole pipeline. Each subcommand is a thin layer over the
library; `vla-rft <command> --help` explains its options."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vla_rft.contract.config import comma_list
from vla_rft.contract.constants import SIM_EMBODIMENT, SIM_WRIST_EMBODIMENT
from vla_rft.sim.spec import SIM_IMAGE_SIZE

# --- collect ---------------------------------------------------------------------------------


def _add_collect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tasks",
        type=comma_list,
        default=("reach-v3", "push-v3"),
        help="comma-separated Meta-World v3 tasks (default: reach-v3,push-v3)",
    )
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (default: 10)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("data/episodes"),
        help="directory for the episodes (default: data/episodes)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    p.add_argument(
        "--image-size",
        type=int,
        default=SIM_IMAGE_SIZE,
        help="camera image size (default: %(default)s)",
    )
    p.add_argument(
        "--max-steps", type=int, default=150, help="step limit per episode (default: 150)"
    )
    p.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="std of Gaussian noise on the expert's actions, for diversity (default: 0)",
    )
    p.add_argument(
        "--perturb",
        default="none",
        choices=("none", "object", "goal", "robot_init"),
        help="start-state perturbation (default: none)",
    )
    p.add_argument(
        "--embodiment",
        default=SIM_EMBODIMENT,
        help="the simulated robot's spec, which names the cameras recorded: "
        f"{SIM_WRIST_EMBODIMENT} adds the wrist camera (default: %(default)s)",
    )


def cmd_collect(args) -> int:
    from vla_rft.rollout.collect import CollectConfig, collect

    config = CollectConfig(
        out=args.out,
        tasks=args.tasks,
        episodes_per_task=args.episodes,
        seed=args.seed,
        image_size=args.image_size,
        max_steps=args.max_steps,
        action_noise=args.noise,
        perturbation=args.perturb,
        embodiment=args.embodiment,
    )
    summary = collect(config, progress=not args.quiet)
    print(f"\nExpert episodes in {config.out}\n")
    print(summary.table())
    return 0


# --- episodes --------------------------------------------------------------------------------


def _relabel(store, path: Path, args) -> int:
    if args.outcome is None:
        print("error: `episodes label EPISODE success|failure [--note TEXT]`", file=sys.stderr)
        return 2
    import getpass

    try:
        before = store.read_episode_meta(path).success
        meta = store.relabel_episode(path, args.outcome == "success", args.note, getpass.getuser())
    except store.EpisodeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{path.name}: success {before} -> {meta.success} ({len(meta.extra['labels'])} relabel(s) "
        f"in {path / 'labels.jsonl'}; the recording is unchanged)"
    )
    return 0


def _model_column(model) -> str:
    """The registry version (or stand-in) that drove an episode, from its extra.model."""
    if not isinstance(model, dict):
        return "-"
    return "stand-in" if model.get("standin") else str(model.get("version") or model.get("path"))


def cmd_episodes(args) -> int:
    from vla_rft.data import episode_store as store

    root = args.dir
    if not root.is_dir():
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    if args.action == "label":
        return _relabel(store, root, args)
    if args.outcome:
        print("error: an outcome is given only to `episodes label`", file=sys.stderr)
        return 2
    if args.action == "recover":
        todo = [(store.recover_episode, p) for p in store.list_partial_episodes(root)]
        todo += [(store.salvage_truncated_episode, p) for p in store.list_truncated_episodes(root)]
        if not todo:
            print(f"no interrupted episodes in {root}")
        failed = 0
        for recover, path in todo:
            try:
                out, report = recover(path)
                print(report.summary() + ("" if report.quarantined else f" -> {out.name}"))
            except store.EpisodeError as err:
                failed += 1
                print(f"cannot recover: {err}", file=sys.stderr)
        return 1 if failed else 0

    bad, unfit, corrupt, without_crcs = 0, 0, 0, 0
    rows = [
        "| episode | task | steps | success | source | model | MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in store.list_episodes(root):
        try:
            if args.action == "check":
                episode, crcs = store.read_episode_verified(path)
                meta, steps = episode.meta, len(episode)
                without_crcs += crcs.verified == 0
                if problems := episode.problems():
                    unfit += 1
                    rows.append(f"| {path.name} | unfit: {'; '.join(problems)} | {steps} | | | | |")
                    continue
            else:
                meta, steps = store.read_episode_meta(path), store.episode_steps(path)
        except store.EpisodeError as err:
            bad += 1
            corrupt += isinstance(err, store.EpisodeChecksumError)
            rows.append(f"| {path.name} | error: {err.reason} | | | | | |")
            continue
        size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        rows.append(
            f"| {path.name} | {meta.task} | {steps} | {meta.success} | {meta.source} | "
            f"{_model_column(meta.extra.get('model'))} | {size:.2f} |"
        )
    print("\n".join(rows))
    partial = store.list_partial_episodes(root)
    print(
        f"\n{len(rows) - 2} episodes, {bad} unreadable"
        + (f" ({corrupt} checksum mismatch)" if corrupt else "")
        + (f", {unfit} unfit for training" if unfit else "")
        + f", {len(partial)} interrupted"
        + (" (run `vla-rft episodes recover DIR`)" if partial else "")
        + (
            f"; {without_crcs} without chunk CRCs (written before CRCs: read, not verified)"
            if without_crcs
            else ""
        )
    )
    return 1 if bad or unfit else 0


# --- dataset ---------------------------------------------------------------------------------


def dataset_summary(roots, image_size: int | None, horizon: int, progress: bool = True) -> str:
    from vla_rft.data.dataset import WindowConfig, build_datasets

    start = time.perf_counter()
    config = WindowConfig(action_horizon=horizon, image_size=image_size)
    train, val, index = build_datasets(roots, config, progress=progress)
    built = time.perf_counter() - start
    start = time.perf_counter()
    batches = sum(1 for _ in train.iter_batches(256))
    epoch = time.perf_counter() - start
    lines = [
        f"episodes: {len(index)} ({len(train.episode_names)} train, "
        f"{len(val.episode_names) if val else 0} validation; {len(index.skipped)} unreadable)",
        f"windows: {len(train)} train, {len(val) if val else 0} validation; "
        f"image {train.images.shape[1]}x{train.images.shape[2]}, action chunk {horizon}",
        f"tasks: {', '.join(sorted(set(train.tasks)))}",
        f"state mean {[round(x, 3) for x in train.stats.state.mean]}",
        f"action mean {[round(x, 3) for x in train.stats.action.mean]}, "
        f"std {[round(x, 3) for x in train.stats.action.std]}",
        f"indexed in {built:.1f} s; one epoch of {batches} batches of 256 read in {epoch:.2f} s",
        f"data fingerprint {index.fingerprint()[:16]}",
    ]
    for name, reason in index.skipped.items():
        lines.append(f"skipped {name}: {reason}")
    return "\n".join(lines)


def cmd_dataset(args) -> int:
    print(dataset_summary(args.dirs, args.image_size, args.horizon, progress=not args.quiet))
    return 0


# --- stage commands --------------------------------------------------------------------------

STAGE_COMMANDS = {
    "quickstart": (
        "vla_rft.pipeline.quickstart",
        "the whole loop on the simulated robot, to an HTML report (about 17 min on 2 cores)",
    ),
    "flywheel": (
        "vla_rft.pipeline.flywheel",
        "learn from new episodes: fine-tune, export, gate, register a model version",
    ),
    "collect-corrections": (
        "vla_rft.rollout.corrections",
        "the policy drives, the expert takes over where it fails; the takeovers are recorded",
    ),
    "models": ("vla_rft.pipeline.models_command", "list, promote (roll back) model versions"),
    "train-world-model": ("vla_rft.training.train_world_model", "pre-train the world model"),
    "eval-world-model": (
        "vla_rft.evaluation.eval_world_model",
        "open-loop world-model rollouts on held-out episodes",
    ),
    "train-policy": ("vla_rft.training.train_policy", "pre-train the policy (behaviour cloning)"),
    "eval": ("vla_rft.evaluation.eval_policy", "closed-loop policy evaluation in the simulator"),
    "rft": ("vla_rft.training.train_rft", "VLA-RFT: GRPO fine-tuning inside the world model"),
    "reward-check": (
        "vla_rft.evaluation.reward_check",
        "does the verified reward rank chunks right?",
    ),
    "action-error": (
        "vla_rft.evaluation.action_error",
        "offline: each policy's chunks against the recorded actions of held-out episodes",
    ),
    "bringup": (
        "vla_rft_nodes.bringup",
        "the node graph over Cyclone DDS: sim, policy, recorder, eval",
    ),
    "op": (
        "vla_rft_nodes.op",
        "drive a running graph: status, e-stop, instruction, label",
    ),
    "import": (
        "vla_rft.data.importers.command",
        "import LeRobot data sets or rosbag2 bags as episodes",
    ),
    "export-dataset": (
        "vla_rft.data.lerobot_export",
        "episodes out as a LeRobot v3.0 data set (parquet, AV1 videos, meta)",
    ),
    "compare": ("vla_rft.evaluation.compare", "compare two eval reports on the same seeds"),
    "export": ("vla_rft.export.export_policy", "export a policy and its encoder to ONNX"),
    "build-engine": ("vla_rft.export.tensorrt_build", "build a TensorRT engine (NVIDIA GPU)"),
}
"""Commands that own their arguments: `module.main(argv) -> int` parses the rest of the line,
so heavy imports (torch) happen only when one of them runs."""


def _run_stage(command: str, argv: list[str]) -> int:
    import importlib

    module = importlib.import_module(STAGE_COMMANDS[command][0])
    return module.main(argv)


# --- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-rft",
        description="VLA-RFT: collect episodes, train, fine-tune in a world model, deploy.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("collect", help="record scripted-expert episodes in the simulated robot")
    _add_collect_args(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser(
        "episodes", help="list, check, recover or relabel episodes (`vla-rft episodes --help`)"
    )
    p.add_argument(
        "action",
        choices=("info", "check", "recover", "label"),
        help="info: list from metadata; check: read every message; recover: complete "
        "interrupted episodes; label: give one episode (DIR) a new outcome",
    )
    p.add_argument("dir", type=Path, help="directory of episodes (label: one episode)")
    p.add_argument("outcome", nargs="?", choices=("success", "failure"), help="label: the outcome")
    p.add_argument("--note", default="", help="label: why (kept with the label)")
    p.set_defaults(func=cmd_episodes)

    p = sub.add_parser("dataset", help="index episodes into the training data set and summarise it")
    p.add_argument("dirs", type=Path, nargs="+", help="directories of episodes")
    p.add_argument(
        "--image-size", type=int, default=None, help="resize frames (default: as recorded)"
    )
    p.add_argument("--horizon", type=int, default=8, help="action chunk length (default: 8)")
    p.set_defaults(func=cmd_dataset)

    for name, (_, help_text) in STAGE_COMMANDS.items():
        sub.add_parser(name, help=f"{help_text} (`vla-rft {name} --help`)", add_help=False)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = build_parser().parse_known_args(argv)
    try:
        if args.command in STAGE_COMMANDS:
            return _run_stage(args.command, rest)
        if rest:
            build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted; finished episodes are kept, run the command again to go on",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
