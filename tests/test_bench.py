"""The inference benchmark runs on the CPU as CI runs it: a real export, real ONNX Runtime and
torch sessions timed through `infer`, a table and a JSON file (tiny settings; the figures
themselves are for bench/results on a quiet machine, not for assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_inference_benchmark_writes_its_table_and_json(tmp_path):
    out = tmp_path / "inference.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_inference.py"), "--sizes", "32",
           "--iters", "5", "--threads", "1", "--flow-steps", "3", "--out", str(out),
           "--recipe", "training/debug/policy.yaml"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| image | model | flow steps | backend |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    backends = {r["backend"].split(" ")[0] for r in rows}
    assert {"torch", "onnxruntime"} <= backends
    assert all(r["image"] == 32 and 0 < r["p50_ms"] <= r["p99_ms"] for r in rows)
    assert [r["model"] for r in rows] == ["default"] * 3 + ["policy"] * 3  # the recipe's rows
    ort_rows = [r for r in rows if r["backend"].startswith("onnxruntime")]
    assert [r["flow steps"] for r in ort_rows] == [10, 3, 10, 3]
    assert all(r["speed-up vs torch (p50)"] > 0 for r in ort_rows)


@pytest.mark.slow
def test_training_load_benchmark_writes_its_table_and_json(tmp_path):
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_training_load.py"), "--recipe",
           "training/debug/world_model.yaml", "--steps", "1", "--threads", "2",
           "--competitors", "1", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| settings | threads | competitors | alone s/step |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["settings"].split(",")[0] for r in rows] == [
        "fixed threads",
        "fixed threads",
        "vla_rft.threads: adapt_threads() every step",
    ]
    assert "PASSIVE" in rows[1]["settings"]
    for r in rows:
        assert r["alone s/step"] > 0 and r["loaded s/step"] > 0
        assert r["slow-down"] == pytest.approx(r["loaded s/step"] / r["alone s/step"])
        assert r["fair-share slow-down"] >= 1


@pytest.mark.slow
def test_the_evaluation_runs_the_same_episodes_faster_at_a_higher_rate_and_in_two_graphs(
    debug_loop, dds, tmp_path
):
    """The simulator steps once per action, so for a policy whose chunks come within a tick (the
    debug policy infers in well under a millisecond) the evaluation's rate, and splitting its
    seeds over two graphs side by side, change its wall time and nothing else: the same steps
    and final states at 30 and at 90 Hz, in one graph and in two (bench_eval_rate.py)."""
    dirs, _, rc = debug_loop
    assert rc == 0
    out = tmp_path / "rate.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_eval_rate.py"),
           "--policy-model", str(dirs["models"] / "current"), "--rates", "30,90",
           "--graphs", "1,2", "--config", "training/debug/pipeline.yaml",
           "--set", "eval.max_steps=45", "--set", "eval.perturbations=[none]",
           "--set", "eval.episodes=2",
           "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=dds)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "| rate (Hz) | graphs | episodes | steps | wall time (s) |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["rate (Hz)"], r["graphs"]) for r in rows] == [(30, 1), (30, 2), (90, 1), (90, 2)]
    assert all(r["episodes"] == r["same episode as the first row"] == 2 for r in rows), rows
    slow, fast = rows[0], rows[2]
    # the rate reached the nodes: each action waits for the simulator's next tick at 30 Hz
    assert fast["policy's rate (Hz)"] > 1.2 * slow["policy's rate (Hz)"], (slow, fast)
