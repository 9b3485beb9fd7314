"""Nothing an operator runs overwrites an earlier result or writes into the model registry, and
an interrupted evaluation says so (issue 20, item 5)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vla_rft.contract.config import ConfigError
from vla_rft.evaluation import eval_policy
from vla_rft_nodes.bringup import build_parser, plan
from vla_rft_nodes.configs import EvalManagerNodeConfig


def test_each_graph_evaluation_gets_its_own_directory_and_none_is_overwritten(tmp_path):
    default = EvalManagerNodeConfig()
    first, later = default.run_dir(1_800_000_000), default.run_dir(1_800_000_061)
    assert first != later and first.parent == later.parent == Path("runs/eval/bringup")
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"already holds a report\.json"):
        EvalManagerNodeConfig(out_dir=str(tmp_path))


def test_the_standin_policy_is_built_outside_the_model_registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, sets = plan(build_parser().parse_args(["--sim", "--standin-policy"]))
    assert (tmp_path / "runs" / "standin" / "policy.onnx").is_file()
    assert not (tmp_path / "models").exists()
    assert "model_path=runs/standin/policy.onnx" in sets["policy_node"]


def test_eval_without_out_writes_under_runs_not_into_a_model_version(monkeypatch):
    checkpoint = Path("models/v001/checkpoints/policy/step_001000")
    monkeypatch.setattr("vla_rft.models.checkpoint.resolve_checkpoint", lambda _: checkpoint)
    args = argparse.Namespace(policy="models/current", perturb=("none",), seed=1000, episodes=5)
    out = eval_policy._default_out(args)
    assert out.parts[:2] == ("runs", "eval") and "models" not in out.parts


@pytest.mark.slow
def test_an_evaluation_stopped_with_ctrl_c_exits_130_with_a_partial_report(dds, tmp_path):
    report_dir = tmp_path / "report"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla_rft_nodes.bringup", "--sim", "--standin-policy",
         "--episodes", "20", "--tasks", "reach-v3", "--report-dir", str(report_dir),
         "--no-record", "--set", "eval_manager_node.max_steps=10",
         "--set", "sim_robot_node.image_size=32"],
        env=dds, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline, lines = time.monotonic() + 90, []
    for line in proc.stdout:
        lines.append(line)
        if "episode 'eval-reach-v3-none-001001'" in line:  # the second began: the first is kept
            break
        assert time.monotonic() < deadline, "".join(lines[-30:])
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, "".join(lines[-20:]) + out[-3000:]
    assert "its report is partial" in out
    assert (report_dir / "report.json").is_file(), "".join(lines)[-2500:] + out[-2500:]
    report = json.loads((report_dir / "report.json").read_text())
    assert report["interrupted"].startswith("stopped after")
    assert 1 <= len(report["episodes"]) < 20
