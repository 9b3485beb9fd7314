"""Episodes on disk: one rosbag2 directory (MCAP storage + metadata.yaml) per episode.

Layout of an episode directory `<root>/<name>/`:
  metadata.yaml      rosbag2 metadata; `custom_data` holds the episode facts (`vla_rft.*` keys)
  <name>.mcap        /camera/image_raw (sensor_msgs/Image, the main camera), /vla_rft/state and
                     /vla_rft/action (std_msgs/Float32MultiArray), /vla_rft/instruction
                     (std_msgs/String) and /vla_rft/episode_event (std_msgs/String, JSON: 'start'
                     with the facts, 'end' with the outcome); each further camera of
                     `EpisodeMeta.cameras` on /camera/<name>/image_raw. Step t is the t-th message
                     on each of the step topics.

Crash safety: an episode is written as `<root>/.partial-<name>/<name>/`, flushed to the file
after every step, and renamed to `<root>/<name>/` only once complete. Readers never see a
half-written episode; `recover_episode` turns a partial one into a complete one, keeping the
partial files, or quarantines it when no step reached the file. Nothing is overwritten: writing
to an existing name is an error.

Integrity: every MCAP chunk carries the CRC32 of its data; readers verify it and refuse a changed
file with `EpisodeChecksumError`. Files from before CRCs (CRC 0) are read unverified.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from mcap.exceptions import McapError
from mcap.records import Channel, Chunk, Message
from mcap.stream_reader import CRCValidationError, StreamReader, breakup_chunk
from mcap.writer import MCAP0_MAGIC
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.metadata import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    CAMERA_TOPIC_FORMAT,
    EPISODE_BAG_VERSION,
    EPISODE_EVENT_TOPIC,
    EPISODE_TOPIC_QOS,
    EPISODE_TOPICS,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    LABELS_FILE,
    PARTIAL_PREFIX,
    QUARANTINE_PREFIX,
    STATE_TOPIC,
    SUPPORTED_EPISODE_SCHEMA_VERSIONS,
    TRUNCATED_MARK,
)
from vla_rft.contract.qos import QoS
from vla_rft.data import messages
from vla_rft.data.episode import Episode, EpisodeChecksumError, EpisodeError, EpisodeMeta

META_KEY = "vla_rft.episode"
"""custom_data key in metadata.yaml holding the EpisodeMeta as JSON."""
STEP_TOPICS = (IMAGE_TOPIC, STATE_TOPIC, ACTION_TOPIC)


def camera_topics(meta: EpisodeMeta) -> dict[str, str]:
    """Further camera name -> its topic in the episode's bag."""
    return {name: CAMERA_TOPIC_FORMAT.format(name=name) for name in meta.further_cameras}


def step_topics(meta: EpisodeMeta) -> tuple[str, ...]:
    """The topics with one message per step: main camera, state, action, further cameras."""
    return (*STEP_TOPICS, *camera_topics(meta).values())


def episode_topics(meta: EpisodeMeta) -> dict[str, str]:
    """Every topic of the episode's bag -> its message type: EPISODE_TOPICS, then the further
    cameras (typed, and offered with the QoS of, the main one)."""
    image = EPISODE_TOPICS[IMAGE_TOPIC]
    return {**EPISODE_TOPICS, **dict.fromkeys(camera_topics(meta).values(), image)}


_CHUNK_CRC_OFFSET = 1 + 8 + 8 + 8 + 8
"""Bytes from the start of an MCAP Chunk record to its uncompressed_crc field (opcode, length,
start time, end time, uncompressed size)."""
_TORN_RECORD_ERRORS = (McapError, EOFError, ValueError, OSError, IndexError, struct.error)
"""What the `mcap` stream reader raises at a record cut short (or failing its CRC)."""


