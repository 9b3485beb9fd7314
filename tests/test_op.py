"""`vla-rft op`: the operator's commands reach a running graph over real DDS without ROS 2, and
say so; a command nobody receives fails (issue 20, item 2)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from graph_testing import POLICY_INPUTS, RECORDER_INPUTS, run_op, send_steps, standin_args

from vla_rft.contract.constants import EPISODE_EVENT_TOPIC, INSTRUCTION_TOPIC
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft.sim.instructions import instruction_for
from vla_rft_nodes.standin_policy import build_standin_onnx

pytestmark = pytest.mark.slow


def test_op_presses_and_releases_the_estop_and_sets_the_instruction(spy, nodes, dds, tmp_path):
    nodes.start("vla_rft_nodes.policy_node",
                *standin_args(build_standin_onnx(tmp_path / "standin.onnx")))  # fmt: skip
    spy.wait_active("policy_node", POLICY_INPUTS)

    done = run_op(dds, "estop", "on")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "E-STOP ENGAGED on policy_node" in done.stdout
    spy.wait_for(lambda: spy.statuses["policy_node"]["estop"] is True, 5, "the latched e-stop")

    done = run_op(dds, "estop", "off", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "policy node active again" in done.stdout
    spy.wait_for(lambda: spy.statuses["policy_node"]["estop"] is False, 5, "the release")

    done = run_op(dds, "instruction", "push the puck to the goal")
    assert done.returncode == 0 and "the policy node follows it" in done.stdout, done.stdout
    assert spy.statuses["policy_node"]["instruction"] == "push the puck to the goal"

    done = run_op(dds, "status")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| policy_node |"))
    assert "| active |" in row and "| False |" in row and "push the puck to the goal" in row


def test_op_says_when_nobody_received_it(dds):
    for args in (("estop", "on"), ("label", "failure"), ("status",)):  # one of each path
        done = run_op(dds, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "no node reads" in done.stderr or "no vla_rft node on DDS domain" in done.stdout


def test_a_label_ends_the_episode_with_the_operators_outcome(spy, dds):
    done = run_op(dds, "label", "success", "--note", "cube in the bin")
    assert done.returncode == 0, done.stderr
    spy.wait_for(lambda: spy.received["/vla_rft/episode_event"], 5, "the end event")
    event = json.loads(spy.received["/vla_rft/episode_event"][-1][1].data)
    assert (event["event"], event["success"], event["by"], event["reason"]) == (
        "end", True, "operator", "cube in the bin",
    )  # fmt: skip


def test_op_start_opens_an_episode_that_the_label_closes(spy, nodes, dds, tmp_path):
    """Recording without ROS 2: `op start TASK` sends the task's instruction (latched) and a start
    event, the recorder opens an episode, `op label` closes it with the operator's outcome."""
    nodes.start("vla_rft_nodes.recorder_node", "--set", f"out_dir={tmp_path / 'rec'}")
    spy.wait_active("recorder_node", RECORDER_INPUTS)

    done = run_op(dds, "start", "reach-v3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "episode started: reach-v3" in done.stdout
    spy.wait_for(lambda: spy.received[EPISODE_EVENT_TOPIC], 5, "the start event")
    event = json.loads(spy.received[EPISODE_EVENT_TOPIC][-1][1].data)
    assert (event["event"], event["task"], event["instruction"]) == (
        "start", "reach-v3", instruction_for("reach-v3"),
    )  # fmt: skip
    assert spy.received[INSTRUCTION_TOPIC][-1][1].data == instruction_for("reach-v3")
    send_steps(spy, 3, 1_000_000_000, np.random.default_rng(0))
    assert run_op(dds, "label", "success").returncode == 0
    spy.wait_for(lambda: list_episodes(tmp_path / "rec"), 10, "the written episode")
    episode = read_episode(list_episodes(tmp_path / "rec")[0])
    meta = episode.meta
    assert (meta.task, meta.instruction, meta.success, len(episode)) == (
        "reach-v3", instruction_for("reach-v3"), True, 3,
    )  # fmt: skip

    done = run_op(dds, "start", "reach-v4")  # a typo is refused before anything is sent
    assert done.returncode == 2 and "did you mean reach-v3" in done.stderr, done.stderr


def test_teleoperation_is_recorded_by_a_graph_without_a_policy(spy, dds, tmp_path):
    """`vla-rft bringup --no-policy`: only the recorder, whose episodes say `source: teleop`;
    the actions are another controller's (here this test's), and nothing else publishes any."""
    bringup = subprocess.Popen(
        [sys.executable, "-m", "vla_rft.cli", "bringup", "--no-policy",
         "--record-dir", str(tmp_path / "rec")],
        env=dds, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        spy.wait_active("recorder_node", RECORDER_INPUTS, timeout=60)
        assert run_op(dds, "start", "push-v3").returncode == 0
        spy.wait_for(lambda: spy.received[EPISODE_EVENT_TOPIC], 5, "the start event")
        sent = send_steps(spy, 5, 1_000_000_000, np.random.default_rng(1))
        assert run_op(dds, "label", "success").returncode == 0
        spy.wait_for(lambda: list_episodes(tmp_path / "rec"), 10, "the written episode")
    finally:
        bringup.send_signal(signal.SIGINT)
        out = bringup.communicate(timeout=30)[0]
    assert bringup.returncode == 0, out[-3000:]
    assert "policy_node" not in spy.statuses
    episode = read_episode(list_episodes(tmp_path / "rec")[0])
    assert (episode.meta.source, episode.meta.task, len(episode)) == ("teleop", "push-v3", 5)
    np.testing.assert_array_equal(episode.actions, np.stack([a for _, a in sent]))
