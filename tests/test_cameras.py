"""N cameras end to end (issue 19 item 4): the simulated robot's wrist camera, episodes and the
data set with every camera, a two-camera policy through training, export and both runtimes, the
policy node's pairing by stamp, and the closed loop over DDS."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from node_testing import MemoryHost
from policy_testing import tiny_config
from rosbags.rosbag2 import Reader

from vla_rft.contract.config import ConfigError, load_config
from vla_rft.contract.constants import (
    EPISODE_TOPICS,
    INSTRUCTION_TOPIC,
    OBS_IMAGE,
    OBS_IMAGES,
    OBS_INSTRUCTION,
    OBS_STATE,
    SIM_WRIST_EMBODIMENT,
    STATE_TOPIC,
)
from vla_rft.contract.embodiment import load_embodiment
from vla_rft.contract.manifest import CAMERAS_KEY, POLICY_ONNX, read_manifest
from vla_rft.data import WindowConfig, WindowDataset
from vla_rft.data.dataset import EpisodeIndex
from vla_rft.data.episode import EpisodeError
from vla_rft.data.episode_store import (
    EpisodeWriter,
    list_episodes,
    list_partial_episodes,
    read_episode,
    recover_episode,
    write_episode,
)
from vla_rft.data.normalization import NormStats
from vla_rft.evaluation.eval_policy import main as eval_main
from vla_rft.export.export_policy import export_policy
from vla_rft.rollout.collect import CollectConfig, collect
from vla_rft.runtime.loader import load_policy
from vla_rft.runtime.torch_policy import TorchPolicy
from vla_rft.sim import MetaWorldRobot, SimConfig
from vla_rft.training.train_policy import TrainPolicyConfig, train
from vla_rft_nodes.configs import PolicyNodeConfig
from vla_rft_nodes.frame_sync import WAIT, CameraSync
from vla_rft_nodes.host.base import Counters, Lifecycle
from vla_rft_nodes.policy_node import PolicyNode

REPO = Path(__file__).resolve().parents[1]
WRIST = "gripperPOV"
WRIST_SPEC = load_embodiment(SIM_WRIST_EMBODIMENT)


@pytest.fixture(scope="module")
def wrist_data(tmp_path_factory):
    """Expert episodes of the two-camera simulated robot, as `vla-rft collect` writes them."""
    out = tmp_path_factory.mktemp("wrist_episodes")
    config = CollectConfig(
        out=out, tasks=("reach-v3",), episodes_per_task=3, image_size=32, max_steps=12,
        embodiment=SIM_WRIST_EMBODIMENT,
    )  # fmt: skip
    collect(config, progress=False)
    return out


@pytest.fixture(scope="module")
def two_camera_run(wrist_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("two_camera_run")
    config = tiny_config(
        wrist_data, run, f"model.cameras=[corner4,{WRIST}]", "optim.steps=4", "save_every=4"
    )
    return train(config, progress=False)


@pytest.fixture(scope="module")
def two_camera_package(two_camera_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "two-camera"
    export_policy(two_camera_run, out)
    return out


def _sim_obs(seed: int = 3) -> dict:
    with MetaWorldRobot(SimConfig("reach-v3", 32, embodiment=SIM_WRIST_EMBODIMENT)) as robot:
        return robot.reset(seed)


# --- the simulated robot ---------------------------------------------------------------------


def test_the_sim_renders_the_wrist_camera_only_when_asked(tmp_path):
    with MetaWorldRobot(SimConfig("reach-v3", 32)) as robot:
        one = robot.reset(3)
    two = _sim_obs(3)
    assert OBS_IMAGES not in one  # one camera: the observation as it always was
    np.testing.assert_array_equal(two[OBS_IMAGE], one[OBS_IMAGE])
    wrist = two[OBS_IMAGES][WRIST]
    assert wrist.shape == (32, 32, 3) and wrist.dtype == np.uint8
    assert np.abs(wrist.astype(int) - two[OBS_IMAGE]).mean() > 20  # another view
    np.testing.assert_array_equal(_sim_obs(3)[OBS_IMAGES][WRIST], wrist)  # seeded, exact
    spec = tmp_path / "sawyer-kitchen.yaml"
    spec.write_text(
        "base: metaworld-sawyer\ncameras:\n"
        "  - {name: corner4, topic: /a, width: 64, height: 64}\n"
        "  - {name: kitchen, topic: /b, width: 64, height: 64}\n"
    )
    with pytest.raises(ValueError, match=r"camera must be one of .* got 'kitchen'"):
        SimConfig("reach-v3", embodiment=str(spec))
    with pytest.raises(ValueError, match="is not the Sawyer"):
        SimConfig("reach-v3", embodiment="example-arm-7dof")


# --- episodes and the data set ---------------------------------------------------------------


def test_collect_records_every_camera_and_one_camera_episodes_are_unchanged(
    wrist_data, tmp_path, episode_factory
):
    path = list_episodes(wrist_data)[0]
    episode = read_episode(path)
    assert episode.meta.cameras == {c.name: c.topic for c in WRIST_SPEC.cameras}
    assert episode.camera_images[WRIST].shape == (len(episode), 32, 32, 3)
    with Reader(path) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts[f"/camera/{WRIST}/image_raw"] == len(episode)
    # the first step is the reset: the frames the simulator rendered for that seed
    first = _sim_obs(episode.meta.extra["seed"])
    np.testing.assert_array_equal(episode.camera_images[WRIST][0], first[OBS_IMAGES][WRIST])

    plain = write_episode(tmp_path, "plain", episode_factory(steps=3))
    with Reader(plain) as reader:
        assert {c.topic for c in reader.connections} == set(EPISODE_TOPICS)
    assert read_episode(plain).camera_images == {}


def test_a_step_without_a_cameras_frame_is_refused_and_recovery_keeps_every_camera(
    tmp_path, episode_factory
):
    episode = episode_factory(steps=3)
    episode.meta.cameras = {"scene": "/camera/scene", "wrist": "/camera/wrist"}
    wrist = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    writer = EpisodeWriter(tmp_path, "cut", episode.meta)
    with pytest.raises(EpisodeError, match="step 0: no frame of camera 'wrist'"):
        writer.add_step(episode.images[0], episode.states[0], episode.actions[0])
    for t in range(3):
        writer.add_step(
            episode.images[t], episode.states[t], episode.actions[t], cameras={"wrist": wrist[t]}
        )
    writer.close_partial()  # as if the process died
    (partial,) = list_partial_episodes(tmp_path)
    recovered, report = recover_episode(partial)
    assert report.steps == 3
    np.testing.assert_array_equal(read_episode(recovered).camera_images["wrist"], wrist)


def test_the_data_set_gives_every_cameras_frame_of_the_same_step(wrist_data):
    index = EpisodeIndex(wrist_data)
    stats = NormStats.compute(index.episodes[0].states, index.episodes[0].actions)
    ids = list(range(len(index)))
    windows = WindowDataset(index, ids, WindowConfig(cameras=(WRIST,)), stats)
    batch = windows.get_batch(np.arange(len(windows)))
    assert batch["camera_images"].shape == (len(windows), 1, 32, 32, 3)
    for i in (0, 5, len(windows) - 1):
        episode = read_episode(wrist_data / windows.episode_names[batch["episode_index"][i]])
        step = batch["step"][i]
        np.testing.assert_array_equal(
            batch["camera_images"][i, 0], episode.camera_images[WRIST][step]
        )
        np.testing.assert_array_equal(batch["image"][i, -1], episode.images[step])
    assert "camera_images" not in WindowDataset(index, ids, WindowConfig(), stats)[0]
    with pytest.raises(ValueError, match="has no camera 'topview'"):
        WindowDataset(index, ids, WindowConfig(cameras=("topview",)), stats)


# --- the policy --------------------------------------------------------------------------------


def test_a_two_camera_policy_trains_exports_and_runs_on_both_backends(
    two_camera_run, two_camera_package
):
    torch_policy = TorchPolicy.from_checkpoint(two_camera_run)
    onnx_policy = load_policy(two_camera_package, backend="onnxruntime")
    assert torch_policy.spec.cameras == onnx_policy.spec.cameras == ("corner4", WRIST)
    manifest = read_manifest(two_camera_package / POLICY_ONNX)
    assert [s.name for s in manifest.inputs][-1] == f"image_{WRIST}"
    cameras = manifest.extra[CAMERAS_KEY]
    assert [(c["name"], c["topic"], c["input"], c["size"]) for c in cameras] == [
        ("corner4", "/camera/image_raw", "image", 16),
        (WRIST, "/camera/wrist/image_raw", f"image_{WRIST}", 16),
    ]
    obs = _sim_obs()
    a, b = onnx_policy.infer(obs), torch_policy.infer(obs)
    np.testing.assert_allclose(a["action_normalized"], b["action_normalized"], atol=1e-4)
    dark = {**obs, OBS_IMAGES: {WRIST: np.zeros_like(obs[OBS_IMAGES][WRIST])}}
    assert np.abs(onnx_policy.infer(dark)["action_normalized"] - a["action_normalized"]).max() > 0
    for policy in (torch_policy, onnx_policy):
        with pytest.raises(ValueError, match=rf"no frame of \['{WRIST}'\] in obs\['images'\]"):
            policy.infer({k: v for k, v in obs.items() if k != OBS_IMAGES})


def test_vla_rft_eval_renders_the_cameras_the_policy_sees(two_camera_run, tmp_path, capsys):
    args = ["--policy", str(two_camera_run), "--tasks", "reach-v3", "--episodes", "1",
            "--max-steps", "5", "--threads", "1", "-q"]  # fmt: skip
    assert eval_main([*args, "--out", str(tmp_path / "one")]) == 2
    assert f"no frame of ['{WRIST}']" in capsys.readouterr().err
    wrist = ["--embodiment", SIM_WRIST_EMBODIMENT]
    assert eval_main([*args, "--out", str(tmp_path / "two"), *wrist]) == 0
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert [e["steps"] for e in report["episodes"]] == [5]


def test_the_two_camera_recipe_is_the_cpu_recipe_with_the_wrist_camera(tmp_path):
    cpu = load_config(TrainPolicyConfig, REPO / "training" / "cpu" / "policy.yaml")
    two = load_config(TrainPolicyConfig, REPO / "training" / "cpu" / "policy_two_camera.yaml")
    assert two.model.cameras == ("corner4", WRIST) and two.data.roots == ("data/expert200-wrist",)
    same = dataclasses.replace(two, model=cpu.model, data=cpu.data, run_dir=cpu.run_dir)
    assert same == cpu and dataclasses.replace(two.model, cameras=cpu.model.cameras) == cpu.model
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="is its own base"):
        load_config(TrainPolicyConfig, tmp_path / "loop.yaml")


# --- the policy node: pairing by stamp -----------------------------------------------------------


def test_camera_sync_pairs_the_nearest_frame_within_the_skew():
    counters = Counters()
    sync = CameraSync((WRIST,), max_skew_s=0.02, counters=counters)
    ms = 1_000_000
    assert sync.pair(100 * ms, 0.0) == WAIT  # nothing yet, may still come
    for stamp in (60, 90, 133):
        sync.add(WRIST, stamp * ms, stamp)
    assert sync.pair(100 * ms, 0.0) == {WRIST: 90}  # the nearest, 10 ms away
    assert sync.pair(125 * ms, 0.0) == {WRIST: 133}
    assert sync.pair(111 * ms, 0.0) is None  # 21 ms from both, and a newer one is already here
    assert sync.pair(111 * ms, 0.0) is None and counters["unpaired_frames"] == 1  # once a frame
    assert sync.pair(200 * ms, 0.001) == WAIT  # the wrist frame for 200 may be on its way
    assert sync.pair(200 * ms, 0.05) is None and counters["unpaired_frames"] == 2
    assert not sync.ready(200 * ms) and sync.ready(133 * ms)


def test_camera_sync_pairs_while_the_executor_thread_adds_frames():
    """The policy node pairs on its control thread while the executor thread adds the further
    cameras' frames: pairing must not iterate a deque being appended to ("deque mutated during
    iteration" killed the tick). Thread switches forced as often as Python allows."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    sync, stop, errors = CameraSync((WRIST,), max_skew_s=0.02), threading.Event(), []

    def camera():
        for stamp in itertools.count():
            if stop.is_set():
                return
            sync.add(WRIST, stamp, stamp)

    feeder = threading.Thread(target=camera)
    feeder.start()
    try:
        for k in range(20_000):
            sync.pair(k * 1000, 0.0)
    except RuntimeError as err:
        errors.append(err)
    finally:
        stop.set()
        feeder.join()
        sys.setswitchinterval(interval)
    assert not errors, errors


