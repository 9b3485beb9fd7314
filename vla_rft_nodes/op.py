"""`vla-rft op`: drive a running graph from a terminal, with or without ROS 2.

    vla-rft op status                          # every node on the domain: state, e-stop, counters
    vla-rft op estop on [--hold]               # the e-stop, confirmed by the policy nodes
    vla-rft op estop off [--resume]            # release the button (--resume: deactivate+activate)
    vla-rft op instruction "push the puck to the goal"
    vla-rft op start push-v3 [--instruction TEXT]    # start recording an episode of a task
    vla-rft op label success|failure [--note TEXT]   # end (and label) the current episode

It joins the graph's DDS domain with the settings `vla-rft bringup` gives its nodes (loopback
unless CYCLONEDDS_URI says otherwise; ROS_DOMAIN_ID or --domain-id) and says how many nodes
received what it sent; a command nobody received exits 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from vla_rft.contract.constants import (
    EPISODE_EVENT_MSGTYPE,
    EPISODE_EVENT_TOPIC,
    ESTOP_MSGTYPE,
    ESTOP_TOPIC,
    INSTRUCTION_MSGTYPE,
    INSTRUCTION_TOPIC,
    STRING_TYPE,
)
from vla_rft.contract.instruction import check_instruction
from vla_rft.contract.qos import QoS
from vla_rft.sim.instructions import TASK_INSTRUCTIONS, unknown_task
from vla_rft_nodes.domain import DomainClient, describe, graph_env
from vla_rft_nodes.events import EndEvent, StartEvent, to_json
from vla_rft_nodes.host.cyclonedds_host import lifecycle_topic
from vla_rft_nodes.node_table import POLICY_NODE

CONFIRM_S = 3.0
"""How long a command waits for the nodes' status to show its effect."""
STATUS_S = 1.5
"""How long `op status` listens (statuses are latched: live nodes answer at once)."""


def _policy_nodes(statuses: dict[str, dict]) -> dict[str, dict]:
    return {n: s for n, s in statuses.items() if n == POLICY_NODE or s.get("estop") is not None}


def _estop_engaged_everywhere(statuses: dict[str, dict]) -> bool:
    policies = _policy_nodes(statuses)
    return bool(policies) and all(s.get("estop") for s in policies.values())


