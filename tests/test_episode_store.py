"""Episodes through rosbag2 MCAP: round trip, rosbags' own reader, crash recovery, bad files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from mcap.records import Chunk
from mcap.stream_reader import StreamReader
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from vla_rft.contract.constants import (
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
    QUARANTINE_PREFIX,
    EpisodeChecksumError,
    EpisodeWriter,
    list_episodes,
    list_partial_episodes,
    read_episode,
    recover_episode,
    recover_partial_episodes,
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


def _topic_metadata(path) -> dict[str, dict]:
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return info["version"], {t["topic_metadata"]["name"]: t["topic_metadata"] for t in
                             info["topics_with_message_count"]}  # fmt: skip


def test_metadata_is_what_humble_and_jazzy_read_with_the_recorders_real_qos(
    tmp_path, episode_factory
):
    """Version 8, with each topic's offered QoS as a YAML string (Humble's rosbag2 reads a string;
    version 9's list makes it fail, ros2/rosbag2#2013); `ros2 bag play` republishes with these,
    so the instruction comes back latched and images as sensor data."""
    path = write_episode(tmp_path, "ep", episode_factory(steps=3))
    version, topics = _topic_metadata(path)
    assert version == 8
    offered = {}
    for name, meta in topics.items():
        assert isinstance(meta["offered_qos_profiles"], str), name
        (profile,) = yaml.safe_load(meta["offered_qos_profiles"])
        offered[name] = (profile["reliability"], profile["durability"], profile["depth"])
    reliable, best_effort, transient_local, volatile = 1, 2, 1, 2  # rmw's enum values
    assert offered[INSTRUCTION_TOPIC] == (reliable, transient_local, 1)
    assert offered[IMAGE_TOPIC] == offered[STATE_TOPIC] == (best_effort, volatile, 5)
    assert offered[ACTION_TOPIC] == offered[EPISODE_EVENT_TOPIC] == (reliable, volatile, 10)


def test_version_9_metadata_is_an_option_and_reads_back_the_same(tmp_path, episode_factory):
    episode = episode_factory(steps=4)
    with EpisodeWriter(tmp_path, "v9", episode.meta, bag_version=9) as writer:
        for t in range(len(episode)):
            writer.add_step(episode.images[t], episode.states[t], episode.actions[t])
        path = writer.finish(True)
    version, topics = _topic_metadata(path)
    assert version == 9
    assert topics[INSTRUCTION_TOPIC]["offered_qos_profiles"][0]["durability"] == "transient_local"
    np.testing.assert_array_equal(read_episode(path).images, episode.images)


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


# --- Integrity: kills at any point, truncated finished files, flipped bytes (issue 15) ----------


def _cli(capsys, *args) -> tuple[int, str]:
    from vla_rft.cli import main

    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("state", ["no_bag_dir", "no_mcap", "0_bytes", "magic_only", "no_step"])
def test_recover_quarantines_an_episode_killed_before_its_first_step(
    tmp_path, episode_factory, capsys, state
):
    """A SIGKILL while the writer opens leaves nothing to salvage; recover keeps the files aside,
    says where, exits 0, and the next start has nothing left to do."""
    ep = episode_factory(steps=2)
    EpisodeWriter(tmp_path, "ep", ep.meta)  # killed: no step, no close
    partial = tmp_path / f"{PARTIAL_PREFIX}ep"
    mcap = partial / "ep" / "ep.mcap"
    if state == "no_bag_dir":
        shutil.rmtree(partial / "ep")
    elif state == "no_mcap":
        mcap.unlink()
    elif state in ("0_bytes", "magic_only"):
        mcap.write_bytes(mcap.read_bytes()[: 0 if state == "0_bytes" else 8])
    kept = sorted(p.relative_to(partial) for p in partial.rglob("*"))

    rc, out = _cli(capsys, "episodes", "recover", str(tmp_path))
    assert rc == 0, out
    assert "quarantined" in out and "no complete step" in out
    assert list_partial_episodes(tmp_path) == [] and list_episodes(tmp_path) == []
    (aside,) = tmp_path.glob(f"{QUARANTINE_PREFIX}*")
    assert aside.name in out
    assert sorted(p.relative_to(aside) for p in aside.rglob("*")) == kept, "files kept as found"
    rc, out = _cli(capsys, "episodes", "recover", str(tmp_path))
    assert rc == 0 and "no interrupted episodes" in out


def test_recover_salvages_every_step_before_a_cut_at_any_byte(tmp_path, episode_factory):
    """A kill at any point of the writer's life (0 bytes, header only, mid-chunk, mid-summary):
    recover never fails, and the steps it returns only grow with the bytes that reached disk."""
    ep = episode_factory(steps=5, size=8)
    mcap = write_episode(tmp_path / "src", "ep", ep) / "ep.mcap"
    data = mcap.read_bytes()
    with open(mcap, "rb") as f:  # where each chunk (start events, then one per step) ends
        chunk_ends = [
            f.tell() for r in StreamReader(f, emit_chunks=True).records if isinstance(r, Chunk)
        ]
    step_ends = chunk_ends[1 : 1 + len(ep)]
    cuts = sorted({*range(0, len(data), len(data) // 20), len(data), *step_ends})
    cuts = sorted({*cuts, *(e - 1 for e in step_ends)})
    salvaged = []
    for i, cut in enumerate(cuts):
        root = tmp_path / f"cut{i}"
        (root / f"{PARTIAL_PREFIX}ep" / "ep").mkdir(parents=True)
        (root / f"{PARTIAL_PREFIX}ep" / "ep" / "ep.mcap").write_bytes(data[:cut])
        _, report = recover_episode(root / f"{PARTIAL_PREFIX}ep")
        expected = sum(end <= cut for end in step_ends)
        assert report.steps == expected, f"cut at byte {cut}"
        if expected:
            np.testing.assert_array_equal(read_episode(root / "ep").images, ep.images[:expected])
        else:
            assert report.quarantined is not None and list_episodes(root) == []
        salvaged.append(report.steps)
    assert salvaged == sorted(salvaged) and salvaged[-1] == len(ep)


def test_recover_salvages_a_truncated_finished_episode_and_keeps_the_original(
    tmp_path, episode_factory, capsys
):
    ep = episode_factory(steps=6, size=16)
    path = write_episode(tmp_path, "ep", ep)
    mcap = path / "ep.mcap"
    data = mcap.read_bytes()
    torn = data[: data.find(ep.images[4].tobytes()) + 10]  # cut inside step 4's image
    mcap.write_bytes(torn)
    rc, out = _cli(capsys, "episodes", "check", str(tmp_path))
    assert rc == 1 and "episodes recover" in out and "checksum" not in out

    rc, out = _cli(capsys, "episodes", "recover", str(tmp_path))
    assert rc == 0, out
    back = read_episode(tmp_path / "ep")
    assert len(back) == 4 and "recovered 4 steps" in out
    np.testing.assert_array_equal(back.images, ep.images[:4])
    assert back.meta.extra["recovered"]["steps"] == 4 and back.meta.success is False
    (kept,) = [p for p in tmp_path.rglob("ep.mcap") if p.read_bytes() == torn]
    assert kept.parent.parent.name in out, "the report says where the original bytes are"
    rc, out = _cli(capsys, "episodes", "check", str(tmp_path))
    assert rc == 0 and "1 episodes, 0 unreadable, 0 interrupted" in out, out
    rc, out = _cli(capsys, "episodes", "recover", str(tmp_path))
    assert rc == 0 and "no interrupted episodes" in out


def _flip_image_bytes(path, ep, step: int = 3) -> None:
    mcap = next(path.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    at = data.find(ep.images[step].tobytes()[:32])
    assert at > 0
    for k in range(3):
        data[at + 10 + k] ^= 0xFF
    mcap.write_bytes(bytes(data))


def test_writer_writes_chunk_crcs_that_the_mcap_library_validates(tmp_path, episode_factory):
    from mcap.reader import make_reader

    path = write_episode(tmp_path, "ep", episode_factory(steps=4))
    with open(path / "ep.mcap", "rb") as f:
        chunks = [r for r in StreamReader(f, emit_chunks=True).records if isinstance(r, Chunk)]
    assert len(chunks) >= 5 and all(c.uncompressed_crc for c in chunks)
    with open(path / "ep.mcap", "rb") as f:
        assert sum(1 for _ in make_reader(f, validate_crcs=True).iter_messages()) == 3 * 4 + 3


def test_flipped_bytes_in_image_data_are_refused_by_check(tmp_path, episode_factory, capsys):
    ep = episode_factory(steps=6, size=16)
    write_episode(tmp_path, "good", ep)
    path = write_episode(tmp_path, "bad", ep)
    _flip_image_bytes(path, ep)
    with pytest.raises(EpisodeChecksumError, match=r"bad: .*checksum"):
        read_episode(path)
    rc, out = _cli(capsys, "episodes", "check", str(tmp_path))
    assert rc == 1
    assert "| bad | error:" in out and "checksum" in out and "| good | reach-v3 | 6 |" in out
    assert "2 episodes, 1 unreadable (1 checksum mismatch)" in out


def test_old_episodes_without_chunk_crcs_still_load(tmp_path, episode_factory, capsys):
    ep = episode_factory(steps=3)
    msgs = _step_msgs(ep)
    msgs[EPISODE_EVENT_TOPIC] = [messages.json_to_msg({"event": "start", **ep.meta.to_dict()})]
    msgs[INSTRUCTION_TOPIC] = [messages.string_to_msg(ep.meta.instruction)]
    meta = _good_custom(ep, start_time_ns=1000)
    path = _raw_bag(tmp_path / "old", EPISODE_TOPICS, msgs, meta)  # rosbags writes CRC 0
    assert len(read_episode(path)) == 3
    rc, out = _cli(capsys, "episodes", "check", str(tmp_path))
    assert rc == 0, out
    assert "1 episodes, 0 unreadable, 0 interrupted; 1 without chunk CRCs" in out


def test_recover_names_an_undecodable_event_with_a_short_excerpt(tmp_path, episode_factory):
    """A file written before chunk CRCs can hold damaged bytes: recovery refuses it with an
    EpisodeError (the recorder node catches those) and leaves the partial files as they are."""
    ep = episode_factory(steps=2)
    msgs = dict(_step_msgs(ep), **{EPISODE_EVENT_TOPIC: [messages.string_to_msg("{" * 5000)]})
    partial = tmp_path / f"{PARTIAL_PREFIX}ep"
    partial.mkdir()
    _raw_bag(partial / "ep", EPISODE_TOPICS, msgs)
    with pytest.raises(EpisodeError, match=r"event 0 is not a JSON object: '\{{40}'$"):
        recover_episode(partial)
    assert list_partial_episodes(tmp_path) == [partial] and list_episodes(tmp_path) == []


def _damaged_and_killed(root, ep):
    """Under `root`: a partial episode whose event cannot be decoded, and one a killed writer
    left after 3 steps."""
    msgs = dict(_step_msgs(ep), **{EPISODE_EVENT_TOPIC: [messages.string_to_msg("{" * 50)]})
    damaged = root / f"{PARTIAL_PREFIX}damaged"
    damaged.mkdir(parents=True)
    _raw_bag(damaged / "damaged", EPISODE_TOPICS, msgs)
    writer = EpisodeWriter(root, "killed", ep.meta)
    for t in range(3):
        writer.add_step(ep.images[t], ep.states[t], ep.actions[t])
    return damaged


def test_recovering_a_folder_goes_on_past_an_episode_it_cannot_recover(tmp_path, episode_factory):
    """`recover_partial_episodes` (what a recorder does on start): the damaged episode's error
    is reported in place of its report, its files stay as they are, the next one is recovered."""
    damaged = _damaged_and_killed(tmp_path, episode_factory(steps=4))
    outcome = dict(recover_partial_episodes(tmp_path))
    assert isinstance(outcome[damaged], EpisodeError), outcome
    assert "event 0 is not a JSON object" in str(outcome[damaged])
    assert outcome[tmp_path / f"{PARTIAL_PREFIX}killed"].steps == 3
    assert [p.name for p in list_episodes(tmp_path)] == ["killed"]
    assert list_partial_episodes(tmp_path) == [damaged]


def test_an_evaluations_recovery_reports_an_episode_it_cannot_recover_and_goes_on(
    tmp_path, episode_factory
):
    """Graphs side by side have their record directory recovered once before they start
    (`jobs.recover_interrupted`): a damaged episode there is named, not fatal to the run."""
    from vla_rft.pipeline.jobs import recover_interrupted

    _damaged_and_killed(tmp_path, episode_factory(steps=4))
    said = []
    recover_interrupted(tmp_path, said.append)
    assert [p.name for p in list_episodes(tmp_path)] == ["killed"]
    assert any("cannot recover" in s and "damaged" in s for s in said), said


_KILLED_WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from conftest import make_episode
from vla_rft.data.episode_store import EpisodeWriter
ep = make_episode(steps=2000, size=16)
print(0, flush=True)
writer = EpisodeWriter(sys.argv[1], "ep", ep.meta)
for t in range(len(ep)):
    writer.add_step(ep.images[t], ep.states[t], ep.actions[t])
    print(t + 1, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0, 1, 25])
def test_a_sigkilled_writer_loses_no_step_it_had_written(tmp_path, capsys, kill_after):
    """SIGKILL a real writer process (while it opens the bag, or after n steps): `recover`
    exits 0 and returns every step the writer had reported, at most one more."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    tests_dir = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path), tests_dir],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    written = -1
    while written < kill_after:
        written = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    written = max([written, *map(int, proc.stdout.read().split())])  # it ran on until killed
    rc, out = _cli(capsys, "episodes", "recover", str(tmp_path))
    assert rc == 0, out
    if list_episodes(tmp_path):
        recovered = len(read_episode(tmp_path / "ep"))
    else:
        recovered = 0
        assert kill_after == 0 and list_partial_episodes(tmp_path) == []
    assert written <= recovered <= written + 1, out