def _two_camera_node(package, embodiment=SIM_WRIST_EMBODIMENT):
    host = MemoryHost()
    config = PolicyNodeConfig(
        model_path=str(package), backend="onnxruntime", embodiment=embodiment,
        async_inference=False, replan_every=1,
    )  # fmt: skip
    node = PolicyNode(host, config)
    return host, node, Lifecycle(node).trigger("configure")


def test_the_policy_node_acts_on_paired_frames_and_holds_on_an_unpaired_one(two_camera_package):
    host, node, configured = _two_camera_node(two_camera_package)
    assert configured
    c, obs = host.codec, _sim_obs()

    main, wrist = (camera.topic for camera in WRIST_SPEC.cameras)

    def frames(main_ns, wrist_ns=None):
        host.deliver(STATE_TOPIC, c.floats_to_msg(obs[OBS_STATE]))
        host.deliver(main, c.image_to_msg(obs[OBS_IMAGE], main_ns))
        if wrist_ns is not None:
            host.deliver(wrist, c.image_to_msg(obs[OBS_IMAGES][WRIST], wrist_ns))

    host.deliver(INSTRUCTION_TOPIC, c.string_to_msg(obs[OBS_INSTRUCTION]))
    t0 = time.time_ns()
    frames(t0, t0)
    assert node.tick(time.monotonic()) is not None and node.counters["actions"] == 1
    frames(t0 + 10**8)  # the wrist frame is late: wait for it, no action and no hold
    assert node.tick(time.monotonic()) is None and node.counters["actions"] == 1
    host.deliver(wrist, c.image_to_msg(obs[OBS_IMAGES][WRIST], t0 + 10**8))
    assert node.tick(time.monotonic(), new_frame=True) is not None
    assert node.counters["actions"] == 2
    frames(t0 + 2 * 10**8, t0 + 2 * 10**8 + 5 * 10**7)  # 50 ms apart: no pair, a hold
    node.tick(time.monotonic())
    assert node.counters["actions"] == 2 and node.counters["holds.unpaired_frames"] == 1
    assert node.status()["counters"]["unpaired_frames"] == 1 and node.status()["holding"]


