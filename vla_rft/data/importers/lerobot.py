"""Import a local LeRobot data set (codebase v2.0, v2.1 or v3.0) into vla_rft episodes.

The two layouts, as read here:

  v2.x  meta/info.json       codebase_version, fps, robot_type, features, chunks_size and the
                             path templates `data_path` / `video_path`
        meta/episodes.jsonl  one line per episode: episode_index, tasks (strings), length
        meta/tasks.jsonl     one line per task: task_index, task
        data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet    one episode
        videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4
                             (episode_chunk = episode_index // chunks_size; the templates are
                             taken from info.json, so older spellings work too)
  v3.0  meta/info.json       as above, templates with {chunk_index} and {file_index}
        meta/tasks.parquet   column task_index, the task string as the (pandas) index column
        meta/episodes/chunk-XXX/file-XXX.parquet   one row per episode: episode_index, tasks,
                             length, data/chunk_index, data/file_index, dataset_from_index,
                             dataset_to_index, videos/<key>/{chunk_index, file_index,
                             from_timestamp, to_timestamp}, stats/... (not read)
        data/chunk-XXX/file-XXX.parquet            rows of many episodes
        videos/<key>/chunk-XXX/file-XXX.mp4        many episodes, one after the other

Every data row carries timestamp (seconds since the episode's start), frame_index,
episode_index, index and task_index next to the features (observation.state, action, an
image column stored as {bytes, path}, ...). The frame of a row is the video frame at
`from_timestamp + timestamp` (v2.x: from_timestamp = 0), as LeRobot's own reader queries it,
with LeRobot's default tolerance of 1e-4 s.

Sources (read, not copied): huggingface/lerobot `src/lerobot/datasets/utils.py` (path
templates, legacy v2.1 paths, default features), `src/lerobot/datasets/v30/
convert_dataset_v21_to_v30.py` (the v3.0 episodes columns, concatenated videos with their
from/to timestamps, tasks.parquet), `src/lerobot/datasets/dataset_metadata.py` (tasks.parquet
indexed by the task string, episode rows with tasks and length), `lerobot_dataset.py`
(`_query_videos`: shift by from_timestamp), the blog post "LeRobotDataset:v3.0"
(huggingface/blog lerobot-datasets-v3.md) and info.json files of v2.0, v2.1 and v3.0 data
sets on the Hugging Face Hub (e.g. lerobot/pusht, lerobot/xarm_lift_medium_replay_image).

Frames are decoded with OpenCV. LeRobot encodes AV1 by default; OpenCV builds without an AV1
decoder (the pip wheel among them) cannot read those videos, and the error says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_rft.data.episode import Episode, EpisodeMeta
from vla_rft.data.importers.common import (
    SUCCESS_FALSE,
    SUCCESS_TRUE,
    DataImportError,
    ImportSummary,
    already_imported,
    check_finite,
    path_inside,
    resize_frames,
    safe_name,
    valid_names,
    write_imported,
)

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
CAMERA_DTYPES = ("video", "image")


@dataclass(frozen=True)
class LeRobotImportConfig:
    """How a LeRobot data set becomes episodes."""

    image_key: str | None = None
    """Camera feature (`observation.images.*`, video or image column); None: the only one."""
    state_key: str = "observation.state"
    """Feature used as the proprio state."""
    action_key: str = "action"
    """Feature used as the action."""
    instruction: str | None = None
    """Fixed instruction for every episode; None: the episode's task from the data set."""
    task: str | None = None
    """Task name of every episode; None: the name prefix (plus `-task<i>` if several tasks)."""
    robot: str | None = None
    """Robot name; None: info.json's robot_type."""
    success: str = SUCCESS_FALSE
    """'false' (LeRobot records no outcome), 'true', or a boolean column such as next.success
    (an episode succeeded if any of its rows is true)."""
    image_size: int | None = None
    """Resize frames to image_size x image_size; None: keep the recorded size."""
    episodes: tuple[int, ...] | None = None
    """Episode indices to import; None: all."""
    name_prefix: str | None = None
    """Episodes are named `<prefix>-ep<index:06d>`; None: the data set's directory name."""
    timestamp_tolerance_s: float = 1e-4
    """How far a row's timestamp may be from a video frame's time."""
    skip_bad: bool = False
    """Skip (and report) a faulty episode instead of stopping at it."""

    def __post_init__(self):
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("the instruction override is empty")
        if not self.success:
            raise ValueError("success must be 'false', 'true' or a column name")
        if self.timestamp_tolerance_s <= 0:
            raise ValueError("timestamp_tolerance_s must be positive")
        if self.episodes is not None:
            object.__setattr__(self, "episodes", tuple(int(i) for i in self.episodes))


