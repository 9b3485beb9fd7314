"""`vla-rft import`: bring LeRobot data sets and rosbag2 bags in as vla_rft episodes.

    vla-rft import lerobot PATH --out DIR [--image-key K] [--state-key K] [--action-key K] ...
    vla-rft import rosbag BAG --out DIR --image-topic T --state-topic T --action-topic T ...

Episodes already in DIR are kept, so an interrupted import goes on where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_rft.data.importers.common import DataImportError, ImportSummary


def _indices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for the episodes"
    )
    p.add_argument("--instruction", metavar="TEXT", help="fixed instruction for every episode")
    p.add_argument("--task", metavar="NAME", help="task name of every episode")
    p.add_argument("--robot", metavar="NAME", help="robot name")
    p.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="resize frames to N x N pixels (default: as recorded)",
    )
    p.add_argument(
        "--name-prefix", metavar="P", help="episodes are named P-...; default: the source's name"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-rft import",
        description="Bring LeRobot data sets and rosbag2 bags in as vla_rft episodes.\n"
        "Episodes already in the output directory are kept: an interrupted import goes on.",
        epilog="examples:\n"
        "  vla-rft import lerobot ~/data/koch_pick --out data/koch --image-size 64\n"
        "  vla-rft import rosbag bags/teleop_01 --out data/teleop --image-topic /cam/compressed"
        " \\\n      --state-topic /joint_states --action-topic /cmd"
        " --instruction-topic /instruction \\\n      --events-topic /vla_rft/episode_event\n\n"
        "docs/IMPORTERS.md explains the layouts read and how steps are formed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")

    p = sub.add_parser(
        "lerobot",
        help="a local LeRobot data set (codebase v2.0, v2.1 or v3.0)",
        description="Import a local LeRobot data set (v2.x: one parquet and mp4 per episode; "
        "v3.0: many episodes per file) as one vla_rft episode per LeRobot episode.",
    )
    p.add_argument("path", type=Path, help="data set directory (holding meta/info.json)")
    _common(p)
    p.add_argument(
        "--image-key",
        metavar="KEY",
        help="camera feature, e.g. observation.images.top (default: the only camera)",
    )
    p.add_argument(
        "--state-key",
        default="observation.state",
        metavar="KEY",
        help="state feature (default: observation.state)",
    )
    p.add_argument(
        "--action-key", default="action", metavar="KEY", help="action feature (default: action)"
    )
    p.add_argument(
        "--success",
        default="false",
        metavar="POLICY",
        help="'false' (default: LeRobot records no outcome), 'true', or a boolean column "
        "such as next.success (true if any row is)",
    )
    p.add_argument(
        "--episodes", type=_indices, metavar="I,J,...", help="only these episode indices"
    )
    p.add_argument(
        "--skip-bad", action="store_true", help="skip faulty episodes (listed) instead of stopping"
    )

    p = sub.add_parser(
        "rosbag",
        help="an existing rosbag2 bag (MCAP or sqlite3)",
        description="Import a rosbag2 bag: one step per action message (or at --rate), each "
        "with the latest image and state at or before it; episodes split by episode events "
        "or by pauses.",
    )
    p.add_argument("path", type=Path, help="bag directory (or a single .mcap file)")
    _common(p)
    p.add_argument(
        "--image-topic", required=True, metavar="TOPIC", help="sensor_msgs/Image or CompressedImage"
    )
    p.add_argument(
        "--state-topic",
        required=True,
        metavar="TOPIC",
        help="sensor_msgs/JointState, std_msgs/Float32MultiArray or Float64MultiArray",
    )
    p.add_argument(
        "--action-topic",
        required=True,
        metavar="TOPIC",
        help="as --state-topic, or trajectory_msgs/JointTrajectory (first point)",
    )
    p.add_argument(
        "--instruction-topic", metavar="TOPIC", help="std_msgs/String with the instruction"
    )
    p.add_argument(
        "--events-topic", metavar="TOPIC", help="episode events (vla_rft JSON start/end)"
    )
    p.add_argument(
        "--rate", type=float, metavar="HZ", help="one step every 1/HZ s (default: per action)"
    )
    p.add_argument(
        "--split-gap", type=float, metavar="S", help="new episode after a pause of over S s"
    )
    p.add_argument(
        "--max-age",
        type=float,
        metavar="S",
        help="drop steps whose image or state is over S s old, splitting there",
    )
    p.add_argument("--fps", type=float, help="control rate to record (default: --rate or measured)")
    p.add_argument(
        "--success",
        default="false",
        choices=("false", "true"),
        help="outcome where no end event tells it (default: false)",
    )
    p.add_argument(
        "--min-steps", type=int, default=1, metavar="N", help="skip shorter episodes (default: 1)"
    )
    return parser


def run(args) -> ImportSummary:
    from vla_rft.data.importers.lerobot import LeRobotImportConfig, import_lerobot
    from vla_rft.data.importers.rosbag import RosbagImportConfig, import_rosbag

    shared = {
        "instruction": args.instruction,
        "task": args.task,
        "robot": args.robot,
        "image_size": args.image_size,
        "name_prefix": args.name_prefix,
        "success": args.success,
    }
    if args.format == "lerobot":
        config = LeRobotImportConfig(
            image_key=args.image_key,
            state_key=args.state_key,
            action_key=args.action_key,
            episodes=args.episodes,
            skip_bad=args.skip_bad,
            **shared,
        )
        return import_lerobot(args.path, args.out, config, progress=not args.quiet)
    config = RosbagImportConfig(
        image_topic=args.image_topic,
        state_topic=args.state_topic,
        action_topic=args.action_topic,
        instruction_topic=args.instruction_topic,
        events_topic=args.events_topic,
        rate_hz=args.rate,
        split_gap_s=args.split_gap,
        max_age_s=args.max_age,
        fps=args.fps,
        min_steps=args.min_steps,
        **shared,
    )
    return import_rosbag(args.path, args.out, config, progress=not args.quiet)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (DataImportError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nImported into {summary.out}\n")
    print(summary.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