def _meta_custom_data(meta: EpisodeMeta) -> dict[str, str]:
    """Flat strings for metadata.yaml: the full record plus a few keys readable at a glance."""
    return {
        META_KEY: json.dumps(meta.to_dict(), sort_keys=True),
        "vla_rft.schema_version": str(meta.schema_version),
        "vla_rft.task": meta.task,
        "vla_rft.instruction": meta.instruction,
        "vla_rft.success": str(meta.success).lower(),
        "vla_rft.robot": meta.robot,
        "vla_rft.source": meta.source,
        "vla_rft.fps": str(meta.fps),
    }


# --- Writing ---------------------------------------------------------------------------------


def _offered_qos(qos: QoS) -> Qos:
    """The rosbag2 record of a graph QoS profile: what `ros2 bag play` republishes with."""
    forever = QosTime(0, 0)  # rosbag2's "default": no deadline, lifespan or lease
    return Qos(
        QosHistory.KEEP_LAST, qos.depth,
        QosReliability.RELIABLE if qos.reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if qos.transient_local else QosDurability.VOLATILE,
        forever, forever, QosLiveliness.AUTOMATIC, forever, False,
    )  # fmt: skip


class EpisodeWriter:
    """Stream one episode to `<root>/<name>/`, step by step.

    with EpisodeWriter(root, name, meta) as w:
        w.add_step(image, state, action)        # cameras={name: image} for meta's further ones
        ...
        w.finish(success=True)      # renames .partial-<name> -> <name>

    Leaving the block without `finish` (an exception, Ctrl-C) leaves `.partial-<name>` with every
    step written so far; `recover_episode` makes it a complete episode.
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        meta: EpisodeMeta,
        bag_version: int = EPISODE_BAG_VERSION,
    ):
        if not name or "/" in name or name.startswith("."):
            raise EpisodeError(None, f"invalid episode name {name!r}")
        self.root = Path(root)
        self.final_path = self.root / name
        self.partial_path = self.root / f"{PARTIAL_PREFIX}{name}"
        for path in (self.final_path, self.partial_path):
            if path.exists():
                raise EpisodeError(path, "already exists; episodes are never overwritten")
        self.meta = meta
        self.num_steps = 0
        self._shapes: dict[str, tuple[int, ...]] = {}  # per camera, from the first step
        self._dims: tuple[int, int] | None = None
        self._finished = False

        self.root.mkdir(parents=True, exist_ok=True)
        self._bag_path = self.partial_path / name
        self.partial_path.mkdir()
        self._bag = Writer(self._bag_path, version=bag_version, storage_plugin=StoragePlugin.MCAP)
        self._bag.open()
        store = messages.typestore()
        qos = EPISODE_TOPIC_QOS
        self._conn = {
            topic: self._bag.add_connection(
                topic,
                msgtype,
                typestore=store,
                offered_qos_profiles=[_offered_qos(qos.get(topic, qos[IMAGE_TOPIC]))],
            )
            for topic, msgtype in episode_topics(meta).items()
        }
        self._camera_topics = camera_topics(meta)
        if not meta.start_time_ns:
            meta.start_time_ns = time.time_ns()
        start = {"event": "start", **meta.to_dict()}
        self._write(EPISODE_EVENT_TOPIC, messages.json_to_msg(start), meta.start_time_ns)
        self._write(INSTRUCTION_TOPIC, messages.string_to_msg(meta.instruction), meta.start_time_ns)
        self.flush()

    def _write(self, topic: str, msg, stamp_ns: int) -> None:
        self._bag.write(self._conn[topic], stamp_ns, messages.serialize(msg))

    def _step_stamp(self, timestamp: float | None) -> int:
        if timestamp is None:
            timestamp = self.num_steps / self.meta.fps
        return self.meta.start_time_ns + round(timestamp * 1e9)

    def add_step(
        self,
        image: np.ndarray,
        state: np.ndarray,
        action: np.ndarray,
        timestamp=None,
        cameras: dict[str, np.ndarray] | None = None,
    ):
        """Append step t: image uint8 [H, W, 3] (the main camera), state float32 [S], action
        float32 [A], and `cameras` {name: uint8 [H, W, 3]}, one frame per further camera of the
        episode's meta.

        `timestamp` is seconds since step 0 (default: t / fps).
        """
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        frames = {IMAGE_TOPIC: image}
        cameras = cameras or {}
        where = f"step {self.num_steps}"
        for name, topic in self._camera_topics.items():
            if name not in cameras:
                raise EpisodeError(self.partial_path, f"{where}: no frame of camera {name!r}")
            frames[topic] = cameras[name]
        if self._dims is None:
            self._shapes = {topic: frame.shape for topic, frame in frames.items()}
            self._dims = (state.size, action.size)
        for topic, frame in frames.items():
            if frame.shape != self._shapes[topic]:
                expected = self._shapes[topic]
                what = "image" if topic == IMAGE_TOPIC else f"{topic} frame"
                raise EpisodeError(
                    self.partial_path, f"{where}: {what} {frame.shape} != {expected}"
                )
        if (state.size, action.size) != self._dims:
            raise EpisodeError(
                self.partial_path,
                f"{where}: state/action sizes {(state.size, action.size)} != {self._dims}",
            )
        for what, arr in (("state", state), ("action", action)):
            if not np.all(np.isfinite(arr)):
                raise EpisodeError(self.partial_path, f"{where}: {what} holds NaN or inf")
        stamp = self._step_stamp(timestamp)
        # the state before its frame, as a robot publishes them (`ros2 bag play` keeps the order)
        self._write(STATE_TOPIC, messages.array_to_msg(state, self.meta.state_names), stamp)
        self._write(IMAGE_TOPIC, messages.image_to_msg(image, stamp), stamp)
        self._write(ACTION_TOPIC, messages.array_to_msg(action, self.meta.action_names), stamp)
        for topic in self._camera_topics.values():
            self._write(topic, messages.image_to_msg(frames[topic], stamp), stamp)
        self.num_steps += 1
        self.flush()

    def flush(self) -> None:
        """Push every message written so far into the file (survives a crash of this process).

        rosbags buffers messages in an MCAP chunk of up to 1 MiB; closing the chunk early is the
        only way to get them to disk (rosbags 0.11.x storage internals, pinned). rosbags writes
        the chunk's CRC as 0 (none); the CRC of its data is written into the chunk record once
        the chunk is in the file, so a kill in between leaves a valid chunk without a CRC.
        """
        storage = self._bag.storage
        if storage is not None and storage.chunk.bio.tell():
            with storage.chunk.bio.getbuffer() as data:
                crc = zlib.crc32(data)
            chunk_start = storage.bio.tell()
            storage.close_chunk()
            storage.bio.seek(chunk_start + _CHUNK_CRC_OFFSET)
            storage.bio.write(struct.pack("<I", crc))
            storage.bio.seek(0, os.SEEK_END)
            storage.bio.flush()

    def finish(self, success: bool, extra: dict | None = None) -> Path:
        """Write the end event, close the bag and make the episode visible. Returns its path."""
        if self.num_steps == 0:
            raise EpisodeError(self.partial_path, "cannot finish an episode with no steps")
        self.meta.success = bool(success)
        self.meta.extra.update(extra or {})
        end = {"event": "end", "success": self.meta.success, "num_steps": self.num_steps}
        self._write(EPISODE_EVENT_TOPIC, messages.json_to_msg(end), self._step_stamp(None))
        self.flush()  # the last chunk gets its CRC too; close() then writes only the summary
        for key, value in _meta_custom_data(self.meta).items():
            self._bag.set_custom_data(key, value)
        self._bag.close()
        _fsync_tree(self._bag_path)
        if self.final_path.exists():
            raise EpisodeError(self.final_path, "appeared while writing; left the episode partial")
        os.rename(self._bag_path, self.final_path)
        self.partial_path.rmdir()
        self._finished = True
        return self.final_path

    def close_partial(self) -> None:
        """Stop writing without finishing: the partial episode stays on disk for recovery."""
        if not self._finished and self._bag.storage is not None:
            self.flush()
            self._bag.close()

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close_partial()


def _fsync_tree(path: Path) -> None:
    """Make a closed episode durable before it is renamed into view."""
    for file in path.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_episode(root: str | Path, name: str, episode: Episode) -> Path:
    """Write a whole in-memory episode; returns the episode directory."""
    episode.validate()
    with EpisodeWriter(root, name, episode.meta) as writer:
        for t in range(len(episode)):
            writer.add_step(
                episode.images[t], episode.states[t], episode.actions[t], episode.timestamps[t],
                {name: frames[t] for name, frames in episode.camera_images.items()},
            )  # fmt: skip
        return writer.finish(episode.meta.success)


# --- Reading ---------------------------------------------------------------------------------


def _parse_meta(path: Path, text: str | None) -> EpisodeMeta:
    if text is None:
        raise EpisodeError(path, f"metadata.yaml has no '{META_KEY}' entry: not a vla_rft episode")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise EpisodeError(path, f"the '{META_KEY}' entry is not valid JSON ({err})") from None
    version = data.get("schema_version")
    if version not in SUPPORTED_EPISODE_SCHEMA_VERSIONS:
        raise EpisodeError(
            path,
            f"unknown episode schema version {version!r} "
            f"(this vla_rft reads {SUPPORTED_EPISODE_SCHEMA_VERSIONS})",
        )
    try:
        return EpisodeMeta.from_dict(data)
    except (TypeError, EpisodeError) as err:
        raise EpisodeError(path, f"bad episode facts: {err}") from None


def _frames(path: Path, topic: str, msgs: list, what: str) -> np.ndarray:
    """uint8 [T, H, W, 3] from a camera topic's messages, each checked."""
    images = []
    for t, msg in enumerate(msgs):
        try:
            images.append(messages.msg_to_image(msg))
        except messages.MessageError as err:
            raise EpisodeError(path, f"{topic} message {t}: {err}") from None
        if images[-1].shape != images[0].shape:
            raise EpisodeError(
                path, f"{what} {t} is {images[-1].shape[:2]} but {what} 0 is {images[0].shape[:2]}"
            )
    return np.stack(images) if images else np.zeros((0, 0, 0, 3), np.uint8)


