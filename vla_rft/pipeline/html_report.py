"""One self-contained HTML page (images embedded) plus the same facts as JSON.

    write_report(out_dir, "VLA-RFT quickstart", sections, facts)

A section is a heading with any of: a paragraph, markdown tables (as the eval and compare
commands print them) and PNG/GIF images. The page opens from a file with no server.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0; }
p.note { color: #555; }
"""


@dataclass
class Section:
    title: str
    text: str = ""
    """A paragraph (plain text)."""
    tables: list[str] = field(default_factory=list)
    """Markdown tables (`| a | b |` lines with a `| --- |` separator)."""
    images: list[Path] = field(default_factory=list)
    """PNG or GIF files; missing ones are named, not fatal."""


def markdown_table_to_html(table: str) -> str:
    rows = [line.strip() for line in table.strip().splitlines() if line.strip().startswith("|")]
    cells = [[html.escape(c.strip()) for c in row.strip("|").split("|")] for row in rows]
    body = [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
    head = "".join(f"<th>{c}</th>" for c in cells[0]) if cells else ""
    lines = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><tr>{head}</tr>{lines}</table>"


def _image(path: Path) -> str:
    if not path.is_file():
        return f'<p class="note">(missing image: {html.escape(str(path))})</p>'
    kind = "gif" if path.suffix.lower() == ".gif" else "png"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/{kind};base64,{data}">'


def write_report(out_dir: Path, title: str, sections: list[Section], facts: dict) -> Path:
    """Write `report.html` and `report.json` (the facts) in `out_dir`; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        parts += [markdown_table_to_html(t) for t in s.tables]
        parts += [_image(Path(p)) for p in s.images]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    (out_dir / "report.json").write_text(json.dumps(facts, indent=1, default=str))
    path = out_dir / "report.html"
    path.write_text(page)
    return path
