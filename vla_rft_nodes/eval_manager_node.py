"""The evaluation manager node: N closed-loop episodes through the graph, then the eval report.

For every task, perturbation and episode i (seed + i, as `vla-rft eval` orders them) it publishes
the task's instruction and a start event, waits for the end event (the simulated robot's success
or step limit, an operator's label, or its own timeout), and finally writes the report
`vla-rft eval` writes (`vla_rft.rollout.report`: report.json, report.md, a strip and a GIF of
the first success and failure) to `out_dir`. Then, with `exit_when_done`, it ends, and
`vla-rft bringup` takes the graph down.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from vla_rft.contract.constants import (
    EPISODE_EVENT_MSGTYPE,
    EPISODE_EVENT_TOPIC,
    IMAGE_MSGTYPE,
    IMAGE_TOPIC,
    INSTRUCTION_MSGTYPE,
    INSTRUCTION_TOPIC,
    STATUS_MSGTYPE,
    STATUS_TOPIC,
)
from vla_rft.contract.qos import QoS
from vla_rft.data.messages import MessageError
from vla_rft.rollout.report import EpisodeResult, build_report, markdown_table, save_media
from vla_rft.sim.instructions import instruction_for
from vla_rft_nodes.configs import EvalManagerNodeConfig
from vla_rft_nodes.events import EndEvent, StartEvent, to_json
from vla_rft_nodes.host import NodeBase, run_node

MAX_MEDIA_FRAMES = 1000

INTERRUPTED_EXIT = 130
"""Exit status of an evaluation stopped (Ctrl-C, SIGTERM) before its last episode: 128 + SIGINT,
as a shell reports an interrupted command; its report is partial and says so."""


class _Stopped(Exception):
    """The node is shutting down."""


class EvalManagerNode(NodeBase):
    """The evaluation manager: runs episodes through the graph and writes the eval report."""

    NAME = "eval_manager_node"
    CONFIG = EvalManagerNodeConfig

    def __init__(self, host, config: EvalManagerNodeConfig):
        super().__init__(host, config)
        self.results: list[EpisodeResult] = []
        self.report_path: Path | None = None
        self.out_dir = config.run_dir()
        self.interrupted: str | None = None
        """Why the evaluation ended before its last episode (None: it did not)."""
        self._statuses: dict[str, dict] = {}
        self._current: str | None = None  # the episode waiting for its end event
        self._end: EndEvent | None = None
        self._ended = threading.Event()
        self._frames: list | None = None
        self._frame_stamps: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._instruction_pub = host.publisher(INSTRUCTION_TOPIC, INSTRUCTION_MSGTYPE, QoS.LATCHED)
        self._event_pub = host.publisher(EPISODE_EVENT_TOPIC, EPISODE_EVENT_MSGTYPE, QoS.RELIABLE)
        self.subscribe(EPISODE_EVENT_TOPIC, EPISODE_EVENT_MSGTYPE, self.on_event, QoS.RELIABLE)
        self.subscribe(STATUS_TOPIC, STATUS_MSGTYPE, self.on_status, QoS.LATCHED)
        self.subscribe(IMAGE_TOPIC, IMAGE_MSGTYPE, self.on_image, QoS.SENSOR_DATA)

    # --- callbacks ------------------------------------------------------------------------------

    def on_event(self, msg) -> None:
        event = self.read_event(msg)
        if event is None:
            return
        current = self._current
        if isinstance(event, EndEvent) and current and event.episode in ("", current):
            self._end = event
            self._ended.set()

    def on_status(self, msg) -> None:
        try:
            status = json.loads(msg.data)
            self._statuses[str(status["node"])] = status
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            self.reject("status", ValueError(f"unreadable status: {err}"))

    def on_image(self, msg) -> None:
        frames, stamp = self._frames, self.codec.stamp_ns(msg)
        if frames is None or stamp in self._frame_stamps:
            return
        self._frame_stamps.add(stamp)
        if len(frames) < MAX_MEDIA_FRAMES:
            try:
                frames.append(self.codec.image_from_msg(msg).copy())
            except MessageError as err:
                self.reject("image", err)

    # --- lifecycle ------------------------------------------------------------------------------

    def on_activate(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="evaluation", daemon=True)
        self._thread.start()

    def on_deactivate(self) -> None:
        self._stop.set()
        self._ended.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)
        self._thread = None

    # --- the evaluation (its own thread) --------------------------------------------------------

    def _run(self) -> None:
        c = self.config
        start = time.monotonic()
        media: dict[bool, tuple[str, object]] = {}
        try:
            self._wait_for_graph()
            for task in c.tasks:
                for perturbation in c.perturbations:
                    for i in range(c.episodes):
                        record = c.save_media and len(media) < 2
                        result, frames = self._run_episode(task, perturbation, c.seed + i, record)
                        self.results.append(result)  # kept even if a stop cuts the pause short
                        if frames is not None and result.success not in media:
                            label = "success" if result.success else "failure"
                            media[result.success] = (
                                f"{label}: {task} {perturbation} seed {result.seed}, "
                                f"{result.steps} steps",
                                frames,
                            )
                        self._wait(c.settle_s)
        except _Stopped:
            planned = len(c.tasks) * len(c.perturbations) * c.episodes
            self.interrupted = f"stopped after {len(self.results)} of {planned} episodes"
            self.log.warning(f"{self.interrupted}; the report (if any) is partial")
            self.exit_code = INTERRUPTED_EXIT
        except Exception as err:
            self.log.error(f"evaluation failed: {err}")
            self.exit_code = 1
        try:
            if self.results:
                media_rows = [media[k] for k in (True, False) if k in media]
                self._write_report(time.monotonic() - start, media_rows)
        except Exception as err:  # e.g. an unwritable out_dir: say so, and still end
            self.log.error(f"cannot write the report to {self.out_dir}: {err}")
            self.exit_code = 1
        if not self.results and not self._stop.is_set():
            self.exit_code = 1
        stepless = [r for r in self.results if r.steps == 0]
        if stepless:  # the graph did not run (no robot, no policy), which 0% success would hide
            self.log.error(f"{len(stepless)} of {len(self.results)} episodes ran no step")
            self.exit_code = 1
        if self.config.exit_when_done and not self._stop.is_set():
            self.host.request_shutdown()

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped

    def _wait_for_graph(self) -> None:
        """Until every node in wait_for_nodes is active and hears our episode events."""
        c = self.config
        deadline = time.monotonic() + c.startup_timeout_s
        while True:
            missing = [
                n for n in c.wait_for_nodes if self._statuses.get(n, {}).get("state") != "active"
            ]
            listeners = self._event_pub.subscriber_count()
            if not missing and listeners >= len(c.wait_for_nodes) + 1:  # + our own reader
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"after {c.startup_timeout_s:.0f} s, not active: {missing or 'none'}; "
                    f"episode-event listeners: {listeners}"
                )
            self._wait(0.05)

    def _run_episode(self, task: str, perturbation: str, seed: int, record: bool):
        """One episode: instruction, start, wait for the end. Returns (result, frames or None)."""
        c = self.config
        name = f"eval-{task}-{perturbation}-{seed:06d}"
        instruction = instruction_for(task)
        self._end, self._frames = None, ([] if record else None)
        self._frame_stamps = set()
        self._ended.clear()
        self._current = name
        self._instruction_pub.publish(self.codec.string_to_msg(instruction))
        start = StartEvent(
            episode=name, task=task, instruction=instruction, seed=seed,
            perturbation=perturbation, max_steps=c.max_steps, source="policy", graph=self.graph,
        )  # fmt: skip
        self._event_pub.publish(self.codec.string_to_msg(to_json(start)))
        ended = self._ended.wait(c.episode_timeout_s)
        self._current = None
        if self._stop.is_set():
            raise _Stopped
        end = self._end
        if not ended or end is None:
            end = EndEvent(
                episode=name, success=False, reason="timeout", by=self.NAME, graph=self.graph
            )
            self._event_pub.publish(self.codec.string_to_msg(to_json(end)))
            self.counters.add("timeouts")
        frames, self._frames = self._frames, None
        steps = end.steps if end.steps is not None else max(0, len(self._frame_stamps) - 1)
        self.log.info(f"{name}: success={end.success} ({end.reason or 'ended'}, {steps} steps)")
        result = EpisodeResult(task, perturbation, seed, end.success, steps, list(end.state))
        return result, (np.stack(frames) if frames else None)

    def _write_report(self, seconds: float, media) -> None:
        c = self.config
        policy = self._statuses.get("policy_node", {})
        meta = {
            "policy": policy.get("model") or policy.get("model_path"),
            "backend": policy.get("backend"),
            "tasks": list(c.tasks),
            "perturbations": list(c.perturbations),
            "seeds": [c.seed, c.seed + c.episodes - 1],
            "max_steps": c.max_steps,
            "graph": {"host": self.host.kind, "policy_status": policy},
            "seconds": round(seconds, 1),
            "interrupted": self.interrupted,
        }
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        report = build_report(self.results, meta)
        try:
            report["media"] = [str(p) for p in save_media(media, out, "episodes")]
        except ImportError as err:  # Pillow is not on every robot
            self.log.warning(f"no episode strip or GIF: {err}")
            report["media"] = []
        (out / "report.json").write_text(json.dumps(report, indent=1))
        table = markdown_table(report)
        (out / "report.md").write_text(table + "\n")
        self.report_path = out / "report.json"
        self.log.info(f"report: {self.report_path}\n{table}")

    def status(self) -> dict:
        return {
            **super().status(),
            "episodes_done": len(self.results),
            "successes": sum(r.success for r in self.results),
            "current": self._current,
            "report": str(self.report_path) if self.report_path else None,
        }


def main(argv: list[str] | None = None) -> int:
    return run_node(EvalManagerNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
