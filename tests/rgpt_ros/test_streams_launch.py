"""One node for N cameras from the launch file: the `streams` launch argument sets the node's
streams parameter and remaps each stream's inputs; the node's parameter check refuses bad names."""

from __future__ import annotations

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from rgpt_ros.launch_arguments import node_arguments, parse_streams
from rgpt_ros.node import RGPTNode
from rgpt_ros.parameters import check_value
from rgpt_ros.process import ros_args

from .test_config_launch import ROOT, _launch


def test_streams_argument_gives_names_and_remappings():
    names, remaps = parse_streams("front:/front/image_raw:/seg/front, rear ,top::/seg/top")
    assert names == ["front", "rear", "top"]
    assert remaps == [("front/image", "/front/image_raw"),
                      ("front/image/compressed", "/front/image_raw/compressed"),
                      ("front/masks", "/seg/front"), ("front/prompts", "/seg/front"),
                      ("top/masks", "/seg/top"), ("top/prompts", "/seg/top")]


@pytest.mark.parametrize("text", ["front,front", "1cam", "/abs", "a:b:c:d", ",", "a-b"])
def test_streams_argument_refuses_bad_lists(text):
    with pytest.raises(ValueError, match="streams"):
        parse_streams(text)


def test_launch_file_starts_one_node_for_the_given_cameras(monkeypatch):
    kw = _launch(monkeypatch, streams="cam0:/cam0/image_raw:/cam0/labels,cam1,cam2")
    assert kw["parameters"] == ["/p/rgpt_node.yaml", {"streams": ["cam0", "cam1", "cam2"]}]
    assert ("cam0/image", "/cam0/image_raw") in kw["remappings"]
    assert ("cam0/masks", "/cam0/labels") in kw["remappings"]
    assert not any(src.startswith("cam1/") for src, _ in kw["remappings"])


def test_without_the_argument_the_params_file_streams_stand():
    kw = node_arguments({"streams": " "}, "/p.yaml")
    assert kw["parameters"] == ["/p.yaml"]


def test_node_gets_the_streams_and_resolves_their_topics(ros_context, tmp_path):
    """Through rcl's own argument parsing, as `ros2 launch` would start it."""
    data = yaml.safe_load((ROOT / "config" / "rgpt_node.yaml").read_text())
    data["/**"]["ros__parameters"].update(autostart=False)
    params_file = tmp_path / "robot.yaml"
    params_file.write_text(yaml.safe_dump(data))
    kw = node_arguments({"streams": "front:/front/image_raw,rear", "namespace": "/robot"},
                        str(params_file))
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, args=ros_args(kw["parameters"][1], namespace=kw["namespace"],
                                          remap=dict(kw["remappings"]),
                                          params_file=kw["parameters"][0]))
    try:
        node = RGPTNode(node_name="rgpt_streams_probe", context=ctx)
        try:
            assert node.get_parameter("streams").value == ["front", "rear"]
            assert node.resolve_topic_name("front/image") == "/front/image_raw"
            assert node.resolve_topic_name("rear/image") == "/robot/rear/image"
            assert node.resolve_topic_name("rear/regions") == "/robot/rear/regions"
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_default_is_one_stream_in_the_nodes_namespace(ros_context):
    node = RGPTNode(node_name="rgpt_streams_default")
    try:
        assert node.get_parameter("streams").value == [""]
    finally:
        node.destroy_node()


def test_an_empty_stream_list_is_refused():
    assert "must not be empty" in check_value("streams", [])


@pytest.mark.parametrize("names", [["a", "a"], ["/a"], ["a b"]])
def test_bad_stream_names_are_refused(ros_context, names):
    assert check_value("streams", names)
    with pytest.raises(ValueError, match="streams"):
        RGPTNode(node_name="rgpt_streams_bad",
                 parameter_overrides=[Parameter("streams", Parameter.Type.STRING_ARRAY, names)])