def status(domain: DomainClient, env, args) -> int:
    statuses = domain.statuses(STATUS_S)
    if not statuses:
        print(f"no vla_rft node on {describe(env)}")
        return 1
    print(f"{len(statuses)} node(s) on {describe(env)}\n")
    print("| node | graph | state | holding | e-stop | instruction | episode | counters |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for node, s in sorted(statuses.items()):
        counters = ", ".join(f"{k} {v}" for k, v in (s.get("counters") or {}).items())
        print(
            f"| {node} | {s.get('graph') or '-'} | {s.get('state', '?')} | "
            f"{s.get('holding') or '-'} | {s.get('estop', '-')} | {s.get('instruction') or '-'} | "
            f"{s.get('episode') or '-'} | {counters or '-'} |"
        )
    return 0


def estop(domain: DomainClient, env, args) -> int:
    pressed = args.state == "on"
    readers = domain.send(
        ESTOP_TOPIC, ESTOP_MSGTYPE, domain.host.codec.bool_to_msg(pressed), QoS.LATCHED
    )
    if not readers:
        print(f"error: no node reads {ESTOP_TOPIC} on {describe(env)}", file=sys.stderr)
        return 1
    if pressed:
        engaged = domain.wait_for(
            lambda st: (
                bool(_policy_nodes(st)) and all(s.get("estop") for s in _policy_nodes(st).values())
            ),
            CONFIRM_S,
        )
        nodes = sorted(_policy_nodes(domain.statuses(0.0)))
        if not engaged:
            print(
                f"error: sent to {readers} reader(s), but no policy node reports the e-stop "
                f"engaged within {CONFIRM_S:.0f} s ({nodes or 'none heard'})",
                file=sys.stderr,
            )
            return 1
        print(f"E-STOP ENGAGED on {', '.join(nodes)} ({readers} reader(s) on {describe(env)})")
        if args.hold:
            _hold_until_interrupted(domain)
        return 0
    print(
        f"e-stop released ({readers} reader(s)); the policy node stays latched until it is "
        "deactivated and activated" + ("" if args.resume else ": `vla-rft op estop off --resume`")
    )
    if not args.resume:
        return 0
    for command in ("deactivate", "activate"):
        domain.send(
            lifecycle_topic(POLICY_NODE),
            STRING_TYPE,
            domain.host.codec.string_to_msg(command),
            QoS.RELIABLE,
        )
    resumed = domain.wait_for(
        lambda st: (
            st.get(POLICY_NODE, {}).get("state") == "active" and not st[POLICY_NODE].get("estop")
        ),
        CONFIRM_S,
    )
    print(
        "policy node active again"
        if resumed
        else "error: the policy node did not resume "
        "(a ROS 2 policy node: `ros2 lifecycle set /policy_node deactivate`, then activate)"
    )
    return 0 if resumed else 1


def _hold_until_interrupted(domain: DomainClient) -> None:
    """Keep the latched e-stop on the domain (a restarted policy node hears it) until Ctrl-C."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("holding the e-stop on the domain; Ctrl-C stops holding (the nodes stay latched)")
    while not stop.is_set():
        domain.spin(0.2)


def instruction(domain: DomainClient, env, args) -> int:
    try:
        text = check_instruction(args.text)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    msg = domain.host.codec.string_to_msg(text)
    readers = domain.send(INSTRUCTION_TOPIC, INSTRUCTION_MSGTYPE, msg, QoS.LATCHED)
    if not readers:
        print(f"error: no node reads {INSTRUCTION_TOPIC} on {describe(env)}", file=sys.stderr)
        return 1
    heard = domain.wait_for(
        lambda st: any(s.get("instruction") == text for s in _policy_nodes(st).values()),
        CONFIRM_S,
    )
    print(
        f"instruction sent to {readers} reader(s)"
        + ("; the policy node follows it" if heard else "; no policy node reports it yet")
    )
    return 0


def start(domain: DomainClient, env, args) -> int:
    """The instruction (latched, for the policy) and then a start event (for the recorder)."""
    if args.instruction is None and args.task not in TASK_INSTRUCTIONS:
        print(f"error: {unknown_task(args.task)} (or give --instruction)", file=sys.stderr)
        return 2
    try:
        text = check_instruction(args.instruction or TASK_INSTRUCTIONS[args.task])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    codec = domain.host.codec
    domain.send(INSTRUCTION_TOPIC, INSTRUCTION_MSGTYPE, codec.string_to_msg(text), QoS.LATCHED)
    event = StartEvent(task=args.task, instruction=text, source=args.source)
    readers = domain.send(
        EPISODE_EVENT_TOPIC,
        EPISODE_EVENT_MSGTYPE,
        codec.string_to_msg(to_json(event)),
        QoS.RELIABLE,
    )
    if not readers:
        print(f"error: no node reads {EPISODE_EVENT_TOPIC} on {describe(env)}", file=sys.stderr)
        return 1
    print(
        f"episode started: {args.task}, {text!r} ({readers} reader(s) on {describe(env)}); "
        "end it with `vla-rft op label success|failure`"
    )
    return 0


def label(domain: DomainClient, env, args) -> int:
    end = EndEvent(success=args.outcome == "success", reason=args.note or "operator", by="operator")
    msg = domain.host.codec.string_to_msg(to_json(end))
    readers = domain.send(EPISODE_EVENT_TOPIC, EPISODE_EVENT_MSGTYPE, msg, QoS.RELIABLE)
    if not readers:
        print(f"error: no node reads {EPISODE_EVENT_TOPIC} on {describe(env)}", file=sys.stderr)
        return 1
    print(f"episode ended as {args.outcome} ({readers} reader(s) on {describe(env)})")
    return 0


COMMANDS = {
    "status": status,
    "estop": estop,
    "instruction": instruction,
    "start": start,
    "label": label,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vla-rft op",
        description=__doc__.split("\n\n")[0].replace("`", ""),
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--domain-id", type=int, help="DDS domain (default: ROS_DOMAIN_ID or 0)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("status", help="every node on the domain, from its status message")
    e = sub.add_parser("estop", help="press (on) or release (off) the e-stop")
    e.add_argument("state", choices=("on", "off"))
    e.add_argument("--hold", action="store_true", help="on: keep it on the domain until Ctrl-C")
    e.add_argument("--resume", action="store_true", help="off: then deactivate and activate")
    i = sub.add_parser("instruction", help="tell the robot what to do")
    i.add_argument("text")
    st = sub.add_parser("start", help="start an episode (the recorder records until the label)")
    st.add_argument("task", help="task name; a Meta-World task gives the instruction")
    st.add_argument("--instruction", help="what the robot is told (default: the task's)")
    st.add_argument("--source", default="", help="how the episode is made (e.g. teleop)")
    lab = sub.add_parser("label", help="end the current episode as a success or a failure")
    lab.add_argument("outcome", choices=("success", "failure"))
    lab.add_argument("--note", help="why (stored as the end reason)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = graph_env(args.domain_id)
    with DomainClient(env) as domain:
        return COMMANDS[args.command](domain, env, args)


if __name__ == "__main__":
    sys.exit(main())
