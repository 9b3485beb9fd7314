"""A simulated robot: one Meta-World v3 task (MuJoCo Sawyer arm) behind the project's contract.

    robot = MetaWorldRobot(SimConfig("push-v3"))
    obs = robot.reset(seed=0, perturbation="object")  # {"image", "state", "instruction"}
    while True:
        obs, success, done, info = robot.step(robot.expert_action(obs))
        if done:
            break

Observations: "image" uint8 [S, S, 3] RGB from one fixed camera, "state" float32 [4] (hand
x, y, z in metres and gripper opening in [0, 1]), "instruction" str. Actions: float32 [4]
(hand displacement x, y, z and gripper effort), each in [-1, 1]; one step is 12.5 ms (80 Hz).

`reset(seed)` is exact: the same seed gives the same object and goal positions and the same
image. Meta-World draws its random start vector (object and goal positions) from a generator
seeded with `seed`; perturbations draw from a second generator seeded with (seed, 1).
"""

from __future__ import annotations

import copy
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless GL; must precede the first mujoco import

import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.policies import ENV_POLICY_MAP
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from vla_rft.contract.constants import (
    OBS_IMAGE,
    OBS_IMAGES,
    OBS_INSTRUCTION,
    OBS_STATE,
    SIM_EMBODIMENT,
)
from vla_rft.contract.embodiment import EmbodimentSpec, cached_embodiment
from vla_rft.sim.instructions import instruction_for
from vla_rft.sim.perturbations import Perturbation, get_perturbation
from vla_rft.sim.spec import SAWYER, SIM_CAMERA, SIM_IMAGE_SIZE, sim_problems

_UPSIDE_DOWN_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})
"""Cameras whose "up" axis points at the floor in Meta-World's XML: their image is rotated 180°."""

_SLOW_RENDER_FLAGS = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
)

_PERTURBATION_STREAM = 1
"""Perturbations use Generator((seed, 1)), independent of Meta-World's Generator(seed)."""

_MAX_PERTURBATION_TRIES = 50
"""Offsets drawn before giving up when the task keeps rejecting or disturbing the shifted start."""

# Meta-World's raw observation, float64 [39]: hand xyz, gripper opening, object xyz + quaternion,
# second object xyz + quaternion, the same 18 values one step earlier, goal xyz.
_HAND_AND_GRIPPER = slice(0, 4)
_OBJECT_XYZ = slice(4, 7)
_GOAL_XYZ = slice(36, 39)
_PREVIOUS_FRAME = slice(18, 36)

_MIN_VISIBLE_SHIFT_M = 0.001
"""A perturbed position that moved less than this means the task ignores that perturbation."""

_SHIFT_TOLERANCE_M = 0.005
"""How far the perturbed position may end up from nominal + offset after the reset's physics."""

_PHYSICS_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
"""MuJoCo's whole integration state: time, qpos, qvel, actuators, mocap bodies, warm start."""

_ENV_STEP_ATTRIBUTES = (
    "curr_path_length",
    "_prev_obs",
    "_last_stable_obs",
    "_did_see_sim_exception",
)
"""What Meta-World's step() reads besides the physics (all else is fixed at reset)."""


@dataclass(frozen=True)
class SimSnapshot:
    """A moment of one episode, to continue from with `MetaWorldRobot.restore`."""

    episode: int
    """The reset it belongs to (a robot counts its resets)."""
    physics: np.ndarray
    """mj_getState(mjSTATE_INTEGRATION)."""
    env_attributes: dict[str, Any]
    """Copies of Meta-World's step state (_ENV_STEP_ATTRIBUTES)."""
    raw_obs: np.ndarray
    steps: int
    done: bool


