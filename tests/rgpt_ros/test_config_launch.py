"""config/rgpt_node.yaml and launch/rgpt.launch.py only set parameters the node declares, with
the declared types (`launch` is not installable here, so the launch file runs against stubs)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from rgpt_ros.node import RGPTNode
from rgpt_ros.parameters import PARAMS, SPECS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def declared(ros_context):
    """name -> Parameter.Type of every parameter the node declares (node built in-process)."""
    node = RGPTNode(node_name="rgpt_decl_probe")
    try:
        builtin = {"use_sim_time", "start_type_description_service"}  # rclpy's own
        yield {n: node.get_parameter(n).type_ for n in node._parameters if n not in builtin}
    finally:
        node.destroy_node()


def _type_of(value) -> Parameter.Type:
    return Parameter.Type.from_parameter_value(value)


def test_yaml_lists_every_parameter_with_its_default_and_type(declared):
    data = yaml.safe_load((ROOT / "config" / "rgpt_node.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    assert set(params) == set(declared)
    for name, value in params.items():
        assert _type_of(value) == declared[name], name
        assert value == SPECS[name].default, name


def test_node_declares_exactly_the_table(declared):
    assert set(declared) == {p.name for p in PARAMS}


class _Recorder:
    """Stand-in for a launch class: remembers its arguments."""

    made: list = []

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs
        _Recorder.made.append(self)


def _stub_launch_modules(monkeypatch) -> None:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument"],
        "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.parameter_descriptions": ["ParameterValue"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    for mod, classes in names.items():
        m = types.ModuleType(mod)
        for cls in classes:
            setattr(m, cls, type(cls, (_Recorder,), {}))
        monkeypatch.setitem(sys.modules, mod, m)


def test_launch_file_sets_declared_parameters_and_remaps_inputs(monkeypatch, declared):
    _stub_launch_modules(monkeypatch)
    _Recorder.made = []
    spec = importlib.util.spec_from_file_location("rgpt_launch", ROOT / "launch" / "rgpt.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.generate_launch_description()
    nodes = [r for r in _Recorder.made if type(r).__name__ == "Node"]
    assert len(nodes) == 1
    kw = nodes[0].kwargs
    assert kw["executable"] == "rgpt_node" and kw["package"] == "regiongpt_ros"
    overrides = kw["parameters"][1]
    for name, value in overrides.items():
        assert name in declared, f"launch file sets undeclared parameter {name}"
        default = mod.PARAMETER_ARGUMENTS[name]
        assert _type_of(default) == declared[name], name
        assert value.kwargs["value_type"] is type(SPECS[name].default), name
    assert {src for src, _ in kw["remappings"]} >= {"image", "masks", "image/compressed"}
    arg_names = {r.args[0] for r in _Recorder.made if type(r).__name__ == "DeclareLaunchArgument"}
    assert {"namespace", "params_file", "image", "masks"} <= arg_names


def test_node_accepts_the_yaml_file(ros_context):
    """The YAML file loads through rcl's own parser (as --params-file does)."""
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file",
                                  str(ROOT / "config" / "rgpt_node.yaml")])
    try:
        node = RGPTNode(node_name="rgpt_yaml_probe", context=ctx)
        assert node.get_parameter("tasks").value == ["classify", "caption"]
        assert node.get_parameter("max_image_width").value == 4096
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
