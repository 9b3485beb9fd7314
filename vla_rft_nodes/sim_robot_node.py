"""The simulated robot node: a Meta-World task behind the topics a real arm and camera use.

    /vla_rft/action (Float32MultiArray) ─> step ─> /camera/image_raw (Image, sensor data; and
                                                   each further camera of its spec on its topic)
                                                   /vla_rft/state (Float32MultiArray)
    /vla_rft/episode_event start ─> reset(seed, perturbation); success or max_steps ─> end

Every 1/rate_hz seconds it takes the newest action received since the last tick, steps the
simulator with it and publishes the new frame and state (stamped with the wall clock). Without
a new action the simulator waits and the same frame is sent again with its old stamp (so
evaluation does not depend on the host's speed, and a late subscriber still gets a frame).
"""

from __future__ import annotations

import numpy as np

from vla_rft.contract.constants import (
    ACTION_MSGTYPE,
    ACTION_TOPIC,
    EPISODE_EVENT_MSGTYPE,
    EPISODE_EVENT_TOPIC,
    IMAGE_MSGTYPE,
    OBS_IMAGE,
    OBS_IMAGES,
    OBS_STATE,
    STATE_MSGTYPE,
    STATE_TOPIC,
)
from vla_rft.contract.qos import QoS
from vla_rft.data.messages import MessageError
from vla_rft.sim.spec import SAWYER
from vla_rft_nodes.configs import SimRobotNodeConfig
from vla_rft_nodes.events import EndEvent, StartEvent, to_json
from vla_rft_nodes.host import NodeBase, run_node


class SimRobotNode(NodeBase):
    """The simulated robot: Meta-World behind camera, state, action and episode topics."""

    NAME = "sim_robot_node"
    CONFIG = SimRobotNodeConfig

    def __init__(self, host, config: SimRobotNodeConfig):
        super().__init__(host, config)
        self._robots: dict[tuple[str, int], object] = {}  # (task, max_steps) -> MetaWorldRobot
        self._robot = None
        self._episode: StartEvent | None = None
        self._obs: dict | None = None
        self._stamp_ns = 0
        self._steps = 0
        self._pending: np.ndarray | None = None
        self._next_seed = 0
        self._image_pubs = {
            camera.name: host.publisher(camera.topic, IMAGE_MSGTYPE, QoS.SENSOR_DATA)
            for camera in config.spec.cameras
        }  # main camera first
        self._state_pub = host.publisher(STATE_TOPIC, STATE_MSGTYPE, QoS.RELIABLE)
        self._event_pub = host.publisher(EPISODE_EVENT_TOPIC, EPISODE_EVENT_MSGTYPE, QoS.RELIABLE)
        self.subscribe(ACTION_TOPIC, ACTION_MSGTYPE, self.on_action, QoS.RELIABLE)
        self.subscribe(EPISODE_EVENT_TOPIC, EPISODE_EVENT_MSGTYPE, self.on_event, QoS.RELIABLE)
        host.timer(1.0 / config.rate_hz, self.tick)

    def _robot_for(self, task: str, max_steps: int):
        key = (task, max_steps)
        if key not in self._robots:
            from vla_rft.sim import MetaWorldRobot, SimConfig

            c = self.config
            self._robots[key] = MetaWorldRobot(
                SimConfig(task, c.image_size, c.camera, max_steps, embodiment=c.embodiment)
            )
        return self._robots[key]

    def on_configure(self) -> None:
        self._robot_for(self.config.task, self.config.max_steps)  # load MuJoCo before "active"

    def on_shutdown(self) -> None:
        for robot in self._robots.values():
            robot.close()
        self._robots.clear()

    # --- callbacks ------------------------------------------------------------------------------

    def on_action(self, msg) -> None:
        try:
            action = self.codec.floats_from_msg(msg, SAWYER.action_dim)
        except MessageError as err:
            self.reject("action", err)
            return
        if self._episode is None:
            self.counters.add("actions_between_episodes")
            return
        if self._pending is not None:
            self.counters.add("actions_superseded")
        self._pending = action

    def on_event(self, msg) -> None:
        event = self.read_event(msg)
        if event is None:
            return
        if isinstance(event, StartEvent) and self.active:
            self._start(event)
        elif isinstance(event, EndEvent) and event.by != "sim" and self._episode is not None:
            self.log.info(f"episode {self._episode.episode!r} ended by {event.by or 'someone'}")
            self._episode = None

    def _start(self, event: StartEvent) -> None:
        task = event.task or self.config.task
        try:
            robot = self._robot_for(task, event.max_steps or self.config.max_steps)
        except ValueError as err:
            self.reject("episode_event", err)
            return
        seed = self._next_seed if event.seed is None else event.seed
        self._next_seed = seed + 1
        self._robot = robot
        self._obs = robot.reset(seed, event.perturbation)
        self._episode, self._steps, self._pending = event, 0, None
        self._stamp_ns = self.host.now_ns()
        self.log.info(f"episode {event.episode!r}: {task}, seed {seed}, {event.perturbation}")
        self._publish_obs()

    # --- timer ----------------------------------------------------------------------------------

    def tick(self) -> None:
        if self._episode is None or not self.active:
            return
        if self._pending is None:
            self._publish_obs()  # same frame, same stamp
            return
        action, self._pending = self._pending, None
        self._obs, success, done, _ = self._robot.step(action)
        self._steps += 1
        self._stamp_ns = self.host.now_ns()
        if not done:
            self._publish_obs()
            return
        # the frame after the last action is not published: topics are not ordered against
        # each other (rclpy), so a policy could act on it and a recorder record it as a step
        # past the end; the end event carries the final state
        end = EndEvent(
            episode=self._episode.episode, success=success,
            reason="success" if success else "max_steps", by="sim", steps=self._steps,
            state=tuple(float(x) for x in self._obs[OBS_STATE]), graph=self.graph,
        )  # fmt: skip
        self._event_pub.publish(self.codec.string_to_msg(to_json(end)))
        self.counters.add("episodes")
        self.log.info(f"episode {self._episode.episode!r}: {end.reason} after {end.steps} steps")
        self._episode = None

    def _publish_obs(self) -> None:
        c = self.config  # the state first: a policy acting on the frame then has its state
        self._state_pub.publish(self.codec.floats_to_msg(self._obs[OBS_STATE], SAWYER.state_names))
        frames = [self._obs[OBS_IMAGE], *self._obs.get(OBS_IMAGES, {}).values()]
        for publisher, frame in zip(self._image_pubs.values(), frames, strict=True):
            publisher.publish(self.codec.image_to_msg(frame, self._stamp_ns, c.frame_id))

    def status(self) -> dict:
        episode = self._episode
        return {
            **super().status(),
            "task": self._robot.task if self._robot is not None else self.config.task,
            "episode": episode.episode if episode else None,
            "steps": self._steps,
        }


def main(argv: list[str] | None = None) -> int:
    return run_node(SimRobotNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
