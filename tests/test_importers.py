"""Importers: LeRobot data sets (v2.1 and v3.0 layouts) and rosbag2 bags made here, in each
layout, imported and read back through the episode store."""

from __future__ import annotations

import json
import re
import shutil
import struct
import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_episode
from mcap.reader import make_reader as mcap_reader
from rosbags.rosbag2 import StoragePlugin, Writer

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATE_TOPIC,
)
from vla_rft.data import list_episodes, read_episode, write_episode
from vla_rft.data.importers import (
    DataImportError,
    LeRobotImportConfig,
    RosbagImportConfig,
    import_lerobot,
    import_rosbag,
)
from vla_rft.data.importers import command as import_command
from vla_rft.data.messages import typestore
from vla_rft.data.video import encode_video

SIZE, FPS, CAM = 32, 10, "observation.images.top"
TASKS = ["pick up the red cube", "push the block left"]

# --- Building LeRobot data sets ---------------------------------------------------------------


def frame(episode: int, t: int) -> np.ndarray:
    """An RGB frame that mp4v keeps close and that differs clearly from its neighbours."""
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[:] = ((37 * t + 90 * episode) % 200 + 30, (71 * t) % 200 + 30, 128)
    x = 2 + 2 * t
    img[8:20, x : x + 10] = (250, 250, 40)
    return img


def steps(episode: int, length: int):
    """Per-step values of one synthetic LeRobot episode: frames [T,H,W,3], state [T,3], action
    [T,2], timestamps [T]."""
    rng = np.random.default_rng(episode)
    frames = np.stack([frame(episode, t) for t in range(length)])
    state = rng.normal(size=(length, 3)).astype(np.float32)
    action = rng.uniform(-1, 1, size=(length, 2)).astype(np.float32)
    return frames, state, action, (np.arange(length) / FPS).astype(np.float32)


def write_mp4(path: Path, frames: np.ndarray, codec: str = "mpeg4") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec != "mpeg4":  # AV1 (LeRobot's default) and h264, with LeRobot's encoders
        encode_video(path, frames, FPS, codec, crf=8)
        assert av.open(str(path)).streams.video[0].codec_context.name in (codec, "libdav1d")
        return
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (SIZE, SIZE))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def png_cells(frames: np.ndarray) -> list[dict]:
    encode = [cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1] for f in frames]
    return [{"bytes": buf.tobytes(), "path": None} for buf in encode]


def data_table(
    episode: int, length: int, first_index: int, camera_dtype: str, nan_at=None
) -> pa.Table:
    frames, state, action, ts = steps(episode, length)
    if nan_at is not None:
        action[nan_at, 1] = np.nan
    columns = {
        "observation.state": pa.array(list(state), type=pa.list_(pa.float32())),
        "action": pa.array(list(action), type=pa.list_(pa.float32(), 2)),
        "timestamp": pa.array(ts),
        "frame_index": pa.array(np.arange(length)),
        "episode_index": pa.array(np.full(length, episode)),
        "index": pa.array(np.arange(first_index, first_index + length)),
        "task_index": pa.array(np.full(length, episode % 2)),
        "next.success": pa.array(
            np.arange(length) == length - 1 if episode != 1 else [False] * length
        ),
    }
    if camera_dtype == "image":
        columns[CAM] = pa.array(png_cells(frames))
    return pa.table(columns)


def info_json(version: str, camera_dtype: str, episodes: int, lengths) -> dict:
    v3 = version == "v3.0"
    return {
        "codebase_version": version,
        "robot_type": "koch",
        "total_episodes": episodes,
        "total_frames": int(sum(lengths)),
        "total_tasks": len(TASKS),
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{episodes}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        if v3
        else "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        if v3
        else "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            CAM: {
                "dtype": camera_dtype,
                "shape": [SIZE, SIZE, 3],
                "names": ["height", "width", "channel"],
                "info": {"video.fps": FPS, "video.codec": "mpeg4"},
            },
            "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
            "action": {"dtype": "float32", "shape": [2], "names": {"motors": ["m0", "m1"]}},
            "next.success": {"dtype": "bool", "shape": [1], "names": None},
            **{
                k: {"dtype": "int64", "shape": [1], "names": None}
                for k in ("frame_index", "episode_index", "index", "task_index")
            },
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        },
    }


def make_lerobot_v21(root: Path, lengths=(10, 8, 12), camera_dtype="video", nan_at=None):
    (root / "meta").mkdir(parents=True)
    info = info_json("v2.1", camera_dtype, len(lengths), lengths)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    lines = [{"task_index": i, "task": t} for i, t in enumerate(TASKS)]
    (root / "meta" / "tasks.jsonl").write_text("\n".join(json.dumps(t) for t in lines))
    episodes, first = [], 0
    for ep, length in enumerate(lengths):
        episodes.append({"episode_index": ep, "tasks": [TASKS[ep % 2]], "length": length})
        path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data_table(ep, length, first, camera_dtype, nan_at), path)
        if camera_dtype == "video":
            write_mp4(root / f"videos/chunk-000/{CAM}/episode_{ep:06d}.mp4", steps(ep, length)[0])
        first += length
    (root / "meta" / "episodes.jsonl").write_text("\n".join(json.dumps(e) for e in episodes))
    return root


