"""The robot-state model RFT's closed-loop imagination uses, fitted on simulator episodes."""

from __future__ import annotations

import numpy as np
import pytest

from vla_rft.data import WindowConfig, build_datasets
from vla_rft.models.world_model.proprio import ProprioModel, previous_actions
from vla_rft.rollout.collect import CollectConfig, collect


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("proprio") / "episodes"
    collect(
        CollectConfig(out=out, tasks=("reach-v3", "push-v3"), episodes_per_task=4, image_size=16,
                      max_steps=60, action_noise=0.3),
        progress=False,
    )  # fmt: skip
    return out


def test_fitted_model_predicts_the_hand_on_held_out_episodes(episodes):
    window = WindowConfig(image_size=16, normalize=False, val_fraction=0.25)
    train, val, _ = build_datasets([episodes], window)
    model = ProprioModel.fit(train.states, train.actions, train.ep_start)
    errors, still = [], []
    for start, end in zip(val.ep_start, val.ep_end, strict=True):
        horizon = min(16, end - start - 1)
        states = model.rollout(
            val.states[start : start + 1],
            val.actions[None, start : start + horizon],
            np.zeros((1, 4), np.float32),
        )[0]
        real = val.states[start + 1 : start + horizon + 1]
        errors.append(np.abs(states - real)[:, :3].mean())
        still.append(np.abs(val.states[start] - real)[:, :3].mean())
    # the hand moves about 3 cm in 16 steps; the model follows it within about 5 mm
    assert np.mean(errors) < 0.01, errors
    assert np.mean(errors) < 0.3 * np.mean(still), (errors, still)


def test_fit_recovers_a_linear_system_and_rollout_chains_its_steps():
    rng = np.random.default_rng(0)
    weights = rng.normal(scale=0.1, size=(2 * 2 + 3 + 1, 3))
    truth = ProprioModel(weights, state_dim=3, action_dim=2)
    actions = rng.uniform(-1, 1, size=(2, 40, 2))
    states = []
    for ep in range(2):  # two episodes of 40 steps, each from rest (previous action zero)
        s0 = rng.normal(size=(1, 3))
        path = truth.rollout(s0, actions[ep : ep + 1, :-1], np.zeros((1, 2)))[0]
        states.append(np.concatenate([s0, path]))
    fitted = ProprioModel.fit(np.concatenate(states), actions.reshape(80, 2), np.array([0, 40]))
    np.testing.assert_allclose(fitted.weights, weights, atol=1e-4)
    previous = previous_actions(actions.reshape(80, 2), np.array([0, 40]))
    assert (previous[[0, 40]] == 0).all() and (previous[41] == actions[1, 0]).all()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="too few consecutive steps"):
        ProprioModel.fit(np.zeros((3, 4)), np.zeros((3, 4)), np.array([0]))
    with pytest.raises(ValueError, match="weights must be finite"):
        ProprioModel(np.full((13, 4), np.nan), state_dim=4, action_dim=4)
