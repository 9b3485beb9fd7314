"""The simulated robot against the real Meta-World simulator, at 64x64 and for a few steps."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import numpy as np
import pytest

from vla_rft.contract.constants import OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE, SIM_EMBODIMENT
from vla_rft.contract.environment import Environment
from vla_rft.sim import (
    PERTURBATIONS,
    TASK_INSTRUCTIONS,
    MetaWorldRobot,
    Perturbation,
    SimConfig,
    get_perturbation,
    instruction_for,
)

MT10 = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)


@pytest.fixture(scope="module")
def reach():
    with MetaWorldRobot(SimConfig("reach-v3")) as robot:
        yield robot


@pytest.fixture(scope="module")
def push():
    with MetaWorldRobot(SimConfig("push-v3")) as robot:
        yield robot


def _start(robot, seed, perturbation="none"):
    """(obs, object xyz, goal xyz) right after a reset."""
    obs = robot.reset(seed, perturbation)
    return obs, robot.object_position, robot.goal_position


# --- instructions -------------------------------------------------------------------------


def test_instruction_for_covers_mt10_and_every_metaworld_task():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    for task in (*MT10, *ALL_V3_ENVIRONMENTS):
        assert instruction_for(task).strip()
    assert set(TASK_INSTRUCTIONS) == set(ALL_V3_ENVIRONMENTS)


def test_instruction_for_unknown_task_suggests_or_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown Meta-World task 'reach-v2'; did you mean"):
        instruction_for("reach-v2")
    with pytest.raises(ValueError, match=r"unknown Meta-World task 'fly'; known tasks: .*push-v3"):
        instruction_for("fly")


# --- perturbations, without the simulator --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "wind"}, "kind must be one of"),
        ({"kind": "object", "min_offset_m": 0.05, "max_offset_m": 0.02}, "exceeds"),
        ({"kind": "object", "min_offset_m": -0.01, "max_offset_m": 0.02}, r"\[0, 0.15\]"),
        ({"kind": "object", "min_offset_m": 2.5, "max_offset_m": 5.0}, "5 cm is 0.05"),
        ({"kind": "object", "max_offset_m": float("nan")}, "metres"),
        ({"kind": "object", "max_offset_m": "0.05"}, "number of metres"),
        ({"kind": "goal"}, "needs max_offset_m > 0"),
        ({"kind": "none", "max_offset_m": 0.01}, "zero offsets"),
    ],
)
def test_perturbation_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Perturbation(**kwargs)


def test_presets_match_the_documented_magnitudes():
    assert set(PERTURBATIONS) == {"none", "object", "goal", "robot_init"}
    for name in ("object", "goal", "robot_init"):
        preset = PERTURBATIONS[name]
        assert (preset.kind, preset.min_offset_m, preset.max_offset_m) == (name, 0.025, 0.05)
    assert get_perturbation("goal") is PERTURBATIONS["goal"]
    with pytest.raises(ValueError, match="unknown perturbation 'gaol'"):
        get_perturbation("gaol")


@pytest.mark.parametrize("name", ["object", "goal", "robot_init"])
def test_sampled_offsets_have_the_asked_length_and_replay_with_the_seed(name):
    preset = PERTURBATIONS[name]
    offsets = np.array([preset.sample_offset(np.random.default_rng(seed)) for seed in range(200)])
    lengths = np.linalg.norm(offsets, axis=1)
    assert np.all((lengths >= 0.025 - 1e-12) & (lengths <= 0.05 + 1e-12))
    assert np.all(offsets[:, 2] == 0.0) == preset.horizontal
    replay = preset.sample_offset(np.random.default_rng(7))
    np.testing.assert_array_equal(replay, offsets[7])
    with pytest.raises(TypeError, match="Generator"):
        preset.sample_offset(7)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "reach-v2"}, r"unknown Meta-World task 'reach-v2'; known tasks: .*push-v3"),
        ({"task": "reach-v3", "image_size": 8}, "image_size"),
        ({"task": "reach-v3", "image_size": 64.0}, "image_size"),
        ({"task": "reach-v3", "camera": "front"}, "camera must be one of"),
        ({"task": "reach-v3", "max_steps": 0}, "max_steps"),
        ({"task": "reach-v3", "fast_render": "yes"}, "fast_render"),
    ],
)
def test_sim_config_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimConfig(**kwargs)


# --- the robot -------------------------------------------------------------------------------


def test_observation_follows_the_contract(reach):
    obs = reach.reset(0)
    assert set(obs) == {OBS_IMAGE, OBS_STATE, OBS_INSTRUCTION}
    assert obs[OBS_IMAGE].shape == (64, 64, 3) and obs[OBS_IMAGE].dtype == np.uint8
    assert obs[OBS_STATE].shape == (4,) and obs[OBS_STATE].dtype == np.float32
    assert obs[OBS_INSTRUCTION] == instruction_for("reach-v3")
    spec = reach.embodiment
    assert (reach.fps, spec.action_dim, spec.state_dim, reach.task) == (80.0, 4, 4, "reach-v3")
    assert isinstance(reach, Environment) and spec.name == SIM_EMBODIMENT
    assert obs[OBS_IMAGE].std() > 10, "the image should show a scene, not a blank frame"


def test_same_seed_gives_the_same_start_and_different_seeds_do_not(reach):
    first, obj_a, goal_a = _start(reach, 3)
    _start(reach, 4)
    again, obj_b, goal_b = _start(reach, 3)
    np.testing.assert_array_equal(first[OBS_IMAGE], again[OBS_IMAGE])
    np.testing.assert_array_equal(first[OBS_STATE], again[OBS_STATE])
    np.testing.assert_array_equal(obj_a, obj_b)
    np.testing.assert_array_equal(goal_a, goal_b)

    other, obj_c, goal_c = _start(reach, 4)
    assert not np.array_equal(goal_a, goal_c) and not np.array_equal(obj_a, obj_c)
    assert not np.array_equal(first[OBS_IMAGE], other[OBS_IMAGE])


def test_a_fresh_robot_replays_the_same_start(push):
    obs = push.reset(5, "object")
    with MetaWorldRobot(SimConfig("push-v3")) as fresh:
        replay = fresh.reset(5, "object")
    np.testing.assert_array_equal(obs[OBS_IMAGE], replay[OBS_IMAGE])
    np.testing.assert_array_equal(obs[OBS_STATE], replay[OBS_STATE])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_object_perturbation_moves_the_object_only(push, seed):
    obs, obj, goal = _start(push, seed)
    moved_obs, moved_obj, moved_goal = _start(push, seed, "object")
    shift = moved_obj - obj
    assert 0.025 - 1e-6 <= np.linalg.norm(shift[:2]) <= 0.05 + 1e-6
    assert abs(shift[2]) < 1e-6, "the object moves in the table plane"
    np.testing.assert_allclose(shift, push.last_perturbation_offset, atol=1e-6)
    np.testing.assert_array_equal(moved_goal, goal)
    np.testing.assert_array_equal(moved_obs[OBS_STATE], obs[OBS_STATE])
    assert not np.array_equal(moved_obs[OBS_IMAGE], obs[OBS_IMAGE])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_goal_perturbation_moves_the_goal_only(push, seed):
    _, obj, goal = _start(push, seed)
    _, moved_obj, moved_goal = _start(push, seed, "goal")
    shift = moved_goal - goal
    assert 0.025 - 1e-6 <= np.linalg.norm(shift[:2]) <= 0.05 + 1e-6
    assert abs(shift[2]) < 1e-6
    np.testing.assert_allclose(shift, push.last_perturbation_offset, atol=1e-6)
    np.testing.assert_array_equal(moved_obj, obj)


@pytest.mark.parametrize("seed", [0, 1])
def test_robot_init_perturbation_moves_the_hand_only(reach, seed):
    obs, obj, goal = _start(reach, seed)
    moved_obs, moved_obj, moved_goal = _start(reach, seed, "robot_init")
    offset = reach.last_perturbation_offset
    assert 0.025 - 1e-6 <= np.linalg.norm(offset) <= 0.05 + 1e-6
    hand_shift = moved_obs[OBS_STATE][:3] - obs[OBS_STATE][:3]
    np.testing.assert_allclose(hand_shift, offset, atol=0.002)  # the hand is driven there
    np.testing.assert_allclose(moved_obj, obj, atol=1e-9)
    np.testing.assert_allclose(moved_goal, goal, atol=1e-9)


@pytest.mark.parametrize("perturbation", ["object", "goal", "robot_init"])
def test_perturbed_start_replays_with_the_same_seed(push, perturbation):
    first = push.reset(11, perturbation)
    offset = push.last_perturbation_offset
    push.reset(12, perturbation)
    assert not np.array_equal(push.last_perturbation_offset, offset)
    again = push.reset(11, perturbation)
    np.testing.assert_array_equal(push.last_perturbation_offset, offset)
    np.testing.assert_array_equal(first[OBS_IMAGE], again[OBS_IMAGE])
    np.testing.assert_array_equal(first[OBS_STATE], again[OBS_STATE])


def test_unperturbed_reset_reports_a_zero_offset(push):
    push.reset(0, "object")
    push.reset(0)
    np.testing.assert_array_equal(push.last_perturbation_offset, np.zeros(3))


def test_fixture_task_refuses_a_goal_perturbation_but_moves_the_fixture():
    with MetaWorldRobot(SimConfig("drawer-open-v3")) as drawer:
        _, handle, goal = _start(drawer, 0)
        _, moved_handle, moved_goal = _start(drawer, 0, "object")
        offset = drawer.last_perturbation_offset
        np.testing.assert_allclose(moved_handle - handle, offset, atol=0.005)
        np.testing.assert_allclose(moved_goal - goal, offset, atol=0.005)
        with pytest.raises(ValueError, match="cannot take a 'goal' perturbation"):
            drawer.reset(0, "goal")


@pytest.mark.parametrize(
    "action",
    [
        [0.0, 0.0, np.nan, 0.0],
        [np.inf, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [[0.0, 0.0, 0.0, 0.0]],
        "left",
    ],
)
def test_step_rejects_bad_actions(reach, action):
    reach.reset(0)
    with pytest.raises(ValueError, match="action must"):
        reach.step(action)


def test_step_clips_actions_and_ends_after_max_steps():
    with MetaWorldRobot(SimConfig("reach-v3", max_steps=3)) as robot:
        with pytest.raises(RuntimeError, match="reset"):
            robot.step([0.0, 0.0, 0.0, 0.0])
        robot.reset(0)
        steps = [robot.step([5.0, 0.0, -3.0, -5.0]) for _ in range(3)]
        assert [done for _, _, done, _ in steps] == [False, False, True]
        with pytest.raises(RuntimeError, match="episode is over"):
            robot.step([0.0, 0.0, 0.0, 0.0])

        robot.reset(0)
        clipped = [robot.step([1.0, 0.0, -1.0, -1.0]) for _ in range(3)]
        np.testing.assert_array_equal(clipped[-1][0][OBS_STATE], steps[-1][0][OBS_STATE])


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_reset_rejects_bad_seeds(reach, seed):
    with pytest.raises(ValueError, match="seed"):
        reach.reset(seed)


def test_image_size_and_camera_are_configurable():
    with MetaWorldRobot(SimConfig("reach-v3", image_size=32, camera="topview")) as robot:
        assert robot.reset(0)[OBS_IMAGE].shape == (32, 32, 3)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("task", ["reach-v3", "push-v3"])
def test_expert_solves_the_task_within_max_steps(reach, push, task, seed):
    robot = {"reach-v3": reach, "push-v3": push}[task]
    obs, done, success = robot.reset(seed), False, False
    while not done:
        action = robot.expert_action(obs)
        assert action.shape == (4,) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
        obs, success, done, info = robot.step(action)
    assert success, f"{task} seed {seed}: no success after {info['step']} steps"
    assert info["step"] < robot.config.max_steps


# --- snapshots ------------------------------------------------------------------------------


def _run(robot, actions) -> list:
    """(image, state, success, done, reward) after each action."""
    out = []
    for action in actions:
        obs, success, done, info = robot.step(action)
        out.append((obs[OBS_IMAGE].copy(), obs[OBS_STATE].copy(), success, done, info["reward"]))
    return out


def test_restoring_a_snapshot_continues_the_episode_exactly(push):
    """A snapshot taken mid-episode, restored after other actions, continues bit for bit as the
    episode did: physics, Meta-World's own step state (its previous-frame observation, its step
    count) and the robot's. What the simulator-in-the-loop fine-tuning rests on."""
    rng = np.random.default_rng(0)
    push.reset(seed=5, perturbation="object")
    for _ in range(12):
        obs, _, _, _ = push.step(push.expert_action())
    snapshot = push.snapshot()
    actions = rng.uniform(-1, 1, (20, 4)).astype(np.float32)
    first = _run(push, actions)
    _run(push, rng.uniform(-1, 1, (7, 4)).astype(np.float32))  # wander off elsewhere
    restored = push.restore(snapshot)
    np.testing.assert_array_equal(restored[OBS_IMAGE], obs[OBS_IMAGE])
    np.testing.assert_array_equal(restored[OBS_STATE], obs[OBS_STATE])
    assert push.steps == 12
    second = _run(push, actions)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2:] == b[2:]


def test_a_snapshot_of_another_episode_is_refused(push):
    push.reset(seed=1)
    snapshot = push.snapshot()
    push.reset(seed=2)
    with pytest.raises(ValueError, match="another episode"):
        push.restore(snapshot)


def test_steps_without_rendering_leave_the_images_out_and_the_physics_unchanged(push):
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (10, 4)).astype(np.float32)
    push.reset(seed=3)
    rendered = _run(push, actions)
    push.reset(seed=3)
    for action in actions[:-1]:
        obs, *_ = push.step(action, render=False)
        assert OBS_IMAGE not in obs and OBS_STATE in obs
    obs, success, done, info = push.step(actions[-1])
    np.testing.assert_array_equal(obs[OBS_IMAGE], rendered[-1][0])
    assert (obs[OBS_STATE].tolist(), success, done, info["reward"]) == (
        rendered[-1][1].tolist(),
        *rendered[-1][2:],
    )
    assert OBS_IMAGE not in push.restore(push.snapshot(), render=False)
