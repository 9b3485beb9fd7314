"""`vla-rft bringup`: the node graph as separate processes over Cyclone DDS, without ROS 2.

The same nodes and parameter file as `ros2 launch vla_rft bringup.launch.py`:

    vla-rft bringup --sim --standin-policy --episodes 3          # closed loop, recorded, report
    vla-rft bringup --sim --policy-model models/current --backend onnxruntime
    vla-rft bringup --policy-model models/current                # a real robot: policy + recorder

Each node is a process (`python -m vla_rft_nodes.<node>`) on the Cyclone DDS host; their output
is prefixed with the node name. With --sim (or --episodes) the evaluation manager runs the
episodes and writes the report; when it is done, or on Ctrl-C / SIGTERM, every node gets SIGINT
(the recorder closes its episode) and, after a grace period, SIGKILL. DDS stays on loopback
unless CYCLONEDDS_URI says otherwise; the domain is ROS_DOMAIN_ID (or --domain-id).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from vla_rft.contract.config import ConfigError
from vla_rft.contract.constants import BACKENDS, GRAPH_ID_ENV
from vla_rft_nodes.configs import NODE_CONFIGS, load_node_config
from vla_rft_nodes.domain import DomainClient, describe, graph_env
from vla_rft_nodes.eval_manager_node import INTERRUPTED_EXIT
from vla_rft_nodes.node_table import NODES

STOP_GRACE_S = 10.0
GRAPH_PROBE_S = 1.5
"""How long bringup listens for another graph's (latched) status messages before starting."""


def default_params_file() -> Path:
    """config/bringup.yaml of this checkout, or of the installed ROS 2 package."""
    for root in (Path(__file__).resolve().parents[1], Path(sys.prefix) / "share" / "vla_rft"):
        path = root / "config" / "bringup.yaml"
        if path.is_file():
            return path
    return Path("config/bringup.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vla-rft bringup", description=__doc__.split("\n")[0].replace("`", "")
    )
    p.add_argument("--sim", action="store_true", help="simulated robot + evaluation manager")
    p.add_argument(
        "--policy-model",
        help="policy package, or with --backend torch a checkpoint (policy_node.model_path)",
    )
    p.add_argument("--backend", choices=BACKENDS)
    p.add_argument(
        "--standin-policy",
        action="store_true",
        help="use the stand-in ONNX policy (built if absent) instead of a trained one",
    )
    p.add_argument("--no-record", dest="record", action="store_false", help="no recorder")
    p.add_argument(
        "--no-policy",
        dest="policy",
        action="store_false",
        help="no policy node: record another controller (teleoperation); episodes say "
        "source: teleop unless --set recorder_node.source=...",
    )
    p.add_argument("--params-file", type=Path, default=None, help="ROS 2 parameter file")
    p.add_argument("--episodes", type=int, help="episodes per task (eval_manager_node.episodes)")
    p.add_argument("--tasks", help="comma-separated tasks (eval_manager_node.tasks)")
    p.add_argument("--record-dir", help="episode directory (recorder_node.out_dir)")
    p.add_argument("--report-dir", help="report directory (eval_manager_node.out_dir)")
    p.add_argument(
        "--set", action="append", default=[], metavar="NODE.KEY=VALUE", help="any parameter"
    )
    p.add_argument("--domain-id", type=int, help="DDS domain (default: ROS_DOMAIN_ID or 0)")
    p.add_argument(
        "--timeout",
        type=float,
        help="stop the graph after this many seconds and exit 1 (the evaluation did not finish)",
    )
    return p


