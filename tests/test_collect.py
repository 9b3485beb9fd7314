"""`vla-rft collect` and the episode commands end to end, through the real simulator."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from vla_rft.cli import main
from vla_rft.contract.constants import IMAGE_TOPIC, PARTIAL_PREFIX
from vla_rft.data.episode_store import EpisodeWriter, list_episodes, read_episode
from vla_rft.sim import instruction_for

pytestmark = pytest.mark.slow


def test_collect_writes_readable_expert_episodes(tmp_path, capsys):
    out = tmp_path / "episodes"
    args = [
        "-q",
        "collect",
        "--tasks",
        "reach-v3",
        "--episodes",
        "2",
        "--out",
        str(out),
        "--max-steps",
        "40",
        "--image-size",
        "32",
        "--seed",
        "5",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| reach-v3 | 2 |" in printed and "frames/s" in printed

    paths = list_episodes(out)
    assert [p.name for p in paths] == ["reach-v3-seed000005", "reach-v3-seed000006"]
    first = read_episode(paths[0])
    assert first.meta.task == "reach-v3" and first.meta.instruction == instruction_for("reach-v3")
    assert first.meta.source == "expert" and first.meta.extra["seed"] == 5
    assert first.meta.extra["perturbation_offset_m"] == [0.0, 0.0, 0.0]
    assert first.images.shape[1:] == (32, 32, 3) and first.images.std() > 5, "a real rendering"
    assert 1 <= len(first) <= 40 and np.abs(first.actions).max() <= 1.0
    # the expert moves the arm: the hand position changes over the episode
    assert np.linalg.norm(first.states[-1, :3] - first.states[0, :3]) > 0.01
    with AnyReader(paths) as reader:
        images = sum(c.msgcount for c in reader.connections if c.topic == IMAGE_TOPIC)
        assert images == len(first) + len(read_episode(paths[1]))

    before = [(p / f"{p.name}.mcap").read_bytes() for p in paths]
    assert main(args) == 0, "a second run keeps what is there"
    assert "| reach-v3 | 0 | 0/0 (0%) | - | 2 |" in capsys.readouterr().out
    assert [(p / f"{p.name}.mcap").read_bytes() for p in paths] == before


def test_same_seed_gives_the_same_episode(tmp_path):
    for run in ("a", "b"):
        main(
            [
                "-q",
                "collect",
                "--tasks",
                "push-v3",
                "--episodes",
                "1",
                "--out",
                str(tmp_path / run),
                "--max-steps",
                "15",
                "--image-size",
                "32",
                "--noise",
                "0.1",
            ]
        )
    a, b = (read_episode(next(iter(list_episodes(tmp_path / r)))) for r in ("a", "b"))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.actions, b.actions)


def test_episode_commands_report_and_recover(tmp_path, capsys, episode_factory):
    ep = episode_factory(steps=6)
    writer = EpisodeWriter(tmp_path, "crashed", ep.meta)
    for t in range(4):
        writer.add_step(ep.images[t], ep.states[t], ep.actions[t])
    assert main(["episodes", "info", str(tmp_path)]) == 0
    assert "1 interrupted" in capsys.readouterr().out
    assert main(["episodes", "recover", str(tmp_path)]) == 0
    assert "recovered 4 steps" in capsys.readouterr().out
    assert (tmp_path / f"{PARTIAL_PREFIX}crashed").exists()
    assert main(["episodes", "check", str(tmp_path)]) == 0
    assert "| crashed | reach-v3 | 4 | False |" in capsys.readouterr().out
    (tmp_path / "crashed" / "crashed.mcap").write_bytes(b"\x89MCAP0\r\n")
    assert main(["episodes", "check", str(tmp_path)]) == 1
    assert "cannot read the bag" in capsys.readouterr().out


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["collect", "--tasks", "fly-v3", "--episodes", "1", "--out", str(tmp_path)]) == 2
    assert "fly-v3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["collect", "--perturb", "sideways"])
    assert main(["dataset", str(tmp_path / "nowhere")]) == 2


def test_perturbed_collection_records_the_offset(tmp_path):
    args = [
        "-q",
        "collect",
        "--tasks",
        "push-v3",
        "--episodes",
        "1",
        "--out",
        str(tmp_path),
        "--max-steps",
        "5",
        "--image-size",
        "32",
        "--perturb",
        "object",
    ]
    assert main(args) == 0
    (path,) = list_episodes(tmp_path)
    assert path.name == "push-v3-object-seed000000"
    meta = read_episode(path).meta
    assert meta.extra["perturbation"] == "object"
    offset = np.asarray(meta.extra["perturbation_offset_m"])
    assert offset[2] == 0 and 0.025 <= np.linalg.norm(offset) <= 0.05


def test_noisy_collection_records_the_experts_clean_actions(tmp_path):
    """Beside each executed (noisy) action the episode records the scripted expert's own action
    at that state: replayed in the simulator, the expert gives exactly those; the training
    windows carry them as expert_action (episodes without them: the executed actions)."""
    from vla_rft.contract.constants import EXPERT_ACTIONS_KEY, OBS_STATE
    from vla_rft.data import WindowConfig, build_datasets
    from vla_rft.sim import MetaWorldRobot, SimConfig

    args = ["-q", "collect", "--tasks", "push-v3", "--episodes", "2", "--out", str(tmp_path),
            "--max-steps", "30", "--image-size", "16", "--noise", "0.1"]  # fmt: skip
    assert main(args) == 0
    episode = read_episode(list_episodes(tmp_path)[0])
    clean = np.asarray(episode.meta.extra[EXPERT_ACTIONS_KEY], np.float32)
    assert clean.shape == episode.actions.shape
    noise = episode.actions - clean
    assert 0.05 < noise[np.abs(episode.actions) < 1].std() < 0.15  # N(0, 0.1), unclipped entries
    with MetaWorldRobot(SimConfig("push-v3", image_size=16, max_steps=30)) as robot:
        obs = robot.reset(episode.meta.extra["seed"])
        for t, executed in enumerate(episode.actions):
            np.testing.assert_array_equal(obs[OBS_STATE], episode.states[t])
            np.testing.assert_array_equal(robot.expert_action(), clean[t])
            obs, *_ = robot.step(executed, render=False)
    window = WindowConfig(action_horizon=4, normalize=False, val_fraction=0.0)
    data, _, _ = build_datasets([tmp_path], window, progress=False)
    batch = data.get_batch(np.array([0, 3]))
    np.testing.assert_array_equal(batch["expert_action"][0], clean[:4])
    assert not np.array_equal(batch["expert_action"], batch["action"])
    assert data.has_expert_actions.all()
