"""The policy node's policy_factory allow-list: built-ins and registered entry points only."""

from __future__ import annotations

import sys

import pytest
from test_nodes_units import MemoryHost

from vla_rft.runtime.loader import load_policy
from vla_rft_nodes.configs import PolicyNodeConfig
from vla_rft_nodes.host.base import Lifecycle
from vla_rft_nodes.policy_factories import (
    BUILTIN_FACTORIES,
    FactoryNotAllowedError,
    allowed_factories,
    import_factory,
)
from vla_rft_nodes.policy_node import PolicyNode
from vla_rft_nodes.standin_policy import load_standin_policy


def _module_that_reports_its_import(tmp_path, monkeypatch, name: str):
    """A module on sys.path whose import leaves a file behind."""
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "def factory(model_path, backend):\n    raise AssertionError('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


def test_an_unlisted_factory_is_refused_at_configure_and_never_imported(
    tmp_path, monkeypatch, caplog
):
    marker = _module_that_reports_its_import(tmp_path, monkeypatch, "unlisted_factory")
    with pytest.raises(FactoryNotAllowedError, match="'unlisted_factory:factory' is not allowed"):
        import_factory("unlisted_factory:factory")
    node = PolicyNode(MemoryHost(), PolicyNodeConfig(policy_factory="unlisted_factory:factory"))
    assert not Lifecycle(node).trigger("configure")
    assert node.state == "unconfigured" and node.policy is None
    assert (
        "configure failed: policy_factory 'unlisted_factory:factory' is not allowed" in caplog.text
    )
    assert all(spec in caplog.text for spec in BUILTIN_FACTORIES)
    assert not marker.exists() and "unlisted_factory" not in sys.modules


def test_builtin_and_registered_factories_are_allowed(
    tmp_path, monkeypatch, register_policy_factory
):
    assert import_factory(BUILTIN_FACTORIES[0]) is load_policy
    assert import_factory(BUILTIN_FACTORIES[1]) is load_standin_policy
    marker = _module_that_reports_its_import(tmp_path, monkeypatch, "registered_factory")
    assert "registered_factory:factory" not in allowed_factories()
    register_policy_factory("registered_factory:factory")
    assert "registered_factory:factory" in allowed_factories()
    assert import_factory("registered_factory:factory").__module__ == "registered_factory"
    assert marker.exists()
    monkeypatch.delitem(sys.modules, "registered_factory")
