"""A non-square camera is centre-cropped, then resized, the same way in training (the data set's
cache), import and on the robot (the policy's transforms): a 640x480 frame keeps its aspect."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_episode

from vla_rft.contract.image import fit_square
from vla_rft.data.dataset import load_cached_episode
from vla_rft.data.episode import Episode
from vla_rft.data.episode_store import write_episode
from vla_rft.runtime.transforms import ImageTransform

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _wide_frame(height=480, width=640) -> np.ndarray:
    """Blue centre square, red beyond it (the part a centre crop must drop)."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = RED
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    frame[top : top + side, left : left + side] = BLUE
    return frame


@pytest.mark.parametrize("shape", [(480, 640), (640, 480)])
def test_the_centre_square_is_kept_and_nothing_is_squashed(shape):
    fitted = fit_square(_wide_frame(*shape), 64)
    assert fitted.shape == (64, 64, 3)
    assert np.all(fitted == BLUE)  # a plain resize would blend red into the sides
    frames = np.stack([_wide_frame(*shape)] * 3)[None]  # any leading dimensions
    assert fit_square(frames, 32).shape == (1, 3, 32, 32, 3)
    square = np.zeros((64, 64, 3), np.uint8)
    assert fit_square(square, 64) is square or np.shares_memory(fit_square(square, 64), square)


def test_training_cache_and_robot_transform_fit_a_640x480_frame_identically(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 480, 640, 3), dtype=np.uint8)
    base = make_episode(steps=3)
    episode = Episode(images, base.states, base.actions, base.timestamps, base.meta)
    path = write_episode(tmp_path, "wide", episode)
    cached = load_cached_episode(path, tmp_path / ".cache", image_size=64)
    np.testing.assert_array_equal(cached.images, fit_square(images, 64))
    network_input = ImageTransform(64)(images[0])  # what the robot's policy sees
    expected = cached.images[0].astype(np.float32) * (2.0 / 255.0) - 1.0
    np.testing.assert_array_equal(network_input, np.moveaxis(expected, -1, 0))
