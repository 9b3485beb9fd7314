"""scripts/plot_rft_runs.py reads docs/RFT.md's table of every issue-18 run (the one source of
those numbers) and plots it; a table it cannot read is a named error, not a silent empty plot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("plot_rft_runs", REPO / "scripts/plot_rft_runs.py")
plot_rft_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_rft_runs)


def test_every_run_of_the_table_is_read_and_plotted(tmp_path):
    rows = plot_rft_runs.read_runs(REPO / "docs" / "RFT.md")
    assert len(rows) == 13  # 15 rows, two of them gates without an RL run
    takeover = next(r for r in rows if r["label"] == "3, simulator ceiling: takeover")
    assert takeover["base"] == (3, 0.39) and takeover["control"] == (20, 0.001)
    assert all(r["base"] for r in rows)  # every run is compared with its base
    out = tmp_path / "runs.png"
    assert plot_rft_runs.main(["--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_table_it_cannot_read_is_named(tmp_path, capsys):
    doc = tmp_path / "RFT.md"
    doc.write_text("# nothing here\n")
    assert plot_rft_runs.main(["--doc", str(doc), "--out", str(tmp_path / "x.png")]) == 2
    assert "no '**Every run in one table.**' table" in capsys.readouterr().err
    doc.write_text(f"{plot_rft_runs.TABLE_TITLE}\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n")
    with pytest.raises(ValueError, match="has 2 cells, not 8"):
        plot_rft_runs.read_runs(doc)
    assert not (tmp_path / "x.png").exists()
