"""The promotion gate: a candidate model replaces the current one only if it does not regress.

Both are evaluated on the same suite (same tasks, perturbations and seeds), so the episodes
pair up (`vla_rft.evaluation.compare`). The candidate is refused when, on any perturbation over
all tasks, its success rate is more than `max_drop` below the current model's, or when it is
worse on average over the perturbations. It is refused too when the comparison carries no
evidence: both models had the same outcome in every paired episode (0% vs 0% everywhere, or
identical episodes), so the suite cannot tell them apart. A tie with discordant pairs, as many
each way, is promoted (the candidate has seen more data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vla_rft.evaluation.compare import compare, markdown


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]
    """Why (one line each): the regressions found, or why it passes."""
    table: str
    """Markdown table of current vs candidate with 95% intervals and paired tests."""
    rows: tuple[dict, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def gate(current_report: dict, candidate_report: dict, max_drop: float = 0.05) -> GateDecision:
    """Decide whether `candidate_report`'s model may replace `current_report`'s.

    Both are `vla-rft eval` / evaluation-manager reports over the same episodes; max_drop is
    a success-rate fraction (0.05 = 5 points). Raises ValueError if the episodes differ.
    """
    if not 0 <= max_drop < 1:
        raise ValueError(f"max_drop must be in [0, 1), got {max_drop}")
    rows = compare(current_report, candidate_report)
    overall = [r for r in rows if r["task"] == "all tasks" and not r["pooled"]]
    reasons = [
        f"{r['perturbation']}: success {100 * r['tuned']:.0f}% vs {100 * r['base']:.0f}% "
        f"for the current model ({100 * r['difference']:+.0f} points, more than the "
        f"{100 * max_drop:.0f} allowed; McNemar p={r['mcnemar_p']:.3f})"
        for r in overall
        if r["difference"] < -max_drop - 1e-9
    ]
    mean_diff = sum(r["difference"] for r in overall) / len(overall)
    if mean_diff < -1e-9:
        reasons.append(f"worse on average over the perturbations ({100 * mean_diff:+.1f} points)")
    if not reasons and not any(r["only_base"] or r["only_tuned"] for r in overall):
        n = sum(r["episodes"] for r in overall)
        wins = sum(round(r["base"] * r["episodes"]) for r in overall)
        reasons.append(
            f"no evidence: the same outcome in all {n} paired episodes ({wins} successes each), "
            "so this suite cannot tell the candidate from the current model"
        )
    promote = not reasons
    if promote:
        reasons = [
            f"no perturbation drops more than {100 * max_drop:.0f} points "
            f"(average {100 * mean_diff:+.1f} points over {len(overall)} perturbation(s))"
        ]
    return GateDecision(
        promote, tuple(reasons), markdown(rows, ("current", "candidate")), tuple(rows)
    )
