"""The ROS 2 side read without ROS 2: the launch file, setup.py's executables, the parameter file
and the rclpy host, checked against the node classes and their config dataclasses. Under a real
ROS 2 the same things run in tests/test_ros2.py and tests/test_rclpy_host.py."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import runpy
import typing
from pathlib import Path
from unittest import mock

import yaml

from vla_rft_nodes.configs import NODE_CONFIGS, load_node_config
from vla_rft_nodes.host.base import Host
from vla_rft_nodes.node_table import NODES

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "bringup.launch.py"
PARAMS = REPO / "config" / "bringup.yaml"
LAUNCH_ARGUMENTS = {"use_sim", "policy_model", "backend", "record", "params_file"}


def _console_scripts() -> dict[str, str]:
    """name -> 'module:function' of the entry_points setup.py passes to setuptools."""
    captured = {}
    with mock.patch("setuptools.setup", lambda **kwargs: captured.update(kwargs)):
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    entries = captured["entry_points"]["console_scripts"]
    return dict(tuple(part.strip() for part in e.split("=")) for e in entries)


def _launch_nodes() -> list[dict]:
    """Every Node / LifecycleNode call in the launch file: its literal keyword arguments (module
    constants such as PACKAGE resolved)."""
    tree = ast.parse(LAUNCH.read_text())
    constants = {
        n.targets[0].id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
    }
    nodes = []
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") in ("Node", "LifecycleNode"):
            kwargs = {"kind": call.func.id}
            for kw in call.keywords:
                if kw.arg == "parameters":
                    kwargs["param_dicts"] = [e for e in kw.value.elts if isinstance(e, ast.Dict)]
                elif isinstance(kw.value, ast.Constant):
                    kwargs[kw.arg] = kw.value.value
                elif isinstance(kw.value, ast.Name) and kw.value.id in constants:
                    kwargs[kw.arg] = constants[kw.value.id]
            nodes.append(kwargs)
    return nodes


def test_launch_executables_match_setup_py_and_the_node_classes():
    scripts = _console_scripts()
    assert scripts["vla-rft"] == "vla_rft.cli:main"
    launched = _launch_nodes()
    assert {n["executable"] for n in launched} == set(NODE_CONFIGS) == set(NODES)
    assert set(scripts) == {"vla-rft", *NODES}
    for node in launched:
        name = node["executable"]
        assert node["name"] == name and node["package"] == "vla_rft"
        module, func = scripts[name].split(":")
        assert module == NODES[name]
        mod = importlib.import_module(module)
        assert callable(getattr(mod, func))
        node_cls = next(
            v for v in vars(mod).values() if isinstance(v, type) and getattr(v, "NAME", "") == name
        )
        assert node_cls.CONFIG is NODE_CONFIGS[name]
        assert (node["kind"] == "LifecycleNode") == node_cls.LIFECYCLE, name


def test_launch_arguments_and_parameter_overrides_exist():
    tree = ast.parse(LAUNCH.read_text())
    declared = {
        call.args[0].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument"
    }
    assert declared == LAUNCH_ARGUMENTS
    for node in _launch_nodes():
        fields = {f.name for f in dataclasses.fields(NODE_CONFIGS[node["executable"]])}
        for params in node.get("param_dicts", []):
            keys = {k.value for k in params.keys}
            assert keys <= fields, (node["executable"], keys - fields)
    node_lists = [  # e.g. the evaluation manager's wait_for_nodes
        [e.value for e in n.elts]
        for n in ast.walk(tree)
        if isinstance(n, ast.List)
        and n.elts
        and all(isinstance(e, ast.Constant) and str(e.value).endswith("_node") for e in n.elts)
    ]
    assert node_lists and all(set(names) <= set(NODE_CONFIGS) for names in node_lists)


def _rclpy_type_ok(value, annotation) -> bool:
    """Would rclpy accept this YAML value for a parameter declared with the field's default?"""
    if typing.get_origin(annotation) is tuple:
        inner = typing.get_args(annotation)[0]
        return isinstance(value, list) and all(_rclpy_type_ok(v, inner) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, float)  # rclpy refuses 30 for a double parameter
    return isinstance(value, str)


def test_params_file_lists_every_parameter_with_the_type_rclpy_needs():
    data = yaml.safe_load(PARAMS.read_text())
    assert set(data) == set(NODE_CONFIGS)
    for name, cls in NODE_CONFIGS.items():
        params = data[name]["ros__parameters"]
        hints = typing.get_type_hints(cls)
        assert set(params) == {f.name for f in dataclasses.fields(cls)}, name
        for key, value in params.items():
            assert _rclpy_type_ok(value, hints[key]), f"{name}.{key}: {value!r} for {hints[key]}"
        load_node_config(cls, PARAMS, name)


def test_params_file_values_are_the_node_defaults():
    """config/bringup.yaml documents the defaults for ROS 2 users; a value that differs from the
    node's own default changes what `vla-rft bringup` does behind the code's back (it wrote every
    evaluation to one runs/eval/bringup/ while the default makes a directory per run)."""
    data = yaml.safe_load(PARAMS.read_text())
    for name, cls in NODE_CONFIGS.items():
        defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
        for key, value in data[name]["ros__parameters"].items():
            default = defaults[key]
            if isinstance(default, tuple):
                value = tuple(value)
            assert value == default, (
                f"{name}.{key}: {value!r} in {PARAMS.name}, default {default!r}"
            )


def test_rclpy_host_implements_the_host_interface():
    """Parsed, not imported (no rclpy here): every abstract method is there."""
    tree = ast.parse((REPO / "vla_rft_nodes" / "host" / "rclpy_host.py").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    methods = {n.name for n in classes["RclpyHost"].body if isinstance(n, ast.FunctionDef)}
    assert Host.__abstractmethods__ <= methods
    codec = {n.name for n in classes["RclpyCodec"].body if isinstance(n, ast.FunctionDef)}
    assert {"image_to_msg", "image_from_msg", "_bytes", "_floats", "_doubles"} <= codec
