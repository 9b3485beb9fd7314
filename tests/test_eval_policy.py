"""Closed-loop evaluation: Wilson intervals, the same seeds give the same episodes in the real
simulator, and the command writes its report, table, strip and GIF."""

from __future__ import annotations

import json

import pytest
from policy_testing import train_tiny, write_instruction_episodes

from vla_rft.evaluation.eval_policy import ExpertPolicy, evaluate, main
from vla_rft.rollout.report import (
    EpisodeResult,
    build_report,
    markdown_table,
    merge_reports,
    wilson_interval,
)
from vla_rft.runtime.chunk_broker import ChunkBrokerConfig
from vla_rft.runtime.torch_policy import TorchPolicy


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (5, 10, (0.2366, 0.7634)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (1, 1, (0.2065, 1)),
    ],
)
def test_wilson_interval(successes, n, expected):
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_refuses_impossible_counts():
    with pytest.raises(ValueError, match="at least one episode"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="must lie in"):
        wilson_interval(3, 2)


def test_report_groups_by_task_and_perturbation():
    episodes = [
        EpisodeResult("reach-v3", "none", 0, True, 40),
        EpisodeResult("reach-v3", "none", 1, False, 150),
        EpisodeResult("push-v3", "none", 0, True, 60),
        EpisodeResult("push-v3", "goal", 0, False, 150),
    ]
    report = build_report(episodes, {"policy": "p"})
    rows = {(r["task"], r["perturbation"]): r for r in report["results"]}
    assert rows["reach-v3", "none"]["success_rate"] == 0.5
    assert rows["reach-v3", "none"]["mean_length"] == 95.0
    assert rows["reach-v3", "none"]["mean_length_success"] == 40.0
    assert (
        report["overall"]["none"]["successes"] == 2 and report["overall"]["none"]["episodes"] == 3
    )
    assert report["overall"]["goal"]["mean_length_success"] is None
    table = markdown_table(report)
    assert "| reach-v3 | none | 1/2 | 50% [9, 91] | 95.0 | 40.0 |" in table
    assert "| **all tasks** | goal | 0/1 | 0% [0, 79] | 150.0 | - |" in table


@pytest.mark.slow
def test_same_seeds_give_the_same_episodes(tmp_path):
    ckpt = train_tiny(write_instruction_episodes(tmp_path / "data"), tmp_path / "run")
    policy = TorchPolicy.from_checkpoint(ckpt)

    def run(seed):
        return evaluate(
            lambda robot: policy, ["push-v3"], ["none", "object"], episodes=2, seed=seed,
            broker_config=ChunkBrokerConfig(replan_every=4), image_size=32, max_steps=12,
        )  # fmt: skip

    first, media = run(1000)
    second, _ = run(1000)
    assert first == second
    assert [(e.perturbation, e.seed) for e in first] == [
        ("none", 1000),
        ("none", 1001),
        ("object", 1000),
        ("object", 1001),
    ]
    assert len({e.digest for e in first}) == 4  # other seed or perturbation, other episode
    assert media and media[0][1].shape == (
        13,
        32,
        32,
        3,
    )  # start + 12 steps; the policy resizes to 16
    other, _ = run(2000)
    assert other[0].digest != first[0].digest


@pytest.mark.slow
def test_eval_command_writes_report_table_and_media(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--policy", "expert", "--tasks", "reach-v3", "--episodes", "2", "--out", str(out)]
    assert main([*argv, "--max-steps", "40", "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    (row,) = report["results"]
    assert row["episodes"] == 2 and row["ci95"][0] <= row["success_rate"] <= row["ci95"][1]
    assert [e["seed"] for e in report["episodes"]] == [1000, 1001]
    assert (out / "report.md").read_text().startswith("| task | perturbation |")
    assert {p.rsplit(".", 1)[1] for p in report["media"]} == {"png", "gif"}
    assert "success rate [95% CI]" in capsys.readouterr().out
    shares = []  # the same suite split by seed over two processes merges into the same report
    for seed in (1001, 1000):
        assert main([*argv[:-3], "1", "--seed", str(seed), "--out", str(tmp_path / f"s{seed}"),
                     "--max-steps", "40", "-q"]) == 0  # fmt: skip
        shares.append(json.loads((tmp_path / f"s{seed}" / "report.json").read_text()))
    merged = merge_reports(shares)
    for key in ("results", "overall", "episodes", "seeds"):
        assert merged[key] == report[key], key
    assert merged["interrupted"] is None and len(merged["media"]) == 4


def test_workers_split_the_seeds_over_processes_and_merge_into_the_same_report(tmp_path, capsys):
    argv = ["--policy", "expert", "--tasks", "reach-v3", "--episodes", "3", "--max-steps", "40"]
    assert main([*argv, "--out", str(tmp_path / "one"), "-q"]) == 0
    assert main([*argv, "--out", str(tmp_path / "two"), "--workers", "2", "-q"]) == 0
    one, two = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    for key in ("results", "overall", "episodes", "seeds"):
        assert two[key] == one[key], key
    assert two["graphs"] == 2 and (tmp_path / "two" / "report.md").is_file()
    assert "2 processes" in capsys.readouterr().out
    assert main([*argv, "--workers", "4"]) == 2  # more processes than seeds
    assert "--workers" in capsys.readouterr().err
    bad = ["--policy", str(tmp_path / "nowhere"), "--episodes", "2", "--workers", "2"]
    assert main([*bad, "--out", str(tmp_path / "bad")]) == 2  # refused before any process
    assert "nowhere" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    typo = ["--policy", "expert", "--tasks", "fly-v3", "--episodes", "2", "--workers", "2"]
    assert main([*typo, "--out", str(tmp_path / "typo")]) == 2  # a share's error is the run's
    assert "unknown Meta-World task" in capsys.readouterr().err
    assert not (tmp_path / "typo/report.json").exists()


def test_expert_policy_fits_the_interface():
    class Robot:
        def expert_action(self, obs):
            import numpy as np

            return np.ones(4, np.float32)

    assert ExpertPolicy(Robot()).infer({})["action"].shape == (1, 4)


def test_bad_arguments_are_refused(capsys):
    assert main(["--policy", "expert", "--perturb", "none,sideways"]) == 2
    assert "sideways" in capsys.readouterr().err
    assert main(["--policy", "expert", "--tasks", "fly-v3", "--episodes", "1"]) == 2
    assert "unknown Meta-World task" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # nothing to evaluate is a usage error
        main(["--policy", "expert", "--tasks", ","])
    assert usage.value.code == 2 and "comma-separated list" in capsys.readouterr().err