@dataclass(frozen=True)
class SimConfig:
    """Which task to simulate and how to film it."""

    task: str
    """Meta-World v3 task name, e.g. "push-v3"."""
    image_size: int = SIM_IMAGE_SIZE
    """Side of the square camera image, pixels."""
    camera: str = SIM_CAMERA
    """Meta-World camera the image comes from (one of CAMERAS)."""
    max_steps: int = 150
    """Steps after which an episode is done without success."""
    fast_render: bool = True
    """No shadows, reflections, skybox or anti-aliasing: about 10x faster on a CPU."""
    embodiment: str = SIM_EMBODIMENT
    """The spec (built-in name or file) whose further cameras are rendered too, each at
    image_size into obs["images"] (metaworld-sawyer-wrist: gripperPOV); the main image comes
    from `camera`."""

    def __post_init__(self) -> None:
        if self.task not in ALL_V3_ENVIRONMENTS:
            known = ", ".join(sorted(ALL_V3_ENVIRONMENTS))
            raise ValueError(f"unknown Meta-World task {self.task!r}; known tasks: {known}")
        if not _is_int(self.image_size) or not 16 <= self.image_size <= 1024:
            raise ValueError(
                f"image_size must be an integer in [16, 1024], got {self.image_size!r}"
            )
        problems = sim_problems(self.embodiment, self.spec, (self.camera, *self.extra_cameras))
        if problems:
            raise ValueError("; ".join(problems))
        if not _is_int(self.max_steps) or self.max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if not isinstance(self.fast_render, bool):
            raise ValueError(f"fast_render must be True or False, got {self.fast_render!r}")

    @property
    def spec(self) -> EmbodimentSpec:
        return cached_embodiment(self.embodiment)

    @property
    def extra_cameras(self) -> tuple[str, ...]:
        """Meta-World cameras rendered beside the main one."""
        return tuple(c.name for c in self.spec.cameras[1:])