def make_lerobot_v30(root: Path, lengths=(10, 8, 12), video_files=(0, 0, 1), codec="mpeg4"):
    """Episodes 0 and 1 share data and video file 000, episode 2 is in file 001."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    info = info_json("v3.0", "video", len(lengths), lengths)
    info["features"][CAM]["info"]["video.codec"] = codec
    (root / "meta" / "info.json").write_text(json.dumps(info))
    tasks = pa.table({"task_index": list(range(len(TASKS))), "task": TASKS})
    pq.write_table(tasks, root / "meta" / "tasks.parquet")
    rows, tables, videos, first = [], {}, {}, 0
    for ep, length in enumerate(lengths):
        file = video_files[ep]
        start = sum(len(f) for f in videos.get(file, []))
        videos.setdefault(file, []).append(steps(ep, length)[0])
        tables.setdefault(file, []).append(data_table(ep, length, first, "video"))
        rows.append(
            {
                "episode_index": ep,
                "tasks": [TASKS[ep % 2]],
                "length": length,
                "data/chunk_index": 0,
                "data/file_index": file,
                "dataset_from_index": first,
                "dataset_to_index": first + length,
                f"videos/{CAM}/chunk_index": 0,
                f"videos/{CAM}/file_index": file,
                f"videos/{CAM}/from_timestamp": start / FPS,
                f"videos/{CAM}/to_timestamp": (start + length) / FPS,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "stats/action/mean": [0.0, 0.0],
            }
        )
        first += length
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    for file, parts in tables.items():
        path = root / f"data/chunk-000/file-{file:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(parts), path)
        write_mp4(
            root / f"videos/{CAM}/chunk-000/file-{file:03d}.mp4",
            np.concatenate(videos[file]),
            codec,
        )
    return root


def assert_frames_match(images: np.ndarray, episode: int) -> None:
    """Within mp4v's loss, and each frame closer to its own source frame than to a neighbour's."""
    truth = np.stack([frame(episode, t) for t in range(len(images))]).astype(np.int16)
    err = np.abs(images.astype(np.int16) - truth).mean(axis=(1, 2, 3))
    assert err.max() < 8, err
    shifted = np.abs(images[1:].astype(np.int16) - truth[:-1]).mean(axis=(1, 2, 3))
    assert (shifted > 2 * err[1:] + 5).all()


# --- LeRobot ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["av1", "h264"])
def test_lerobots_default_av1_and_h264_videos_import_frame_for_frame(tmp_path, codec):
    src = make_lerobot_v30(tmp_path / "koch_pick", codec=codec)
    summary = import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    assert summary.steps == 30 and not summary.skipped
    for ep, length in enumerate((10, 8, 12)):
        episode = read_episode(tmp_path / "out" / f"koch_pick-ep{ep:06d}")
        assert len(episode) == length
        assert_frames_match(episode.images, ep)


@pytest.mark.parametrize("layout", ["v2.1", "v3.0"])
def test_lerobot_import_reads_back_exact_values(tmp_path, layout):
    make = make_lerobot_v21 if layout == "v2.1" else make_lerobot_v30
    src = make(tmp_path / "koch_pick")
    summary = import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    assert [n for n, _ in summary.written] == [f"koch_pick-ep{i:06d}" for i in range(3)]
    assert summary.steps == 30 and not summary.skipped

    for ep, length in enumerate((10, 8, 12)):
        episode = read_episode(tmp_path / "out" / f"koch_pick-ep{ep:06d}")
        _, state, action, ts = steps(ep, length)
        np.testing.assert_array_equal(episode.states, state)
        np.testing.assert_array_equal(episode.actions, action)
        np.testing.assert_allclose(episode.timestamps, ts, atol=1e-6)
        assert_frames_match(episode.images, ep)
        meta = episode.meta
        assert meta.instruction == TASKS[ep % 2] and meta.task == f"koch_pick-task{ep % 2}"
        assert (meta.source, meta.robot, meta.fps, meta.success) == ("import", "koch", FPS, False)
        assert meta.state_names == ("x", "y", "z") and meta.action_names == ("m0", "m1")
        provenance = meta.extra["import"]
        assert provenance["codebase_version"] == layout and provenance["episode_index"] == ep
        assert provenance["keys"] == {
            "image": CAM,
            "state": "observation.state",
            "action": "action",
        }
        assert provenance["path"] == str(src.resolve())


def test_lerobot_image_column_success_column_resize_and_rerun(tmp_path):
    src = make_lerobot_v21(tmp_path / "ds", lengths=(6, 5), camera_dtype="image")
    config = LeRobotImportConfig(
        success="next.success", image_size=16, instruction="do it", task="t", robot="r"
    )
    import_lerobot(src, tmp_path / "out", config, progress=False)
    first, second = (read_episode(p) for p in list_episodes(tmp_path / "out"))
    assert first.images.shape == (6, 16, 16, 3)
    expected = cv2.resize(frame(0, 3), (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(first.images[3], expected)  # PNG is lossless
    assert (first.meta.success, second.meta.success) == (True, False)
    assert (first.meta.instruction, first.meta.task, first.meta.robot) == ("do it", "t", "r")

    again = import_lerobot(src, tmp_path / "out", config, progress=False)
    assert not again.written and [r for _, r in again.skipped] == ["already imported"] * 2


def test_lerobot_selected_episodes(tmp_path):
    src = make_lerobot_v30(tmp_path / "ds")
    summary = import_lerobot(
        src, tmp_path / "out", LeRobotImportConfig(episodes=(2,)), progress=False
    )
    assert summary.written == [("ds-ep000002", 12)]
    with pytest.raises(DataImportError, match=r"no episodes \[7\]"):
        import_lerobot(src, tmp_path / "o2", LeRobotImportConfig(episodes=(7,)), progress=False)


def _corrupt(kind: str, root: Path) -> tuple[LeRobotImportConfig, str]:
    """Break a v2.1 data set one way; returns the config to import with and the expected error."""
    if kind == "version":
        info = json.loads((root / "meta/info.json").read_text())
        info["codebase_version"] = "v1.6"
        (root / "meta/info.json").write_text(json.dumps(info))
        return LeRobotImportConfig(), "unknown LeRobot codebase_version 'v1.6'"
    if kind == "missing video":
        (root / f"videos/chunk-000/{CAM}/episode_000001.mp4").unlink()
        return LeRobotImportConfig(), "episode_000001.mp4: missing video"
    if kind == "short video":
        write_mp4(root / f"videos/chunk-000/{CAM}/episode_000001.mp4", steps(1, 8)[0][:7])
        return LeRobotImportConfig(), "has 7 frames but episode_000001.parquet has 8 rows"
    if kind == "missing key":
        return LeRobotImportConfig(state_key="observation.joints"), (
            "no state feature 'observation.joints'; available: observation.images.top, "
            "observation.state, action"
        )
    if kind == "missing camera":
        return LeRobotImportConfig(image_key="observation.images.wrist"), (
            f"no camera feature 'observation.images.wrist'; cameras: {CAM}"
        )
    if kind == "bad metadata":
        (root / "meta/episodes.jsonl").write_text('{"tasks": ["x"], "length": 3}')
        return LeRobotImportConfig(), "metadata not in the v2.1 layout (KeyError: 'episode_index')"
    if kind == "bad success column":
        return LeRobotImportConfig(success="next.done"), "no success column 'next.done'"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "version",
        "missing video",
        "short video",
        "missing key",
        "missing camera",
        "bad metadata",
        "bad success column",
    ],
)
def test_lerobot_errors_name_the_file_and_fault(tmp_path, kind):
    src = make_lerobot_v21(tmp_path / "ds")
    config, message = _corrupt(kind, src)
    with pytest.raises(DataImportError, match=re.escape(message)):
        import_lerobot(src, tmp_path / "out", config, progress=False)
    assert not any(p.name.startswith(".partial") for p in (tmp_path / "out").glob("*"))


@pytest.mark.parametrize(
    ("column", "shift", "message"),
    [
        (
            "to_timestamp",
            -0.3,
            "episode 1 needs frames 10..17 but its part of the video holds "
            "frames 10..14 (18 in the file)",
        ),
        ("from_timestamp", 0.05, "episode 1 row 0: timestamp 0.000000 s is 0.05 s from any frame"),
        ("length", 1, "episode 1 has 8 rows but the episode metadata says length 9"),
    ],
)
def test_lerobot_v3_episode_metadata_is_checked(tmp_path, column, shift, message):
    src = make_lerobot_v30(tmp_path / "ds")
    path = src / "meta/episodes/chunk-000/file-000.parquet"
    rows = pq.read_table(path).to_pylist()
    key = column if column == "length" else f"videos/{CAM}/{column}"
    rows[1][key] += shift
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataImportError, match=re.escape(message)):
        import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    assert [p.name for p in list_episodes(tmp_path / "out")] == ["ds-ep000000"]


def test_lerobot_nan_action_and_skip_bad(tmp_path):
    src = make_lerobot_v21(tmp_path / "ds", nan_at=4)
    with pytest.raises(DataImportError, match=r"episode_000000\.parquet: action of episode 0 "):
        import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    summary = import_lerobot(
        src, tmp_path / "out", LeRobotImportConfig(skip_bad=True), progress=False
    )
    assert not summary.written and len(summary.skipped) == 3
    assert "holds NaN or inf at step 4" in summary.skipped[0][1]
    assert "skipped because" in summary.table()


def test_lerobot_several_cameras_need_a_choice(tmp_path):
    src = make_lerobot_v21(tmp_path / "ds", lengths=(4,))
    info = json.loads((src / "meta/info.json").read_text())
    info["features"]["observation.images.wrist"] = dict(info["features"][CAM])
    (src / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DataImportError, match=r"several cameras .* choose one with --image-key"):
        import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    summary = import_lerobot(
        src, tmp_path / "out", LeRobotImportConfig(image_key=CAM), progress=False
    )
    assert summary.written == [("ds-ep000000", 4)]


# --- rosbag2 ----------------------------------------------------------------------------------

T = typestore().types
SEC = 10**9


def write_bag(path: Path, records, storage=StoragePlugin.MCAP) -> Path:
    """records: (topic, msgtype, time_ns, msg) in any order."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {}
        for topic, msgtype, stamp, msg in sorted(records, key=lambda r: r[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=typestore())
            writer.write(conns[topic], stamp, typestore().serialize_cdr(msg, msgtype))
    return path


def header(stamp: int):
    time = T["builtin_interfaces/msg/Time"](sec=stamp // SEC, nanosec=stamp % SEC)
    return T["std_msgs/msg/Header"](stamp=time, frame_id="cam")


def image_frame(k: int) -> np.ndarray:
    """Image message k: a flat colour that JPEG keeps, unique per message."""
    return np.full((SIZE, SIZE, 3), ((5 * k) % 250, (11 * k) % 250, 200 - k % 100), np.uint8)


def compressed(k: int, stamp: int):
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(image_frame(k), cv2.COLOR_RGB2BGR))
    return T["sensor_msgs/msg/CompressedImage"](
        header=header(stamp), format="rgb8; jpeg compressed bgr8", data=buf.reshape(-1)
    )


def raw_image(k: int, stamp: int):
    from vla_rft.data.messages import image_to_msg

    return image_to_msg(image_frame(k), stamp)


def joint_state(k: int, stamp: int):
    return T["sensor_msgs/msg/JointState"](
        header=header(stamp),
        name=["j0", "j1", "j2"],
        position=np.array([k, k + 0.5, -k], dtype=np.float64),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )


def multi_array(values, msgtype="std_msgs/msg/Float64MultiArray", label=""):
    dim = T["std_msgs/msg/MultiArrayDimension"](label=label, size=len(values), stride=len(values))
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[dim], data_offset=0)
    dtype = np.float64 if "64" in msgtype else np.float32
    return T[msgtype](layout=layout, data=np.asarray(values, dtype=dtype))


