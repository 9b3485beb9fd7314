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
import re
import string
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_rft.contract.constants import MAX_INSTRUCTION_CHARS
from vla_rft.contract.image import fit_square
from vla_rft.data.episode import Episode, EpisodeMeta
from vla_rft.data.importers.common import (
    SUCCESS_FALSE,
    SUCCESS_TRUE,
    DataImportError,
    ImportSummary,
    already_imported,
    check_finite,
    excerpt,
    path_inside,
    safe_name,
    valid_names,
    write_imported,
)

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
CAMERA_DTYPES = ("video", "image")

# Bounds on metadata values, so that a hostile data set is refused before its values divide,
# allocate or become file names. Real data sets lie far inside them.
MIN_FPS, MAX_FPS = 0.1, 1000.0
MAX_INDEX = 10**9
"""Largest episode, chunk or file index, episode length and chunks_size."""
MAX_NAME = 200
"""Longest robot_type, in characters (a task text is an instruction: MAX_INSTRUCTION_CHARS)."""
MAX_TEMPLATE = 200
"""Longest path template, in characters."""
TEMPLATE_SPEC = re.compile(r"0?\d{0,2}d?")
"""Format of a template field: at most a width below 100 ('03d', '06d', '')."""
TEMPLATE_FIELDS = {
    "v2": ("episode_chunk", "episode_index", "total_episodes", "video_key"),
    "v3": ("chunk_index", "file_index", "video_key"),
}


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


