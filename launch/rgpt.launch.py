"""Bring up the RegionGPT node: namespace, image/mask topic remapping, a params file.

    ros2 launch regiongpt_ros rgpt.launch.py namespace:=robot1 image:=/camera/color/image_raw \
        masks:=/segmenter/labels params_file:=/path/to/rgpt_node.yaml device:=cuda

The node configures and activates itself (parameter autostart); pass autostart:=false to leave
it to a lifecycle manager. Everything else lives in the params file (config/rgpt_node.yaml).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

# Node parameters that are also launch arguments: name -> default (its type is the parameter's).
PARAMETER_ARGUMENTS = {"model_path": "", "device": "auto", "dtype": "float32", "autostart": True}
# Topic remappings that are launch arguments: launch argument -> (node topic, default target).
REMAP_ARGUMENTS = {"image": ("image", "image"), "masks": ("masks", "masks")}


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="Node namespace."),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("regiongpt_ros"), "config", "rgpt_node.yaml"]),
            description="YAML file with the node's parameters."),
    ]
    for name, default in PARAMETER_ARGUMENTS.items():
        text = str(default).lower() if isinstance(default, bool) else str(default)
        args.append(DeclareLaunchArgument(name, default_value=text,
                                          description=f"Node parameter {name}."))
    for name, (_topic, default) in REMAP_ARGUMENTS.items():
        args.append(DeclareLaunchArgument(name, default_value=default,
                                          description=f"Topic the node reads as '{name}'."))
    overrides = {name: ParameterValue(LaunchConfiguration(name), value_type=type(default))
                 for name, default in PARAMETER_ARGUMENTS.items()}
    remappings = [(topic, LaunchConfiguration(name))
                  for name, (topic, _default) in REMAP_ARGUMENTS.items()]
    remappings.append(("image/compressed", [LaunchConfiguration("image"), "/compressed"]))
    node = Node(
        package="regiongpt_ros",
        executable="rgpt_node",
        name="rgpt_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=remappings,
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*args, node])
