"""`vla-rft op`: the operator's commands reach a running graph over real DDS without ROS 2, and
say so; a command nobody receives fails (issue 20, item 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from graph_testing import POLICY_INPUTS, standin_args

from vla_rft_nodes.standin_policy import build_standin_onnx

pytestmark = pytest.mark.slow


def _op(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_rft.cli", "op", *args], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_op_presses_and_releases_the_estop_and_sets_the_instruction(spy, nodes, dds, tmp_path):
    nodes.start("vla_rft_nodes.policy_node",
                *standin_args(build_standin_onnx(tmp_path / "standin.onnx")))  # fmt: skip
    spy.wait_active("policy_node", POLICY_INPUTS)

    done = _op(dds, "estop", "on")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "E-STOP ENGAGED on policy_node" in done.stdout
    spy.wait_for(lambda: spy.statuses["policy_node"]["estop"] is True, 5, "the latched e-stop")

    done = _op(dds, "estop", "off", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "policy node active again" in done.stdout
    spy.wait_for(lambda: spy.statuses["policy_node"]["estop"] is False, 5, "the release")

    done = _op(dds, "instruction", "push the puck to the goal")
    assert done.returncode == 0 and "the policy node follows it" in done.stdout, done.stdout
    assert spy.statuses["policy_node"]["instruction"] == "push the puck to the goal"

    done = _op(dds, "status")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| policy_node |"))
    assert "| active |" in row and "| False |" in row and "push the puck to the goal" in row


def test_op_says_when_nobody_received_it(dds):
    for args in (("estop", "on"), ("label", "failure"), ("status",)):  # one of each path
        done = _op(dds, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "no node reads" in done.stderr or "no vla_rft node on DDS domain" in done.stdout


def test_a_label_ends_the_episode_with_the_operators_outcome(spy, dds):
    done = _op(dds, "label", "success", "--note", "cube in the bin")
    assert done.returncode == 0, done.stderr
    spy.wait_for(lambda: spy.received["/vla_rft/episode_event"], 5, "the end event")
    event = json.loads(spy.received["/vla_rft/episode_event"][-1][1].data)
    assert (event["event"], event["success"], event["by"], event["reason"]) == (
        "end", True, "operator", "cube in the bin",
    )  # fmt: skip