def string(text: str):
    return T["std_msgs/msg/String"](data=text)


def event(payload: dict):
    return string(json.dumps(payload))


def teleop_records(t0: int = 100 * SEC):
    """A teleop bag: camera 30 Hz (JPEG), joint states 50 Hz, actions 10 Hz for 3 s, two
    episodes marked by events (0.2..1.2 s succeeded, 1.5..2.5 s failed), one instruction."""
    cam = [
        ("/cam/compressed", "sensor_msgs/msg/CompressedImage", t0 + k * SEC // 30, k)
        for k in range(90)
    ]
    joints = [
        ("/joint_states", "sensor_msgs/msg/JointState", t0 + 3_000_000 + k * SEC // 50, k)
        for k in range(150)
    ]
    actions = [
        ("/cmd", "std_msgs/msg/Float64MultiArray", t0 + 5_000_000 + k * SEC // 10, k)
        for k in range(30)
    ]
    records = [(topic, ty, t, compressed(k, t)) for topic, ty, t, k in cam]
    records += [(topic, ty, t, joint_state(k, t)) for topic, ty, t, k in joints]
    records += [(topic, ty, t, multi_array([k, -k / 10])) for topic, ty, t, k in actions]
    records.append(("/instruction", "std_msgs/msg/String", t0, string("wipe the table")))
    for start, end, success in ((0.2, 1.2, True), (1.5, 2.5, False)):
        records.append(
            (
                EPISODE_EVENT_TOPIC,
                "std_msgs/msg/String",
                t0 + int(start * SEC),
                event({"event": "start", "task": "wipe", "episode": f"e{start}"}),
            )
        )
        records.append(
            (
                EPISODE_EVENT_TOPIC,
                "std_msgs/msg/String",
                t0 + int(end * SEC),
                event({"event": "end", "success": success}),
            )
        )
    return records, {"cam": cam, "joints": joints, "actions": actions}


def latest(times, t: int) -> int:
    return max(i for i, s in enumerate(times) if s <= t)


def test_rosbag_events_compressed_images_and_joint_states(tmp_path):
    records, sent = teleop_records()
    bag = write_bag(tmp_path / "teleop", records)
    config = RosbagImportConfig(
        image_topic="/cam/compressed",
        state_topic="/joint_states",
        action_topic="/cmd",
        instruction_topic="/instruction",
        events_topic=EPISODE_EVENT_TOPIC,
        robot="ur5",
    )
    summary = import_rosbag(bag, tmp_path / "out", config, progress=False)
    assert [name for name, _ in summary.written] == ["teleop-0000", "teleop-0001"]

    cam_t = [t for *_, t, _ in sent["cam"]]
    joint_t = [t for *_, t, _ in sent["joints"]]
    for name, (start, end), success in zip(
        ("teleop-0000", "teleop-0001"), ((0.2, 1.2), (1.5, 2.5)), (True, False), strict=True
    ):
        episode = read_episode(tmp_path / "out" / name)
        window = [a for a in sent["actions"] if start * SEC <= a[2] - 100 * SEC <= end * SEC]
        assert len(episode) == len(window) == 10
        for step, (_, _, t, k) in enumerate(window):
            np.testing.assert_array_equal(episode.actions[step], np.float32([k, -k / 10]))
            j = latest(joint_t, t)
            np.testing.assert_array_equal(episode.states[step], [j, j + 0.5, -j])
            diff = np.abs(episode.images[step].astype(int) - image_frame(latest(cam_t, t)))
            assert diff.max() <= 3
            assert episode.timestamps[step] == pytest.approx((t - window[0][2]) / 1e9)
        meta = episode.meta
        assert (meta.instruction, meta.task, meta.robot, meta.success) == (
            "wipe the table",
            "wipe",
            "ur5",
            success,
        )
        assert meta.fps == pytest.approx(10.0) and meta.state_names == ("j0", "j1", "j2")
        assert meta.extra["import"]["source_episode"] == f"e{start}"
    assert ("10 steps", "outside start..end events") in summary.skipped


def arm_bag(path: Path) -> Path:
    """sqlite3 storage. Raw images and Float32MultiArray states every 50 ms, JointTrajectory
    actions every 200 ms; all three pause for 1 s after 0.95 s. Message k of each is value k."""
    t0, records = 50 * SEC, []
    for k in range(40):
        t = t0 + k * SEC // 20 + (SEC if k >= 20 else 0)
        state = multi_array([k, 2 * k], "std_msgs/msg/Float32MultiArray", "a,b")
        records.append(("/img", "sensor_msgs/msg/Image", t, raw_image(k, t)))
        records.append(("/state", "std_msgs/msg/Float32MultiArray", t + 1, state))
    for k in range(10):
        t = t0 + k * SEC // 5 + (SEC if k >= 5 else 0) + 2
        point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.full(4, k, float),
            velocities=np.zeros(0),
            accelerations=np.zeros(0),
            effort=np.zeros(0),
            time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
        )
        traj = T["trajectory_msgs/msg/JointTrajectory"](
            header=header(t), joint_names=["w", "x", "y", "z"], points=[point]
        )
        records.append(("/traj", "trajectory_msgs/msg/JointTrajectory", t, traj))
    return write_bag(path, records, storage=StoragePlugin.SQLITE3)


ARM = {"image_topic": "/img", "state_topic": "/state", "action_topic": "/traj"}


def test_rosbag_fixed_rate_splits_where_inputs_go_stale(tmp_path):
    bag = arm_bag(tmp_path / "arm")
    config = RosbagImportConfig(
        **ARM, instruction="stack the cups", rate_hz=20, max_age_s=0.1, image_size=16
    )
    summary = import_rosbag(bag, tmp_path / "out", config, progress=False)
    first, second = (read_episode(p) for p in list_episodes(tmp_path / "out"))
    # Steps every 50 ms from t0 + 2 ns (all three topics seen) to the last action. Step m
    # sees image and state m; from m = 21 the newest image is over 0.1 s old until the
    # images resume at step 40 (image 20).
    assert summary.written == [("arm-0000", 21), ("arm-0001", 17)]
    assert ("19 steps", "image or state older than max_age_s") in summary.skipped
    seen = [min(m, 19) for m in range(21)]
    np.testing.assert_array_equal(first.states, [[k, 2 * k] for k in seen])
    np.testing.assert_array_equal(first.actions[:, 0], [min(m // 4, 4) for m in range(21)])
    small = [cv2.resize(image_frame(k), (16, 16), interpolation=cv2.INTER_AREA) for k in seen]
    np.testing.assert_array_equal(first.images, small)
    np.testing.assert_allclose(first.timestamps, np.arange(21) / 20)
    np.testing.assert_array_equal(second.states[:, 0], np.arange(20, 37))
    np.testing.assert_array_equal(second.actions[:, 0], [5 + i // 4 for i in range(17)])
    assert first.meta.fps == 20 and first.meta.instruction == "stack the cups"
    assert first.meta.state_names == ("a", "b") and first.meta.action_names == ("w", "x", "y", "z")


def test_rosbag_action_steps_split_at_a_pause(tmp_path):
    bag = arm_bag(tmp_path / "arm")
    config = RosbagImportConfig(**ARM, instruction="stack the cups", split_gap_s=0.5)
    summary = import_rosbag(bag, tmp_path / "out", config, progress=False)
    assert summary.written == [("arm-0000", 5), ("arm-0001", 5)]
    first, second = (read_episode(p) for p in list_episodes(tmp_path / "out"))
    np.testing.assert_array_equal(first.actions[:, 0], range(5))
    np.testing.assert_array_equal(first.states[:, 0], [4 * k for k in range(5)])
    np.testing.assert_array_equal(second.states[:, 0], [20 + 4 * k for k in range(5)])
    np.testing.assert_array_equal(second.images[2], image_frame(28))
    assert first.meta.fps == pytest.approx(5.0)

    longer = RosbagImportConfig(**ARM, instruction="stack", split_gap_s=0.5, min_steps=6)
    summary = import_rosbag(bag, tmp_path / "out2", longer, progress=False)
    assert not summary.written
    assert summary.skipped == [("10 steps", "in an episode shorter than min_steps=6")]


def test_rosbag_round_trip_of_a_vla_rft_episode(tmp_path):
    """One of our own episodes is a rosbag2 bag: importing it with its events gives it back."""
    original = make_episode(steps=9, size=16, seed=3, success=True)
    path = write_episode(tmp_path / "recorded", "ep", original)
    config = RosbagImportConfig(
        image_topic=IMAGE_TOPIC,
        state_topic=STATE_TOPIC,
        action_topic=ACTION_TOPIC,
        instruction_topic=INSTRUCTION_TOPIC,
        events_topic=EPISODE_EVENT_TOPIC,
    )
    import_rosbag(path, tmp_path / "out", config, progress=False)
    episode = read_episode(tmp_path / "out" / "ep-0000")
    np.testing.assert_array_equal(episode.images, original.images)
    np.testing.assert_array_equal(episode.states, original.states)
    np.testing.assert_array_equal(episode.actions, original.actions)
    np.testing.assert_allclose(episode.timestamps, original.timestamps, atol=1e-9)
    meta = episode.meta
    assert (meta.task, meta.instruction, meta.robot, meta.success) == (
        "reach-v3",
        "reach the red goal",
        "test-robot",
        True,
    )
    assert meta.fps == 80 and meta.state_names == original.meta.state_names


def _bag_with_nan_state(path: Path) -> Path:
    records = [("/img", "sensor_msgs/msg/Image", SEC, raw_image(0, SEC))]
    for k, value in enumerate((1.0, np.nan)):
        records.append(("/state", "std_msgs/msg/Float64MultiArray", SEC + k, multi_array([value])))
    records.append(("/traj", "std_msgs/msg/Float64MultiArray", SEC + 5, multi_array([0.0])))
    return write_bag(path, records)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"state_topic": "/joints"},
            "no state topic '/joints'; topics in the bag: "
            "/act (std_msgs/msg/Float64MultiArray), /img (sensor_msgs/msg/Image)",
        ),
        ({"state_topic": "/instr"}, "state topic /instr has type std_msgs/msg/String; accepted"),
        ({"instruction_topic": "/numbers"}, "instruction topic /numbers has type"),
        ({"action_topic": "/img"}, "the same topic is given for two roles"),
    ],
)
def test_rosbag_topic_errors(tmp_path, change, message):
    records = [
        ("/img", "sensor_msgs/msg/Image", SEC, raw_image(0, SEC)),
        ("/state", "std_msgs/msg/Float64MultiArray", SEC, multi_array([1.0])),
        ("/act", "std_msgs/msg/Float64MultiArray", SEC, multi_array([1.0])),
        ("/numbers", "std_msgs/msg/Float64MultiArray", SEC, multi_array([1.0])),
        ("/instr", "std_msgs/msg/String", SEC, string("go")),
    ]
    bag = write_bag(tmp_path / "bag", records)
    config = RosbagImportConfig(**{**ARM, "action_topic": "/act", "instruction": "go", **change})
    with pytest.raises(DataImportError, match=re.escape(message)):
        import_rosbag(bag, tmp_path / "out", config, progress=False)


def test_rosbag_data_errors(tmp_path):
    bag = _bag_with_nan_state(tmp_path / "nan")
    config = RosbagImportConfig(**{**ARM, "action_topic": "/traj"}, instruction="go")
    with pytest.raises(DataImportError, match=r"nan: /state message 1: NaN or inf"):
        import_rosbag(bag, tmp_path / "out", config, progress=False)

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: a bag")
    with pytest.raises(DataImportError, match="cannot open as a rosbag2 bag"):
        import_rosbag(tmp_path / "junk", tmp_path / "out", config, progress=False)

    records, _ = teleop_records()
    bag = write_bag(tmp_path / "teleop", [r for r in records if r[0] != "/instruction"])
    events_only = RosbagImportConfig(
        image_topic="/cam/compressed",
        state_topic="/joint_states",
        action_topic="/cmd",
        events_topic=EPISODE_EVENT_TOPIC,
    )
    with pytest.raises(DataImportError, match="no instruction for the episode starting at"):
        import_rosbag(bag, tmp_path / "out", events_only, progress=False)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())

    junk = T["sensor_msgs/msg/CompressedImage"](
        header=header(SEC), format="jpeg", data=np.arange(50, dtype=np.uint8)
    )
    records = [("/img", "sensor_msgs/msg/CompressedImage", SEC, junk)]
    records += [
        (t, "std_msgs/msg/Float64MultiArray", SEC + 1, multi_array([1.0]))
        for t in ("/state", "/act")
    ]
    bag = write_bag(tmp_path / "junk_jpeg", records)
    config = RosbagImportConfig(**{**ARM, "action_topic": "/act"}, instruction="go", fps=10)
    with pytest.raises(DataImportError, match=r"/img message 0: cannot decode the compressed"):
        import_rosbag(bag, tmp_path / "out", config, progress=False)

    with pytest.raises(ValueError, match="give an instruction, an instruction topic or"):
        RosbagImportConfig(**ARM)


# --- The command ------------------------------------------------------------------------------


def test_import_command_both_formats_and_errors(tmp_path, capsys):
    src = make_lerobot_v30(tmp_path / "ds", lengths=(5, 4))
    assert import_command.main(["lerobot", str(src), "--out", str(tmp_path / "out"), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"| {src} | {tmp_path / 'out'} | 2 | 9 | 0 |" in out

    bag = arm_bag(tmp_path / "arm")
    argv = ["rosbag", str(bag), "--out", str(tmp_path / "out"), "--image-topic", "/img"]
    argv += ["--state-topic", "/state", "--action-topic", "/traj", "--instruction", "stack"]
    assert import_command.main([*argv, "--split-gap", "0.5", "-q"]) == 0
    assert "| 2 | 10 | 0 |" in capsys.readouterr().out
    assert import_command.main([*argv, "--split-gap", "0.5", "-q"]) == 0
    assert "| already imported | 2 | arm-0000 |" in capsys.readouterr().out
    assert len(list_episodes(tmp_path / "out")) == 4

    assert import_command.main([*argv, "--rate", "-1", "-q"]) == 2
    assert "error: rate_hz must be positive, got -1.0" in capsys.readouterr().err
    assert import_command.main(["lerobot", str(tmp_path), "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "meta/info.json: missing" in capsys.readouterr().err


def test_import_goes_on_after_an_interrupted_write(tmp_path):
    """A partial episode left by a killed import is set aside (kept), the episode rewritten."""
    src = make_lerobot_v21(tmp_path / "ds", lengths=(4, 5))
    (tmp_path / "out" / ".partial-ds-ep000001" / "ds-ep000001").mkdir(parents=True)
    summary = import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    assert summary.written == [("ds-ep000000", 4), ("ds-ep000001", 5)]
    assert len(read_episode(tmp_path / "out" / "ds-ep000001")) == 5
    assert len(list((tmp_path / "out").glob(".partial-ds-ep000001.interrupted-*"))) == 1


# --- Hostile LeRobot metadata -----------------------------------------------------------------


def _edit_info(root: Path, **changes) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info.update(changes)
    (root / "meta/info.json").write_text(json.dumps(info))


def _escape_data_path(root: Path) -> str:
    """data_path leads, by '..', to a copy of the data files beside the data set."""
    shutil.copytree(root / "data", root.parent / "elsewhere")
    data = "../elsewhere/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    _edit_info(root, data_path=data)
    return "data_path"


def _escape_video_path(root: Path) -> str:
    shutil.copytree(root / "videos", root.parent / "vids")
    video = "../vids/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    _edit_info(root, video_path=video)
    return "video_path"


def _absolute_image_cell(root: Path) -> str:
    """Every image cell of episode 0 names an (otherwise valid) PNG outside the data set."""
    outside = root.parent / "secret.png"
    outside.write_bytes(cv2.imencode(".png", frame(0, 0))[1].tobytes())
    path = root / "data/chunk-000/episode_000000.parquet"
    table = pq.read_table(path)
    cell = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = pa.array([{"bytes": None, "path": str(outside)}] * table.num_rows, type=cell)
    pq.write_table(table.set_column(table.column_names.index(CAM), CAM, cells), path)
    return f"column {CAM!r} row 0"


@pytest.mark.parametrize("escape", [_escape_data_path, _escape_video_path, _absolute_image_cell])
def test_lerobot_paths_outside_the_data_set_are_refused(tmp_path, escape):
    dtype = "image" if escape is _absolute_image_cell else "video"
    src = make_lerobot_v21(tmp_path / "ds", lengths=(4, 3), camera_dtype=dtype)
    what = escape(src)
    with pytest.raises(DataImportError, match=f"{re.escape(what)}: .* outside the data set"):
        import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    assert list_episodes(tmp_path / "out") == []


def test_lerobot_in_the_hub_cache_follows_its_links_to_blobs(tmp_path):
    """The Hugging Face cache keeps files in <repo>/blobs and links to them from
    <repo>/snapshots/<revision>: those links stay allowed, a link elsewhere does not."""
    src = make_lerobot_v21(tmp_path / "repo/snapshots/abc123", lengths=(4,))
    (tmp_path / "repo/blobs").mkdir()
    for name in ("meta/info.json", "data/chunk-000/episode_000000.parquet"):
        blob = tmp_path / "repo/blobs" / name.replace("/", "_")
        (src / name).rename(blob)
        (src / name).symlink_to(blob)
    summary = import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    assert summary.written == [("abc123-ep000000", 4)]

    video = src / f"videos/chunk-000/{CAM}/episode_000000.mp4"
    video.rename(tmp_path / "elsewhere.mp4")
    video.symlink_to(tmp_path / "elsewhere.mp4")
    with pytest.raises(DataImportError, match="outside the data set"):
        import_lerobot(src, tmp_path / "out2", LeRobotImportConfig(), progress=False)


def _huge_task(root: Path) -> None:
    lines = [
        {"task_index": i, "task": "x" * 5_000_000 if i == 0 else t} for i, t in enumerate(TASKS)
    ]
    (root / "meta/tasks.jsonl").write_text("\n".join(json.dumps(t) for t in lines))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda root: _edit_info(root, chunks_size=0), "chunks_size: 0 is not an integer in 1.."),
        (
            lambda root: _edit_info(root, data_path="data/{episode_index:099999d}.parquet"),
            "data_path: format '099999d' of {episode_index} is not a width below 100",
        ),
        (lambda root: _edit_info(root, fps=1e308), "fps: 1e+308 is not a number in "),
        (lambda root: _edit_info(root, fps="ten"), "fps: 'ten' is not a number in "),
        (
            lambda root: _edit_info(root, data_path="{episode_index.__class__}"),
            "data_path: field 'episode_index.__class__' is not one of",
        ),
        (_huge_task, "task 0: 'xxxxxxxx"),
    ],
)
def test_lerobot_metadata_out_of_bounds_is_refused(tmp_path, tamper, message):
    src = make_lerobot_v21(tmp_path / "ds", lengths=(4, 3), camera_dtype="image")
    tamper(src)
    with pytest.raises(DataImportError, match=re.escape(message)) as err:
        import_lerobot(src, tmp_path / "out", LeRobotImportConfig(), progress=False)
    assert len(str(err.value)) < 300
    assert list_episodes(tmp_path / "out") == []


def test_import_command_quotes_hostile_metadata_briefly(tmp_path, capsys):
    src = make_lerobot_v21(tmp_path / "ds", lengths=(4,))
    _huge_task(src)
    assert import_command.main(["lerobot", str(src), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "tasks.jsonl: task 0: 'xxx" in err and "(5000002 characters)" in err
    assert len(err) < 300


# --- Hostile rosbag2 records ------------------------------------------------------------------


def _cdr(msg, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype))


def _patch(path: Path, old: bytes, at: int, new: bytes) -> None:
    """Overwrite bytes `at` bytes into the (only) occurrence of `old` in the file with `new`."""
    data = bytearray(path.read_bytes())
    start = data.find(old)
    assert start >= 0 and data.find(old, start + 1) < 0
    data[start + at : start + at + len(new)] = new
    path.write_bytes(bytes(data))


def _hostile_bag(path: Path, kind: str, storage=StoragePlugin.MCAP) -> Path:
    """A valid bag (raw images, two Float64MultiArray topics, 5 messages each) whose bytes are
    then overwritten so that one length field claims far more than the file holds."""
    records = []
    for k in range(5):
        t = SEC + k * SEC // 10
        records.append(("/img", "sensor_msgs/msg/Image", t, raw_image(k, t)))
        records.append(("/state", "std_msgs/msg/Float64MultiArray", t + 1, multi_array([k, -k])))
        records.append(("/act", "std_msgs/msg/Float64MultiArray", t + 2, multi_array([k + 0.5])))
    write_bag(path, records, storage)
    file = next(f for f in path.iterdir() if f.suffix in (".mcap", ".db3"))
    if kind == "4 GB image":  # the uint32 length of Image.data, just before the pixels
        t = SEC + 2 * SEC // 10
        cdr = _cdr(raw_image(2, t), "sensor_msgs/msg/Image")
        _patch(file, cdr, len(cdr) - SIZE * SIZE * 3 - 4, struct.pack("<I", 0xFFFFFFF0))
    elif kind == "1 G floats":  # the length of data (then 4 bytes padding and one float64)
        cdr = _cdr(multi_array([3.5]), "std_msgs/msg/Float64MultiArray")
        _patch(file, cdr, len(cdr) - 16, struct.pack("<I", 2**30))
    elif kind in ("1 TB chunk", "4 GB chunk"):  # compressed_size in the summary's chunk index
        with open(file, "rb") as f:
            index = mcap_reader(f).get_summary().chunk_indexes[0]
        old = struct.pack("<QQ", index.compressed_size, index.uncompressed_size)
        _patch(file, old, 0, struct.pack("<Q", 2**40 if kind == "1 TB chunk" else 2**32))
    elif kind == "2^62 record":  # opcode 0x05 and the uint64 length of /act's message record
        cdr = _cdr(multi_array([1.5]), "std_msgs/msg/Float64MultiArray")
        _patch(file, cdr, -31, b"\x05" + struct.pack("<Q", 2**62))
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    ("kind", "storage", "message"),
    [
        ("4 GB image", StoragePlugin.MCAP, ": /img message 2: undecodable sensor_msgs/msg/Image "),
        ("1 G floats", StoragePlugin.MCAP, ": /act message 3: undecodable std_msgs/msg/Float64"),
        ("1 G floats", StoragePlugin.SQLITE3, ": /act message 3: undecodable std_msgs/msg/Float64"),
        ("1 TB chunk", StoragePlugin.MCAP, "/bag.mcap: chunk 0 claims 1099511627776 bytes at "),
        ("4 GB chunk", StoragePlugin.MCAP, "/bag.mcap: chunk 0 claims 4294967296 bytes at "),
        ("2^62 record", StoragePlugin.MCAP, ": unreadable record of /act, /img or /state after "),
    ],
)
def test_rosbag_hostile_lengths_are_a_usage_error(tmp_path, capsys, kind, storage, message):
    bag = _hostile_bag(tmp_path / "bag", kind, storage)
    argv = ["rosbag", str(bag), "--out", str(tmp_path / "out"), "--image-topic", "/img"]
    argv += ["--state-topic", "/state", "--action-topic", "/act", "--instruction", "go", "-q"]
    tracemalloc.start()
    try:
        code = import_command.main(argv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # the claimed length is never allocated
    err = capsys.readouterr().err
    assert code == 2 and f"error: {bag}{message}" in err and len(err) < 400, err
    assert list_episodes(tmp_path / "out") == []