def _steps_to_episode(path: Path, meta: EpisodeMeta, step_msgs: dict[str, list]) -> Episode:
    """Turn decoded step messages into an Episode; every message is checked."""
    states, actions = [], []
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in step_msgs[IMAGE_TOPIC]]
    for topic, out in ((STATE_TOPIC, states), (ACTION_TOPIC, actions)):
        for t, msg in enumerate(step_msgs[topic]):
            try:
                out.append(messages.msg_to_array(msg))
            except messages.MessageError as err:
                raise EpisodeError(path, f"{topic} message {t}: {err}") from None
    timestamps = (np.asarray(stamps, dtype=np.int64) - meta.start_time_ns) / 1e9
    episode = Episode(
        images=_frames(path, IMAGE_TOPIC, step_msgs[IMAGE_TOPIC], "image"),
        states=np.stack(states) if states else np.zeros((0, 0), np.float32),
        actions=np.stack(actions) if actions else np.zeros((0, 0), np.float32),
        timestamps=timestamps.astype(np.float64),
        meta=meta,
        camera_images={
            name: _frames(path, topic, step_msgs[topic], f"{name} frame")
            for name, topic in camera_topics(meta).items()
        },
    )
    return episode.validate(path)


def episode_mcap(path: Path) -> Path:
    """The MCAP file of the episode directory `path`; EpisodeError when there is none."""
    mcap = next(Path(path).glob("*.mcap"), None)
    if mcap is None:
        raise EpisodeError(path, "no .mcap file in the episode directory")
    return mcap


