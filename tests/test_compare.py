"""Comparing two evaluations on identical seeds: paired counts, McNemar, intervals, outputs."""

from __future__ import annotations

import json

import pytest
from conftest import write_eval_report

from vla_rft.evaluation.compare import bar_chart, compare, main, mcnemar_exact


def _report(outcomes: dict[tuple[str, str, int], bool]) -> dict:
    return {
        "episodes": [
            {"task": t, "perturbation": p, "seed": s, "success": ok, "steps": 10}
            for (t, p, s), ok in outcomes.items()
        ]
    }


def test_mcnemar_exact_hand_computed():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # 2 * (1/2)^6
    assert mcnemar_exact(1, 5) == pytest.approx(2 * 7 / 64)
    assert mcnemar_exact(3, 3) == 1.0


def test_paired_comparison(tmp_path):
    base = {("push-v3", "object", s): s < 4 for s in range(10)}  # 4/10
    tuned = {("push-v3", "object", s): s < 3 or s >= 6 for s in range(10)}  # 7/10
    rows = compare(_report(base), _report(tuned))
    overall = rows[0]
    assert overall["task"] == "all tasks" and overall["episodes"] == 10
    assert overall["base"] == 0.4 and overall["tuned"] == 0.7
    assert (overall["only_base"], overall["only_tuned"]) == (1, 4)
    assert overall["mcnemar_p"] == pytest.approx(mcnemar_exact(1, 4))
    lo, hi = overall["tuned_ci95"]
    assert lo < 0.7 < hi

    paths = [tmp_path / n for n in ("a.json", "b.json")]
    for p, r in zip(paths, (base, tuned), strict=True):
        p.write_text(json.dumps(_report(r)))
    assert main([str(paths[0]), str(paths[1]), "--out", str(tmp_path / "cmp")]) == 0
    assert "+30 pts" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert (tmp_path / "cmp" / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_reports_on_different_seeds_are_refused():
    a = _report({("reach-v3", "none", 0): True})
    b = _report({("reach-v3", "none", 1): True})
    with pytest.raises(ValueError, match="do not cover the same episodes"):
        compare(a, b)


QUICKSTART_TASKS = ("door-open-v3", "window-open-v3", "button-press-topdown-v3")


@pytest.mark.parametrize(
    ("tasks", "episodes", "success"),
    [(QUICKSTART_TASKS, 2, False), (("reach-v3",), 10, True)],
    ids=["0%-of-6", "100%-of-10"],
)
def test_compare_charts_rows_at_0_and_100_percent(tmp_path, tasks, episodes, success):
    """Wilson bounds at 0% and 100% came out of floating point a hair inside the interval
    (5.6e-17 above 0, 1 - 1.1e-16 below 1), which matplotlib refused as negative error bars."""
    outcomes = {(t, "none", 1000 + i): success for t in tasks for i in range(episodes)}
    paths = [write_eval_report(tmp_path / n / "report.json", outcomes) for n in ("a", "b")]
    out = tmp_path / "cmp"
    assert main([*map(str, paths), "--out", str(out)]) == 0
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    for row in json.loads((out / "comparison.json").read_text()):
        for key in ("base", "tuned"):
            lo, hi = row[f"{key}_ci95"]
            assert lo <= row[key] <= hi


def test_bar_chart_accepts_rows_stored_before_the_bounds_were_clipped(tmp_path):
    """A quickstart resumed at its report stage charts the rows its registry stored earlier."""
    outcomes = {(t, "none", 1000 + i): False for t in QUICKSTART_TASKS for i in range(2)}
    report = json.loads(write_eval_report(tmp_path / "report.json", outcomes).read_text())
    rows = json.loads(json.dumps(compare(report, report)))  # as version.json holds them
    for row in rows:  # as wilson_interval used to round them at 0 of 6
        row["base_ci95"][0] = row["tuned_ci95"][0] = 2.7755575615628914e-17
    chart = bar_chart(rows, ("base", "VLA-RFT"), tmp_path / "comparison.png")
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_the_perturbed_suites_are_also_pooled_and_the_gate_ignores_the_pool():
    """Two or more perturbed suites: one more row pools their paired episodes (the issue-18
    target is stated on it); the gate still judges each perturbation on its own."""
    from vla_rft.evaluation.compare import POOLED_PERTURBED
    from vla_rft.pipeline.gate import gate

    base, tuned = {}, {}
    for p in ("none", "object", "goal"):
        for s in range(10):
            base[("push-v3", p, s)] = s < 5
            tuned[("push-v3", p, s)] = s < (5 if p == "none" else 8)
    rows = compare(_report(base), _report(tuned))
    (pool,) = [r for r in rows if r["pooled"]]
    assert pool["perturbation"] == POOLED_PERTURBED and pool["episodes"] == 20
    assert (pool["base"], pool["tuned"], pool["only_tuned"]) == (0.5, 0.8, 6)
    assert pool["mcnemar_p"] == pytest.approx(mcnemar_exact(0, 6))
    decision = gate(_report(base), _report(tuned))
    assert "average +20.0 points over 3 perturbation(s)" in decision.reasons[0]
    only_one = {k: v for k, v in base.items() if k[1] != "goal"}
    assert not any(r["pooled"] for r in compare(_report(only_one), _report(only_one)))
