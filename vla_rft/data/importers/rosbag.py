"""Import an existing rosbag2 bag (MCAP or sqlite3, read with rosbags' AnyReader) into episodes.

The user names the topics:

  image        sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or sensor_msgs/CompressedImage
               (JPEG or PNG, as image_transport writes it)
  state        sensor_msgs/JointState (positions), std_msgs/Float32MultiArray or Float64MultiArray
  action       the same types, or trajectory_msgs/JointTrajectory (its first point's positions)
  instruction  a std_msgs/String topic, or a fixed text
  events       optional: vla_rft's /vla_rft/episode_event (std_msgs/String holding JSON)

How steps are formed. Every time is the bag's log (receive) time, because Float32MultiArray
has no header. By default there is one step per action message, at its time; with a rate, one
step every 1/rate seconds from the moment image, state and action have all been seen, and the
action of a step is the latest action at or before it. Each step is paired with the latest
image and the latest state at or before its time (a message with the same time counts), which
is what the robot had seen when the action was sent. A step with no image or state yet, or
(with max_age_s) with one older than max_age_s, is dropped and the episode is split there.

How steps become episodes. With an events topic, the steps between a `start` event and the
next `end` event form an episode (steps outside are dropped); the end event's `success`
labels it, and the start event's instruction, task, robot and fps are used when not given.
With split_gap_s, a pause between steps longer than that starts a new episode. Otherwise the
bag is one episode. The instruction of an episode is the last message on the instruction topic
at or before its first step (or the first one in the bag).

The bag is read twice: once for times, states, actions, instructions and events, then once for
the images, decoding only the frames some step uses and writing each episode as soon as its
frames are in, so memory holds one episode, not the bag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mcap.reader import SeekingReader
from rosbags.highlevel import AnyReader
from tqdm import tqdm

from vla_rft.contract.image import fit_square
from vla_rft.data import messages
from vla_rft.data.episode import Episode, EpisodeMeta
from vla_rft.data.importers.common import (
    SUCCESS_FALSE,
    SUCCESS_TRUE,
    DataImportError,
    ImportSummary,
    already_imported,
    excerpt,
    safe_name,
    valid_names,
    write_imported,
)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
VECTOR_TYPES = (
    "sensor_msgs/msg/JointState",
    "std_msgs/msg/Float32MultiArray",
    "std_msgs/msg/Float64MultiArray",
)
ACTION_TYPES = (*VECTOR_TYPES, "trajectory_msgs/msg/JointTrajectory")
STRING_TYPE = "std_msgs/msg/String"


@dataclass(frozen=True)
class RosbagImportConfig:
    """Which topics of a bag become episodes, and how steps are formed."""

    image_topic: str
    """Camera topic (sensor_msgs/Image or sensor_msgs/CompressedImage)."""
    state_topic: str
    """Proprio state topic (JointState, Float32MultiArray or Float64MultiArray)."""
    action_topic: str
    """Action topic (as the state, or trajectory_msgs/JointTrajectory: its first point)."""
    instruction: str | None = None
    """Fixed instruction; None: from instruction_topic or the start events."""
    instruction_topic: str | None = None
    """std_msgs/String topic holding the instruction."""
    rate_hz: float | None = None
    """Step at this fixed rate; None: one step per action message."""
    events_topic: str | None = None
    """Episode events topic (vla_rft JSON start/end); None: no event splitting."""
    split_gap_s: float | None = None
    """Start a new episode after a pause between steps longer than this; None: never."""
    max_age_s: float | None = None
    """Drop a step whose image or state is older than this (and split there); None: any age."""
    task: str | None = None
    """Task name; None: the start event's task, else the name prefix."""
    robot: str | None = None
    """Robot name; None: the start event's robot, else 'unknown'."""
    fps: float | None = None
    """Control rate recorded in the episodes; None: rate_hz, the start event's, or measured."""
    success: str = SUCCESS_FALSE
    """Outcome where no end event tells it: 'false' (unknown) or 'true'."""
    image_size: int | None = None
    """Resize frames to image_size x image_size; None: keep the recorded size."""
    name_prefix: str | None = None
    """Episodes are named `<prefix>-<k:04d>`; None: the bag's directory name."""
    min_steps: int = 1
    """Episodes with fewer steps are skipped (and reported)."""

    def __post_init__(self):
        for name in ("image_topic", "state_topic", "action_topic"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("the instruction is empty")
        if self.instruction is None and not (self.instruction_topic or self.events_topic):
            raise ValueError("give an instruction, an instruction topic or an events topic")
        for name in ("rate_hz", "split_gap_s", "max_age_s", "fps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.success not in (SUCCESS_FALSE, SUCCESS_TRUE):
            raise ValueError(f"success must be 'false' or 'true', got {self.success!r}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.min_steps < 1:
            raise ValueError(f"min_steps must be >= 1, got {self.min_steps}")


# --- Messages -> arrays -----------------------------------------------------------------------


def vector_of(msg, msgtype: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """A state or action message -> (float32 [D], per-dimension names or ())."""
    if msgtype == "sensor_msgs/msg/JointState":
        values, names = msg.position, list(msg.name)
        if len(values) == 0:
            raise messages.MessageError("JointState without positions")
    elif msgtype == "trajectory_msgs/msg/JointTrajectory":
        if not msg.points:
            raise messages.MessageError("JointTrajectory without points")
        values, names = msg.points[0].positions, list(msg.joint_names)
    else:
        values = msg.data
        names = msg.layout.dim[0].label.split(",") if msg.layout.dim else []
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    return values, valid_names(names, values.size)


def image_of(msg, msgtype: str) -> np.ndarray:
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return messages.compressed_msg_to_image(msg)
    return messages.msg_to_image(msg)


@dataclass
class Stream:
    """The messages of one topic: times (int64 ns, ascending) and converted values."""

    msgtype: str
    times: list[int] = field(default_factory=list)
    values: list = field(default_factory=list)
    names: tuple[str, ...] = ()

    def latest(self, at: np.ndarray) -> np.ndarray:
        """Index of the latest message at or before each time in `at` (-1: none yet)."""
        return np.searchsorted(np.asarray(self.times, dtype=np.int64), at, side="right") - 1


# --- Reading records -------------------------------------------------------------------------
# rosbags checks lengths against the bytes at hand but raises its own exceptions (ReaderError,
# AnyReaderError, MemoryError for a chunk claiming a terabyte, ...): each becomes a
# DataImportError naming the bag and the record, which the command reports as bad input.


def _failure(err: Exception) -> str:
    """What rosbags said, short (its messages may quote the bag's content)."""
    return f"{type(err).__name__}: {excerpt(str(err), 160)}" if str(err) else type(err).__name__


def _messages(reader, conns, bag: Path):
    """(connection, time, raw) of the messages on `conns`, as reader.messages yields them; an
    unreadable record stops the import with an error naming the topics and the last message."""
    topics = sorted({c.topic for c in conns})
    what = ", ".join(topics[:-1]) + f" or {topics[-1]}" if len(topics) > 1 else topics[0]
    messages_in, count = reader.messages(connections=conns), 0
    while True:
        try:
            item = next(messages_in)
        except StopIteration:
            return
        except Exception as err:  # any failure here is the bag's, see above
            raise DataImportError(
                bag, f"unreadable record of {what} after {count} messages ({_failure(err)})"
            ) from None
        yield item
        count += 1


def _check_chunks(bag: Path) -> None:
    """Refuse an MCAP file whose summary claims records or chunks beyond the file's end, before
    rosbags reads them: it reserves a chunk's claimed size before finding the bytes missing."""
    for file in [bag] if bag.is_file() else sorted(bag.iterdir()):
        if file.suffix != ".mcap":
            continue
        size = file.stat().st_size
        try:
            with open(file, "rb") as f:
                summary = SeekingReader(f, record_size_limit=size).get_summary()
        except Exception as err:  # the mcap library raises several types, as rosbags does
            raise DataImportError(file, f"unreadable summary ({_failure(err)})") from None
        for k, chunk in enumerate(summary.chunk_indexes if summary else ()):
            end = chunk.chunk_start_offset + chunk.chunk_length
            if end > size or chunk.compressed_size > chunk.chunk_length:
                raise DataImportError(
                    file,
                    f"chunk {k} claims {chunk.compressed_size} bytes at offset "
                    f"{chunk.chunk_start_offset} in a chunk of {chunk.chunk_length} bytes, "
                    f"in a file of {size}",
                )


def _deserialize(reader, raw, conn, k: int, bag: Path):
    """Message `k` of `conn` decoded from CDR; a DataImportError if its bytes do not hold one
    (a sequence that claims 4 GB in a record of a few kB)."""
    try:
        return reader.deserialize(raw, conn.msgtype)
    except Exception as err:  # rosbags' serde raises several types
        raise DataImportError(
            bag, f"{conn.topic} message {k}: undecodable {conn.msgtype} ({_failure(err)})"
        ) from None


# --- Pass 1: everything but the images --------------------------------------------------------


def _connections(reader, bag: Path, topic: str, allowed: tuple[str, ...], role: str):
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        available = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
        raise DataImportError(
            bag, f"no {role} topic {topic!r}; topics in the bag: {', '.join(available)}"
        )
    types = {c.msgtype for c in conns}
    if len(types) > 1 or not types <= set(allowed):
        raise DataImportError(
            bag,
            f"{role} topic {topic} has type {', '.join(sorted(types))}; accepted: "
            f"{', '.join(allowed)}",
        )
    return conns


def _read_small_topics(reader, bag: Path, config: RosbagImportConfig, progress: bool):
    """Pass 1: image times; states, actions, instructions and events converted."""
    roles = {
        config.image_topic: ("image", IMAGE_TYPES),
        config.state_topic: ("state", VECTOR_TYPES),
        config.action_topic: ("action", ACTION_TYPES),
    }
    for topic, role in ((config.instruction_topic, "instruction"), (config.events_topic, "events")):
        if topic:
            roles[topic] = (role, (STRING_TYPE,))
    if len(roles) != 3 + bool(config.instruction_topic) + bool(config.events_topic):
        raise DataImportError(bag, "the same topic is given for two roles")
    streams, conns = {}, []
    for topic, (role, allowed) in roles.items():
        found = _connections(reader, bag, topic, allowed, role)
        streams[role] = Stream(found[0].msgtype)
        conns += found
    role_of = {topic: role for topic, (role, _) in roles.items()}
    total = sum(c.msgcount for c in conns)
    for conn, stamp, raw in tqdm(
        _messages(reader, conns, bag), total=total, desc="indexing", disable=not progress
    ):
        role = role_of[conn.topic]
        stream = streams[role]
        if role != "image":
            msg = _deserialize(reader, raw, conn, len(stream.times), bag)
            try:
                stream.values.append(_convert(role, msg, conn.msgtype, stream))
            except (messages.MessageError, json.JSONDecodeError) as err:
                raise DataImportError(
                    bag, f"{conn.topic} message {len(stream.times)}: {err}"
                ) from None
        stream.times.append(stamp)
    return streams


def _convert(role: str, msg, msgtype: str, stream: Stream):
    if role == "instruction":
        return msg.data
    if role == "events":
        event = json.loads(msg.data)
        return event if isinstance(event, dict) else {}
    values, names = vector_of(msg, msgtype)
    if stream.values and values.size != stream.values[0].size:
        raise messages.MessageError(f"{values.size} values, earlier {stream.values[0].size}")
    if not np.all(np.isfinite(values)):
        raise messages.MessageError(f"NaN or inf in {values.tolist()}")
    stream.names = stream.names or names
    return values


# --- Steps and episodes -----------------------------------------------------------------------


@dataclass
class Segment:
    """The steps of one episode to be: indices into the step arrays, and its events."""

    steps: np.ndarray
    start_event: dict = field(default_factory=dict)
    end_event: dict | None = None


def _step_times(streams: dict, config: RosbagImportConfig) -> tuple[np.ndarray, np.ndarray]:
    """(step times int64 [N], index of each step's action message [N])."""
    action_times = np.asarray(streams["action"].times, dtype=np.int64)
    if config.rate_hz is None:
        return action_times, np.arange(len(action_times))
    start = max(streams[role].times[0] for role in ("image", "state", "action"))
    period = round(1e9 / config.rate_hz)
    times = np.arange(start, action_times[-1] + 1, period, dtype=np.int64)
    return times, streams["action"].latest(times)


def _event_windows(streams: dict, times: np.ndarray) -> tuple[np.ndarray, list]:
    """Window number of each step (-1: outside any start..end) and each window's events."""
    events = streams.get("events")
    if events is None:
        return np.zeros(len(times), dtype=np.int64), [({}, None)]
    bounds, start = [], None
    for stamp, event in zip(events.times, events.values, strict=True):
        if event.get("event") == "start":
            if start is not None:  # a start without an end: the episode ends here, unlabelled
                bounds.append((start, stamp - 1, None))
            start = (stamp, event)
        elif event.get("event") == "end" and start is not None:
            bounds.append((start, stamp, event))
            start = None
    if start is not None:
        bounds.append((start, np.iinfo(np.int64).max, None))
    window, labels = np.full(len(times), -1), []
    for k, ((begin, start_event), end, end_event) in enumerate(bounds):
        window[(times >= begin) & (times <= end)] = k
        labels.append((start_event, end_event))
    return window, labels


@dataclass
class StepPlan:
    """Every step of the bag (N of them) and their grouping into episodes."""

    times: np.ndarray
    """int64 [N] bag time of each step."""
    action_idx: np.ndarray
    """int [N] action message of each step."""
    image_idx: np.ndarray
    """int [N] latest image message at or before each step (-1: none)."""
    state_idx: np.ndarray
    """int [N] latest state message at or before each step (-1: none)."""
    segments: list[Segment]
    dropped: dict[str, int]
    """Steps in no episode, per reason."""


def plan_steps(streams: dict, config: RosbagImportConfig, bag: Path) -> StepPlan:
    """Form the steps and group them into episodes (see the module's docstring)."""
    for role in ("image", "state", "action"):
        topic = getattr(config, f"{role}_topic")
        if not streams[role].times:
            raise DataImportError(bag, f"no message on the {role} topic {topic}")
        if (np.diff(streams[role].times) < 0).any():
            raise DataImportError(bag, f"the messages on {topic} are not in time order")
    times, action_idx = _step_times(streams, config)
    image_idx, state_idx = streams["image"].latest(times), streams["state"].latest(times)
    valid = (image_idx >= 0) & (state_idx >= 0) & (action_idx >= 0)
    dropped = {"no image or state yet": int((~valid).sum())}
    if config.max_age_s is not None:
        limit = round(config.max_age_s * 1e9)
        image_t = np.asarray(streams["image"].times, dtype=np.int64)[np.maximum(image_idx, 0)]
        state_t = np.asarray(streams["state"].times, dtype=np.int64)[np.maximum(state_idx, 0)]
        stale = valid & ((times - image_t > limit) | (times - state_t > limit))
        dropped["image or state older than max_age_s"] = int(stale.sum())
        valid &= ~stale
    window, labels = _event_windows(streams, times)
    dropped["outside start..end events"] = int((valid & (window < 0)).sum())
    valid &= window >= 0

    cut = np.ones(len(times), dtype=bool)  # cut[i]: step i cannot continue step i - 1's episode
    cut[1:] = ~valid[:-1] | (window[1:] != window[:-1])
    if config.split_gap_s is not None:
        cut[1:] |= np.diff(times) > round(config.split_gap_s * 1e9)
    kept = np.flatnonzero(valid)
    segment_id = np.cumsum(cut)[kept]
    segments, short = [], 0
    for steps in np.split(kept, np.flatnonzero(np.diff(segment_id)) + 1) if len(kept) else []:
        if len(steps) < config.min_steps:
            short += len(steps)
            continue
        start_event, end_event = labels[window[steps[0]]]
        segments.append(Segment(steps, start_event or {}, end_event))
    dropped[f"in an episode shorter than min_steps={config.min_steps}"] = short
    dropped = {reason: n for reason, n in dropped.items() if n}
    return StepPlan(times, action_idx, image_idx, state_idx, segments, dropped)


# --- Pass 2: images, and writing ----------------------------------------------------------------


@dataclass
class PlannedEpisode:
    """An episode ready but for its frames."""

    name: str
    image_idx: np.ndarray
    """int [T] image message of each step."""
    states: np.ndarray
    actions: np.ndarray
    timestamps: np.ndarray
    meta: EpisodeMeta


def _instruction(streams, config, segment: Segment, start_ns: int, bag: Path) -> str:
    if config.instruction is not None:
        return config.instruction
    if segment.start_event.get("instruction"):
        return str(segment.start_event["instruction"])
    stream = streams.get("instruction")
    if stream is not None and stream.values:
        k = max(int(stream.latest(np.array([start_ns]))[0]), 0)
        if stream.values[k].strip():
            return stream.values[k]
    raise DataImportError(
        bag,
        f"no instruction for the episode starting at bag time {start_ns} ns: give --instruction "
        "or an instruction topic with a message",
    )


def plan_episodes(streams, config: RosbagImportConfig, bag: Path, prefix: str, plan: StepPlan):
    states = np.stack(streams["state"].values)
    actions = np.stack(streams["action"].values)
    planned = []
    for k, segment in enumerate(plan.segments):
        steps = segment.steps
        step_times = plan.times[steps]
        start_ns = int(step_times[0])
        fps = config.fps or config.rate_hz or segment.start_event.get("fps")
        if not fps:
            if len(steps) < 2:
                raise DataImportError(bag, f"episode {k} has one step: give --fps")
            fps = round(1e9 / float(np.median(np.diff(step_times))), 3)
        end = segment.end_event
        meta = EpisodeMeta(
            task=config.task or segment.start_event.get("task") or prefix,
            instruction=_instruction(streams, config, segment, start_ns, bag),
            robot=config.robot or segment.start_event.get("robot") or "unknown",
            fps=float(fps),
            source="import",
            success=bool(end.get("success")) if end else config.success == SUCCESS_TRUE,
            state_names=streams["state"].names,
            action_names=streams["action"].names,
            start_time_ns=start_ns,
            extra={
                "import": {
                    "format": "rosbag2",
                    "path": str(bag.resolve()),
                    "topics": {
                        "image": config.image_topic,
                        "state": config.state_topic,
                        "action": config.action_topic,
                        "instruction": config.instruction_topic,
                        "events": config.events_topic,
                    },
                    "sampling": f"{config.rate_hz} Hz" if config.rate_hz else "action messages",
                    "bag_time_ns": [start_ns, int(step_times[-1])],
                    "source_episode": segment.start_event.get("episode"),
                }
            },
        )
        planned.append(
            PlannedEpisode(
                name=f"{prefix}-{k:04d}",
                image_idx=plan.image_idx[steps],
                states=states[plan.state_idx[steps]],
                actions=actions[plan.action_idx[steps]],
                timestamps=(step_times - start_ns) / 1e9,
                meta=meta,
            )
        )
    return planned


def _write_with_frames(reader, bag, config, episodes, out, summary, progress) -> None:
    """Pass 2: decode the frames the episodes use, writing each episode once it is complete."""
    conns = [c for c in reader.connections if c.topic == config.image_topic]
    needed = set(np.concatenate([e.image_idx for e in episodes]).tolist()) if episodes else set()
    frames: dict[int, np.ndarray] = {}
    pending = list(episodes)
    bar = tqdm(total=len(pending), desc="importing", unit="ep", disable=not progress)
    for k, (conn, _, raw) in enumerate(_messages(reader, conns, bag)):
        if not pending:
            break
        if k in needed:
            try:
                image = image_of(_deserialize(reader, raw, conn, k, bag), conn.msgtype)
            except messages.MessageError as err:
                raise DataImportError(bag, f"{config.image_topic} message {k}: {err}") from None
            frames[k] = fit_square(image[None], config.image_size)[0]
        while pending and pending[0].image_idx[-1] <= k:
            _write_one(pending.pop(0), frames, bag, config, out, summary)
            bar.update()
            keep = pending[0].image_idx[0] if pending else k + 1
            frames = {i: f for i, f in frames.items() if i >= keep}
    bar.close()


def _write_one(planned: PlannedEpisode, frames, bag, config, out, summary) -> None:
    images = [frames[i] for i in planned.image_idx.tolist()]
    shapes = {f.shape for f in images}
    if len(shapes) > 1:
        raise DataImportError(
            bag, f"{config.image_topic}: image sizes change {sorted(shapes)}; give --image-size"
        )
    episode = Episode(
        images=np.stack(images),
        states=planned.states,
        actions=planned.actions,
        timestamps=planned.timestamps,
        meta=planned.meta,
    )
    write_imported(out, planned.name, episode, summary, bag)


def import_rosbag(
    bag: str | Path, out: str | Path, config: RosbagImportConfig, progress: bool = True
) -> ImportSummary:
    """Write the episodes found in the rosbag2 bag at `bag` to `out`, named `<prefix>-<k:04d>`;
    episodes already in `out` are kept."""
    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise DataImportError(bag, "no such bag")
    prefix = safe_name(config.name_prefix or (bag.stem if bag.is_file() else bag.resolve().name))
    summary = ImportSummary(source=str(bag), out=out)
    try:
        reader = AnyReader([bag], default_typestore=messages.typestore())
        reader.open()
    except Exception as err:  # rosbags raises several types for what is not a readable bag
        raise DataImportError(bag, f"cannot open as a rosbag2 bag ({err})") from None
    try:
        _check_chunks(bag)
        streams = _read_small_topics(reader, bag, config, progress)
        plan = plan_steps(streams, config, bag)
        for reason, count in plan.dropped.items():
            summary.skipped.append((f"{count} steps", reason))
        planned = []
        for episode in plan_episodes(streams, config, bag, prefix, plan):
            if not already_imported(out, episode.name, summary):
                planned.append(episode)
        _write_with_frames(reader, bag, config, planned, out, summary, progress)
    finally:
        reader.close()
    return summary
