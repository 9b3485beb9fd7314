"""The evaluation graph's control rate and number of graphs against its wall time and episodes.

    .venv/bin/python bench/bench_eval_rate.py --policy-model models/current [--rates 30,60,90]
                                              [--graphs 1,2] [--config FILE]
                                              [--set eval.episodes=5]

Runs the quickstart's evaluation suite (training/quickstart/pipeline.yaml: tasks, perturbations,
episodes, seeds) through the node graph (`vla-rft bringup --sim`, as the quickstart and the
flywheel do) once per rate and number of graphs side by side (`eval.graphs`). The simulator
steps once per action, so a faster rate or more graphs should change the wall time only (the
whole run's, and the evaluation managers' from activation to report; the policy node's measured
control rate): each row says how many episodes ended exactly as in the first row (same step
count and final state) and the success count. Writes bench/results/eval_rate.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report

from vla_rft.pipeline.config import DEFAULT_PIPELINE_CONFIG, load_pipeline_config
from vla_rft.pipeline.jobs import evaluate_in_graph


def _numbers(text: str, kind) -> list:
    return [kind(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy-model", type=Path, required=True, help="an exported package")
    parser.add_argument("--rates", default="30,60,90", help="comma-separated control rates, Hz")
    parser.add_argument(
        "--graphs", default="1", help="comma-separated numbers of graphs side by side (eval.graphs)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_PIPELINE_CONFIG,
        help="pipeline config whose eval suite runs (default: the quickstart's)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. eval.episodes=5 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    suite = load_pipeline_config(args.config, args.overrides).eval
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for rate, graphs in product(_numbers(args.rates, float), _numbers(args.graphs, int)):
            out = Path(tmp) / f"{rate:g}hz-{graphs}"
            start = time.perf_counter()
            path = evaluate_in_graph(
                args.policy_model, replace(suite, rate_hz=rate, graphs=graphs), out, None,
                out / "nodes.log", echo=lambda _: None,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            evaluation = json.loads(path.read_text())
            results = evaluation["episodes"]
            ends = [(e["steps"], e["final_state"]) for e in results]
            first = first or ends
            same = sum(a == b for a, b in zip(ends, first, strict=True))
            rows.append({
                "rate (Hz)": rate,
                "graphs": graphs,
                "episodes": len(ends),
                "steps": sum(steps for steps, _ in ends),
                "wall time (s)": seconds,
                "episodes' time (s)": evaluation["seconds"],
                "policy's rate (Hz)": evaluation["graph"]["policy_status"]["control_rate_hz"],
                "successes": sum(e["success"] for e in results),
                "same episode as the first row": same,
            })  # fmt: skip
            print(rows[-1], flush=True)
    report("eval_rate", rows, args.out)


if __name__ == "__main__":
    main()
