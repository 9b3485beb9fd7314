"""Episodes through rosbag2 MCAP: round trip, rosbags' own reader, crash recovery, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from vla_rft.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    EPISODE_TOPICS,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    PARTIAL_PREFIX,
    STATE_TOPIC,
)
from vla_rft.data import messages
from vla_rft.data.episode import EpisodeError
from vla_rft.data.episode_store import (
    META_KEY,
    EpisodeWriter,
    list_episodes,
    list_partial_episodes,
    read_episode,
    recover_episode,
    write_episode,
)


def test_round_trip_matches_original_arrays(tmp_path, episode_factory):
    ep = episode_factory(steps=20, size=24)
    path = write_episode(tmp_path, "ep", ep)
    back = read_episode(path)
    np.testing.assert_array_equal(back.images, ep.images)
    np.testing.assert_array_equal(back.states, ep.states)
    np.testing.assert_array_equal(back.actions, ep.actions)
    np.testing.assert_allclose(back.timestamps, ep.timestamps, atol=1e-9)
    assert back.meta == ep.meta
    assert list_episodes(tmp_path) == [path]


def test_rosbags_reads_our_files_with_its_own_reader(tmp_path, episode_factory):
    ep = episode_factory(steps=5)
    path = write_episode(tmp_path, "ep", ep)
    with AnyReader([path]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == EPISODE_TOPICS
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts[IMAGE_TOPIC] == counts[STATE_TOPIC] == counts[ACTION_TOPIC] == 5
        images, instructions, events = [], [], []
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == IMAGE_TOPIC:
                assert msg.encoding == "rgb8"
                images.append(msg.data.reshape(msg.height, msg.width, 3))
            elif conn.topic == INSTRUCTION_TOPIC:
                instructions.append(msg.data)
            elif conn.topic == EPISODE_EVENT_TOPIC:
                events.append(json.loads(msg.data))
    np.testing.assert_array_equal(np.stack(images), ep.images)
    assert instructions == [ep.meta.instruction]
    assert [e["event"] for e in events] == ["start", "end"]
    assert events[0]["task"] == "reach-v3" and events[1]["success"] is True
    # the facts are in metadata.yaml where `ros2 bag info` users look
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap"
    assert info["custom_data"]["vla_rft.task"] == "reach-v3"
    assert info["custom_data"]["vla_rft.success"] == "true"


def test_episode_is_invisible_until_finished_and_never_overwritten(tmp_path, episode_factory):
    ep = episode_factory(steps=3)
    with EpisodeWriter(tmp_path, "ep", ep.meta) as writer:
        writer.add_step(ep.images[0], ep.states[0], ep.actions[0])
        assert list_episodes(tmp_path) == []
        assert (tmp_path / f"{PARTIAL_PREFIX}ep").is_dir()
        writer.add_step(ep.images[1], ep.states[1], ep.actions[1])
        writer.finish(success=False)
    assert [p.name for p in list_episodes(tmp_path)] == ["ep"]
    before = (tmp_path / "ep" / "ep.mcap").read_bytes()
    with pytest.raises(EpisodeError, match="never overwritten"):
        EpisodeWriter(tmp_path, "ep", ep.meta)
    assert (tmp_path / "ep" / "ep.mcap").read_bytes() == before


def _interrupted_episode(tmp_path, ep, steps: int):
    """Write `steps` steps and stop as a crashed process would (no finish, no close)."""
    writer = EpisodeWriter(tmp_path, "ep", ep.meta)
    for t in range(steps):
        writer.add_step(ep.images[t], ep.states[t], ep.actions[t])
    return tmp_path / f"{PARTIAL_PREFIX}ep"


@pytest.mark.parametrize("cut_bytes", [0, 7, 3000])
def test_interrupted_episode_recovers_every_complete_step(tmp_path, episode_factory, cut_bytes):
    ep = episode_factory(steps=10, size=32)
    partial = _interrupted_episode(tmp_path, ep, steps=8)
    mcap = next(partial.glob("*/*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) - cut_bytes])  # a crash mid-write leaves a torn record
    assert list_partial_episodes(tmp_path) == [partial]

    path, report = recover_episode(partial)
    back = read_episode(path)
    expected = 8 if cut_bytes == 0 else report.steps
    assert 1 <= report.steps <= 8 and len(back) == expected
    if cut_bytes == 0:
        assert report.steps == 8
    np.testing.assert_array_equal(back.images, ep.images[: len(back)])
    np.testing.assert_array_equal(back.actions, ep.actions[: len(back)])
    assert back.meta.success is False and back.meta.extra["recovered"]["steps"] == len(back)
    assert "recovered" in report.summary()
    assert partial.exists(), "the partial files are kept"
    assert list_partial_episodes(tmp_path) == []


def test_recovery_of_a_torn_step_keeps_only_whole_steps(tmp_path, episode_factory):
    ep = episode_factory(steps=6, size=32)
    partial = _interrupted_episode(tmp_path, ep, steps=6)
    mcap = next(partial.glob("*/*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[:-100])  # tears the last step's action chunk
    _, report = recover_episode(partial)
    assert report.steps == 5
    assert report.bytes_scanned < report.file_bytes


def test_truncated_complete_episode_gives_a_clear_error(tmp_path, episode_factory):
    path = write_episode(tmp_path, "ep", episode_factory(steps=6))
    mcap = path / "ep.mcap"
    mcap.write_bytes(mcap.read_bytes()[:-200])
    with pytest.raises(EpisodeError, match=r"ep: cannot read the bag.*truncated"):
        read_episode(path)


def _raw_bag(path, topics: dict[str, str], msgs: dict[str, list], custom: dict | None = None):
    """Write a rosbag2 MCAP bag with arbitrary topics, bypassing our writer's checks."""
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conns = {
        t: writer.add_connection(t, mt, typestore=messages.typestore()) for t, mt in topics.items()
    }
    for topic, items in msgs.items():
        for i, msg in enumerate(items):
            writer.write(conns[topic], 1000 + i, messages.serialize(msg))
    for k, v in (custom or {}).items():
        writer.set_custom_data(k, v)
    writer.close()
    return path