@dataclass(frozen=True)
class ChunkCrcs:
    """What `verify_chunk_crcs` found."""

    chunks: int
    """MCAP chunks in the file."""
    verified: int
    """Chunks that carry a CRC, all of which matched (0: a file written before CRCs)."""


def verify_chunk_crcs(path: Path) -> ChunkCrcs:
    """Check every MCAP chunk's CRC (the `mcap` library's check); EpisodeChecksumError on a
    mismatch. Other damage (a truncated file) ends the check: the reader names that fault."""
    chunks = verified = 0
    failed: CRCValidationError | None = None
    try:
        with open(episode_mcap(path), "rb") as f:
            for record in StreamReader(f, emit_chunks=True).records:
                if not isinstance(record, Chunk):
                    continue
                chunks += 1
                if record.uncompressed_crc:
                    try:
                        breakup_chunk(record, validate_crc=True)
                    except CRCValidationError as err:
                        failed = err
                        break
                    verified += 1
    except _TORN_RECORD_ERRORS:
        pass
    if failed is not None:
        raise EpisodeChecksumError(
            path,
            f"MCAP chunk {chunks} fails its checksum (CRC32 {failed.expected:08x}, its data "
            f"gives {failed.actual:08x}): the file changed after it was written; restore it "
            "from a copy",
        )
    return ChunkCrcs(chunks, verified)


