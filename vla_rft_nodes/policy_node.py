"""The policy node: camera, robot state and instruction in; one action per control tick out.

    in:  /camera/image_raw (sensor_msgs/Image, sensor data; and the topic of each further camera
         the policy sees, paired with it by stamp in frame_sync.py), /vla_rft/state
         (std_msgs/Float32MultiArray or sensor_msgs/JointState, sensor data; each frame goes
         with the state published nearest to it, frame_sync.StateSync),
         /vla_rft/instruction (std_msgs/String, latched), /vla_rft/estop (std_msgs/Bool),
         /vla_rft/episode_event (std_msgs/String)
    out: /vla_rft/action (std_msgs/Float32MultiArray), optionally /vla_rft/command (a ROS 2
         arm's command type, robot_interfaces.py) and /vla_rft/action_trajectory
         (trajectory_msgs/JointTrajectory, each new chunk), /vla_rft/status

A ROS 2 lifecycle node: configure loads the policy (engine and instruction encoder) through
`policy_factory` (default `vla_rft.runtime.loader:load_policy(model_path, backend)`); activate
starts the control thread; deactivate stops it and holds the robot. Subscription callbacks only
convert and store; inference runs on its own thread, so a slow model never blocks the camera.

Each tick, in order: a latched e-stop, a missing instruction, an ended episode, or a camera frame
or state older than its timeout holds the robot (zero motion, gripper kept) and is reported;
faults publish the hold every tick, waiting for an instruction, an episode or a first frame
publishes it once. Otherwise the chunk broker gives the action, which is clipped to the action
limits and to the per-tick change limit and published. Chunks come from the inference thread
(`inference.py`): with `async_inference` a tick goes on with the current chunk while the next
one is computed, so control latency does not depend on the model; a chunk holding NaN/inf or of
the wrong shape is refused. A new instruction or episode start, or any hold, empties the queue.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from vla_rft.contract.constants import (
    ACTION_MSGTYPE,
    ACTION_TOPIC,
    ACTION_TRAJECTORY_MSGTYPE,
    ACTION_TRAJECTORY_TOPIC,
    EPISODE_EVENT_MSGTYPE,
    EPISODE_EVENT_TOPIC,
    ESTOP_MSGTYPE,
    ESTOP_TOPIC,
    IMAGE_MSGTYPE,
    INSTRUCTION_MSGTYPE,
    INSTRUCTION_TOPIC,
    OBS_IMAGE,
    OBS_IMAGES,
    OBS_INSTRUCTION,
    OBS_STATE,
    STATE_TOPIC,
)
from vla_rft.contract.embodiment import EmbodimentSpec
from vla_rft.contract.instruction import check_instruction
from vla_rft.contract.manifest import sha256_file
from vla_rft.contract.policy import PolicySpec
from vla_rft.contract.qos import QoS
from vla_rft.data.messages import MessageError
from vla_rft.runtime.chunk_broker import ChunkBroker, ChunkBrokerConfig
from vla_rft_nodes.configs import PolicyNodeConfig
from vla_rft_nodes.events import EndEvent, StartEvent
from vla_rft_nodes.frame_sync import WAIT, CameraSync, StateSync
from vla_rft_nodes.host import NodeBase, run_node
from vla_rft_nodes.host.base import latency_summary, rss_mb
from vla_rft_nodes.inference import InferenceWorker, Request, Result
from vla_rft_nodes.node_table import POLICY_NODE
from vla_rft_nodes.policy_factories import import_factory
from vla_rft_nodes.robot_interfaces import (
    COMMAND_MSGS,
    COMMAND_TOPIC,
    STATE_MSGS,
    command_msg,
    read_state,
)
from vla_rft_nodes.safety import (
    ActionLimiter,
    EStopLatch,
    UnsafeChunk,
    Watchdog,
    check_chunk,
    hold_action,
)

CAMERA_FALLBACK_PERIODS = 1.5
"""Camera trigger: tick without a new frame after this many periods (holds go out at the
control rate; actions only follow frames)."""
CAMERA_MIN_PERIODS = 0.9
"""Camera trigger: never tick sooner than this many periods after the last command (a tick that
published nothing, e.g. one waiting for an instruction or a state, does not delay the next)."""


class InferenceLate(RuntimeError):
    """No chunk covers this tick and the policy did not answer within image_timeout_s."""


class Halted(RuntimeError):
    """The e-stop or a deactivation ended a tick while it waited for the policy."""


VERSION = re.compile(r"v\d{3,}")
"""A model registry version directory's name (vla_rft/pipeline/registry.py)."""