def bounded(value, kind: type, low, high, what: str, where):
    """`value` if it is a `kind` (int, float or str) within low..high (a str: its length), else
    a DataImportError naming `where` and `what` with an excerpt of the value. Every metadata
    value the importer computes with passes here."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        ok = isinstance(value, str) and low <= len(value) <= high
        expected = f"a text of {low}..{high} characters"
    elif kind is int:
        ok = number and isinstance(value, int) and low <= value <= high
        expected = f"an integer in {low}..{high}"
    else:
        ok = number and low <= value <= high
        expected = f"a number in {low}..{high}"
    if not ok:
        raise DataImportError(where, f"{what}: {excerpt(value)} is not {expected}")
    return kind(value)


def _template(value, fields: tuple[str, ...], what: str, where) -> str:
    """A path template whose fields are among `fields`, each formatted at most to a width
    below 100 (`{episode_index:06d}`), so that formatting it stays a short file name."""
    text = bounded(value, str, 1, MAX_TEMPLATE, what, where)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as err:
        raise DataImportError(where, f"{what}: {excerpt(text)} is not a template ({err})") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in fields:
            raise DataImportError(
                where, f"{what}: field {excerpt(name)} is not one of {', '.join(fields)}"
            )
        if conversion or not TEMPLATE_SPEC.fullmatch(spec):
            raise DataImportError(
                where,
                f"{what}: format {excerpt(spec)} of {{{name}}} is not a width below 100",
            )
    return text


@dataclass(frozen=True)
class LeRobotInfo:
    """The parts of meta/info.json the importer uses, each checked by type and bounds."""

    version: str
    fps: float
    features: dict
    data_path: str
    video_path: str | None
    chunks_size: int
    total_episodes: int
    robot_type: str | None

    @classmethod
    def parse(cls, info, path: Path) -> LeRobotInfo:
        if not isinstance(info, dict):
            raise DataImportError(path, f"holds {type(info).__name__}, not an object")
        version = info.get("codebase_version")
        if version not in SUPPORTED_VERSIONS:
            raise DataImportError(
                path,
                f"unknown LeRobot codebase_version {excerpt(version)} "
                f"(this importer reads {', '.join(SUPPORTED_VERSIONS)})",
            )
        for key in ("fps", "features", "data_path"):
            if key not in info:
                raise DataImportError(path, f"has no {key!r}")
        features = info["features"]
        if not (isinstance(features, dict) and all(isinstance(f, dict) for f in features.values())):
            raise DataImportError(path, "features: not an object of objects")
        fields = TEMPLATE_FIELDS[version[:2]]
        video = info.get("video_path")
        robot = info.get("robot_type")
        return cls(
            version=version,
            fps=bounded(info["fps"], float, MIN_FPS, MAX_FPS, "fps", path),
            features=features,
            data_path=_template(info["data_path"], fields, "data_path", path),
            video_path=None if not video else _template(video, fields, "video_path", path),
            chunks_size=bounded(
                info.get("chunks_size", 1000), int, 1, MAX_INDEX, "chunks_size", path
            ),
            total_episodes=bounded(
                info.get("total_episodes", 0), int, 0, MAX_INDEX, "total_episodes", path
            ),
            robot_type=None
            if robot is None
            else bounded(robot, str, 0, MAX_NAME, "robot_type", path),
        )


def _task_text(value, what: str, where) -> str:
    return bounded(value, str, 1, MAX_INSTRUCTION_CHARS, what, where)


def _index(value, what: str, where) -> int:
    return bounded(value, int, 0, MAX_INDEX, what, where)


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
        self.info = LeRobotInfo.parse(_read_json(self.info_path), self.info_path)
        self.version, self.fps, self.features = self.info.version, self.info.fps, self.info.features
        self.image_key = self._choose_camera(image_key)
        self.is_video = self.features[self.image_key]["dtype"] == "video"
        if self.is_video and not self.info.video_path:
            raise DataImportError(self.info_path, "has no 'video_path'")
        try:
            if self.version == "v3.0":
                self.tasks = self._v3_tasks()
                self.episodes = self._v3_episodes()
            else:
                path = self.file("meta/tasks.jsonl", "metadata")
                self.tasks = {
                    _index(t["task_index"], "task_index", path): _task_text(
                        t["task"], f"task {t['task_index']}", path
                    )
                    for t in _read_json(path, lines=True)
                }
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

    def _episode_ref(self, row: dict, where: Path, data_file: str) -> EpisodeRef:
        """An episode's row of metadata, checked, with the data file it names."""
        index = _index(row["episode_index"], "episode_index", where)
        tasks = row.get("tasks") or ()
        if not isinstance(tasks, (list, tuple)):
            raise DataImportError(where, f"episode {index}: tasks {excerpt(tasks)} is not a list")
        length = row.get("length")
        return EpisodeRef(
            index=index,
            tasks=tuple(_task_text(t, f"episode {index} task", where) for t in tasks),
            length=None if length is None else _index(length, f"episode {index} length", where),
            data_file=self.file(data_file, "data_path"),
            video_file=None,
        )

    def _v2_episodes(self) -> list[EpisodeRef]:
        path = self.file("meta/episodes.jsonl", "metadata")
        refs = []
        for row in _read_json(path, lines=True):
            i = _index(row["episode_index"], "episode_index", path)
            fields = {
                "episode_chunk": i // self.info.chunks_size,
                "episode_index": i,
                "total_episodes": self.info.total_episodes,
            }
            ref = self._episode_ref(row, path, self.info.data_path.format(**fields))
            if self.is_video:
                video = self.info.video_path.format(video_key=self.image_key, **fields)
                ref = replace(ref, video_file=self.file(video, "video_path"))
            refs.append(ref)
        return sorted(refs, key=lambda r: r.index)

    def _v3_tasks(self) -> dict[int, str]:
        path = self.file("meta/tasks.parquet", "metadata")
        table = _read_parquet(path)
        names = table.column_names
        text = next((c for c in ("task", "__index_level_0__") if c in names), None)
        if "task_index" not in names or text is None:
            raise DataImportError(path, f"expected columns task_index and task, found {names}")
        indices = [_index(i, "task_index", path) for i in table.column("task_index").to_pylist()]
        texts = table.column(text).to_pylist()
        return {i: _task_text(t, f"task {i}", path) for i, t in zip(indices, texts, strict=True)}

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
                data = self.info.data_path.format(
                    chunk_index=_index(row["data/chunk_index"], "data/chunk_index", path),
                    file_index=_index(row["data/file_index"], "data/file_index", path),
                )
                ref = self._episode_ref(row, path, data)
                if self.is_video:
                    file = self.info.video_path.format(
                        video_key=self.image_key,
                        chunk_index=_index(row[video + "chunk_index"], video + "chunk_index", path),
                        file_index=_index(row[video + "file_index"], video + "file_index", path),
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
    """Frames of one video file read forward with PyAV, the decoder LeRobot itself uses (its
    default AV1 through libdav1d, h264, mpeg4, ...). Episodes of a v3.0 file come in order, so
    reading on is cheaper than seeking, and exact whatever the codec's keyframes."""

    def __init__(self, path: Path, codec: str):
        if not path.is_file():
            raise DataImportError(path, "missing video")
        self.path, self.codec = path, codec
        self._open()

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError) as err:
            raise DataImportError(self.path, self._undecodable(err)) from None
        stream.thread_type = "AUTO"
        self.count = stream.frames
        self.fps = float(stream.average_rate or 0)
        self._frames = self._container.decode(stream)
        self._pos = 0

    def _undecodable(self, err: Exception) -> str:
        return f"PyAV cannot decode this video (codec {self.codec}): {err}"

    def _next(self):
        import av

        try:
            return next(self._frames)
        except StopIteration:
            reason = "holds no frames" if self._pos == 0 else f"ends after {self._pos} frames"
            raise DataImportError(self.path, reason) from None
        except av.FFmpegError as err:
            raise DataImportError(self.path, f"frame {self._pos}: {err}") from None

    def read(self, indices: np.ndarray) -> np.ndarray:
        """RGB uint8 [len(indices), H, W, 3] of frames with ascending indices."""
        if indices[0] < self._pos:
            self.close()
            self._open()
        frames = []
        for index in indices:
            while self._pos < index:
                self._next()
                self._pos += 1
            frames.append(self._next().to_ndarray(format="rgb24"))
            self._pos += 1
        return np.stack(frames)

    def close(self) -> None:
        self._container.close()


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
            images=fit_square(images, cfg.image_size),
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
        robot=config.robot or source.info.robot_type or "unknown",
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
