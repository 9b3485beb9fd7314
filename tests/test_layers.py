"""The layers of vla_rft (docs/ARCHITECTURE.md): a module imports only from its own layer or
lower ones, and the robot side imports without torch. An AST walk over every import statement,
the ones inside functions included."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = (
    ("contract", "threads"),
    ("data", "sim"),
    ("models", "rl"),
    ("runtime",),
    ("rollout",),
    ("training",),
    ("export",),
    ("evaluation",),
    ("pipeline", "cli", "__init__"),
)
"""vla_rft's packages, lowest first; packages in one row do not import each other."""
NODES_MAY_IMPORT = ("contract", "threads", "data", "sim", "runtime", "rollout")
"""vla_rft_nodes (the robot side) sits on these and nothing above them."""
LEVEL = {name: level for level, row in enumerate(LAYERS) for name in row}
ROBOT_SIDE = (
    "vla_rft.contract", "vla_rft.runtime.loader", "vla_rft.data.episode_store",
    "vla_rft_nodes.policy_node", "vla_rft_nodes.recorder_node", "vla_rft_nodes.sim_robot_node",
    "vla_rft_nodes.eval_manager_node", "vla_rft_nodes.bringup", "vla_rft.rollout.episode_loop",
)  # fmt: skip


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "vla_rft_nodes":
        return "vla_rft_nodes"
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str) -> set[str]:
    """Every vla_rft / vla_rft_nodes module `path` imports, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = module.split(".")[: -node.level] if node.level else []
            found.add(".".join([*base, node.module]))
    return {m for m in found if m.split(".")[0] in ("vla_rft", "vla_rft_nodes")}


def _modules():
    for package in ("vla_rft", "vla_rft_nodes"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield module.removesuffix(".__init__"), path


def layer_violations() -> list[str]:
    """'importer -> imported (why)' for every import that goes up or sideways."""
    bad = []
    for module, path in _modules():
        source = _package(module)
        for target in _imports(path, module):
            dest = _package(target)
            if dest == source:
                continue
            if source == "vla_rft_nodes":
                ok = dest in NODES_MAY_IMPORT
            elif dest == "vla_rft_nodes":
                ok = source in ("pipeline", "cli")  # the pipeline runs the node graph
            else:
                ok = LEVEL[dest] < LEVEL[source]
            if not ok:
                bad.append(f"{module} -> {target}")
    return bad


def test_every_package_has_a_layer():
    packages = {_package(m) for m, _ in _modules()} - {"vla_rft_nodes"}
    assert packages <= set(LEVEL), sorted(packages - set(LEVEL))


def test_no_module_imports_from_a_higher_or_sibling_layer():
    assert layer_violations() == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from vla_rft.training.train_rft import train\n")
    assert _imports(module, "vla_rft.runtime.bad") == {"vla_rft.training.train_rft"}
    assert LEVEL[_package("vla_rft.training.train_rft")] > LEVEL[_package("vla_rft.runtime.bad")]


def test_the_robot_side_imports_without_torch():
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(ROBOT_SIDE)!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'safetensors'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