IDLE_REASONS = frozenset(
    {"no_instruction", "episode_over", "no_image", "no_state", "estop_unknown", "no_estop_state"}
)
"""Nothing to act on yet: one hold is published on entering, none while waiting (so a robot
between episodes gets no commands). Every other reason is a fault: a hold every tick."""


@dataclass(frozen=True)
class Frame:
    """A camera frame as the control thread sees it."""

    image: np.ndarray
    """uint8 [H, W, 3] RGB."""
    stamp_ns: int
    """Header stamp."""
    received: float
    """time.monotonic() at arrival."""
    source_ns: int = 0
    """When it was published (DDS source timestamp), to pair it with its state."""
    cameras: dict = field(default_factory=dict)
    """The further cameras' frames paired with it, by name."""
    state: np.ndarray | None = None
    """The robot state paired with it (StateSync)."""


def model_identity(model_path: str, policy) -> dict:
    """Which model runs: the path given, where it resolves (models/current -> models/v001), the
    registry version, the model file's sha256 and whether it is the stand-in."""
    from vla_rft_nodes.standin_policy import StandinPolicy

    resolved = Path(model_path).resolve()
    manifest = getattr(policy, "manifest", None)
    standin = isinstance(policy, StandinPolicy)
    digest = getattr(manifest, "file_sha256", None)
    if digest is None and standin and resolved.is_file():
        digest = sha256_file(resolved)
    version = next(
        (p.name for p in (resolved, *resolved.parents) if VERSION.fullmatch(p.name)), None
    )
    return {"path": model_path, "resolved": str(resolved), "version": version,
            "sha256": digest, "standin": standin}  # fmt: skip


def package_problems(policy: PolicySpec | None, spec: EmbodimentSpec, config) -> list[str]:
    """Why a loaded policy cannot drive this robot with these parameters; empty if it can."""
    if policy is None:
        return ["the policy does not say what it takes (no `spec`; see vla_rft/contract/policy.py)"]
    problems = spec.mismatches(policy.embodiment, policy.state_dim, policy.action_dim)
    for name in policy.cameras[1:]:
        try:
            spec.camera(name)
        except ValueError as err:
            problems.append(str(err))
    if config.replan_every > policy.chunk_size:
        problems.append(
            f"replan_every {config.replan_every} is longer than its chunks ({policy.chunk_size})"
        )
    return problems


