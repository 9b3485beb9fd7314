"""Embodiment specs: validated on load, and every built-in spec drives the node graph's units
(policy node, recorder) with a stand-in policy built for it. A new robot is a new spec file in
vla_rft/contract/embodiments/; these tests pick it up without a change."""

from __future__ import annotations

import time

import numpy as np
import pytest
from embodiment_testing import spec_file
from node_testing import MemoryHost, active_recorder

from vla_rft.contract.config import ConfigError
from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    ESTOP_TOPIC,
    INSTRUCTION_TOPIC,
    SIM_EMBODIMENT,
    STATE_TOPIC,
)
from vla_rft.contract.embodiment import builtin_embodiments, load_embodiment
from vla_rft.data.episode_store import list_episodes, read_episode
from vla_rft_nodes import events
from vla_rft_nodes.configs import PolicyNodeConfig
from vla_rft_nodes.host.base import Lifecycle
from vla_rft_nodes.policy_node import PolicyNode
from vla_rft_nodes.safety import hold_action
from vla_rft_nodes.standin_policy import build_standin_onnx

STANDIN = "vla_rft_nodes.standin_policy:load_standin_policy"
EMBODIMENTS = builtin_embodiments()


def test_the_simulated_robot_is_a_builtin_spec_and_a_second_robot_is_shipped():
    assert SIM_EMBODIMENT in EMBODIMENTS and len(EMBODIMENTS) >= 2
    sawyer = load_embodiment(SIM_EMBODIMENT)
    assert (sawyer.state_dim, sawyer.action_dim, sawyer.action_kind) == (4, 4, "ee_delta")
    assert sawyer.hold_keep_dims == (3,)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"action_low": [-1.0, -1.0, -1.0]}, "action_low has 3 entries, not 4"),
        ({"hold_keep": ["wrist"]}, r"hold_keep names \['wrist'\] are not action names"),
        ({"action_kind": "torque"}, "action_kind must be one of"),
        ({"cameras": []}, "at least one camera"),
        ({"state_units": ["m"]}, "one state unit per state name"),
        ({"action_high": [1.0, 1.0, 1.0, -2.0]}, r"action_low\[3\] = -1.0 must be below"),
        ({"control_rate_hz": "fast"}, "control_rate_hz: expected a number"),
        ({"grippers": 2}, "unknown key"),
    ],
)
def test_a_bad_spec_file_is_refused_naming_the_file_and_the_field(tmp_path, changes, message):
    path = spec_file(tmp_path, **changes)
    with pytest.raises(ConfigError, match=message) as err:
        load_embodiment(path)
    assert str(path) in str(err.value)


