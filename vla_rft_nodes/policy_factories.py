"""Which `policy_factory` values the policy node may import: an allow-list, not any module.

A parameter file names the factory as 'module:function'; importing a module runs its code, so a
name is imported only if it is one of the project's own factories (BUILTIN_FACTORIES) or an
entry point that an installed package registers in the group ENTRY_POINT_GROUP, e.g. in its
setup.py:

    entry_points={"vla_rft.policy_factories": ["mine = my_robot.policy:load_policy"]}

The built-ins are listed here as well as in this project's setup.py, so a plain source checkout
works without being installed.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "vla_rft.policy_factories"
BUILTIN_FACTORIES = (
    "vla_rft.runtime.loader:load_policy",
    "vla_rft_nodes.standin_policy:load_standin_policy",
)


class FactoryNotAllowedError(ValueError):
    """A policy_factory that is neither built in nor a registered entry point."""


def allowed_factories() -> list[str]:
    """The built-in factories, then those installed packages register, as 'module:function'."""
    registered = [ep.value.replace(" ", "") for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return list(dict.fromkeys([*BUILTIN_FACTORIES, *registered]))


def import_factory(spec: str):
    """'package.module:function' -> the function, if allowed; nothing is imported otherwise."""
    allowed = allowed_factories()
    if spec not in allowed:
        raise FactoryNotAllowedError(
            f"policy_factory {spec[:100]!r} is not allowed; allowed: {', '.join(allowed)} "
            f"(a package adds one with an entry point in the group {ENTRY_POINT_GROUP!r})"
        )
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"policy_factory {spec!r} cannot be imported: {err}") from None
