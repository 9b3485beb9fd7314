"""`vla-rft export-dataset lerobot`: episodes out as a LeRobot v3.0 data set, so that data
collected on the robot trains LeRobot and openpi policies too.

    vla-rft export-dataset lerobot data/recorded --out exports/koch_lerobot [--video-codec av1]

Written (LeRobot's own layout; docs/IMPORTERS.md):

    meta/info.json                          codebase_version v3.0, fps, robot_type, features
    meta/tasks.parquet                      task_index, indexed by the task text (the instruction)
    meta/episodes/chunk-000/file-000.parquet  one row per episode: length, tasks, file offsets
    meta/stats.json                         min, max, mean, std, count per feature
    data/chunk-CCC/file-FFF.parquet         one file per episode: state, action, timestamp,
                                            indices, next.success
    videos/observation.image/chunk-CCC/file-FFF.mp4   one per episode (AV1 like LeRobot, h264),
                                            or with --video-codec none PNG images in the parquet

Every episode must come from one robot at one rate with the same state and action names (a
LeRobot data set has one feature set). Images are exact with --video-codec none and within the
codec's loss otherwise; states, actions, timestamps, instructions, names and success are exact.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_rft.data.episode import Episode
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft.data.video import ENCODERS, encode_video

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
IMAGE_KEY = "observation.image"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"


class ExportError(ValueError):
    """Episodes that cannot make one LeRobot data set, or an output that would be overwritten."""


@dataclass(frozen=True)
class LeRobotExportConfig:
    """What `vla-rft export-dataset lerobot` writes."""

    video_codec: str = "av1"
    """av1 (LeRobot's default), h264, or none (lossless PNG images inside the parquet files)."""
    crf: int = 20
    """Encoder quality, lower is closer to the frames (both encoders take 0-51)."""

    def __post_init__(self):
        if self.video_codec not in (*ENCODERS, "none"):
            raise ValueError(f"video_codec must be av1, h264 or none, got {self.video_codec!r}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")


def _locate(index: int) -> dict[str, int]:
    return {"chunk_index": index // CHUNKS_SIZE, "file_index": index % CHUNKS_SIZE}


def _check_same_robot(first: Episode, episode: Episode, name: str) -> None:
    a, b = first.meta, episode.meta
    for field in ("robot", "fps", "state_names", "action_names"):
        if getattr(a, field) != getattr(b, field):
            raise ExportError(
                f"{name}: {field} is {getattr(b, field)!r}, the first episode's "
                f"{getattr(a, field)!r}; a LeRobot data set has one robot and one rate"
            )
    if first.images.shape[1:] != episode.images.shape[1:]:
        raise ExportError(
            f"{name}: frames of {episode.images.shape[1:3]}, not {first.images.shape[1:3]}"
        )


def _png_cells(frames: np.ndarray) -> list[dict]:
    import cv2

    cells = []
    for frame in frames:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ExportError("a frame could not be encoded as PNG")
        cells.append({"bytes": buf.tobytes(), "path": None})
    return cells


def _fixed_lists(values: np.ndarray):
    """float32 [T, N] -> a fixed-size list column, what LeRobot's `datasets` features read."""
    import pyarrow as pa

    values = np.ascontiguousarray(values, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _data_table(episode: Episode, index: int, first_row: int, task_index: int, images):
    import pyarrow as pa

    n = len(episode)
    success = np.zeros(n, bool)
    success[-1] = episode.meta.success
    columns = {
        "observation.state": _fixed_lists(episode.states),
        "action": _fixed_lists(episode.actions),
        "timestamp": pa.array(episode.timestamps.astype(np.float32)),
        "frame_index": pa.array(np.arange(n, dtype=np.int64)),
        "episode_index": pa.array(np.full(n, index, np.int64)),
        "index": pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
        "task_index": pa.array(np.full(n, task_index, np.int64)),
        "next.success": pa.array(success),
    }
    if images is not None:
        columns[IMAGE_KEY] = pa.array(
            images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        )
    return pa.table(columns)


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, np.float64)
    return {
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "count": [len(values)],
    }


def _image_stats(sums: np.ndarray, squares: np.ndarray, lo, hi, count: int) -> dict:
    """Per-channel statistics of frames scaled to [0, 1], shaped [3, 1, 1] as LeRobot's."""
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    scaled = {"min": lo, "max": hi, "mean": mean, "std": std}
    return {k: (np.asarray(v) / 255.0).reshape(3, 1, 1).tolist() for k, v in scaled.items()} | {
        "count": [count]
    }


def _tasks_table(tasks: dict[str, int]):
    """task_index indexed by the task text, as pandas writes LeRobot's tasks.parquet."""
    import pyarrow as pa

    table = pa.table({"task_index": list(tasks.values()), "task": list(tasks)})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
    }  # fmt: skip
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def _features(first: Episode, config: LeRobotExportConfig) -> dict:
    h, w = first.images.shape[1:3]
    meta = first.meta
    image = {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
    if config.video_codec != "none":
        image = {
            **image,
            "dtype": "video",
            "info": {
                "video.height": h, "video.width": w, "video.codec": config.video_codec,
                "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                "video.fps": round(meta.fps), "video.channels": 3, "has_audio": False,
            },
        }  # fmt: skip
    scalar = {"shape": [1], "names": None}
    return {
        IMAGE_KEY: image,
        "observation.state": {
            "dtype": "float32", "shape": [len(meta.state_names)], "names": list(meta.state_names),
        },
        "action": {
            "dtype": "float32", "shape": [len(meta.action_names)], "names": list(meta.action_names),
        },
        "timestamp": {"dtype": "float32", **scalar},
        **{k: {"dtype": "int64", **scalar} for k in ("frame_index", "episode_index", "index",
                                                       "task_index")},
        "next.success": {"dtype": "bool", **scalar},
    }  # fmt: skip


def export_lerobot(
    episodes_dir: str | Path, out: str | Path, config: LeRobotExportConfig, progress: bool = True
) -> Path:
    """Write every episode under `episodes_dir` as one LeRobot v3.0 data set at `out` (which
    must not exist); returns `out`. Written to `<out>.partial` and renamed when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = list_episodes(episodes_dir)
    if not paths:
        raise ExportError(f"{episodes_dir}: no episodes")
    out = Path(out)
    if out.exists():
        raise ExportError(f"{out} exists; choose a new --out (exports never overwrite)")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "meta").mkdir(parents=True)
    try:
        first, rows, tasks, frames_total = None, [], {}, 0
        states, actions = [], []
        sums, squares = np.zeros(3), np.zeros(3)
        lo, hi = np.full(3, 255.0), np.zeros(3)
        pixels = 0
        for index, path in enumerate(
            tqdm(paths, desc="exporting", unit="ep", disable=not progress)
        ):
            episode = read_episode(path)
            first = first or episode
            _check_same_robot(first, episode, path.name)
            task_index = tasks.setdefault(episode.meta.instruction, len(tasks))
            where = _locate(index)
            images = _png_cells(episode.images) if config.video_codec == "none" else None
            table = _data_table(episode, index, frames_total, task_index, images)
            data_file = tmp / DATA_PATH.format(**where)
            data_file.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, data_file)
            row = {
                "episode_index": index, "tasks": [episode.meta.instruction], "length": len(episode),
                "data/chunk_index": where["chunk_index"], "data/file_index": where["file_index"],
                "dataset_from_index": frames_total, "dataset_to_index": frames_total + len(episode),
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
            }  # fmt: skip
            if config.video_codec != "none":
                video = tmp / VIDEO_PATH.format(video_key=IMAGE_KEY, **where)
                encode_video(
                    video, episode.images, episode.meta.fps, config.video_codec, config.crf
                )
                row |= {
                    f"videos/{IMAGE_KEY}/chunk_index": where["chunk_index"],
                    f"videos/{IMAGE_KEY}/file_index": where["file_index"],
                    f"videos/{IMAGE_KEY}/from_timestamp": 0.0,
                    f"videos/{IMAGE_KEY}/to_timestamp": len(episode) / episode.meta.fps,
                }
            rows.append(row)
            frames_total += len(episode)
            states.append(episode.states)
            actions.append(episode.actions)
            flat = episode.images.reshape(-1, 3).astype(np.float64)
            sums, squares = sums + flat.sum(0), squares + (flat**2).sum(0)
            lo, hi = np.minimum(lo, flat.min(0)), np.maximum(hi, flat.max(0))
            pixels += len(flat)
        (tmp / EPISODES_PATH).parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp / EPISODES_PATH)
        pq.write_table(_tasks_table(tasks), tmp / "meta" / "tasks.parquet")
        stats = {
            "observation.state": _stats(np.concatenate(states)),
            "action": _stats(np.concatenate(actions)),
            IMAGE_KEY: _image_stats(sums, squares, lo, hi, pixels),
        }
        (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=1))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": first.meta.robot,
            "total_episodes": len(rows),
            "total_frames": frames_total,
            "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": round(first.meta.fps),
            "splits": {"train": f"0:{len(rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if config.video_codec != "none" else None,
            "features": _features(first, config),
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
        raise
    tmp.rename(out)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vla-rft export-dataset",
        description="Episodes out as a LeRobot v3.0 data set (LeRobot and openpi train on it).",
        epilog="example:\n  vla-rft export-dataset lerobot data/recorded --out exports/lerobot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=["lerobot"], help="the data set format (LeRobot v3.0)")
    p.add_argument("episodes", type=Path, help="directory of vla_rft episodes")
    p.add_argument("--out", type=Path, required=True, help="new directory for the data set")
    p.add_argument(
        "--video-codec",
        choices=[*ENCODERS, "none"],
        default="av1",
        help="av1 (LeRobot's default), h264, or none: lossless PNG frames in the parquet files",
    )
    p.add_argument("--crf", type=int, default=20, help="video quality, 0-51, lower is better")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = LeRobotExportConfig(args.video_codec, args.crf)
        out = export_lerobot(args.episodes, args.out, config, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = json.loads((out / "meta" / "info.json").read_text())
    print(
        f"LeRobot {CODEBASE_VERSION} data set in {out}: {info['total_episodes']} episodes, "
        f"{info['total_frames']} frames, {info['total_tasks']} tasks, {info['fps']} fps"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
