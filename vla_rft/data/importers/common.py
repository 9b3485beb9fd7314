"""What every importer shares: the error type, frame resizing, writing one imported episode,
and the summary printed at the end of `vla-rft import`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vla_rft.data.episode import Episode, EpisodeError
from vla_rft.data.episode_store import set_aside_interrupted, write_episode

SUCCESS_FALSE, SUCCESS_TRUE = "false", "true"
"""Fixed success policies; any other value of an importer's `success` names a data field."""


class DataImportError(ValueError):
    """Source data that cannot become episodes; names the file and the fault."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path is not None else reason)


def excerpt(value, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters (with the full length) so that an error quoting
    hostile content stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def path_inside(root: Path, path: str | Path, where, what: str) -> Path:
    """`root / path`, once its resolved form (symlinks followed) is known to lie under `root`;
    else a DataImportError naming `where` and `what`. An import reads only its source, whatever
    '..', absolute paths or links the source's metadata holds. In the Hugging Face cache, where
    `root` is `<repo>/snapshots/<revision>` and its files link to `<repo>/blobs`, those blobs
    count as inside."""
    base = Path(root).resolve()
    allowed = [base]
    if base.parent.name == "snapshots":
        allowed.append(base.parent.parent / "blobs")
    joined = Path(root) / path
    if not any(joined.resolve().is_relative_to(a) for a in allowed):
        raise DataImportError(
            where, f"{what}: {excerpt(str(path))} leads outside the data set {Path(root)}"
        )
    return joined


def safe_name(text: str) -> str:
    """An episode name prefix from a file name: only letters, digits, '_', '.', '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).lstrip(".") or "imported"


def check_finite(values: np.ndarray, what: str, where) -> None:
    """DataImportError naming `where` and the first step whose `what` holds NaN or inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        step = int(np.argwhere(bad)[0, 0])
        raise DataImportError(where, f"{what} holds NaN or inf at step {step}")


def valid_names(names, size: int) -> tuple[str, ...]:
    """Per-dimension names if there is exactly one string per dimension, else ()."""
    ok = isinstance(names, (list, tuple)) and len(names) == size
    return tuple(names) if ok and all(isinstance(n, str) for n in names) else ()


@dataclass
class ImportSummary:
    """What one `vla-rft import` run produced."""

    source: str
    """The data set or bag that was read."""
    out: Path
    """Directory the episodes were written to."""
    written: list[tuple[str, int]] = field(default_factory=list)
    """(episode name, steps) of every episode written."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(what, reason) of every source episode (or step range) not written."""

    @property
    def steps(self) -> int:
        return sum(n for _, n in self.written)

    def table(self) -> str:
        rows = [
            "| source | out | episodes | steps | skipped |",
            "| --- | --- | --- | --- | --- |",
            f"| {self.source} | {self.out} | {len(self.written)} | {self.steps} "
            f"| {len(self.skipped)} |",
        ]
        reasons = Counter(reason for _, reason in self.skipped)
        if reasons:
            rows += ["", "| skipped because | count | first |", "| --- | --- | --- |"]
            for reason, count in reasons.most_common():
                first = next(what for what, r in self.skipped if r == reason)
                rows.append(f"| {reason} | {count} | {first} |")
        return "\n".join(rows)


def already_imported(out: Path, name: str, summary: ImportSummary) -> bool:
    """An episode already in `out` is kept and counted as skipped, so that an interrupted
    import goes on where it stopped."""
    if (out / name).exists():
        summary.skipped.append((name, "already imported"))
        return True
    return False


def write_imported(out: Path, name: str, episode: Episode, summary: ImportSummary, where) -> None:
    """Validate a whole episode in memory, then write it through the episode store, so that a
    fault never leaves a partial episode behind. `where` names the source in errors."""
    try:
        episode.validate(where)
    except EpisodeError as err:
        raise DataImportError(where, err.reason) from None
    set_aside_interrupted(out, name)  # an earlier import killed while writing this episode
    write_episode(out, name, episode)
    summary.written.append((name, len(episode)))