def plan(args) -> tuple[list[str], dict[str, list[str]]]:
    """(nodes to start, --set overrides per node) from the command line."""
    nodes = []
    if args.sim:
        nodes.append("sim_robot_node")
    if args.record:
        nodes.append("recorder_node")
    if args.policy:
        nodes.append("policy_node")
    elif args.policy_model or args.backend or args.standin_policy:
        raise ConfigError("--no-policy starts no policy node: drop --policy-model, --backend "
                          "and --standin-policy")  # fmt: skip
    elif not args.record:
        raise ConfigError("--no-policy with --no-record starts nothing to record")
    if args.sim or args.episodes is not None:
        nodes.append("eval_manager_node")
    sets: dict[str, list[str]] = {n: [] for n in nodes}

    def put(node: str, item: str) -> None:
        if node in sets:
            sets[node].append(item)

    if not args.policy:
        put("recorder_node", "source=teleop")  # another controller's actions
    if args.standin_policy:
        from vla_rft_nodes.standin_policy import STANDIN_PATH, build_standin_onnx

        if not STANDIN_PATH.is_file():
            build_standin_onnx(STANDIN_PATH)
        put("policy_node", "policy_factory=vla_rft_nodes.standin_policy:load_standin_policy")
        put("policy_node", f"model_path={STANDIN_PATH}")
        put("policy_node", "backend=onnxruntime")
    if args.policy_model:
        put("policy_node", f"model_path={args.policy_model}")
    if args.backend:
        put("policy_node", f"backend={args.backend}")
    if args.episodes is not None:
        put("eval_manager_node", f"episodes={args.episodes}")
    if args.tasks:
        put("eval_manager_node", f"tasks=[{args.tasks}]")
    if args.record_dir:
        put("recorder_node", f"out_dir={args.record_dir}")
    if args.report_dir:
        put("eval_manager_node", f"out_dir={args.report_dir}")
    waiting = [n for n in ("sim_robot_node", "policy_node", "recorder_node") if n in nodes]
    put("eval_manager_node", f"wait_for_nodes=[{','.join(waiting)}]")
    for item in args.set:
        node, dot, rest = item.partition(".")
        if not dot or node not in NODES:
            raise ConfigError(f"--set {item!r}: expected NODE.KEY=VALUE with NODE in {list(NODES)}")
        if node not in sets:
            raise ConfigError(f"--set {item!r}: {node} is not started (see --sim, --no-record)")
        sets[node].append(rest)
    return nodes, sets


def _forward(name: str, stream) -> None:
    for line in stream:
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


class Graph:
    """The node processes: start, watch, stop."""

    def __init__(self, nodes, sets, params_file: Path, env: dict[str, str]):
        self.procs: dict[str, subprocess.Popen] = {}
        for name in nodes:
            cmd = [sys.executable, "-m", NODES[name], "--params-file", str(params_file)]
            for item in sets[name]:
                cmd += ["--set", item]
            proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                bufsize=1, start_new_session=True,
            )  # fmt: skip
            threading.Thread(target=_forward, args=(name, proc.stdout), daemon=True).start()
            self.procs[name] = proc

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self) -> dict[str, int]:
        """SIGINT to every node still running, SIGKILL after the grace period; exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[bringup] {name} did not stop in {STOP_GRACE_S:.0f} s; killing it")
                proc.kill()
                proc.wait()
        return {n: p.returncode for n, p in self.procs.items()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params_file = args.params_file or default_params_file()
    try:
        nodes, sets = plan(args)
        configs = {  # every parameter checked before any process starts
            name: load_node_config(NODE_CONFIGS[name], params_file, name, sets[name])
            for name in nodes
        }
        model = Path(configs["policy_node"].model_path) if "policy_node" in configs else None
        if model is not None and not model.exists():
            raise ConfigError(
                f"no policy model at {model} (policy_node.model_path; --policy-model, or "
                "--standin-policy to try the graph without one)"
            )
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = {**graph_env(args.domain_id), "PYTHONUNBUFFERED": "1"}
    with DomainClient(env, "bringup_probe") as domain:
        others = domain.statuses(GRAPH_PROBE_S)
    if others:
        named = ", ".join(
            f"{n} (graph {s.get('graph') or 'none'})" for n, s in sorted(others.items())
        )
        print(
            f"error: another vla_rft graph is on {describe(env)}: {named}; two graphs on one "
            "domain mix their messages and corrupt each other's episodes. Stop it, or start "
            "this graph on another domain (--domain-id N)",
            file=sys.stderr,
        )
        return 2
    env[GRAPH_ID_ENV] = uuid.uuid4().hex[:8]
    print(
        f"[bringup] graph {env[GRAPH_ID_ENV]} on {describe(env)}: starting {', '.join(nodes)} "
        f"with {params_file}"
    )
    print(
        f"[bringup] operators: `vla-rft op status|start|label|estop|instruction --domain-id "
        f"{env['ROS_DOMAIN_ID']}` reaches this graph"
    )

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    graph = Graph(nodes, sets, params_file, env)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    rc = 0
    while not stop.wait(0.1):
        exited = graph.exited()
        if "eval_manager_node" in exited:
            rc = exited["eval_manager_node"]
            print(f"[bringup] evaluation finished (exit code {rc}); stopping the graph")
            break
        if exited:
            print(f"[bringup] {', '.join(f'{n} exited with {c}' for n, c in exited.items())}")
            rc = 1
            break
        if deadline is not None and time.monotonic() > deadline:
            print(f"[bringup] --timeout {args.timeout:.0f} s reached; stopping the graph")
            rc = 1
            break
    codes = graph.stop()
    print(f"[bringup] exit codes: {codes}")
    if stop.is_set() and codes.get("eval_manager_node") == INTERRUPTED_EXIT:
        print("[bringup] interrupted before the evaluation's last episode: its report is partial")
        rc = INTERRUPTED_EXIT
    return rc


if __name__ == "__main__":
    sys.exit(main())
