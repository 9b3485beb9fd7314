"""`vla-rft export-dataset lerobot`: episodes out as a LeRobot v3.0 data set that our importer
(and, where it can be installed, LeRobot's own LeRobotDataset) reads back."""

from __future__ import annotations

import importlib.util
import json
import os

import av
import numpy as np
import pytest
from conftest import make_episode

from vla_rft.data.episode_store import read_episode, write_episode
from vla_rft.data.importers.lerobot import LeRobotImportConfig, import_lerobot
from vla_rft.data.lerobot_export import ExportError, LeRobotExportConfig, export_lerobot, main

INSTRUCTIONS = ("reach the red goal", "push the puck to the goal", "reach the red goal")


def _scene(steps: int, episode: int) -> np.ndarray:
    """Camera-like frames a video codec keeps close: smooth colour, a block that moves."""
    y, x = np.mgrid[:32, :32]
    frames = np.zeros((steps, 32, 32, 3), np.uint8)
    for t in range(steps):
        frames[t, ..., 0] = (4 * x + 9 * t + 40 * episode) % 200 + 20
        frames[t, ..., 1] = 4 * y + 60
        frames[t, ..., 2] = 128
        frames[t, 8:18, 2 + 2 * t : 12 + 2 * t] = (240, 240, 40)
    return frames


@pytest.fixture
def episodes(tmp_path):
    root = tmp_path / "episodes"
    made = []
    for i, instruction in enumerate(INSTRUCTIONS):
        episode = make_episode(steps=9 + i, size=32, seed=i, instruction=instruction)
        episode.images[:] = _scene(len(episode), i)
        episode.meta.success = i != 1
        write_episode(root, f"ep{i}", episode)
        made.append(episode)
    return root, made


def _round_trip(root, out, codec):
    export_lerobot(root, out, LeRobotExportConfig(video_codec=codec), progress=False)
    back = out.parent / f"{out.name}-imported"
    import_lerobot(out, back, LeRobotImportConfig(success="next.success"), progress=False)
    return [read_episode(p) for p in sorted(back.iterdir())]


def test_png_export_reads_back_identically(episodes, tmp_path):
    root, made = episodes
    back = _round_trip(root, tmp_path / "lerobot", "none")
    assert len(back) == len(made)
    for original, imported in zip(made, back, strict=True):
        np.testing.assert_array_equal(imported.images, original.images)
        np.testing.assert_array_equal(imported.states, original.states)
        np.testing.assert_array_equal(imported.actions, original.actions)
        np.testing.assert_allclose(imported.timestamps, original.timestamps, atol=1e-6)
        a, b = imported.meta, original.meta
        assert (a.instruction, a.success, a.robot, a.fps) == (
            b.instruction,
            b.success,
            b.robot,
            b.fps,
        )
        assert (a.state_names, a.action_names) == (b.state_names, b.action_names)
    info = json.loads((tmp_path / "lerobot" / "meta" / "info.json").read_text())
    assert (info["codebase_version"], info["total_episodes"], info["total_tasks"]) == ("v3.0", 3, 2)
    assert info["total_frames"] == sum(len(e) for e in made)


def test_av1_export_is_lerobots_default_video_and_reads_back_within_the_codecs_loss(
    episodes, tmp_path
):
    root, made = episodes
    back = _round_trip(root, tmp_path / "lerobot", "av1")
    video = next((tmp_path / "lerobot" / "videos").rglob("*.mp4"))
    assert av.open(str(video)).streams.video[0].codec_context.name == "libdav1d"  # AV1
    # SVT-AV1 makes its caller real-time as root; the export gives the old scheduling back
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    for original, imported in zip(made, back, strict=True):
        np.testing.assert_array_equal(imported.states, original.states)
        np.testing.assert_array_equal(imported.actions, original.actions)
        error = np.abs(imported.images.astype(int) - original.images.astype(int)).mean((1, 2, 3))
        assert error.max() < 8, error  # grey levels of 255, at crf 20
        shifted = np.abs(imported.images[1:].astype(int) - original.images[:-1]).mean((1, 2, 3))
        assert (shifted > error[1:]).all()  # each frame is its own, not a neighbour's


def test_mixed_robots_and_an_existing_output_are_refused_leaving_nothing(episodes, tmp_path):
    root, _ = episodes
    other = make_episode(steps=4, size=32)
    other.meta.robot = "another-arm"
    write_episode(root, "ep9", other)
    with pytest.raises(ExportError, match="robot is 'another-arm'"):
        export_lerobot(root, tmp_path / "out", LeRobotExportConfig("none"), progress=False)
    assert not list(tmp_path.glob("out*"))
    (tmp_path / "taken").mkdir()
    assert main(["lerobot", str(root), "--out", str(tmp_path / "taken"), "-q"]) == 2


@pytest.mark.skipif(
    importlib.util.find_spec("lerobot") is None,
    reason="the lerobot package is not installed: its LeRobotDataset needs a torchvision built "
    "for this CPU torch, which PyPI does not have (its wheel is the CUDA build)",
)
def test_lerobots_own_dataset_class_opens_the_export(episodes, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, made = episodes
    out = export_lerobot(root, tmp_path / "lerobot", LeRobotExportConfig("av1"), progress=False)
    dataset = LeRobotDataset("local/export", root=out)
    assert dataset.num_episodes == len(made)
    assert dataset.num_frames == sum(len(e) for e in made)
    np.testing.assert_allclose(dataset[0]["observation.state"].numpy(), made[0].states[0])