class PolicyNode(NodeBase):
    """The policy: camera, state and instruction in, actions out at the control rate."""

    NAME = POLICY_NODE
    CONFIG = PolicyNodeConfig
    LIFECYCLE = True

    def __init__(self, host, config: PolicyNodeConfig):
        super().__init__(host, config)
        c = config
        self.policy = None
        self.model: dict | None = None  # model_identity() once configured
        self.broker = ChunkBroker(
            ChunkBrokerConfig(c.replan_every, c.temporal_ensemble, c.ensemble_decay)
        )
        self.spec = c.spec
        self.limiter = ActionLimiter(
            self.spec.action_low, self.spec.action_high, self.spec.max_action_change
        )
        self.estop = EStopLatch()
        self.image_watchdog = Watchdog(c.image_timeout_s)
        self.state_watchdog = Watchdog(c.state_timeout_s)
        self.period = 1.0 / c.control_rate_hz
        # written by the subscription callbacks, read by the control thread
        self._frame: Frame | None = None
        self.camera_sync = CameraSync((), c.max_camera_skew_s, self.counters)  # the policy's
        self.state_sync = StateSync(c.max_state_skew_s, self.counters)
        self._instruction: str | None = None
        self._estop_pressed = False
        self._estop_heard: bool | None = False  # an e-stop state, latched or live, was heard
        self._activated_at = 0.0
        self._publish_lock = threading.RLock()  # the latch is engaged and checked under it
        self._episode_over = False
        self._resets = 0  # bumped by callbacks; the control thread resets when it changes
        self._frame_fresh = False  # a frame the control thread has not ticked on yet
        self._pairing = False  # the control thread pairs a frame: a state or camera frame wakes it
        self._wake = threading.Event()  # a new frame or an e-stop
        # owned by the control thread
        self.worker: InferenceWorker | None = None
        self._seen_resets = 0
        self._generation = 0  # of the chunk queue: bumped whenever it is emptied
        self._reset_policy = False
        self._chunk_stamp_ns = 0  # frame stamp of the newest chunk in use
        self._last_action: np.ndarray | None = None
        self._published_at = 0.0  # time.monotonic() of the last command
        self._last_frame_stamp: int | None = None
        self._holding: str | None = "inactive"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latency_ms: deque[float] = deque(maxlen=600)
        self._obs_age_ms: deque[float] = deque(maxlen=600)
        self._infer_ms: deque[float] = deque(maxlen=600)
        self._tick_times: deque[float] = deque(maxlen=300)

        self._action_pub = host.publisher(ACTION_TOPIC, ACTION_MSGTYPE, QoS.RELIABLE)
        self._trajectory_pub = (
            host.publisher(ACTION_TRAJECTORY_TOPIC, ACTION_TRAJECTORY_MSGTYPE, QoS.RELIABLE)
            if c.publish_trajectory
            else None
        )
        command_type = COMMAND_MSGS[c.command_msg]
        self._command_pub = (
            host.publisher(COMMAND_TOPIC, command_type, QoS.RELIABLE) if command_type else None
        )
        self.subscribe(self.spec.main_camera.topic, IMAGE_MSGTYPE, self.on_image, QoS.SENSOR_DATA)
        for camera in self.spec.cameras[1:]:
            on_camera = partial(self.on_camera, camera.name)
            self.subscribe(camera.topic, IMAGE_MSGTYPE, on_camera, QoS.SENSOR_DATA)
        self.subscribe(STATE_TOPIC, STATE_MSGS[c.state_msg], self.on_state, QoS.SENSOR_DATA)
        self.subscribe(INSTRUCTION_TOPIC, INSTRUCTION_MSGTYPE, self.on_instruction, QoS.LATCHED)
        # latched: a restarted node hears a held e-stop; volatile: a writer without
        # transient-local durability (`ros2 topic pub` by default) still reaches the node
        self.subscribe(ESTOP_TOPIC, ESTOP_MSGTYPE, self.on_estop, QoS.LATCHED)
        self.subscribe(ESTOP_TOPIC, ESTOP_MSGTYPE, self.on_estop, QoS.RELIABLE)
        self.subscribe(EPISODE_EVENT_TOPIC, EPISODE_EVENT_MSGTYPE, self.on_event, QoS.RELIABLE)

    # --- subscription callbacks (executor thread): convert, check, store ----------------------

    def on_image(self, msg) -> None:
        try:
            image = self.codec.image_from_msg(msg)
        except MessageError as err:
            self.reject("image", err)
            return
        stamp = self.codec.stamp_ns(msg)
        previous = self._frame
        if previous is not None and stamp == previous.stamp_ns:
            self.counters.add("images_repeated")  # a camera re-sending its last frame
            return
        now = time.monotonic()
        self._frame = Frame(image, stamp, now, self.host.source_time_ns())
        self.image_watchdog.feed(now)
        if self._frame_fresh and self._holding is None:
            self.counters.add("frames_skipped")  # the control thread had not used the last one
        self._frame_fresh = True
        if self.camera_sync.ready(stamp):
            self._wake.set()

    def on_camera(self, name: str, msg) -> None:
        """A further camera's frame: kept for pairing if the policy sees that camera."""
        if name not in self.camera_sync.cameras:
            return
        try:
            self.camera_sync.add(name, self.codec.stamp_ns(msg), self.codec.image_from_msg(msg))
        except MessageError as err:
            self.reject("image", err)
            return
        frame = self._frame
        waiting = self._frame_fresh or self._pairing
        if waiting and frame is not None and self.camera_sync.ready(frame.stamp_ns):
            self._wake.set()

    def on_state(self, msg) -> None:
        try:
            state = read_state(self.codec, self.config, msg)
        except MessageError as err:
            self.reject("state", err)
            return
        self.state_sync.add(self.host.source_time_ns(), state)
        self.state_watchdog.feed(time.monotonic())
        if self._frame_fresh or self._pairing:
            self._wake.set()  # a frame was waiting for a state

    def on_instruction(self, msg) -> None:
        try:
            text = check_instruction(msg.data, self.config.max_instruction_chars)
        except ValueError as err:
            self.reject("instruction", err)
            return
        if text != self._instruction:
            self.log.info(f"instruction: {text!r}")
            self._instruction = text
            self._episode_over = False
            self._resets += 1
            if self._frame_fresh:
                self._wake.set()  # a frame came first: act on it now, before the next replaces it

    def on_estop(self, msg) -> None:
        """Engage the latch and publish a hold at once, under the lock every motion command is
        published under; then wake the control thread and any wait for the policy."""
        self._estop_pressed = bool(msg.data)
        self._estop_heard = True
        if self._estop_pressed:
            with self._publish_lock:
                first = self.estop.engage("e-stop message")
                if first and self._thread is not None:
                    action = hold_action(self._last_action, self.spec)
                    if action is not None:
                        self._publish(action, motion=False)
            if first:
                self.counters.add("estops")
                self.log.error("E-STOP engaged: holding the robot until deactivate + activate")
                self._wake.set()
                if self.worker is not None:
                    self.worker.wake()
        elif self.estop.engaged:
            self.log.warning("e-stop released on the topic; the latch holds until reactivation")

    def on_event(self, msg) -> None:
        event = self.read_event(msg)
        if event is None:
            return
        if isinstance(event, StartEvent):
            self._frame = None  # frames of the last episode must not drive this one
            self.camera_sync.clear()
            self._episode_over = False
            self._resets += 1
        elif isinstance(event, EndEvent):
            self._episode_over = True

    # --- lifecycle ------------------------------------------------------------------------------

    def on_configure(self) -> None:
        c = self.config
        factory = import_factory(c.policy_factory)
        self.log.info(f"loading the policy {c.model_path} ({c.backend}) via {c.policy_factory}")
        self.worker = InferenceWorker(lambda: factory(Path(c.model_path), c.backend))
        try:
            self.policy = self.worker.wait_loaded()
            problems = package_problems(getattr(self.policy, "spec", None), self.spec, c)
            if problems:
                raise RuntimeError(
                    f"the policy {c.model_path} does not fit embodiment {self.spec.name!r}: "
                    + "; ".join(problems)
                )
        except BaseException:
            if self.worker is not None and self.policy is not None:
                self.worker.close()
            self.worker = self.policy = None
            raise
        self.model = model_identity(c.model_path, self.policy)
        self.camera_sync = CameraSync(
            self.policy.spec.cameras[1:], c.max_camera_skew_s, self.counters
        )
        m = self.model
        self.log.info(
            f"model: {m['resolved']} (version {m['version'] or 'none'}, sha256 "
            f"{str(m['sha256'])[:12]}{', the stand-in' if m['standin'] else ''})"
        )
        backend = getattr(self.policy, "backend", type(self.policy).__name__)
        camera, size = self.spec.main_camera, self.policy.spec.image_size
        self.log.info(
            f"policy ready: {backend}; chunks of {self.policy.spec.chunk_size}, a new one every "
            f"{c.replan_every} ticks; {camera.name} {camera.width}x{camera.height} "
            + (f"resized to {size}x{size}" if size else "as it comes")
        )

    def on_activate(self) -> None:
        if self.policy is None:
            raise RuntimeError("no policy loaded; configure first")
        if self._estop_pressed:
            raise RuntimeError("the e-stop is pressed; release it before activating")
        self.estop.release()
        self._activated_at = time.monotonic()
        self._resets += 1
        self._stop.clear()
        self._thread = threading.Thread(target=self._control_loop, name="control", daemon=True)
        self._thread.start()

    def on_deactivate(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.worker is not None:
            self.worker.wake()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._hold("inactive")

    def on_cleanup(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.worker = self.policy = None

    def on_shutdown(self) -> None:
        if self._thread is not None:
            self.on_deactivate()
        self.on_cleanup()

    # --- control thread -------------------------------------------------------------------------

    def _control_loop(self) -> None:
        camera = self.config.trigger == "camera"
        last_tick = time.monotonic() - self.period
        next_due = time.monotonic()
        while not self._stop.is_set():
            if camera:
                timeout = last_tick + CAMERA_FALLBACK_PERIODS * self.period - time.monotonic()
                if self._wake.wait(max(0.0, timeout)):
                    self._wake.clear()
                    early = self._published_at + CAMERA_MIN_PERIODS * self.period - time.monotonic()
                    if early > 0 and self._frame_fresh:
                        self._stop.wait(early)
            else:
                self._stop.wait(max(0.0, next_due - time.monotonic()))
                next_due += self.period
                behind = time.monotonic() - next_due
                if behind > 0:  # deadlines that passed while the last tick ran
                    skipped = int(behind // self.period) + 1
                    self.counters.add("missed_ticks", skipped)
                    next_due += skipped * self.period
            if self._stop.is_set():
                break
            start = time.monotonic()
            new_frame = self._frame_fresh or not camera
            self._frame_fresh = False
            try:
                self.tick(start, new_frame)
            except Exception as err:  # a bug must not leave the robot on its last command
                self.counters.add("control_errors")
                self.warn_throttled("control", f"control tick failed: {err!r}")
                self._hold("control_error")
            took = time.monotonic() - start
            if camera and took > self.period:
                self.counters.add("missed_ticks", int(took // self.period))
            last_tick = start
            self._tick_times.append(start)

    def tick(self, now: float, new_frame: bool = True) -> np.ndarray | None:
        """One control tick: publishes an action or a hold and returns it.

        Without a new frame (camera trigger) only a hold is published: a robot stepping on
        each command then gets exactly one per frame."""
        if self._resets != self._seen_resets:
            self._seen_resets = self._resets
            self._reset_policy = True
            self._drop_chunks()
        reason = self._hold_reason(now)
        if reason is not None:
            if new_frame and reason in IDLE_REASONS:
                self._frame_fresh = True  # e.g. no state yet: act on this frame once it comes
            return self._hold(reason)
        if not new_frame:
            self.counters.add("ticks_without_frame")
            return None
        frame = self._frame
        self._pairing = True  # set before looking: what comes after it wakes the control thread
        cameras = self.camera_sync.pair(frame.stamp_ns, now - frame.received)
        state = self.state_sync.pair(frame.source_ns, now - frame.received)
        wait = cameras is WAIT or (cameras is not None and state is WAIT)
        if wait:
            self._frame_fresh = True  # act once the other cameras' frames and its state are here
        self._pairing = False
        if cameras is None:
            return self._hold("unpaired_frames")
        if wait:
            return None
        frame = replace(frame, cameras=cameras, state=state)
        try:
            action = self._next_action(frame)
        except UnsafeChunk as err:
            self.counters.add(f"unsafe_chunks.{err.kind}")
            self.warn_throttled("unsafe", f"refused the policy's output: {err}")
            return self._hold("unsafe_chunk")
        except InferenceLate as err:
            self.warn_throttled("late", str(err))
            return self._hold("inference_late")
        except Halted:
            return self._hold(self._halt_reason())
        except Exception as err:
            self.counters.add("inference_errors")
            self.warn_throttled("inference", f"inference failed: {err!r}")
            return self._hold("inference_error")
        if not self._publish(action, motion=True):
            return self._hold(self._halt_reason())
        if self._holding is not None:
            self.log.info(f"acting (was holding: {self._holding})")
            self._holding = None
        self.counters.add("actions")
        now_ns = self.host.now_ns()
        self._obs_age_ms.append((now_ns - self._chunk_stamp_ns) / 1e6)
        if frame.stamp_ns != self._last_frame_stamp:
            self._last_frame_stamp = frame.stamp_ns
            self._latency_ms.append((now_ns - frame.stamp_ns) / 1e6)
        return action

    def _halted(self) -> bool:
        """No motion command may go out: the e-stop is engaged or the node is deactivating."""
        return self.estop.engaged or self._stop.is_set()

    def _halt_reason(self) -> str:
        return "estop" if self.estop.engaged else "inactive"

    def _hold_reason(self, now: float) -> str | None:
        if self.estop.engaged:
            return "estop"
        if self._estop_heard is False:
            waited = now - self._activated_at
            if waited < self.config.estop_wait_s:
                return "estop_unknown"
            if self.config.estop_required:
                return "no_estop_state"
            self._estop_heard = None  # stop waiting; None: not heard, said so
            self.log.warning(
                f"no e-stop state heard on {ESTOP_TOPIC} within {self.config.estop_wait_s} s: "
                "acting without one (estop_required: true holds instead)"
            )
        if self._instruction is None:
            return "no_instruction"
        if self._episode_over:
            return "episode_over"
        if self._frame is None:
            return "no_image"
        if self.image_watchdog.stale(now):
            return "stale_image"
        if self.state_sync.newest() is None:
            return "no_state"
        if self.state_watchdog.stale(now):
            return "stale_state"
        return None

    def _next_action(self, frame: Frame) -> np.ndarray:
        c = self.config
        deadline = time.monotonic() + c.image_timeout_s
        self._collect()
        if self._ask(frame) and not c.async_inference:
            self._collect(deadline)  # synchronous: this tick's action comes from this frame
        while True:
            try:
                action = self.broker.next_action()
                break
            except RuntimeError:  # no chunk covers this tick: wait for the policy
                if time.monotonic() >= deadline:
                    raise InferenceLate(
                        f"no action chunk within {c.image_timeout_s} s of asking the policy"
                    ) from None
                self._ask(frame)
                self._collect(deadline)
        previous = self._last_action  # nothing commanded yet: the robot is still (a hold)
        if previous is None:
            previous = hold_action(None, self.spec)
        action, limited_dims = self.limiter(action, previous)
        if limited_dims:
            self.counters.add("limited_actions")
        return action

    def _ask(self, frame: Frame) -> bool:
        """Ask the inference thread for a chunk if one is due and it is free."""
        if not self.broker.needs_chunk() or self.worker.busy:
            return False
        obs = {OBS_IMAGE: frame.image, OBS_STATE: frame.state, OBS_INSTRUCTION: self._instruction,
               OBS_IMAGES: frame.cameras}  # fmt: skip
        request = Request(
            obs, self.broker.tick, self._generation, frame.stamp_ns, self._reset_policy
        )
        asked = self.worker.submit(request)
        self._reset_policy &= not asked
        return asked

    def _collect(self, deadline: float | None = None) -> None:
        """Add a finished chunk to the queue, aligned to the current tick (waits until
        `deadline` for a running request; Halted if the e-stop or a deactivation ends it)."""
        timeout = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
        result = self.worker.take(timeout, self._halted)
        if deadline is not None and self._halted():
            raise Halted()  # the wait was cut short: this tick holds
        if result is not None:
            self._accept(result)

    def _accept(self, result: Result) -> None:
        request = result.request
        self._infer_ms.append(result.seconds * 1e3)
        if request.generation != self._generation:
            self.counters.add("chunks_discarded")  # asked before a reset or hold
            return
        if result.error is not None:
            raise result.error
        chunk = check_chunk(result.chunk, self.spec.action_dim)
        late = self.broker.tick - request.tick  # ticks that passed while it was computed
        if late >= len(chunk):
            self.counters.add("chunks_too_late")
            return
        self.broker.add_chunk(chunk[late:])
        self._chunk_stamp_ns = request.frame_stamp_ns
        if self._trajectory_pub is not None:
            previous = self._last_action
            if previous is None:
                previous = hold_action(None, self.spec)
            limited = self.limiter.chunk(chunk[late:], previous)
            msg = self.codec.trajectory_to_msg(
                limited, self.spec.action_names, self.period, self.host.now_ns()
            )
            with self._publish_lock:
                if not self._halted():
                    self._trajectory_pub.publish(msg)

    def _drop_chunks(self) -> None:
        self.broker.reset()
        self._generation += 1

    def _hold(self, reason: str) -> np.ndarray:
        action = hold_action(self._last_action, self.spec)
        self._drop_chunks()  # a stale chunk must not resume after the hold
        if action is None:
            self.counters.add("holds_without_command")  # a position robot before any command
        elif reason not in IDLE_REASONS or self._holding is None:
            self._publish(action, motion=False)
        self.counters.add(f"holds.{reason}")
        if reason != self._holding:
            self.log.warning(f"holding the robot: {reason.replace('_', ' ')}")
            self._holding = reason
        return action

    def _publish(self, action: np.ndarray, motion: bool) -> bool:
        """Publish an action; a motion command only if the node is not halted, checked under
        the lock on_estop engages the latch under. False: refused (nothing published)."""
        msg = self.codec.floats_to_msg(action, self.spec.action_names)
        command = command_msg(self.codec, self.config, action, self.host.now_ns())
        with self._publish_lock:
            if motion and self._halted():
                self.counters.add("motion_refused")
                return False
            self._action_pub.publish(msg)
            if command is not None:
                self._command_pub.publish(command)
            self._last_action = action
            self._published_at = time.monotonic()
            return True

    # --- status -------------------------------------------------------------------------------

    def status(self) -> dict:
        ticks = list(self._tick_times)
        rate = (len(ticks) - 1) / (ticks[-1] - ticks[0]) if len(ticks) > 2 else 0.0
        return {
            **super().status(),
            "model_path": self.config.model_path,
            "model": self.model,
            "backend": getattr(self.policy, "backend", self.config.backend),
            "instruction": self._instruction,
            "holding": self._holding,
            "estop": self.estop.engaged,
            "control_rate_hz": round(rate, 2),
            "camera_to_action_ms": latency_summary(self._latency_ms),
            "action_observation_age_ms": latency_summary(self._obs_age_ms),
            "inference_ms": latency_summary(self._infer_ms),
            "rss_mb": rss_mb(),
        }


def main(argv: list[str] | None = None) -> int:
    return run_node(PolicyNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
