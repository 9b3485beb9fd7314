"""Embodiment spec files for tests: a built-in spec with some fields changed."""

from __future__ import annotations

from pathlib import Path

import yaml

from vla_rft.contract.embodiment import embodiment_path


def spec_file(tmp_path: Path, base: str = "metaworld-sawyer", **changes) -> Path:
    """A copy of the built-in spec `base` with `changes` applied, written under tmp_path."""
    data = yaml.safe_load(embodiment_path(base).read_text())
    data.update(changes)
    path = tmp_path / f"{data['name']}-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
