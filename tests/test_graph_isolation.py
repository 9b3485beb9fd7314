"""Two graphs on one DDS domain must not corrupt each other's episodes (issue 20, item 1):
bringup refuses to start beside another graph, a recorder that hears another graph stops
recording, nodes ignore another graph's events, and `episodes check` flags what got through.
Over real DDS (Cyclone), with node processes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_episode
from graph_testing import RECORDER_INPUTS, send_steps, start_episode

from vla_rft.contract.constants import EPISODE_EVENT_TOPIC, GRAPH_ID_ENV, STATUS_TOPIC
from vla_rft.data.episode_store import list_episodes, read_episode, write_episode
from vla_rft_nodes import events

pytestmark = pytest.mark.slow


def _recorder(nodes, out, graph):
    nodes.env[GRAPH_ID_ENV] = graph
    return nodes.start("vla_rft_nodes.recorder_node", "--set", f"out_dir={out}",
                       "--set", "status_period_s=0.1")  # fmt: skip


def test_bringup_refuses_to_start_beside_another_graph(spy, nodes, tmp_path, dds):
    _recorder(nodes, tmp_path / "theirs", "aaaa1111")
    spy.wait_active("recorder_node", RECORDER_INPUTS)
    done = subprocess.run(
        [sys.executable, "-m", "vla_rft_nodes.bringup", "--sim", "--standin-policy",
         "--episodes", "1", "--record-dir", str(tmp_path / "ours"), "--timeout", "60"],
        env={k: v for k, v in dds.items() if k != GRAPH_ID_ENV}, cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "another vla_rft graph is on DDS domain" in done.stderr
    assert "recorder_node (graph aaaa1111)" in done.stderr
    assert "starting" not in done.stdout and not (tmp_path / "ours").exists()


def test_a_recorder_that_hears_another_graph_stops_and_ignores_its_events(spy, nodes, tmp_path):
    out = tmp_path / "rec"
    _recorder(nodes, out, "aaaa1111")
    spy.wait_active("recorder_node", RECORDER_INPUTS)
    c, rng = spy.host.codec, np.random.default_rng(0)
    foreign = events.StartEvent(episode="theirs", task="reach-v3", instruction="x", graph="bbbb")
    spy.publish(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(foreign)))
    start_episode(spy, "ours")  # an operator's event (no graph): accepted
    send_steps(spy, 3, 10**18, rng)
    spy.wait_for(lambda: spy.statuses["recorder_node"]["episode_steps"] == 3, 10, "3 steps")
    status = {"node": "policy_node", "graph": "bbbb2222", "state": "active", "counters": {}}
    spy.publish(STATUS_TOPIC, c.string_to_msg(json.dumps(status)))
    spy.wait_for(
        lambda: spy.statuses["recorder_node"]["foreign_graph"] == "policy_node of graph bbbb2222",
        10, "the recorder to hear the other graph",
    )  # fmt: skip
    send_steps(spy, 2, 2 * 10**18, rng)
    spy.wait_for(
        lambda: spy.statuses["recorder_node"]["counters"].get("actions_refused_foreign_graph") == 2,
        10, "the refused steps",
    )  # fmt: skip
    counters = spy.statuses["recorder_node"]["counters"]
    assert counters["foreign_events"] == 1 and counters["foreign_graphs"] == 1
    (path,) = list_episodes(out)
    episode = read_episode(path)
    assert path.name == "ours" and len(episode) == 3 and not episode.meta.success
    assert "another graph on the domain" in episode.meta.extra["interrupted"]


def test_check_flags_episodes_past_their_limit_or_with_interleaved_stamps(tmp_path):
    long = make_episode(steps=6)
    long.meta.extra["max_steps"] = 4
    write_episode(tmp_path, "too_long", long)
    mixed = make_episode(steps=6, seed=1)
    mixed.timestamps[3] = mixed.timestamps[2]
    write_episode(tmp_path, "interleaved", mixed)
    write_episode(tmp_path, "fine", make_episode(steps=6, seed=2))
    done = subprocess.run(
        [sys.executable, "-m", "vla_rft.cli", "episodes", "check", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "| too_long | unfit: 6 steps, more than its limit of 4 |" in done.stdout
    out = done.stdout
    assert (
        "| interleaved | unfit: 1 steps stamped no later than the one before (first: step 3)" in out
    )
    assert "| fine | reach-v3 | 6 |" in out and "0 unreadable, 2 unfit for training" in out
