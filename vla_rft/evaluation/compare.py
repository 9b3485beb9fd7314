"""`vla-rft compare`: two `vla-rft eval` reports on the same seeds, side by side.

    vla-rft compare runs/eval/base/report.json runs/eval/rft/report.json --out runs/eval/compare

Both reports must come from identical starts (same tasks, perturbations and seeds), so every
episode pairs with one of the other policy. Per perturbation (and task): success with 95%
Wilson intervals for each policy, the difference, and an exact McNemar test on the paired
episodes (only the discordant pairs, where one policy succeeded and the other failed, carry
information); with two or more perturbed suites, also the perturbed episodes pooled (the row
marked "pooled": the suites a fine-tuned policy must lift together). Writes comparison.md,
comparison.json and a bar chart comparison.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from vla_rft.rollout.report import wilson_interval

POOLED_PERTURBED = "perturbed (pooled)"
"""The perturbation column of the row that pools every perturbed suite (all but 'none')."""


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def _paired(base: dict, tuned: dict) -> dict[tuple[str, str, int], tuple[bool, bool]]:
    a = {(e["task"], e["perturbation"], e["seed"]): e["success"] for e in base["episodes"]}
    b = {(e["task"], e["perturbation"], e["seed"]): e["success"] for e in tuned["episodes"]}
    if set(a) != set(b):
        missing = sorted(set(a) ^ set(b))[:3]
        raise ValueError(
            f"the reports do not cover the same episodes (e.g. {missing}); "
            "run `vla-rft eval` with the same tasks, perturbations, episodes and seed"
        )
    return {key: (a[key], b[key]) for key in a}


def compare(base: dict, tuned: dict) -> list[dict]:
    """One row per perturbation over all tasks, then per (task, perturbation)."""
    pairs = _paired(base, tuned)
    groups: dict[tuple[str, str], list[tuple[bool, bool]]] = {}
    for (task, perturbation, _), outcome in sorted(pairs.items()):
        groups.setdefault(("all tasks", perturbation), []).append(outcome)
        groups.setdefault((task, perturbation), []).append(outcome)
    perturbed = sorted({p for _, p, _ in pairs} - {"none"})
    if len(perturbed) > 1:
        groups[("all tasks", POOLED_PERTURBED)] = [
            outcome for (_, p, _), outcome in sorted(pairs.items()) if p != "none"
        ]
    rows = []
    for (task, perturbation), outcomes in groups.items():
        n = len(outcomes)
        wins_a, wins_b = sum(a for a, _ in outcomes), sum(b for _, b in outcomes)
        only_a = sum(a and not b for a, b in outcomes)
        only_b = sum(b and not a for a, b in outcomes)
        rows.append(
            {
                "task": task,
                "perturbation": perturbation,
                "episodes": n,
                "base": wins_a / n,
                "base_ci95": wilson_interval(wins_a, n),
                "tuned": wins_b / n,
                "tuned_ci95": wilson_interval(wins_b, n),
                "difference": (wins_b - wins_a) / n,
                "only_base": only_a,
                "only_tuned": only_b,
                "mcnemar_p": mcnemar_exact(only_a, only_b),
                "pooled": perturbation == POOLED_PERTURBED,
            }
        )
    rows.sort(key=lambda r: (r["task"] != "all tasks", r["pooled"], r["task"], r["perturbation"]))
    return rows


def markdown(rows: list[dict], names: tuple[str, str]) -> str:
    def pct(rate, ci):
        return f"{100 * rate:.0f}% [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"

    lines = [
        f"| task | perturbation | n | {names[0]} [95% CI] | {names[1]} [95% CI] | "
        "difference | paired wins (base / tuned) | McNemar p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['perturbation']} | {r['episodes']} "
            f"| {pct(r['base'], r['base_ci95'])} | {pct(r['tuned'], r['tuned_ci95'])} "
            f"| {100 * r['difference']:+.0f} pts | "
            f"{r['only_base']} / {r['only_tuned']} | {r['mcnemar_p']:.3f} |"
        )
    return "\n".join(lines)


def bar_chart(rows: list[dict], names: tuple[str, str], out: Path) -> Path:
    """Success per perturbation (all tasks) for both policies, with 95% Wilson intervals.

    Error bars are clipped at zero length: rows stored by versions before the Wilson bounds
    were clipped at the estimate (a registry's version.json) can hold a bound a rounding error
    past the rate, which matplotlib refuses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = [r for r in rows if r["task"] == "all tasks" and not r.get("pooled")]
    x = range(len(overall))
    fig, ax = plt.subplots(figsize=(1.8 * len(overall) + 2, 3.5))
    for offset, key, name in ((-0.2, "base", names[0]), (0.2, "tuned", names[1])):
        rates = [100 * r[key] for r in overall]
        errors = [
            [100 * max(0.0, r[key] - r[f"{key}_ci95"][0]) for r in overall],
            [100 * max(0.0, r[f"{key}_ci95"][1] - r[key]) for r in overall],
        ]
        ax.bar([i + offset for i in x], rates, 0.4, yerr=errors, capsize=4, label=name)
    ax.set_xticks(list(x), [r["perturbation"] for r in overall])
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"closed-loop success, {overall[0]['episodes'] if overall else 0} episodes each")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vla-rft compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="report.json of the base policy")
    parser.add_argument("tuned", type=Path, help="report.json of the fine-tuned policy")
    parser.add_argument("--out", type=Path, required=True, help="directory for the comparison")
    parser.add_argument(
        "--names", default="base,VLA-RFT", help="column names (default: base,VLA-RFT)"
    )
    args = parser.parse_args(argv)
    names = tuple(args.names.split(",", 1))
    try:
        base, tuned = (json.loads(p.read_text()) for p in (args.base, args.tuned))
        rows = compare(base, tuned)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, names)
    (args.out / "comparison.md").write_text(table + "\n")
    (args.out / "comparison.json").write_text(json.dumps(rows, indent=1))
    chart = bar_chart(rows, names, args.out / "comparison.png")
    print(table)
    print(f"\nwritten: {args.out / 'comparison.md'}, {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
