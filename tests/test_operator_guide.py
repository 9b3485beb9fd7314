"""docs/OPERATOR_GUIDE.md part 1, a shift, run command by command as written, so that the guide
cannot drift from the code (issue 20). The registry is the debug quickstart's (copied); this test
plays the robot's camera and joint driver over real DDS, and checks after each command what the
operator would look at."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from graph_testing import Feeder, motion_since
from guide_testing import PLACEHOLDER, Shift, guide_commands, part_commands

from vla_rft.data.episode_store import list_episodes, read_episode_meta
from vla_rft.pipeline.registry import current_version, list_versions

pytestmark = pytest.mark.slow

ROBOT_WORKS_S = 2.0
"""How long the robot works between `op start` and `op label` ("... the robot works ...")."""


def test_every_command_in_the_guide_is_run_by_a_test():
    """Part 1 runs here; part 3 (ROS 2's tools) in test_ros2.py; a command anywhere else, or a
    placeholder the tests do not fill, would go unchecked."""
    commands = guide_commands()
    assert {c.part.split(":")[0] for c in commands} == {"Part 1", "Part 3"}
    assert all(c.text.startswith("vla-rft ") for c in part_commands("Part 1"))
    filled = {"<episode>", "/path/to/robot.yaml"}
    assert {p for c in commands for p in PLACEHOLDER.findall(c.text)} <= filled
    runner = (Path(__file__).parent / "test_ros2.py").read_text()
    assert 'for command in part_commands("Part 3"):' in runner


@pytest.fixture
def site(debug_loop, tmp_path) -> Path:
    """The repository root as an operator has it: models/ (the debug quickstart's registry)."""
    dirs, _, rc = debug_loop
    assert rc == 0
    site = tmp_path / "site"
    shutil.copytree(dirs["models"], site / "models", symlinks=True)
    return site


def test_the_shift_runs_as_the_guide_writes_it(site, spy, dds):
    env = {**dds, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{dds['PATH']}"}
    shift, robot, values = Shift(site, env), None, {}
    versions_before = [v.version for v in list_versions(site / "models")]
    try:
        for command in part_commands("Part 1"):
            text = command.filled(values)
            if command.section.startswith("5.") and shift.background:
                out = shift.ctrl_c()  # end of shift: Ctrl-C in terminal 1
                assert "Traceback" not in out, out[-4000:]
                robot.stop()
            if command.keeps_running:
                robot = Feeder(spy, size=64)  # the robot's camera and joint driver
                shift.start(text)
                spy.wait_for(lambda: {"policy_node", "recorder_node"} <= {
                    n for n, s in spy.statuses.items() if s.get("state") == "active"
                }, 90, "the graph active")  # fmt: skip
                spy.wait_for(  # the guide: `estop_unknown` for its first estop_wait_s
                    lambda: spy.statuses["policy_node"].get("holding") == "no_instruction",
                    10, "the policy node past its e-stop wait",
                )  # fmt: skip
                continue
            out = shift.run(text)
            _check(command.text, out, site, spy, values)
    finally:
        print(shift.took())
        shift.close()
        if robot:
            robot.stop()
    versions = [v.version for v in list_versions(site / "models")]
    assert len(versions) == len(versions_before) + 1  # the flywheel's candidate
    assert current_version(site / "models") == "v001"  # rolled back


def _check(command: str, out: str, site: Path, spy, values: dict[str, str]) -> None:
    """What the operator looks at after `command` (its output `out`); fills `values`."""
    recorded = site / "data" / "recorded"
    if command.startswith("vla-rft models list"):
        assert re.search(r"v001 .*promoted", out) and "<-" in out, out
    elif command.startswith("vla-rft op status"):
        row = next(line for line in out.splitlines() if line.startswith("| policy_node |"))
        assert "| active | no_instruction |" in row, out
    elif command.startswith("vla-rft op start"):
        assert "episode started: reach-v3" in out, out
        started = time.monotonic()
        time.sleep(ROBOT_WORKS_S)  # ... the robot works ...
        assert motion_since(spy, started) >= 10, "the policy did not move the robot"
    elif command.startswith("vla-rft op label"):
        spy.wait_for(lambda: list_episodes(recorded), 10, "the recorded episode")
        (episode,) = list_episodes(recorded)
        meta = read_episode_meta(episode)
        assert (meta.task, meta.success, meta.source) == ("reach-v3", True, "policy"), meta
        assert meta.extra["model"]["version"] == current_version(site / "models"), meta.extra
        values["<episode>"] = episode.name
    elif command.startswith("vla-rft op estop on"):
        pressed = time.monotonic()
        assert "E-STOP ENGAGED on policy_node" in out, out
        time.sleep(0.5)
        assert motion_since(spy, pressed) == 0
    elif command.startswith("vla-rft op estop off"):
        assert "policy node active again" in out, out
    elif command.startswith("vla-rft episodes info"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {values['<episode>']}"))
        current = current_version(site / "models")
        assert "| reach-v3 |" in row and f"| True | policy | {current} |" in row, out
    elif command.startswith("vla-rft episodes label"):
        meta = read_episode_meta(recorded / values["<episode>"])
        assert (
            meta.success is False and meta.extra["labels"][-1]["note"] == "pushed the target away"
        )
    elif command.startswith("vla-rft bringup --sim"):
        (report,) = (site / "runs" / "eval" / "bringup").glob("*/report.json")
        assert len(json.loads(report.read_text())["episodes"]) == 2
        assert len(list_episodes(site / "data" / "eval")) == 2
    elif command.startswith("vla-rft compare"):
        assert (site / "runs" / "eval" / "v001-vs-v002" / "comparison.md").is_file()
    elif command.startswith("vla-rft flywheel"):
        assert (
            "1 usable episodes, 0 left out" in out and "ingested 0 successes and 1 failures" in out
        ), out
    elif command.startswith("vla-rft models promote"):
        assert current_version(site / "models") == "v001"
