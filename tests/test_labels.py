"""A label is never lost silently and can be corrected (issue 20, item 3): a late end event is
logged with the command that applies it, `vla-rft episodes label` records an audited relabel
beside the untouched recording, and readers (the flywheel included) take the newest outcome."""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_episode
from graph_testing import RECORDER_INPUTS, output, run_op, send_steps, start_episode
from node_testing import active_recorder

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    IMAGE_TOPIC,
    LABELS_FILE,
    STATE_TOPIC,
)
from vla_rft.data.episode import EpisodeError
from vla_rft.data.episode_store import read_episode, read_episode_meta, write_episode
from vla_rft.pipeline.flywheel import ingest
from vla_rft_nodes import events


def _bag_digest(path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != LABELS_FILE)
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def _label(path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_rft.cli", "episodes", "label", str(path),
                           *args], capture_output=True, text=True, timeout=60)  # fmt: skip


def test_relabel_is_audited_beside_the_untouched_recording_and_the_newest_wins(tmp_path):
    path = write_episode(tmp_path, "ep", make_episode(success=True))
    before = _bag_digest(path)
    done = _label(path, "failure", "--note", "the cube fell after the end")
    assert done.returncode == 0, done.stderr
    assert "success True -> False" in done.stdout
    meta = read_episode_meta(path)
    assert meta.success is False and read_episode(path).meta.success is False
    (label,) = meta.extra["labels"]
    assert (label["previous"], label["note"], label["success"]) == (
        True, "the cube fell after the end", False,
    )  # fmt: skip
    assert _label(path, "success").returncode == 0
    assert (
        read_episode_meta(path).success is True
        and len(read_episode_meta(path).extra["labels"]) == 2
    )
    assert _bag_digest(path) == before  # the bag and its metadata.yaml are never edited
    assert _label(tmp_path / "nothing", "success").returncode == 2
    assert _label(path).returncode == 2  # no outcome given


def test_a_damaged_labels_file_is_a_named_error(tmp_path):
    path = write_episode(tmp_path, "ep", make_episode())
    (path / LABELS_FILE).write_text('{"success": true}\nnot json\n')
    with pytest.raises(EpisodeError, match=r"labels.jsonl: line 2 is not a label"):
        read_episode_meta(path)


def test_the_flywheel_ingests_an_episode_by_its_newest_label(tmp_path):
    src = tmp_path / "recorded"
    path = write_episode(src, "ep", make_episode(success=True))
    assert _label(path, "failure").returncode == 0
    record = ingest([path], src, tmp_path / "round", tmp_path / "ledger.json", "v001")
    assert [e["split"] for e in record["episodes"]] == ["failure"]
    assert (tmp_path / "round" / "failure" / "ep").is_dir()


def test_an_end_event_after_the_episode_closed_is_logged_with_the_fix(tmp_path, caplog):
    host, node, _lifecycle = active_recorder(tmp_path)
    c = host.codec

    def event(e):
        host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(e)))

    event(events.StartEvent(episode="ep", task="reach-v3", instruction="reach it"))
    for t in range(2):
        host.deliver(IMAGE_TOPIC, c.image_to_msg(np.zeros((8, 8, 3), np.uint8), 10**18 + t))
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.zeros(4, np.float32)))
        host.deliver(ACTION_TOPIC, c.floats_to_msg(np.zeros(4, np.float32)))
    event(events.EndEvent(success=True, reason="success", by="sim"))
    with caplog.at_level(logging.WARNING):
        event(events.EndEvent(success=False, reason="operator", by="operator"))
    assert node.counters["ends_after_close"] == 1
    assert f"vla-rft episodes label {tmp_path / 'ep'} failure" in caplog.text
    assert read_episode_meta(tmp_path / "ep").success is True  # recorded as the sim said


@pytest.mark.slow
def test_a_late_operator_label_over_dds_is_logged_and_counted(spy, nodes, dds, tmp_path):
    """The same over real DDS: the recorder as a process, the simulator's end, then the
    operator's `vla-rft op label failure` after the episode was written."""
    proc = nodes.start("vla_rft_nodes.recorder_node", "--set", f"out_dir={tmp_path / 'rec'}",
                       "--set", "status_period_s=0.1")  # fmt: skip
    spy.wait_active("recorder_node", RECORDER_INPUTS)
    start_episode(spy, "ep")
    send_steps(spy, 3, 1_000_000_000, np.random.default_rng(0))
    end = events.EndEvent(success=True, reason="success", by="sim")
    spy.publish(EPISODE_EVENT_TOPIC, spy.host.codec.string_to_msg(events.to_json(end)))
    spy.wait_for(lambda: (tmp_path / "rec" / "ep").is_dir(), 10, "the written episode")
    late = run_op(dds, "label", "failure")
    assert late.returncode == 0, late.stderr
    counters = lambda: spy.statuses["recorder_node"].get("counters") or {}  # noqa: E731
    spy.wait_for(lambda: counters().get("ends_after_close") == 1, 10, "the counted late label")
    assert read_episode_meta(tmp_path / "rec" / "ep").success is True
    proc.send_signal(signal.SIGINT)
    assert f"vla-rft episodes label {tmp_path / 'rec' / 'ep'} failure" in output(proc)
