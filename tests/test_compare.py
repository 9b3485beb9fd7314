"""Comparing two evaluations on identical seeds: paired counts, McNemar, intervals, outputs."""

from __future__ import annotations

import json

import pytest

from vla_rft.evaluation.compare import compare, main, mcnemar_exact


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
