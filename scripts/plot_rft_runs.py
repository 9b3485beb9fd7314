"""Plot docs/RFT.md's "Every run in one table": each run's pooled difference to its base and to
its control, against issue 18's target of +5 points. The table is the one source of the numbers.

    .venv/bin/python scripts/plot_rft_runs.py            # -> docs/figures/rft_all_runs.png
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE_TITLE = "**Every run in one table.**"
TARGET_POINTS = 5
DIFFERENCE = re.compile(r"^([+-]\d+) \(p([<=])([\d.]+)\)$")


def read_runs(doc: Path) -> list[dict]:
    """The table's rows that have a difference: {label, base: (points, p) | None, control: ...}."""
    text = doc.read_text()
    if TABLE_TITLE not in text:
        raise ValueError(f"{doc}: no {TABLE_TITLE!r} table")
    lines = text.split(TABLE_TITLE, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("experiment", "---"):
            continue
        if len(cells) != 8:
            raise ValueError(f"{doc}: a row of the table has {len(cells)} cells, not 8: {line}")
        base, control = (_difference(c) for c in cells[5:7])
        if base or control:
            rows.append({"label": f"{cells[0]}: {cells[1]}", "base": base, "control": control})
    if not rows:
        raise ValueError(f"{doc}: the table has no differences to plot")
    return rows


def _difference(cell: str) -> tuple[int, float] | None:
    match = DIFFERENCE.match(cell)
    return (int(match[1]), float(match[3])) if match else None


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.6))
    y = list(range(len(rows)))[::-1]
    for key, color, marker in (("base", "tab:blue", "o"), ("control", "tab:orange", "s")):
        for yi, row in zip(y, rows, strict=True):
            if row[key]:
                points, p = row[key]
                ax.scatter(points, yi, color=color, marker=marker, s=60,
                           facecolors=color if p < 0.05 else "none")  # fmt: skip
        ax.scatter([], [], color=color, marker=marker, label=f"RFT - {key}")
    ax.axvline(0, color="grey", lw=1)
    ax.axvline(TARGET_POINTS, color="tab:green", ls="--", label=f"target +{TARGET_POINTS}")
    ax.set_yticks(y, [_short(r["label"]) for r in rows], fontsize=8)
    ax.set_xlabel("pooled perturbed success, points (filled: McNemar p < 0.05)")
    ax.set_title("issue 18: each run against its base and its continued-BC control")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _short(label: str, width: int = 70) -> str:
    label = label.replace("`", "")
    return label if len(label) <= width else label[: width - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "RFT.md")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "rft_all_runs.png")
    args = parser.parse_args(argv)
    try:
        rows = read_runs(args.doc)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plot(rows, args.out)
    print(f"{len(rows)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
