"""Pre/post-processing shared by training, export and the robot: the same numbers as the data
set on real episodes, clear errors for bad observations, clipped robot actions."""

from __future__ import annotations

import numpy as np
import pytest

from vla_rft.data.dataset import WindowConfig, build_datasets
from vla_rft.data.episode_store import write_episode
from vla_rft.runtime.transforms import (
    ActionTransform,
    ImageTransform,
    InstructionCache,
    Normalizer,
    PolicyTransforms,
)


@pytest.fixture
def episodes(tmp_path, episode_factory):
    for i in range(3):
        write_episode(tmp_path, f"ep{i}", episode_factory(steps=9, size=16, seed=i))
    return tmp_path


@pytest.fixture
def dataset(episodes):
    return build_datasets([episodes], WindowConfig(val_fraction=0.0))[0]


def test_state_and_action_transforms_match_the_training_data(episodes, dataset):
    raw = build_datasets([episodes], WindowConfig(val_fraction=0.0, normalize=False))[0]
    transforms = PolicyTransforms.from_stats(16, dataset.stats.to_dict())
    np.testing.assert_allclose(transforms.state.normalize(raw.states), dataset.states, atol=1e-5)
    # the synthetic actions lie in [-1, 1]: de-normalising the data set's gives them back
    np.testing.assert_allclose(transforms.action(dataset.actions), raw.actions, atol=1e-5)
    clipped = ActionTransform(transforms.action.normalizer, low=-0.5, high=0.5)
    assert np.abs(clipped(dataset.actions)).max() == pytest.approx(0.5)


def test_image_transform_scales_transposes_and_resizes(dataset):
    image = dataset.images[:2]  # uint8 [2, 16, 16, 3]
    out = ImageTransform(16)(image)
    assert out.shape == (2, 3, 16, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, 2, 5, 7], image[1, 5, 7, 2] / 127.5 - 1, atol=1e-6)
    assert out.min() >= -1 and out.max() <= 1
    big = np.repeat(np.repeat(image[0], 2, axis=0), 2, axis=1)  # [32, 32, 3], 2x2 blocks
    np.testing.assert_allclose(ImageTransform(16)(big), out[0], atol=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((16, 16, 3), np.float32), "uint8"),
        (np.zeros((16, 16), np.uint8), "uint8"),
        (np.zeros((16, 16, 4), np.uint8), r"\[\.\.\., H, W, 3\]"),
    ],
)
def test_bad_images_are_named(image, message):
    with pytest.raises(ValueError, match=message):
        ImageTransform(16)(image)


def test_bad_states_and_chunks_are_named():
    norm = Normalizer((0.0, 1.0), (1.0, 2.0))
    with pytest.raises(ValueError, match="state must end in 2 entries"):
        norm.normalize(np.zeros(3), "state")
    with pytest.raises(ValueError, match="state holds NaN"):
        norm.normalize(np.array([0.0, np.nan]), "state")
    with pytest.raises(ValueError, match="action chunk holds NaN"):
        ActionTransform(norm)(np.array([[np.inf, 0.0]]))
    constant = Normalizer((5.0,), (0.0,))  # a dimension that never varied is only centred
    assert constant.normalize(np.array([7.0]))[0] == 2.0


def test_instruction_cache_encodes_each_instruction_once():
    calls = []

    def encode(text):
        calls.append(text)
        return np.full(3, len(text), np.float32)

    cache = InstructionCache({"known": np.zeros(3, np.float32)}, encode)
    assert cache("known").sum() == 0 and calls == []
    assert cache("  new one ")[0] == 7 and cache("new one")[0] == 7
    assert calls == ["new one"]
    with pytest.raises(ValueError, match="instruction is empty"):
        cache("   ")
    with pytest.raises(ValueError, match="must be a string"):
        cache(None)
    with pytest.raises(ValueError, match="not seen in training"):
        InstructionCache({"known": np.zeros(3)})("other")
