"""Bring up the RegionGPT node: namespace, image/mask topic remapping, a params file.

    ros2 launch regiongpt_ros rgpt.launch.py namespace:=robot1 image:=/camera/color/image_raw \
        masks:=/segmenter/labels params_file:=/path/to/rgpt_node.yaml device:=cuda

One node for several cameras: streams:=front:/front/image_raw:/front/labels,rear (each NAME or
NAME:IMAGE_TOPIC:REGIONS_TOPIC; see docs/MULTI_STREAM.md).

model_path, device, dtype and autostart override the params file only when given; left out,
the file's values stand. The node configures and activates itself unless autostart is false
(then a lifecycle manager drives it). What is passed to the node is decided by
rgpt_ros.launch_arguments.node_arguments (plain Python, tested without `launch`).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from rgpt_ros.launch_arguments import LAUNCH_ARGUMENTS, node_arguments


def _node(context, *args, **kwargs) -> list:
    given = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    params_file = LaunchConfiguration("params_file").perform(context)
    return [Node(package="regiongpt_ros", executable="rgpt_node", name="rgpt_node",
                 output="screen", emulate_tty=True, **node_arguments(given, params_file))]


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(
        "params_file",
        default_value=PathJoinSubstitution(
            [FindPackageShare("regiongpt_ros"), "config", "rgpt_node.yaml"]),
        description="YAML file with the node's parameters.")]
    args += [DeclareLaunchArgument(name, default_value=default, description=description)
             for name, (default, description) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
