"""Which model ran is recorded (issue 20, item 4): the policy node resolves models/current to
its version and hashes the file; stand-in episodes are marked and the flywheel leaves them out
unless asked."""

from __future__ import annotations

import json

import numpy as np
from conftest import make_episode
from node_testing import MemoryHost, active_recorder

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    IMAGE_TOPIC,
    STANDIN_SOURCE,
    STATE_TOPIC,
    STATUS_TOPIC,
)
from vla_rft.contract.manifest import sha256_file
from vla_rft.data.episode_store import read_episode, write_episode
from vla_rft.pipeline.flywheel import check_episodes
from vla_rft_nodes import events
from vla_rft_nodes.configs import PolicyNodeConfig
from vla_rft_nodes.host.base import Lifecycle
from vla_rft_nodes.policy_node import PolicyNode
from vla_rft_nodes.standin_policy import build_standin_onnx

STANDIN = "vla_rft_nodes.standin_policy:load_standin_policy"


def test_the_policy_node_says_which_version_it_runs(tmp_path):
    model = build_standin_onnx(tmp_path / "models" / "v003" / "standin.onnx")
    (tmp_path / "models" / "current").symlink_to("v003")
    path = str(tmp_path / "models" / "current" / "standin.onnx")
    node = PolicyNode(MemoryHost(), PolicyNodeConfig(model_path=path, policy_factory=STANDIN))
    assert Lifecycle(node).trigger("configure")
    identity = node.status()["model"]
    assert identity == {
        "path": path, "resolved": str(model.resolve()), "version": "v003",
        "sha256": sha256_file(model), "standin": True,
    }  # fmt: skip


def test_a_standin_episode_is_marked_and_left_out_of_the_flywheel(tmp_path):
    host, _node, _lifecycle = active_recorder(tmp_path / "rec")
    c = host.codec
    model = {"path": "runs/standin/policy.onnx", "version": None, "standin": True}
    host.deliver(STATUS_TOPIC, c.string_to_msg(json.dumps({"node": "policy_node", "model": model})))
    start = events.StartEvent(episode="ep", task="reach-v3", instruction="reach the red goal")
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(start)))
    for t in range(3):
        host.deliver(IMAGE_TOPIC, c.image_to_msg(np.zeros((8, 8, 3), np.uint8), 10**18 + t))
        host.deliver(STATE_TOPIC, c.floats_to_msg(np.zeros(4, np.float32)))
        host.deliver(ACTION_TOPIC, c.floats_to_msg(np.zeros(4, np.float32)))
    host.deliver(EPISODE_EVENT_TOPIC, c.string_to_msg(events.to_json(events.EndEvent(by="sim"))))
    meta = read_episode(tmp_path / "rec" / "ep").meta
    assert meta.source == STANDIN_SOURCE and meta.extra["model"] == model

    write_episode(tmp_path / "rec", "real", make_episode(instruction="reach the red goal"))
    good, bad = check_episodes(tmp_path / "rec", {"reach the red goal"})
    assert [p.name for p in good] == ["real"] and "stand-in" in bad["ep"]
    good, _ = check_episodes(tmp_path / "rec", {"reach the red goal"}, include_standin=True)
    assert [p.name for p in good] == ["ep", "real"]