def read_episode(path: str | Path) -> Episode:
    """Read a complete episode directory, checking every contract; EpisodeError on any fault."""
    return read_episode_verified(path)[0]


def read_episode_verified(path: str | Path) -> tuple[Episode, ChunkCrcs]:
    """`read_episode`, also saying how many chunks carried a CRC (for `vla-rft episodes check`)."""
    path = Path(path)
    if path.name.startswith(PARTIAL_PREFIX):
        raise EpisodeError(path, "this episode was interrupted; use `vla-rft episodes recover`")
    if not (path / "metadata.yaml").is_file():
        raise EpisodeError(path, "no metadata.yaml: not a rosbag2 episode directory")
    try:
        meta = read_episode_meta(path)
        crcs = verify_chunk_crcs(path)
        with Reader(path) as reader:
            types = {c.topic: c.msgtype for c in reader.connections}
            for topic, msgtype in episode_topics(meta).items():
                if topic not in types:
                    raise EpisodeError(path, f"missing topic {topic} ({msgtype})")
                if types[topic] != msgtype:
                    raise EpisodeError(
                        path, f"topic {topic} has type {types[topic]}, expected {msgtype}"
                    )
            step_msgs: dict[str, list] = {topic: [] for topic in step_topics(meta)}
            conns = [c for c in reader.connections if c.topic in step_msgs]
            for conn, _, raw in reader.messages(connections=conns):
                step_msgs[conn.topic].append(messages.deserialize(raw, conn.msgtype))
    except EpisodeError:
        raise
    except Exception as err:  # rosbags/mcap raise many types for damaged files
        raise EpisodeError(
            path,
            f"cannot read the bag ({type(err).__name__}: {err}); the file may be truncated "
            "or damaged; `vla-rft episodes recover` salvages complete messages",
        ) from None
    counts = {topic: len(msgs) for topic, msgs in step_msgs.items()}
    if len(set(counts.values())) != 1:
        raise EpisodeError(path, f"step topics have different message counts: {counts}")
    return _steps_to_episode(path, meta, step_msgs), crcs


def _bag_info(path: Path) -> dict:
    try:
        return yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise EpisodeError(
            path, f"unreadable metadata.yaml ({type(err).__name__}: {err})"
        ) from None


