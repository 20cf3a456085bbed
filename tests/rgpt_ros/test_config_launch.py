"""config/rgpt_node.yaml and launch/rgpt.launch.py only set parameters the node declares, with
the declared types, and the launch file overrides the params file only with the arguments that
were given (`launch` is not installable here, so the launch file runs against stubs)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from rgpt_ros.launch_arguments import PARAMETER_ARGUMENTS, node_arguments, parameter_overrides
from rgpt_ros.node import RGPTNode
from rgpt_ros.parameters import PARAMS, SPECS
from rgpt_ros.process import ros_args

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


class _LaunchConfiguration(_Recorder):
    def perform(self, context: dict) -> str:
        return context[self.args[0]]


def _stub_launch_modules(monkeypatch) -> None:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction"],
        "launch.substitutions": ["PathJoinSubstitution"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    for mod, classes in names.items():
        m = types.ModuleType(mod)
        for cls in classes:
            setattr(m, cls, type(cls, (_Recorder,), {}))
        monkeypatch.setitem(sys.modules, mod, m)
    sys.modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration


def _launch(monkeypatch, **given: str) -> dict:
    """Run launch/rgpt.launch.py against stubs as `ros2 launch ... params_file:=P NAME:=VALUE`
    would: declared defaults, then the given arguments; returns the Node's keyword arguments."""
    _stub_launch_modules(monkeypatch)
    _Recorder.made = []
    spec = importlib.util.spec_from_file_location("rgpt_launch", ROOT / "launch" / "rgpt.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.generate_launch_description()
    declared_args = {r.args[0]: r.kwargs["default_value"] for r in _Recorder.made
                     if type(r).__name__ == "DeclareLaunchArgument"}
    expected = {"namespace", "params_file", "image", "masks", *PARAMETER_ARGUMENTS}
    assert expected <= set(declared_args)
    context = {**declared_args, "params_file": "/p/rgpt_node.yaml", **given}
    opaque = [r for r in _Recorder.made if type(r).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    nodes = opaque[0].kwargs["function"](context)
    assert len(nodes) == 1
    kw = nodes[0].kwargs
    assert kw["executable"] == "rgpt_node" and kw["package"] == "regiongpt_ros"
    return kw


def test_launch_without_arguments_leaves_the_params_file_alone(monkeypatch):
    """Issue 18, defect 1: the old launch file passed model_path/device/dtype/autostart with
    their defaults after params_file, overriding a file's device: cpu / autostart: false."""
    kw = _launch(monkeypatch)
    assert kw["parameters"] == ["/p/rgpt_node.yaml"]
    assert kw["namespace"] == ""
    assert set(kw["remappings"]) == {("image", "image"), ("masks", "masks"),
                                     ("image/compressed", "image/compressed")}


def test_launch_overrides_only_the_given_arguments(monkeypatch, declared):
    kw = _launch(monkeypatch, device="cuda", namespace="robot1", image="/cam/image_raw")
    assert kw["parameters"] == ["/p/rgpt_node.yaml", {"device": "cuda"}]
    assert kw["namespace"] == "robot1"
    assert ("image/compressed", "/cam/image_raw/compressed") in kw["remappings"]
    kw = _launch(monkeypatch, autostart="False", model_path="/models/rgpt")
    overrides = kw["parameters"][1]
    assert overrides == {"autostart": False, "model_path": "/models/rgpt"}
    for name, value in overrides.items():
        assert _type_of(value) == declared[name], name


def test_launch_arguments_reject_a_bad_boolean():
    assert parameter_overrides({"autostart": "true", "device": ""}) == {"autostart": True}
    with pytest.raises(ValueError, match="autostart"):
        parameter_overrides({"autostart": "maybe"})


def _node_params(ros_context, tmp_path, arguments: dict[str, str]) -> dict:
    """Start the node as the launch file would (params file + the given overrides) through
    rcl's own argument parsing; returns the parameters it ended with."""
    data = yaml.safe_load((ROOT / "config" / "rgpt_node.yaml").read_text())
    data["/**"]["ros__parameters"].update(device="cpu", autostart=False)
    params_file = tmp_path / "robot.yaml"
    params_file.write_text(yaml.safe_dump(data))
    kw = node_arguments(arguments, str(params_file))
    overrides = kw["parameters"][1] if len(kw["parameters"]) > 1 else {}
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, args=ros_args(overrides, params_file=kw["parameters"][0]))
    try:
        node = RGPTNode(node_name="rgpt_launch_probe", context=ctx)
        values = {n: node.get_parameter(n).value for n in PARAMETER_ARGUMENTS}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    return values


def test_params_file_values_reach_the_node_unless_overridden(ros_context, tmp_path):
    values = _node_params(ros_context, tmp_path, {})
    assert values["device"] == "cpu" and values["autostart"] is False
    values = _node_params(ros_context, tmp_path, {"device": "cuda"})
    assert values["device"] == "cuda" and values["autostart"] is False


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
