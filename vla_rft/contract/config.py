"""Typed configs from YAML recipes with `--set key=value` overrides.

A stage's config is a (frozen) dataclass whose fields may themselves be dataclasses:

    @dataclass(frozen=True)
    class TrainConfig:
        model: ModelConfig = ModelConfig()
        lr: float = 3e-4

A recipe is YAML with the same nesting (`model: {width: 64}`, `lr: 1e-3`); overrides use dotted
keys (`model.width=128`). Unknown keys and wrongly typed values are errors that name the key, so
a typo never silently trains with the default.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or override that does not fit the config."""


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML value (or override string parsed as YAML) to the field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not fit {annotation}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [v.strip() for v in str(value).split(",")] if value != "" else []
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        return str(value)
    if annotation is Path:
        return Path(value)
    return value


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build `cls` from a (nested) dict; unknown keys raise ConfigError."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in sorted(unknown))}; "
            f"known: {', '.join(prefix + n for n in sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        default = next(f for f in dataclasses.fields(cls) if f.name == name)
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            base = default.default if default.default is not dataclasses.MISSING else None
            if base is None and default.default_factory is not dataclasses.MISSING:
                base = default.default_factory()
            merged = {**(to_dict(base) if base is not None else {}), **value}
            kwargs[name] = from_dict(annotation, merged, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, annotation, prefix + name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from None


def to_dict(config) -> dict:
    """Nested plain dict (Paths as strings, tuples as lists): YAML/JSON-ready."""

    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def parse_overrides(items: list[str] | None) -> dict:
    """['a.b=3', 'c=x'] -> {'a': {'b': 3}, 'c': 'x'}; values are parsed as YAML scalars."""
    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    cls: type[T], recipe: str | Path | None = None, overrides: list[str] | None = None
) -> T:
    """Defaults of `cls`, then the recipe file, then `key=value` overrides. A recipe with
    `base: <file>` (relative to the recipe) changes that recipe's values (a variant)."""
    data = to_dict(cls())
    if recipe is not None:
        data = _deep_merge(data, _read_recipe(Path(recipe), ()))
    data = _deep_merge(data, parse_overrides(overrides))
    return from_dict(cls, data)


def _read_recipe(path: Path, variants: tuple[Path, ...]) -> dict:
    """A recipe's values over those of its `base` recipe, if it names one."""
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    if path.resolve() in variants:
        raise ConfigError(f"recipe {path} is its own base")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"recipe {path} must be a mapping at the top level")
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    return _deep_merge(_read_recipe(path.parent / base, (*variants, path.resolve())), loaded)


def recipe_parser(
    prog: str, description: str, recipe: str, example: str
) -> argparse.ArgumentParser:
    """The trainers' shared command line: --recipe, --set KEY=VALUE (repeatable), --resume,
    -q; `recipe` and `example` fill the help (e.g. "training/cpu/rft.yaml", "optim.steps=100")."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--recipe", type=Path, help=f"YAML recipe, e.g. {recipe}")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a recipe value (repeatable), e.g. {example}",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run from its latest checkpoint"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def comma_list(text: str) -> tuple[str, ...]:
    """argparse type of a comma-separated list; an empty one is a usage error."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items