def read_episode_meta(path: str | Path) -> EpisodeMeta:
    """Only the facts from metadata.yaml (fast: no message is read), with the newest relabel
    (LABELS_FILE) applied: `success` is its outcome, `extra["labels"]` every relabel."""
    path = Path(path)
    custom = _bag_info(path).get("custom_data") or {}
    meta = _parse_meta(path, custom.get(META_KEY))
    labels = read_labels(path)
    if labels:
        meta.success = labels[-1]["success"]
        meta.extra = {**meta.extra, "labels": labels}
    return meta


def read_labels(path: str | Path) -> list[dict]:
    """The relabels of the episode at `path`, oldest first; EpisodeError for a damaged file."""
    file = Path(path) / LABELS_FILE
    if not file.is_file():
        return []
    labels = []
    for n, line in enumerate(file.read_text().splitlines(), 1):
        try:
            label = json.loads(line)
            ok = isinstance(label, dict) and isinstance(label.get("success"), bool)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            raise EpisodeError(file, f"line {n} is not a label ({line[:60]!r})")
        labels.append(label)
    return labels


def relabel_episode(path: str | Path, success: bool, note: str, by: str) -> EpisodeMeta:
    """Record a new outcome for a finished episode beside it (the bag is not touched): who,
    when, why and what it was before. Returns the metadata as readers now see it."""
    path = Path(path)
    before = read_episode_meta(path)  # refuses what is not a complete episode
    label = {
        "success": bool(success), "previous": before.success, "note": note, "by": by,
        "at_ns": time.time_ns(),
    }  # fmt: skip
    with open(path / LABELS_FILE, "a") as f:
        f.write(json.dumps(label, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return read_episode_meta(path)


def episode_steps(path: str | Path) -> int:
    """Number of steps, from metadata.yaml's message counts (fast: no message is read)."""
    path = Path(path)
    for topic in _bag_info(path).get("topics_with_message_count", []):
        if topic["topic_metadata"]["name"] == IMAGE_TOPIC:
            return int(topic["message_count"])
    raise EpisodeError(path, f"missing topic {IMAGE_TOPIC}")


def set_aside_interrupted(out: Path, name: str) -> None:
    """An earlier writer died while writing `name`: keep its files, out of the new episode's way.

    The renamed partial still starts with the partial prefix, so `vla-rft episodes recover`
    finds it.
    """
    partial = out / f"{PARTIAL_PREFIX}{name}"
    if partial.exists():
        partial.rename(out / f"{PARTIAL_PREFIX}{name}.interrupted-{time.time_ns()}")


# --- Listing and recovery --------------------------------------------------------------------


def list_episodes(root: str | Path) -> list[Path]:
    """Complete episode directories under `root`, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "metadata.yaml").is_file()
    )


def list_partial_episodes(root: str | Path) -> list[Path]:
    """Interrupted episodes (`.partial-*`) under `root` that have not been recovered yet."""
    root = Path(root)
    if not root.is_dir():
        return []
    partial = sorted(p for p in root.glob(f"{PARTIAL_PREFIX}*") if p.is_dir())
    return [p for p in partial if not (root / _recovered_name(p)).exists()]


def _recovered_name(partial: Path) -> str:
    """The episode a partial directory becomes: its name without the prefix, and for a truncated
    finished episode set aside by `salvage_truncated_episode`, the episode's own name."""
    name = partial.name[len(PARTIAL_PREFIX) :]
    episode, mark, stamp = name.rpartition(TRUNCATED_MARK)
    return episode if mark and episode and stamp.isdigit() else name


def is_truncated(path: Path) -> bool:
    """Whether a finished episode's MCAP file was cut short (it does not end with the MCAP magic,
    the last bytes a closed file gets). A missing file is not truncation: `check` reports it."""
    mcap = next(Path(path).glob("*.mcap"), None)
    if mcap is None:
        return False
    with open(mcap, "rb") as f:
        if f.seek(0, os.SEEK_END) < 2 * len(MCAP0_MAGIC):
            return True
        f.seek(-len(MCAP0_MAGIC), os.SEEK_END)
        return f.read() != MCAP0_MAGIC


def list_truncated_episodes(root: str | Path) -> list[Path]:
    """Finished episodes under `root` whose file was cut short (`salvage_truncated_episode`)."""
    return [p for p in list_episodes(root) if is_truncated(p)]


@dataclass
class RecoveryReport:
    """What `recover_episode` salvaged from an interrupted episode."""

    path: Path
    """The partial episode directory that was scanned."""
    bytes_scanned: int
    """Bytes of MCAP read before the first incomplete record (or the end)."""
    file_bytes: int
    """Size of the MCAP file."""
    messages: dict[str, int]
    """Complete messages found per topic."""
    steps: int
    """Whole steps (image, state and action) recovered."""
    ended: bool
    """Whether the episode's end event was written before the interruption."""
    quarantined: Path | None = None
    """Where the files went when no complete step could be recovered (None: recovered)."""
    why: str = ""
    """Why nothing could be recovered."""

    def summary(self) -> str:
        counts = ", ".join(f"{topic} {n}" for topic, n in sorted(self.messages.items()))
        scanned = f"read {self.bytes_scanned}/{self.file_bytes} bytes"
        if self.quarantined is not None:
            return (
                f"{self.path.name}: no complete step to recover ({self.why}; {scanned}); "
                f"its files are kept, quarantined in {self.quarantined.name}"
            )
        return f"{self.path.name}: recovered {self.steps} steps ({counts}); {scanned}; " + (
            "the end event was present" if self.ended else "the episode had not ended"
        )


class _CountingFile:
    """Wraps a binary file to remember how far whole records have been read."""

    def __init__(self, f):
        self.f = f
        self.pos = 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.pos += len(data)
        return data


def scan_partial_mcap(mcap_path: Path) -> tuple[dict[str, list[bytes]], int]:
    """Every complete message in a possibly truncated MCAP file, per topic, raw CDR.

    Returns (messages per topic, bytes read up to the last complete record).
    """
    per_topic: dict[str, list[bytes]] = {}
    channels: dict[int, str] = {}
    good_bytes = 0
    with open(mcap_path, "rb") as f:
        counted = _CountingFile(f)
        reader = StreamReader(counted, skip_magic=False, emit_chunks=False, validate_crcs=True)
        try:
            for record in reader.records:
                if isinstance(record, Channel):
                    channels[record.id] = record.topic
                elif isinstance(record, Message) and record.channel_id in channels:
                    per_topic.setdefault(channels[record.channel_id], []).append(record.data)
                good_bytes = counted.pos
        except _TORN_RECORD_ERRORS:
            pass  # the first incomplete (or CRC-failing) record marks the end of what is good
    return per_topic, good_bytes


def _decode_salvaged(
    partial: Path, raw: dict[str, list[bytes]], topic: str, count: int | None, msgtype: str
):
    """The first `count` (None: all) salvaged messages of `topic`, decoded; a message that does
    not decode (possible only in a file written before chunk CRCs) is an EpisodeError."""
    out = []
    for i, data in enumerate(raw.get(topic, [])[:count]):
        try:
            out.append(messages.deserialize(data, msgtype))
        except Exception as err:  # the CDR decoder raises many types for damaged bytes
            raise EpisodeError(
                partial, f"{topic} message {i} does not decode ({type(err).__name__})"
            ) from None
    return out


def recover_episode(partial: str | Path) -> tuple[Path, RecoveryReport]:
    """Make a complete episode from an interrupted one; the partial files are kept as they are.

    The recovered episode gets the partial's name without the prefix, `success=False` unless its
    end event says otherwise, and the recovery report in `meta.extra['recovered']`. A writer
    killed before any step reached the file (no bag directory, a 0-byte file, only the header or
    the start event) leaves nothing to recover: the partial directory is renamed, files as found,
    to `.quarantine-<name>-<ns>` and that path is returned, with `report.quarantined` set. Run
    it only while no writer is using `partial`.
    """
    partial = Path(partial)
    if not partial.name.startswith(PARTIAL_PREFIX):
        raise EpisodeError(partial, f"not a partial episode (expected a '{PARTIAL_PREFIX}' name)")
    name = _recovered_name(partial)
    mcaps = sorted(partial.glob("*/*.mcap"))
    raw, good_bytes = scan_partial_mcap(mcaps[0]) if mcaps else ({}, 0)
    events = []
    salvaged = _decode_salvaged(
        partial, raw, EPISODE_EVENT_TOPIC, None, EPISODE_TOPICS[EPISODE_EVENT_TOPIC]
    )
    for i, msg in enumerate(salvaged):
        try:
            events.append(dict(json.loads(msg.data)))
        except (ValueError, TypeError):
            raise EpisodeError(
                partial, f"episode event {i} is not a JSON object: {msg.data[:40]!r}"
            ) from None
    start = next((e for e in events if e.get("event") == "start"), None)
    end = next((e for e in events if e.get("event") == "end"), None)
    meta = None
    if start is not None:
        meta = _parse_meta(partial, json.dumps({k: v for k, v in start.items() if k != "event"}))
    topics = step_topics(meta) if meta is not None else STEP_TOPICS
    steps = min(len(raw.get(topic, [])) for topic in topics)
    report = RecoveryReport(
        path=partial,
        bytes_scanned=good_bytes,
        file_bytes=mcaps[0].stat().st_size if mcaps else 0,
        messages={topic: len(v) for topic, v in raw.items()},
        steps=steps if start else 0,
        ended=end is not None,
    )
    if not mcaps or start is None or steps == 0:
        report.why = (
            "no .mcap file"
            if not mcaps
            else "the start event was never written"
            if start is None
            else "the episode started but no step was written"
        )
        report.quarantined = partial.parent / f"{QUARANTINE_PREFIX}{name}-{time.time_ns()}"
        os.rename(partial, report.quarantined)
        return report.quarantined, report
    meta.success = bool(end and end.get("success"))
    msgtypes = episode_topics(meta)
    step_msgs = {
        topic: _decode_salvaged(partial, raw, topic, steps, msgtypes[topic]) for topic in topics
    }
    episode = _steps_to_episode(partial, meta, step_msgs)
    meta.extra["recovered"] = {
        "from": partial.name,
        "steps": steps,
        "bytes_scanned": good_bytes,
        "file_bytes": report.file_bytes,
        "ended": report.ended,
    }
    staging = partial.parent / f".recovering-{name}"
    if staging.exists():
        shutil.rmtree(staging)  # our own scratch space from an earlier, interrupted recovery
    written = write_episode(staging, name, episode)
    os.rename(written, partial.parent / name)
    shutil.rmtree(staging)
    return partial.parent / name, report


def recover_partial_episodes(
    root: str | Path,
) -> Iterator[tuple[Path, RecoveryReport | EpisodeError]]:
    """`recover_episode` for each interrupted episode under `root`, as (partial, its report);
    one that cannot be recovered keeps its files as they are and gives its EpisodeError in
    place of the report, and the next one is still recovered."""
    for partial in list_partial_episodes(root):
        try:
            yield partial, recover_episode(partial)[1]
        except EpisodeError as err:
            yield partial, err


def salvage_truncated_episode(path: str | Path) -> tuple[Path, RecoveryReport]:
    """Recover the complete steps of a finished episode whose file was cut short.

    The original directory is moved, bytes untouched, to `.partial-<name>.truncated-<ns>/<name>`
    and kept there; `recover_episode` then writes the salvaged steps back to `<name>`. Killed in
    between, the next `recover` finds that partial and finishes the job under the same name.
    """
    path = Path(path)
    aside = path.parent / f"{PARTIAL_PREFIX}{path.name}{TRUNCATED_MARK}{time.time_ns()}"
    aside.mkdir()
    os.rename(path, aside / path.name)
    return recover_episode(aside)