class MetaWorldRobot:
    """One Meta-World task as a robot: reset(seed) -> obs; step(action) -> obs, success, done."""

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._instruction = instruction_for(config.task)
        self._env = _make_env(config)
        self._expert = ENV_POLICY_MAP[config.task]()
        self._renderer = _make_renderer(self._env.model, config)
        self._extra_cameras = config.extra_cameras
        # Frees the GL context at close() or, if never closed, at exit while EGL still works.
        self._release = weakref.finalize(self, _release, self._renderer, self._env)
        self._raw_obs: np.ndarray | None = None  # [39] Meta-World observation, goal included
        self._steps = 0
        self._done = False
        self._offset = np.zeros(3)
        self._episode = 0  # resets so far: a snapshot restores only into its own episode

    # --- episode ------------------------------------------------------------------------------

    def reset(self, seed: int, perturbation: Perturbation | str = "none") -> dict[str, Any]:
        """Start an episode; the same seed and perturbation give exactly the same start."""
        _check_seed(seed)
        perturbation = get_perturbation(perturbation)
        self._raw_obs = None  # a reset that fails leaves the robot needing another
        rng = np.random.default_rng((seed, _PERTURBATION_STREAM))
        if perturbation.kind == "none":
            self._raw_obs, self._offset = self._reset_nominal(seed), np.zeros(3)
        elif perturbation.kind == "robot_init":
            self._offset = perturbation.sample_offset(rng)
            self._raw_obs = self._reset_with_hand_offset(seed, self._offset)
        else:
            self._raw_obs, self._offset = self._reset_with_moved_start(seed, perturbation, rng)
        self._steps, self._done = 0, False
        self._episode += 1
        return self._observation()

    def step(
        self, action: Any, render: bool = True
    ) -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
        """Apply one action (float32 [4], clipped to [-1, 1]) for 12.5 ms.

        Returns (obs, success, done, info); done when the task succeeded or max_steps were
        taken. info holds Meta-World's reward terms, "reward" and "step" (1 on the first step).
        render=False leaves the images out of obs (rendering is most of a step's cost).
        """
        if self._raw_obs is None:
            raise RuntimeError("call reset(seed) before step()")
        if self._done:
            raise RuntimeError("the episode is over (success or max_steps reached); call reset()")
        action = _validated_action(action)
        self._raw_obs, reward, _, _, metaworld_info = self._env.step(action)
        self._steps += 1
        success = bool(metaworld_info["success"])
        self._done = success or self._steps >= self._config.max_steps
        info = {key: float(value) for key, value in metaworld_info.items()}
        info.update(success=success, reward=float(reward), step=self._steps)
        return self._observation(render), success, self._done, info

    def snapshot(self) -> SimSnapshot:
        """The episode's state now; `restore` continues from it exactly (same images, states,
        rewards and success for the same actions), after any number of other steps."""
        physics = np.empty(mujoco.mj_stateSize(self._env.model, _PHYSICS_STATE))
        mujoco.mj_getState(self._env.model, self._env.data, physics, _PHYSICS_STATE)
        return SimSnapshot(
            episode=self._episode,
            physics=physics,
            env_attributes={k: copy.deepcopy(getattr(self._env, k)) for k in _ENV_STEP_ATTRIBUTES},
            raw_obs=self._require_raw_obs().copy(),
            steps=self._steps,
            done=self._done,
        )

    def restore(self, snapshot: SimSnapshot, render: bool = True) -> dict[str, Any]:
        """Go back to `snapshot` (taken in this episode, since the last reset); returns the
        observation there (without images for render=False). ValueError for a snapshot of
        another episode: the objects and the goal a reset placed are not part of it."""
        if snapshot.episode != self._episode or self._raw_obs is None:
            raise ValueError(
                "the snapshot belongs to another episode of this robot (taken before the last "
                "reset): reset with its seed and perturbation, then take a new one"
            )
        mujoco.mj_setState(self._env.model, self._env.data, snapshot.physics, _PHYSICS_STATE)
        # positions for the image; mj_forward would also redo the constraint solve, whose
        # result then differs in the last bits from the one the episode stepped on
        mujoco.mj_kinematics(self._env.model, self._env.data)
        mujoco.mj_camlight(self._env.model, self._env.data)
        for key, value in snapshot.env_attributes.items():
            setattr(self._env, key, copy.deepcopy(value))
        self._raw_obs = snapshot.raw_obs.copy()
        self._steps, self._done = snapshot.steps, snapshot.done
        return self._observation(render)

    def expert_action(self, obs: dict[str, Any] | None = None) -> np.ndarray:
        """Meta-World's scripted expert action for the current state, float32 [4] in [-1, 1].

        The expert reads privileged state (exact object and goal positions) that the
        observation dict does not carry, so it uses the simulator's current state; `obs` is
        accepted, and ignored, so the expert can stand in wherever a policy is called.
        """
        del obs
        raw_obs = self._require_raw_obs()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Constant", UserWarning)  # it warns, we clip
            action = self._expert.get_action(raw_obs)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def render(self, camera: str | None = None) -> np.ndarray:
        """The current image of `camera` (default: the main one), uint8 [S, S, 3] RGB."""
        camera = camera or self._config.camera
        self._renderer.update_scene(self._env.data, camera=camera)
        image = self._renderer.render()
        if camera in _UPSIDE_DOWN_CAMERAS:
            image = image[::-1, ::-1]
        return np.ascontiguousarray(image)

    def close(self) -> None:
        """Free the renderer and the simulator; the robot is unusable afterwards."""
        self._release()

    def __enter__(self) -> MetaWorldRobot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- facts --------------------------------------------------------------------------------

    @property
    def config(self) -> SimConfig:
        return self._config

    @property
    def task(self) -> str:
        return self._config.task

    @property
    def instruction(self) -> str:
        return self._instruction

    @property
    def fps(self) -> float:
        """Control rate: Meta-World advances 5 MuJoCo steps of 2.5 ms per action."""
        return SAWYER.control_rate_hz

    @property
    def embodiment(self) -> EmbodimentSpec:
        return self._config.spec

    @property
    def steps(self) -> int:
        """Steps taken since the last reset."""
        return self._steps

    @property
    def last_perturbation_offset(self) -> np.ndarray:
        """Offset the last reset applied, float64 [3] metres (zeros when unperturbed)."""
        return self._offset.copy()

    @property
    def object_position(self) -> np.ndarray:
        """Privileged: the main object's position now, float64 [3] metres."""
        return self._require_raw_obs()[_OBJECT_XYZ].copy()

    @property
    def goal_position(self) -> np.ndarray:
        """Privileged: the goal position of this episode, float64 [3] metres."""
        return self._require_raw_obs()[_GOAL_XYZ].copy()

    # --- internals ----------------------------------------------------------------------------

    def _observation(self, render: bool = True) -> dict[str, Any]:
        raw_obs = self._require_raw_obs()
        obs = {
            OBS_STATE: raw_obs[_HAND_AND_GRIPPER].astype(np.float32),
            OBS_INSTRUCTION: self._instruction,
        }
        if not render:
            return obs
        obs[OBS_IMAGE] = self.render()
        if self._extra_cameras:
            obs[OBS_IMAGES] = {name: self.render(name) for name in self._extra_cameras}
        return obs

    def _require_raw_obs(self) -> np.ndarray:
        if self._raw_obs is None:
            raise RuntimeError("call reset(seed) first")
        return self._raw_obs

    def _reset_nominal(self, seed: int) -> np.ndarray:
        self._env.seed(seed)
        self._env.reset()
        return _refreshed_obs(self._env)

    def _reset_with_hand_offset(self, seed: int, offset: np.ndarray) -> np.ndarray:
        nominal_hand = self._env.hand_init_pos
        self._env.hand_init_pos = np.asarray(nominal_hand) + offset
        try:
            return self._reset_nominal(seed)
        finally:
            self._env.hand_init_pos = nominal_hand

    def _reset_with_moved_start(
        self, seed: int, perturbation: Perturbation, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reset with the object or goal part of the seed's start vector shifted.

        An offset is redrawn from `rng` (so the start still depends only on the seed) when the
        task rejects the shifted start (e.g. object and goal closer than 15 cm) or when physics
        moves the shifted part elsewhere during reset (a drawer pushed into the wall slides open).
        """
        nominal_obs = self._reset_nominal(seed)
        nominal_vec = self._env._last_rand_vec.copy()
        part = _start_vector_part(self.task, perturbation.kind, nominal_vec.size)
        for _ in range(_MAX_PERTURBATION_TRIES):
            offset = perturbation.sample_offset(rng)
            moved_vec = nominal_vec.copy()
            moved_vec[part] += offset
            self._env.seed(seed)
            try:
                raw_obs = _reset_with_start_vector(self._env, moved_vec)
            except _StartVectorRejected:
                continue
            if _moved_as_asked(self.task, perturbation.kind, offset, nominal_obs, raw_obs):
                return raw_obs, offset
        raise RuntimeError(
            f"{self.task} rejected or disturbed {_MAX_PERTURBATION_TRIES} perturbed starts for "
            f"seed {seed}; try a smaller perturbation or another seed"
        )


# --- Meta-World plumbing --------------------------------------------------------------------


def _make_env(config: SimConfig) -> SawyerXYZEnv:
    env = ALL_V3_ENVIRONMENTS[config.task]()
    env._set_task_called = True  # step() refuses to run without it; we place objects ourselves
    env._partially_observable = False  # the goal position is in the raw obs, for the expert
    vars(env).pop("sawyer_observation_space", None)  # cached with the goal clipped to 0
    env._freeze_rand_vec = False  # draw a new start vector at each reset ...
    env.seeded_rand_vec = True  # ... from env.np_random, which env.seed(seed) resets
    env.max_path_length = config.max_steps
    return env


def _make_renderer(model: mujoco.MjModel, config: SimConfig) -> mujoco.Renderer:
    size = config.image_size
    if config.fast_render:
        model.vis.global_.offwidth = size
        model.vis.global_.offheight = size
        model.vis.quality.offsamples = 0
    else:
        model.vis.global_.offwidth = max(size, model.vis.global_.offwidth)
        model.vis.global_.offheight = max(size, model.vis.global_.offheight)
    try:
        renderer = mujoco.Renderer(model, height=size, width=size)
    except Exception as error:
        backend = mujoco.gl_context.GLContext.__module__
        raise RuntimeError(
            f"MuJoCo could not open an offscreen OpenGL context (backend {backend}). On a "
            "machine without a display set MUJOCO_GL=egl (or osmesa) before mujoco is first "
            "imported: import vla_rft.sim before metaworld or mujoco, or export it in the shell"
        ) from error
    if config.fast_render:
        for flag in _SLOW_RENDER_FLAGS:
            renderer.scene.flags[flag] = False
    return renderer


class _StartVectorRejected(Exception):
    """The task asked for a second start vector: it rejected the one we gave it."""


def _reset_with_start_vector(env: SawyerXYZEnv, start_vector: np.ndarray) -> np.ndarray:
    """Reset `env` with Meta-World's random start vector replaced by `start_vector`.

    Each task's reset_model() asks `_get_state_rand_vec()` for the vector and, in many tasks,
    asks again while object and goal are too close. Giving back the same vector again would
    loop forever, so a second request within one reset_model() raises _StartVectorRejected.
    (gymnasium's reset calls reset_model() twice; the count restarts with each call.)
    """
    requests = 0
    task_reset_model = env.reset_model

    def reset_model() -> np.ndarray:
        nonlocal requests
        requests = 0
        return task_reset_model()

    def get_state_rand_vec() -> np.ndarray:
        nonlocal requests
        requests += 1
        if requests > 1:
            raise _StartVectorRejected
        env._last_rand_vec = start_vector.copy()
        return start_vector.copy()

    env.reset_model = reset_model
    env._get_state_rand_vec = get_state_rand_vec
    try:
        env.reset()
    finally:
        del env.reset_model, env._get_state_rand_vec
    return _refreshed_obs(env)


def _refreshed_obs(env: SawyerXYZEnv) -> np.ndarray:
    """The raw observation [39] right after a reset, with positions recomputed.

    Fixture tasks (drawer, door, window ...) move their fixture by editing the model after the
    last physics step, so the positions that Meta-World's reset reports, and the image, would
    still show the fixture where it was before. mj_forward recomputes positions without
    advancing time.
    """
    mujoco.mj_forward(env.model, env.data)
    raw_obs = env._get_obs()
    raw_obs[_PREVIOUS_FRAME] = raw_obs[: _PREVIOUS_FRAME.start]  # as Meta-World's reset does
    return raw_obs


def _release(renderer: mujoco.Renderer, env: SawyerXYZEnv) -> None:
    renderer.close()
    env.close()


def _start_vector_part(task: str, kind: str, vector_size: int) -> slice:
    """Which entries of the task's start vector a perturbation of `kind` shifts.

    Six entries: object xyz then goal xyz (or the fixture that defines the goal, such as
    peg-insert's box). Three entries: the one fixture (drawer, door, button, window ...) whose
    goal sits at a fixed offset from it, so "object" moves fixture and goal together and
    "goal" cannot move on its own.
    """
    if vector_size == 6:
        return slice(0, 3) if kind == "object" else slice(3, 6)
    if vector_size == 3 and kind == "object":
        return slice(0, 3)
    if vector_size == 3:
        raise ValueError(
            f"{task} cannot take a 'goal' perturbation: it places one fixture at random and its "
            "goal sits at a fixed offset from that fixture; use 'object' to move both together"
        )
    raise ValueError(f"{task} has a {vector_size}-entry start vector; cannot perturb it")


def _moved_as_asked(
    task: str, kind: str, offset: np.ndarray, nominal_obs: np.ndarray, raw_obs: np.ndarray
) -> bool:
    """Whether the perturbed part moved by `offset` in the table plane, within a tolerance.

    ValueError when it did not move at all: some tasks ignore part of their start vector
    (bin-picking's goal, for one).
    """
    where = _OBJECT_XYZ if kind == "object" else _GOAL_XYZ
    shift = (raw_obs[where] - nominal_obs[where])[:2]
    if np.linalg.norm(shift) < _MIN_VISIBLE_SHIFT_M:
        raise ValueError(f"{task} ignores the {kind} part of its start vector; cannot perturb it")
    return bool(np.linalg.norm(shift - offset[:2]) <= _SHIFT_TOLERANCE_M)


# --- argument checks ------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_seed(seed: object) -> None:
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _validated_action(action: Any) -> np.ndarray:
    """float32 [4] clipped to [-1, 1]; ValueError for a wrong shape or a non-finite entry."""
    names = ", ".join(SAWYER.action_names)
    try:
        array = np.asarray(action, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"action must be {SAWYER.action_dim} numbers ({names})") from None
    if array.shape != (SAWYER.action_dim,):
        raise ValueError(
            f"action must have shape ({SAWYER.action_dim},) ({names}), got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"action must be finite, got {array.tolist()}")
    return np.clip(array, SAWYER.action_low, SAWYER.action_high).astype(np.float32)