def _good_custom(ep, **changes):
    meta = {**ep.meta.to_dict(), **changes}
    return {META_KEY: json.dumps(meta)}


def _step_msgs(ep, image_sizes=None):
    imgs = []
    for t in range(len(ep)):
        img = ep.images[t]
        if image_sizes:
            img = np.zeros((image_sizes[t], image_sizes[t], 3), np.uint8)
        imgs.append(messages.image_to_msg(img, 1000 + t))
    return {
        IMAGE_TOPIC: imgs,
        STATE_TOPIC: [messages.array_to_msg(s) for s in ep.states],
        ACTION_TOPIC: [messages.array_to_msg(a) for a in ep.actions],
    }


def test_bad_files_are_refused_with_the_reason(tmp_path, episode_factory):
    ep = episode_factory(steps=3)
    msgs = _step_msgs(ep)

    wrong_type = dict(EPISODE_TOPICS, **{ACTION_TOPIC: "std_msgs/msg/String"})
    path = _raw_bag(
        tmp_path / "wrong_type", wrong_type, {IMAGE_TOPIC: msgs[IMAGE_TOPIC]}, _good_custom(ep)
    )
    with pytest.raises(
        EpisodeError, match=r"wrong_type: topic /vla_rft/action has type std_msgs/msg/String"
    ):
        read_episode(path)

    missing = {k: v for k, v in EPISODE_TOPICS.items() if k != STATE_TOPIC}
    path = _raw_bag(tmp_path / "missing", missing, {}, _good_custom(ep))
    with pytest.raises(EpisodeError, match=r"missing: missing topic /vla_rft/state"):
        read_episode(path)

    path = _raw_bag(
        tmp_path / "sizes", EPISODE_TOPICS, _step_msgs(ep, image_sizes=[8, 8, 9]), _good_custom(ep)
    )
    with pytest.raises(EpisodeError, match=r"sizes: image 2 is \(9, 9\) but image 0 is \(8, 8\)"):
        read_episode(path)

    path = _raw_bag(tmp_path / "future", EPISODE_TOPICS, msgs, _good_custom(ep, schema_version=99))
    with pytest.raises(EpisodeError, match=r"future: unknown episode schema version 99"):
        read_episode(path)

    path = _raw_bag(tmp_path / "foreign", EPISODE_TOPICS, msgs, {})
    with pytest.raises(EpisodeError, match=r"foreign: .*not a vla_rft episode"):
        read_episode(path)

    uneven = dict(msgs, **{ACTION_TOPIC: msgs[ACTION_TOPIC][:2]})
    path = _raw_bag(tmp_path / "uneven", EPISODE_TOPICS, uneven, _good_custom(ep))
    with pytest.raises(EpisodeError, match=r"uneven: step topics have different message counts"):
        read_episode(path)


def test_writer_refuses_bad_steps_and_keeps_what_was_written(tmp_path, episode_factory):
    ep = episode_factory(steps=3, size=16)
    with EpisodeWriter(tmp_path, "ep", ep.meta) as writer:
        writer.add_step(ep.images[0], ep.states[0], ep.actions[0])
        with pytest.raises(EpisodeError, match=r"step 1: image \(8, 8, 3\) != \(16, 16, 3\)"):
            writer.add_step(np.zeros((8, 8, 3), np.uint8), ep.states[1], ep.actions[1])
        with pytest.raises(EpisodeError, match="step 1: action holds NaN"):
            writer.add_step(ep.images[1], ep.states[1], np.full(4, np.nan, np.float32))
        writer.add_step(ep.images[1], ep.states[1], ep.actions[1])
        writer.finish(success=True)
    assert len(read_episode(tmp_path / "ep")) == 2


def test_empty_instruction_is_refused(episode_factory):
    with pytest.raises(EpisodeError, match="instruction is empty"):
        episode_factory(instruction="   ")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_encodings_convert_to_rgb(encoding):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    channels = messages.ENCODING_CHANNELS[encoding]
    if encoding == "mono8":
        rgb = np.repeat(rgb[:, :, :1], 3, axis=2)
        raw = rgb[:, :, 0]
    else:
        raw = rgb[:, :, ::-1] if encoding.startswith("bgr") else rgb
        if channels == 4:
            raw = np.concatenate([raw, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    msg = messages.image_to_msg(rgb, 0)
    msg.encoding, msg.step, msg.data = encoding, 5 * channels, np.ascontiguousarray(raw).reshape(-1)
    wire = messages.deserialize(messages.serialize(msg), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(messages.msg_to_image(wire), rgb)


def test_bad_images_are_refused_with_the_reason():
    msg = messages.image_to_msg(np.zeros((4, 5, 3), np.uint8), 0)
    msg.encoding = "16UC1"
    with pytest.raises(messages.MessageError, match="unsupported image encoding '16UC1'"):
        messages.msg_to_image(msg)
    msg = messages.image_to_msg(np.zeros((4, 5, 3), np.uint8), 0)
    msg.data = msg.data[:-1]
    with pytest.raises(messages.MessageError, match="59 bytes but 5x4 rgb8"):
        messages.msg_to_image(msg)
