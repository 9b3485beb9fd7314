"""The smaller operator surprises (issue 20, item 6): a missing model or a mistyped task is
caught before anything starts, with a suggestion; an instruction changed mid-episode is kept in
the episode; `models verify all`; `--timeout`'s exit status is documented."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from node_testing import active_recorder

from vla_rft.contract.config import ConfigError
from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATE_TOPIC,
)
from vla_rft.data.episode_store import read_episode
from vla_rft.sim.instructions import instruction_for
from vla_rft_nodes import events
from vla_rft_nodes.bringup import build_parser
from vla_rft_nodes.configs import EvalManagerNodeConfig, SimRobotNodeConfig


def test_a_mistyped_task_gets_a_suggestion():
    with pytest.raises(ValueError, match="did you mean reach-v3"):
        instruction_for("reach-v2")
    with pytest.raises(ConfigError, match="did you mean push-v3"):
        SimRobotNodeConfig(task="pushv3")
    with pytest.raises(ConfigError, match="'drawr-open-v3'; did you mean drawer-open-v3"):
        EvalManagerNodeConfig(tasks=("reach-v3", "drawr-open-v3"))


def test_a_missing_policy_model_is_refused_before_any_process_starts(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "vla_rft_nodes.bringup", "--sim",
         "--policy-model", str(tmp_path / "nowhere")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"no policy model at {tmp_path / 'nowhere'}" in done.stderr
    assert "starting" not in done.stdout
    assert "exit 1" in build_parser().format_help()  # --timeout's exit status is documented


def test_an_instruction_changed_mid_episode_is_kept_in_the_episode(tmp_path):
    host, _node, _lifecycle = active_recorder(tmp_path)
    c = host.codec
    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("pick up the red block"))
    start = events.StartEvent(episode="ep", task="pick", instruction="pick up the red block")
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(start)))
    for t in range(4):
        if t == 2:
            host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("put it in the bin"))
        host.deliver(IMAGE_TOPIC, c.image_to_msg(np.zeros((8, 8, 3), np.uint8), 10**18 + t))
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.zeros(4, np.float32)))
        host.deliver(ACTION_TOPIC, c.floats_to_msg(np.zeros(4, np.float32)))
    end = events.EndEvent(success=True, by="operator")
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(end)))
    meta = read_episode(tmp_path / "ep").meta
    assert meta.instruction == "pick up the red block"
    assert meta.extra["instruction_changes"] == [{"step": 2, "instruction": "put it in the bin"}]


def test_the_command_list_points_once_at_each_commands_own_help(monkeypatch):
    from vla_rft.cli import STAGE_COMMANDS
    from vla_rft.cli import build_parser as cli_parser

    monkeypatch.setenv("COLUMNS", "300")  # one line per command: argparse wraps at hyphens
    text = cli_parser().format_help()
    for name in STAGE_COMMANDS:
        assert text.count(f"(`vla-rft {name} --help`)") == 1, name
