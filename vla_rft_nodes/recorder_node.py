"""The episode recorder node: every step that crosses the wire, one rosbag2 MCAP per episode.

    /vla_rft/episode_event  start ─> a new episode (task, instruction, seed, ... from the event;
                                     at most max_steps steps: actions_after_end)
                            end   ─> finish it, labelled with the event's success
    /vla_rft/action         each action is a step: the newest frame and state published before
                            it, and the action (the frame's stamp is the step's time;
                            step_pairing.py says why "published", not "received")
    /camera/image_raw, /vla_rft/state, /vla_rft/instruction
    each further camera of the spec: the frame nearest in stamp to the step's main frame

Writes through `vla_rft.data.EpisodeWriter`, which flushes every step to disk: SIGINT or
SIGTERM finish the open episode (success false, `extra.interrupted`), a crash or SIGKILL leaves
it partial and the next start recovers it (`recover_on_start`). Nothing received is lost.
"""

from __future__ import annotations

import functools
import json
import time
from collections import deque
from pathlib import Path

from vla_rft.contract.constants import (
    ACTION_TOPIC,
    EPISODE_EVENT_TOPIC,
    EPISODE_TOPIC_QOS,
    EPISODE_TOPICS,
    IMAGE_MSGTYPE,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    PARTIAL_PREFIX,
    STANDIN_SOURCE,
    STATE_TOPIC,
    STATUS_MSGTYPE,
    STATUS_TOPIC,
)
from vla_rft.contract.instruction import check_instruction
from vla_rft.contract.qos import QoS
from vla_rft.data.episode import EpisodeError, EpisodeMeta
from vla_rft.data.episode_store import EpisodeWriter, recover_partial_episodes
from vla_rft.data.messages import MessageError
from vla_rft_nodes.configs import RecorderNodeConfig
from vla_rft_nodes.events import StartEvent
from vla_rft_nodes.frame_sync import nearest
from vla_rft_nodes.host import NodeBase, run_node
from vla_rft_nodes.node_table import POLICY_NODE
from vla_rft_nodes.step_pairing import StepPairing

QUEUE_DEPTH = 100
"""Messages kept per step topic while a step is being written (3 s at 30 Hz): writing never
makes the recorder drop a frame or an action."""


STATUS_DEPTH = 50
"""Status messages kept unread: one topic carries every node's, so one per node is not enough."""