def test_unreadable_specs_and_unknown_names_are_clear_errors(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_embodiment(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="cannot read it"):
        load_embodiment(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not a built-in"):
        load_embodiment("no-such-robot")


def test_a_position_robot_holds_at_its_last_command_never_at_zero():
    arm = load_embodiment("example-arm-7dof")
    last = np.linspace(-1.0, 0.05, arm.action_dim).astype(np.float32)
    np.testing.assert_array_equal(hold_action(last, arm), last)  # zeros would move every joint
    assert hold_action(None, arm) is None  # nothing commanded yet: nothing safe to send


# --- The node graph's units on every built-in embodiment ----------------------------------------


def _camera_frame(host, spec, value, stamp_ns):
    """A frame of every camera of the robot, all with the same stamp."""
    for camera in spec.cameras:
        image = np.full((camera.height, camera.width, 3), value, np.uint8)
        host.deliver(camera.topic, host.codec.image_to_msg(image, stamp_ns))


def _configured_policy_node(embodiment, model, **overrides):
    host = MemoryHost()
    config = PolicyNodeConfig(
        model_path=str(model), policy_factory=STANDIN, embodiment=embodiment, **overrides
    )
    node = PolicyNode(host, config)
    return host, node, Lifecycle(node).trigger("configure")


@pytest.mark.parametrize("embodiment", EMBODIMENTS)
def test_the_policy_node_drives_the_robot_its_spec_describes(tmp_path, embodiment):
    spec = load_embodiment(embodiment)
    model = build_standin_onnx(tmp_path / "standin.onnx", embodiment)
    host, node, configured = _configured_policy_node(embodiment, model, replan_every=4)
    assert configured
    c = host.codec
    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg("pick up the block"))
    previous = None
    for k in range(6):
        stamp = time.time_ns()
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.full(spec.state_dim, 0.01 * k, np.float32)))
        _camera_frame(host, spec, 40 * k, stamp)
        action = node.tick(time.monotonic())
        assert action.shape == (spec.action_dim,)
        assert np.all(action >= np.asarray(spec.action_low) - 1e-6)
        assert np.all(action <= np.asarray(spec.action_high) + 1e-6)
        if previous is not None:
            assert np.all(np.abs(action - previous) <= np.asarray(spec.max_action_change) + 1e-6)
        previous = action
    assert host.published[ACTION_TOPIC][-1].layout.dim[0].label == ",".join(spec.action_names)
    assert node.counters["actions"] == 6
    # the e-stop: the hold the robot gets is its own kind of "stand still"
    host.deliver(ESTOP_TOPIC, c.bool_to_msg(True))
    hold = node.tick(time.monotonic())
    np.testing.assert_array_equal(hold, hold_action(previous, spec))
    np.testing.assert_array_equal(host.published[ACTION_TOPIC][-1].data, hold)
    assert node.counters["holds.estop"] == 1
    if spec.action_kind == "joint_position":
        np.testing.assert_array_equal(hold, previous)
    else:
        assert not np.any(np.delete(hold, spec.hold_keep_dims))


@pytest.mark.parametrize("embodiment", EMBODIMENTS)
def test_a_package_for_another_robot_or_a_too_long_replan_is_refused_at_configure(
    tmp_path, embodiment, caplog
):
    other = next(e for e in EMBODIMENTS if e != embodiment)
    wrong = build_standin_onnx(tmp_path / "other.onnx", other)
    _, node, configured = _configured_policy_node(embodiment, wrong)
    assert not configured and node.policy is None
    assert f"does not fit embodiment {load_embodiment(embodiment).name!r}" in caplog.text
    assert "entries in the package" in caplog.text
    right = build_standin_onnx(tmp_path / "right.onnx", embodiment, horizon=4)
    _, node, configured = _configured_policy_node(embodiment, right, replan_every=6)
    assert not configured
    assert "replan_every 6 is longer than its chunks (4)" in caplog.text


@pytest.mark.parametrize("embodiment", EMBODIMENTS)
def test_the_recorder_stores_the_robots_names_and_shapes(tmp_path, embodiment):
    spec = load_embodiment(embodiment)
    host, _node, lifecycle = active_recorder(tmp_path, embodiment=embodiment)
    c = host.codec
    start = events.StartEvent(episode="ep", task="pick", instruction="pick up the block")
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(start)))
    for t in range(3):
        _camera_frame(host, spec, 10 * t, 10**18 + t * 50_000_000)
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.full(spec.state_dim, t, np.float32)))
        host.deliver(ACTION_TOPIC, c.floats_to_msg(np.zeros(spec.action_dim, np.float32)))
    lifecycle.shutdown()
    episode = read_episode(list_episodes(tmp_path)[0])
    assert episode.meta.robot == spec.name
    assert episode.meta.state_names == spec.state_names
    assert episode.meta.action_names == spec.action_names
    camera = spec.main_camera
    assert episode.images.shape == (3, camera.height, camera.width, 3)
    assert list(episode.meta.cameras) == [c.name for c in spec.cameras]  # every camera recorded
    for further in spec.cameras[1:]:
        frames = episode.camera_images[further.name]
        assert frames.shape == (3, further.height, further.width, 3)
    assert episode.states.shape == (3, spec.state_dim)
    assert episode.actions.shape == (3, spec.action_dim)