def test_a_two_camera_package_on_a_robot_without_that_camera_is_refused(two_camera_package, caplog):
    _, node, configured = _two_camera_node(two_camera_package, "metaworld-sawyer")
    assert not configured and node.policy is None
    assert f"has no camera '{WRIST}'" in caplog.text
    with pytest.raises(ConfigError, match="max_camera_skew_s must be a positive number"):
        PolicyNodeConfig(max_camera_skew_s=0.0)


# --- the closed loop over DDS ------------------------------------------------------------------


@pytest.mark.slow
def test_two_camera_closed_loop_over_dds(two_camera_package, spy, dds, tmp_path):
    """bringup --sim with the two-camera spec on all three nodes and a two-camera package."""
    embodiment = [
        f"--set={node}.embodiment={SIM_WRIST_EMBODIMENT}"
        for node in ("sim_robot_node", "policy_node", "recorder_node")
    ]
    cmd = [
        sys.executable, "-m", "vla_rft_nodes.bringup", "--sim", "--episodes", "1",
        "--policy-model", str(two_camera_package), "--backend", "onnxruntime",
        "--record-dir", "rec", "--report-dir", "report", "--timeout", "60",
        "--params-file", str(REPO / "config" / "bringup.yaml"), *embodiment,
        "--set", "sim_robot_node.image_size=32", "--set", "eval_manager_node.max_steps=20",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=dds, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    (path,) = list_episodes(tmp_path / "rec")
    episode = read_episode(path)
    assert len(episode) >= 20 and list(episode.meta.cameras) == ["corner4", WRIST]
    first = _sim_obs(episode.meta.extra["seed"])  # the reset frames, as sent
    np.testing.assert_array_equal(episode.images[0], first[OBS_IMAGE])
    np.testing.assert_array_equal(episode.camera_images[WRIST][0], first[OBS_IMAGES][WRIST])
    status = spy.statuses["policy_node"]
    counters = status["counters"]
    assert counters["actions"] >= 20 and "unpaired_frames" not in counters, counters
    latency = status["camera_to_action_ms"]  # main frame stamp -> action, both cameras paired
    print(f"two cameras: {status['control_rate_hz']} Hz, camera to action {latency} ms")
    assert latency["n"] >= 10
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["episodes"][0]["steps"] == 20