class RecorderNode(NodeBase):
    """The recorder: episodes from the wire, written step by step."""

    NAME = "recorder_node"
    CONFIG = RecorderNodeConfig

    def __init__(self, host, config: RecorderNodeConfig):
        super().__init__(host, config)
        self.out_dir = Path(config.out_dir)
        self._episode: StartEvent | None = None  # started; the writer opens at the first step
        self._writer: EpisodeWriter | None = None
        self._pairing = StepPairing()  # frames, states and actions -> steps
        self._cameras = {  # further camera -> its recent (stamp, frame)
            camera.name: deque(maxlen=QUEUE_DEPTH) for camera in config.spec.cameras[1:]
        }
        self._instruction: str | None = None
        self._first_stamp = 0
        self._last_t = 0.0
        self._foreign_graph: str | None = None  # another graph's node heard on the domain
        self._last_closed: str | None = None  # name of the last episode written
        self._instruction_changes: list[dict] = []  # instructions given during the episode
        self._policy_model: dict | None = None  # the policy node's model_identity()
        callbacks = {
            IMAGE_TOPIC: self.on_image,
            STATE_TOPIC: self.on_state,
            ACTION_TOPIC: self.on_action,
            INSTRUCTION_TOPIC: self.on_instruction,
            EPISODE_EVENT_TOPIC: self.on_event,
        }
        for topic, msgtype in EPISODE_TOPICS.items():
            qos = EPISODE_TOPIC_QOS[topic]
            # a deep queue while a step is written to disk; every instruction counts (a latched
            # reader keeping one would lose one of two sent while the executor was busy)
            keep_all = topic in (IMAGE_TOPIC, STATE_TOPIC, ACTION_TOPIC, INSTRUCTION_TOPIC)
            depth = QUEUE_DEPTH if keep_all else None
            heard_on = config.spec.main_camera.topic if topic == IMAGE_TOPIC else topic
            self.subscribe(heard_on, msgtype, callbacks[topic], qos, depth)
        for camera in config.spec.cameras[1:]:
            on_camera = functools.partial(self.on_camera, camera.name)
            self.subscribe(camera.topic, IMAGE_MSGTYPE, on_camera, QoS.SENSOR_DATA, QUEUE_DEPTH)
        self.subscribe(STATUS_TOPIC, STATUS_MSGTYPE, self.on_status, QoS.LATCHED, STATUS_DEPTH)

    def on_configure(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self.config.recover_on_start:
            return
        for partial, report in recover_partial_episodes(self.out_dir):
            if isinstance(report, EpisodeError):
                self.counters.add("recovery_failures")
                self.log.error(f"cannot recover {partial.name}: {report}")
            else:
                kept = "quarantined" if report.quarantined else "recovered"
                self.counters.add(f"episodes_{kept}")
                self.log.warning(f"{kept} an interrupted episode: {report.summary()}")

    def on_shutdown(self) -> None:
        if self._episode is not None:
            self._close(False, {"interrupted": "the recorder stopped before the episode ended"})

    # --- callbacks ------------------------------------------------------------------------------

    def on_image(self, msg) -> None:
        try:
            frame = (self.codec.image_from_msg(msg), self.codec.stamp_ns(msg))
        except MessageError as err:
            self.reject("image", err)
            return
        self._pairing.frame(self.host.source_time_ns(), frame)
        self._write_steps()

    def on_camera(self, name: str, msg) -> None:
        try:
            self._cameras[name].append((self.codec.stamp_ns(msg), self.codec.image_from_msg(msg)))
        except MessageError as err:
            self.reject("image", err)

    def on_state(self, msg) -> None:
        try:
            state = self.codec.floats_from_msg(msg, self.config.spec.state_dim)
        except MessageError as err:
            self.reject("state", err)
            return
        self._pairing.state(self.host.source_time_ns(), state)
        self._write_steps()

    def on_instruction(self, msg) -> None:
        try:
            text = check_instruction(msg.data, self.config.max_instruction_chars)
        except ValueError as err:
            self.reject("instruction", err)
            return
        if self._writer is not None and text != self._writer.meta.instruction:
            # the episode's metadata keeps its first instruction; later ones are listed
            self._instruction_changes.append({"step": self._writer.num_steps, "instruction": text})
        self._instruction = text

    def on_status(self, msg) -> None:
        """Another graph's node on this domain: its messages would mix into this graph's on
        the same topics, so the episode in progress is closed as interrupted and nothing more
        is recorded until the recorder is restarted with the domain to itself."""
        try:
            status = json.loads(msg.data)
            node, graph = str(status["node"]), str(status.get("graph") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # another tool's status message: nothing to act on
        if not (graph and self.graph and graph != self.graph):
            if node == POLICY_NODE and isinstance(status.get("model"), dict):
                self._policy_model = status["model"]  # which model drives this graph's robot
            return
        if self._foreign_graph:
            return
        self._foreign_graph = f"{node} of graph {graph}"
        self.counters.add("foreign_graphs")
        self.log.error(
            f"another vla_rft graph is on this DDS domain ({self._foreign_graph}); recording "
            "stopped: its camera, state and action messages would mix into these episodes"
        )
        if self._episode is not None:
            self._close(
                False, {"interrupted": f"another graph on the domain: {self._foreign_graph}"}
            )

    def on_action(self, msg) -> None:
        if self._foreign_graph is not None:
            self.counters.add("actions_refused_foreign_graph")
            return
        if self._episode is None or not self.active:
            self.counters.add("actions_between_episodes")
            return
        try:
            action = self.codec.floats_from_msg(msg, self.config.spec.action_dim)
        except MessageError as err:
            self.reject("action", err)
            return
        self._pairing.action(self.host.source_time_ns(), action)
        self._write_steps()

    def _write_steps(self, final: bool = False) -> None:
        """Write the steps whose frame and state are known (StepPairing says which)."""
        if self._episode is None:
            return
        steps, dropped = self._pairing.steps(final)
        if dropped:
            self.counters.add("actions_before_observation", dropped)
        for (image, stamp), state, action in steps:
            if self._past_limit():
                self.counters.add("actions_after_end")
                continue
            paired = {name: nearest(list(frames), stamp) for name, frames in self._cameras.items()}
            missing = [name for name, found in paired.items() if found is None]
            if missing:
                self.counters.add("steps_without_camera")
                self.warn_throttled("camera", f"a step without a frame of {missing}: dropped")
                continue
            try:
                if self._writer is None:
                    self._open(stamp)
                self._last_t = max(self._last_t, (stamp - self._first_stamp) / 1e9)
                cameras = {name: found[1] for name, found in paired.items()}
                self._writer.add_step(image, state, action, self._last_t, cameras)
            except EpisodeError as err:
                self.reject("step", err)
                continue
            self.counters.add("steps")

    def _past_limit(self) -> bool:
        """The episode has its start event's max_steps: the robot executes no more actions (at
        its limit it publishes a last frame, and a policy that has not heard the end yet acts
        on it)."""
        limit = self._episode.max_steps
        return limit is not None and self._writer is not None and self._writer.num_steps >= limit

    def on_event(self, msg) -> None:
        event = self.read_event(msg)
        if event is None:
            return
        if isinstance(event, StartEvent):
            if self._episode is not None:
                self._close(False, {"interrupted": "a new episode started before this one ended"})
            self._episode = event
            self._pairing.clear()  # only what is published after the start belongs to it
            for frames in self._cameras.values():
                frames.clear()
        elif self._episode is None and self._last_closed is not None:
            self.counters.add("ends_after_close")
            outcome = "success" if event.success else "failure"
            self.log.warning(
                f"an end event ({outcome}, by {event.by or 'someone'}) came after "
                f"{self._last_closed} was closed: it is not in that episode; if it is the right "
                f"label: vla-rft episodes label {self.out_dir / self._last_closed} {outcome}"
            )
        elif self._episode is None:
            self.counters.add("ends_without_start")
        else:
            self._close(event.success, {"ended_by": event.by, "end_reason": event.reason})

    # --- episodes -------------------------------------------------------------------------------

    def _open(self, first_stamp: int) -> None:
        c, event = self.config, self._episode
        standin = bool(self._policy_model and self._policy_model.get("standin"))
        meta = EpisodeMeta(
            task=event.task or "unknown",
            instruction=event.instruction or self._instruction or "",
            robot=event.robot or c.spec.name,
            fps=event.fps or c.fps,
            source=STANDIN_SOURCE if standin else event.source or c.source,
            state_names=c.spec.state_names,
            action_names=c.spec.action_names,
            cameras={camera.name: camera.topic for camera in c.spec.cameras},
            start_time_ns=first_stamp,
            extra={
                "seed": event.seed, "perturbation": event.perturbation,
                "max_steps": event.max_steps, "graph": self.graph or None,
                "model": self._policy_model,
                "recorder": {"node": self.NAME, "host": self.host.kind},
            },
        )  # fmt: skip
        self._writer = EpisodeWriter(self.out_dir, self._unique_name(event), meta, c.bag_version)
        self._first_stamp, self._last_t = first_stamp, 0.0
        self.log.info(f"recording {self._writer.final_path.name}")

    def _unique_name(self, event: StartEvent) -> str:
        base = event.episode or f"{event.task or 'episode'}-{time.strftime('%Y%m%d-%H%M%S')}"
        name, n = base, 1
        while (self.out_dir / name).exists() or (self.out_dir / f"{PARTIAL_PREFIX}{name}").exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def _close(self, success: bool, extra: dict) -> None:
        self._write_steps(final=True)
        writer, self._writer, self._episode = self._writer, None, None
        if self._instruction_changes:
            extra = {**extra, "instruction_changes": self._instruction_changes}
            self._instruction_changes = []
        if writer is None:
            self.counters.add("episodes_without_steps")
            return
        try:
            path = writer.finish(success, extra)
        except EpisodeError as err:
            writer.close_partial()
            self.reject("episode", err)
            return
        self.counters.add("episodes")
        self._last_closed = path.name
        self.log.info(f"episode {path.name}: {writer.num_steps} steps, success={success}")

    def status(self) -> dict:
        writer = self._writer
        return {
            **super().status(),
            "out_dir": str(self.out_dir),
            "episode": writer.final_path.name if writer else None,
            "episode_steps": writer.num_steps if writer else 0,
            "foreign_graph": self._foreign_graph,
        }


def main(argv: list[str] | None = None) -> int:
    return run_node(RecorderNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