@dataclass(frozen=True)
class EpisodeRef:
    """Where one LeRobot episode's rows and frames are."""

    index: int
    tasks: tuple[str, ...]
    length: int | None
    data_file: Path
    video_file: Path | None
    video_from_s: float = 0.0
    video_to_s: float | None = None


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise DataImportError(
            None, "reading LeRobot data sets needs pyarrow: `pip install pyarrow`"
        ) from None
    return pa, pc, pq


def _read_json(path: Path, lines: bool = False):
    """A JSON file, or with `lines` a JSON-lines file (a list of its records)."""
    try:
        text = path.read_text()
        if lines:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except FileNotFoundError:
        raise DataImportError(path, "missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DataImportError(path, f"unreadable ({err})") from None


def _read_parquet(path: Path, columns: list[str] | None = None):
    _, _, pq = _pyarrow()
    if not path.is_file():
        raise DataImportError(path, "missing")
    try:
        return pq.read_table(path, columns=columns)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise DataImportError(path, f"unreadable parquet ({type(err).__name__}: {err})") from None


def _column_array(table, key: str, where: Path) -> np.ndarray:
    """A numeric feature column -> float32 [rows, D] (a scalar column gives D = 1)."""
    pa, pc, _ = _pyarrow()
    col = table.column(key).combine_chunks()
    if col.null_count:
        row = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise DataImportError(where, f"column {key!r} is empty at row {row}")
    is_list = pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)
    values = col.flatten() if is_list else col
    t = values.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise DataImportError(where, f"column {key!r} holds {col.type}, not numbers")
    if is_list:
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if (lengths != lengths[0]).any():
            raise DataImportError(where, f"column {key!r} has rows of different lengths")
    return values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)


# --- Reading the layout -----------------------------------------------------------------------


class LeRobotSource:
    """A local LeRobot data set: its info, tasks, chosen camera and where each episode lives."""

    def __init__(self, root: str | Path, image_key: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataImportError(self.root, "not a directory")
        self.info_path = self.file("meta/info.json", "metadata", self.root)
        self.info = _read_json(self.info_path)
        self.version = str(self.info.get("codebase_version"))
        if self.version not in SUPPORTED_VERSIONS:
            raise DataImportError(
                self.info_path,
                f"unknown LeRobot codebase_version {self.version!r} "
                f"(this importer reads {', '.join(SUPPORTED_VERSIONS)})",
            )
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise DataImportError(self.info_path, f"has no {key!r}")
        self.fps = float(self.info["fps"])
        self.features: dict = self.info["features"]
        self.image_key = self._choose_camera(image_key)
        self.is_video = self.features[self.image_key]["dtype"] == "video"
        if self.is_video and not self.info.get("video_path"):
            raise DataImportError(self.info_path, "has no 'video_path'")
        try:
            if self.version == "v3.0":
                self.tasks = self._v3_tasks()
                self.episodes = self._v3_episodes()
            else:
                rows = _read_json(self.file("meta/tasks.jsonl", "metadata"), lines=True)
                self.tasks = {int(t["task_index"]): t["task"] for t in rows}
                self.episodes = self._v2_episodes()
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, DataImportError):
                raise
            raise DataImportError(
                self.root / "meta",
                f"metadata not in the {self.version} layout ({type(err).__name__}: {err})",
            ) from None

    def _choose_camera(self, image_key: str | None) -> str:
        cameras = [k for k, f in self.features.items() if f.get("dtype") in CAMERA_DTYPES]
        if image_key is not None:
            if image_key not in cameras:
                raise DataImportError(
                    self.info_path,
                    f"no camera feature {image_key!r}; cameras: {', '.join(cameras) or 'none'}",
                )
            return image_key
        if len(cameras) != 1:
            raise DataImportError(
                self.info_path,
                f"several cameras ({', '.join(cameras)}); choose one with --image-key"
                if cameras
                else "no camera feature (dtype video or image)",
            )
        return cameras[0]

    def _v2_episodes(self) -> list[EpisodeRef]:
        chunks = int(self.info.get("chunks_size", 1000))
        refs = []
        for row in _read_json(self.file("meta/episodes.jsonl", "metadata"), lines=True):
            i = int(row["episode_index"])
            fields = {
                "episode_chunk": i // chunks,
                "episode_index": i,
                "total_episodes": self.info.get("total_episodes", 0),
            }
            video = None
            if self.is_video:
                template = self.info["video_path"]
                video = self.file(template.format(video_key=self.image_key, **fields), "video_path")
            refs.append(
                EpisodeRef(
                    index=i,
                    tasks=tuple(row.get("tasks") or ()),
                    length=row.get("length"),
                    data_file=self.file(self.info["data_path"].format(**fields), "data_path"),
                    video_file=video,
                )
            )
        return sorted(refs, key=lambda r: r.index)

    def _v3_tasks(self) -> dict[int, str]:
        path = self.file("meta/tasks.parquet", "metadata")
        table = _read_parquet(path)
        names = table.column_names
        text = next((c for c in ("task", "__index_level_0__") if c in names), None)
        if "task_index" not in names or text is None:
            raise DataImportError(path, f"expected columns task_index and task, found {names}")
        indices = (int(i) for i in table.column("task_index").to_pylist())
        return dict(zip(indices, table.column(text).to_pylist(), strict=True))

    def _v3_episodes(self) -> list[EpisodeRef]:
        _, _, pq = _pyarrow()
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/*.parquet"))
        if not files:
            raise DataImportError(self.root / "meta" / "episodes", "no episodes parquet file")
        video = f"videos/{self.image_key}/"
        refs = []
        for path in files:
            path = self.file(path.relative_to(self.root), "metadata")
            columns = [c for c in pq.read_schema(path).names if not c.startswith("stats/")]
            if self.is_video and video + "from_timestamp" not in columns:
                raise DataImportError(path, f"no video columns for {self.image_key!r}")
            for row in _read_parquet(path, columns).to_pylist():
                data = self.info["data_path"].format(
                    chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
                )
                ref = EpisodeRef(
                    index=int(row["episode_index"]),
                    tasks=tuple(row.get("tasks") or ()),
                    length=row.get("length"),
                    data_file=self.file(data, "data_path"),
                    video_file=None,
                )
                if self.is_video:
                    file = self.info["video_path"].format(
                        video_key=self.image_key,
                        chunk_index=row[video + "chunk_index"],
                        file_index=row[video + "file_index"],
                    )
                    ref = replace(
                        ref,
                        video_file=self.file(file, "video_path"),
                        video_from_s=float(row[video + "from_timestamp"]),
                        video_to_s=float(row[video + "to_timestamp"]),
                    )
                refs.append(ref)
        return sorted(refs, key=lambda r: r.index)

    def file(self, path: str | Path, what: str, where=None) -> Path:
        """A file of the data set named by its metadata (`what`); refused if it leads outside."""
        return path_inside(self.root, path, where or self.info_path, what)

    def check_feature(self, key: str, what: str) -> None:
        if key not in self.features:
            raise DataImportError(
                self.info_path,
                f"no {what} feature {key!r}; available: {', '.join(self.features)}",
            )

    def names(self, key: str, size: int) -> tuple[str, ...]:
        """Per-dimension names from info.json (a list, or a dict holding one list)."""
        names = self.features[key].get("names")
        if isinstance(names, dict) and len(names) == 1:
            names = next(iter(names.values()))
        return valid_names(names, size)

    def codec(self) -> str:
        feature = self.features[self.image_key]
        info = feature.get("info") or feature.get("video_info") or {}  # v2.0 says video_info
        return str(info.get("video.codec", "unknown"))


# --- Frames -----------------------------------------------------------------------------------


class VideoCursor:
    """Frames of one video file read forward (episodes of a v3.0 file come in order, so
    reading on is cheaper than seeking, and exact whatever the codec's keyframes)."""

    def __init__(self, path: Path, codec: str):
        if not path.is_file():
            raise DataImportError(path, "missing video")
        self.path, self.codec = path, codec
        self._open()

    def _open(self) -> None:
        import cv2

        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise DataImportError(self.path, self._undecodable())
        self.count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self._pos = 0

    def _undecodable(self) -> str:
        return (
            f"OpenCV cannot decode this video (codec {self.codec}); an OpenCV without an AV1 "
            "decoder cannot read LeRobot's default AV1 videos: re-encode them, e.g. "
            "`ffmpeg -i in.mp4 -c:v libx264 -crf 18 out.mp4`"
        )

    def _fail(self) -> DataImportError:
        reason = self._undecodable() if self._pos == 0 else f"ends after {self._pos} frames"
        return DataImportError(self.path, reason)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """RGB uint8 [len(indices), H, W, 3] of frames with ascending indices."""
        import cv2

        if indices[0] < self._pos:
            self.close()
            self._open()
        frames = []
        for index in indices:
            while self._pos < index:
                if not self._cap.grab():
                    raise self._fail()
                self._pos += 1
            ok, bgr = self._cap.read()
            if not ok:
                raise self._fail()
            self._pos += 1
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return np.stack(frames)

    def close(self) -> None:
        self._cap.release()


def _decode_image_column(table, key: str, source: LeRobotSource, where: Path) -> np.ndarray:
    """An image column ({bytes, path} per row, PNG or JPEG) -> RGB uint8 [rows, H, W, 3]."""
    import cv2

    frames = []
    for row, cell in enumerate(table.column(key).to_pylist()):
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        if data is None and isinstance(cell, dict) and cell.get("path"):
            file = source.file(cell["path"], f"column {key!r} row {row}", where)
            data = file.read_bytes() if file.is_file() else None
        bgr = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), 1)
        if bgr is None:
            raise DataImportError(where, f"column {key!r} row {row}: no decodable image")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise DataImportError(where, f"column {key!r} holds images of sizes {sorted(shapes)}")
    return np.stack(frames)


def _frame_indices(ref: EpisodeRef, timestamps: np.ndarray, fps: float, tol_s: float):
    """Video frame of each row: the frame at from_timestamp + timestamp."""
    exact = (ref.video_from_s + timestamps) * fps
    indices = np.round(exact).astype(np.int64)
    off = np.abs(exact - indices) / fps
    if (off > tol_s).any():
        row = int(np.argmax(off > tol_s))
        raise DataImportError(
            ref.data_file,
            f"episode {ref.index} row {row}: timestamp {timestamps[row]:.6f} s is "
            f"{off[row]:.2g} s from any frame of {ref.video_file.name} at {fps:g} fps",
        )
    return indices


# --- One episode ------------------------------------------------------------------------------


@dataclass
class LoadedEpisode:
    """One LeRobot episode's steps, checked."""

    images: np.ndarray
    """uint8 [T, H, W, 3]"""
    states: np.ndarray
    """float32 [T, S]"""
    actions: np.ndarray
    """float32 [T, A]"""
    timestamps: np.ndarray
    """float64 [T] seconds since the episode's start"""
    task: str
    task_index: int | None
    success: bool


class EpisodeLoader:
    """Reads episodes of one data set in order, keeping the current data file and video open."""

    def __init__(self, source: LeRobotSource, config: LeRobotImportConfig):
        self.source, self.config = source, config
        self._table_path: Path | None = None
        self._table = None
        self._video: VideoCursor | None = None

    def _rows(self, ref: EpisodeRef):
        _, pc, _ = _pyarrow()
        if ref.data_file != self._table_path:
            self._table, self._table_path = _read_parquet(ref.data_file), ref.data_file
        table = self._table
        if "episode_index" in table.column_names:
            table = table.filter(pc.equal(table.column("episode_index"), ref.index))
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        if table.num_rows == 0:
            raise DataImportError(ref.data_file, f"no rows of episode {ref.index}")
        if ref.length is not None and table.num_rows != ref.length:
            raise DataImportError(
                ref.data_file,
                f"episode {ref.index} has {table.num_rows} rows but the episode metadata says "
                f"length {ref.length}",
            )
        return table

    def _frames(self, ref: EpisodeRef, table, timestamps: np.ndarray) -> np.ndarray:
        key, source = self.source.image_key, self.source
        if not source.is_video:
            return _decode_image_column(table, key, source, ref.data_file)
        if self._video is None or self._video.path != ref.video_file:
            if self._video is not None:
                self._video.close()
                self._video = None
            self._video = VideoCursor(ref.video_file, source.codec())
        video = self._video
        if video.fps and abs(video.fps - source.fps) > 0.01 * source.fps:
            raise DataImportError(
                video.path, f"video runs at {video.fps:g} fps, the data set at {source.fps:g}"
            )
        indices = _frame_indices(ref, timestamps, source.fps, self.config.timestamp_tolerance_s)
        first = round(ref.video_from_s * source.fps)
        known = video.count if video.count > 0 else np.iinfo(np.int64).max  # 0: not in the file
        if ref.video_to_s is None:  # v2.x: one video per episode, one frame per row
            end = known
            if video.count > 0 and video.count != len(indices):
                raise DataImportError(
                    video.path,
                    f"has {video.count} frames but {ref.data_file.name} has {len(indices)} rows "
                    f"for episode {ref.index}",
                )
        else:
            end = min(round(ref.video_to_s * source.fps), known)
        if indices[0] < first or indices[-1] >= end or (np.diff(indices) <= 0).any():
            raise DataImportError(
                video.path,
                f"episode {ref.index} needs frames {indices[0]}..{indices[-1]} but its part of "
                f"the video holds frames {first}..{end - 1} ({video.count} in the file)",
            )
        return video.read(indices)

    def _instruction(self, ref: EpisodeRef, task_index: int | None) -> str:
        if self.config.instruction is not None:
            return self.config.instruction
        text = self.source.tasks.get(task_index) if task_index is not None else None
        text = text or (ref.tasks[0] if ref.tasks else None)
        if not text or not str(text).strip():
            raise DataImportError(
                ref.data_file,
                f"episode {ref.index} has no task text (task_index {task_index}); give "
                "--instruction",
            )
        return str(text)

    def _success(self, table, ref: EpisodeRef) -> bool:
        policy = self.config.success
        if policy in (SUCCESS_FALSE, SUCCESS_TRUE):
            return policy == SUCCESS_TRUE
        if policy not in table.column_names:
            raise DataImportError(
                ref.data_file,
                f"no success column {policy!r}; columns: {', '.join(table.column_names)}",
            )
        return bool(_column_array(table, policy, ref.data_file).any())

    def load(self, ref: EpisodeRef) -> LoadedEpisode:
        cfg = self.config
        table = self._rows(ref)
        where = ref.data_file
        camera = () if self.source.is_video else (self.source.image_key,)
        for key in (cfg.state_key, cfg.action_key, *camera):
            if key not in table.column_names:
                raise DataImportError(
                    where, f"no column {key!r}; columns: {', '.join(table.column_names)}"
                )
        states = _column_array(table, cfg.state_key, where)
        actions = _column_array(table, cfg.action_key, where)
        check_finite(states, f"{cfg.state_key} of episode {ref.index}", where)
        check_finite(actions, f"{cfg.action_key} of episode {ref.index}", where)
        if "timestamp" in table.column_names:
            timestamps = _column_array(table, "timestamp", where)[:, 0].astype(np.float64)
        else:
            timestamps = np.arange(table.num_rows) / self.source.fps
        task_index = None
        if "task_index" in table.column_names:
            task_index = int(table.column("task_index")[0].as_py())
        images = self._frames(ref, table, timestamps)
        return LoadedEpisode(
            images=resize_frames(images, cfg.image_size),
            states=states,
            actions=actions,
            timestamps=timestamps,
            task=self._instruction(ref, task_index),
            task_index=task_index,
            success=self._success(table, ref),
        )

    def close(self) -> None:
        if self._video is not None:
            self._video.close()


# --- The import -------------------------------------------------------------------------------


def _episode_meta(source, config, ref: EpisodeRef, loaded: LoadedEpisode, prefix: str):
    task = config.task or (
        prefix if len(source.tasks) <= 1 else f"{prefix}-task{loaded.task_index or 0}"
    )
    provenance = {
        "format": "lerobot",
        "path": str(source.root.resolve()),
        "codebase_version": source.version,
        "episode_index": ref.index,
        "data_file": str(ref.data_file.relative_to(source.root)),
        "video_file": str(ref.video_file.relative_to(source.root)) if ref.video_file else None,
        "keys": {"image": source.image_key, "state": config.state_key, "action": config.action_key},
        "success": config.success,
    }
    return EpisodeMeta(
        task=task,
        instruction=loaded.task,
        robot=config.robot or str(source.info.get("robot_type") or "unknown"),
        fps=source.fps,
        source="import",
        success=loaded.success,
        state_names=source.names(config.state_key, loaded.states.shape[1]),
        action_names=source.names(config.action_key, loaded.actions.shape[1]),
        extra={"import": provenance},
    )


def import_lerobot(
    root: str | Path, out: str | Path, config: LeRobotImportConfig, progress: bool = True
) -> ImportSummary:
    """Write every (selected) episode of the LeRobot data set at `root` to `out` as a vla_rft
    episode named `<prefix>-ep<index:06d>`; episodes already in `out` are kept."""
    source = LeRobotSource(root, config.image_key)
    source.check_feature(config.state_key, "state")
    source.check_feature(config.action_key, "action")
    out = Path(out)
    prefix = safe_name(config.name_prefix or source.root.resolve().name)
    refs = source.episodes
    if config.episodes is not None:
        known = {r.index for r in refs}
        missing = sorted(set(config.episodes) - known)
        if missing:
            raise DataImportError(
                source.root,
                f"no episodes {missing}; the data set holds {len(known)} episodes "
                f"({min(known, default=0)}..{max(known, default=-1)})",
            )
        refs = [r for r in refs if r.index in config.episodes]
    summary = ImportSummary(source=str(source.root), out=out)
    loader = EpisodeLoader(source, config)
    try:
        for ref in tqdm(refs, desc="importing", unit="ep", disable=not progress):
            name = f"{prefix}-ep{ref.index:06d}"
            if already_imported(out, name, summary):
                continue
            try:
                loaded = loader.load(ref)
                episode = Episode(
                    images=loaded.images,
                    states=loaded.states,
                    actions=loaded.actions,
                    timestamps=loaded.timestamps - loaded.timestamps[0],
                    meta=_episode_meta(source, config, ref, loaded, prefix),
                )
                write_imported(out, name, episode, summary, ref.data_file)
            except DataImportError as err:
                if not config.skip_bad:
                    raise
                summary.skipped.append((f"episode {ref.index}", str(err)))
    finally:
        loader.close()
    return summary
