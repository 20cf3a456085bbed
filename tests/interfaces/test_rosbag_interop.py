"""Bags written with rosbags hold our types as ROS 2 encodes them, so ROS 2 tools play them."""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from sensor_msgs.msg import Image

from rgpt_ros.interface_types import INTERFACE_PACKAGE, interface_msg_dir, make_typestore
from tests.interfaces.interface_list import MESSAGE_TYPES
from tests.interfaces.message_fill import fill_message

TOPICS = {"/camera/image": "sensor_msgs/msg/Image"} | {
    f"/rgpt/{cls.__name__}": f"{INTERFACE_PACKAGE}/msg/{cls.__name__}" for cls in MESSAGE_TYPES
}


def rclpy_class(msgtype: str) -> type:
    """'pkg/msg/Name' -> the rclpy class (rosidl_runtime_py is not among the wheels)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def assert_same(rosbags_msg, rclpy_msg) -> None:
    """Compare a rosbags dataclass with an rclpy message field by field, recursively."""
    for name in rclpy_msg.get_fields_and_field_types():
        ours, theirs = getattr(rosbags_msg, name), getattr(rclpy_msg, name)
        if hasattr(theirs, "get_fields_and_field_types"):
            assert_same(ours, theirs)
        elif isinstance(ours, np.ndarray):
            np.testing.assert_array_equal(ours, np.asarray(theirs, dtype=ours.dtype), err_msg=name)
        elif isinstance(ours, list) and ours and hasattr(ours[0], "__dataclass_fields__"):
            assert len(ours) == len(theirs), name
            for a, b in zip(ours, theirs, strict=True):
                assert_same(a, b)
        else:
            assert ours == theirs, name


def test_type_hashes_match_the_generated_interfaces():
    """rosbags' RIHS01 hash of each type equals the one rosidl generated: ros2 bag accepts it."""
    typestore = make_typestore()
    for cls in MESSAGE_TYPES:
        description = json.loads((interface_msg_dir() / f"{cls.__name__}.json").read_text())
        generated = description["type_hashes"][0]
        msgtype = f"{INTERFACE_PACKAGE}/msg/{cls.__name__}"
        assert generated["type_name"] == msgtype
        assert typestore.hash_rihs01(msgtype) == generated["hash_string"]


@pytest.mark.parametrize(
    "storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"]
)
def test_bag_round_trip_between_rosbags_and_rclpy(tmp_path: Path, storage):
    typestore = make_typestore()
    rng = random.Random(7)
    written = []  # (topic, rclpy message, rosbags message)
    bag = tmp_path / f"bag_{storage.name.lower()}"
    with Writer(bag, version=9, storage_plugin=storage) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=typestore)
            for topic, msgtype in TOPICS.items()
        }
        for index, (topic, msgtype) in enumerate(TOPICS.items()):
            for half in range(2):
                original = fill_message(rclpy_class(msgtype), rng)
                if half == 0:
                    # rclpy encodes, rosbags must decode it to the same fields.
                    raw = serialize_message(original)
                    decoded = typestore.deserialize_cdr(raw, msgtype)
                else:
                    # rosbags encodes from its own dataclass, rclpy must decode the same fields.
                    decoded = typestore.deserialize_cdr(serialize_message(original), msgtype)
                    raw = bytes(typestore.serialize_cdr(decoded, msgtype))
                assert_same(decoded, original)
                writer.write(connections[topic], 1_000_000_000 * index + half, raw)
                written.append((topic, original))

    read = []
    with Reader(bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == TOPICS
        for connection, _timestamp, raw in reader.messages():
            read.append(
                (connection.topic, deserialize_message(raw, rclpy_class(connection.msgtype)))
            )
    assert read == written


def test_image_bag_decodes_to_pixels(tmp_path: Path):
    """A camera image written by rosbags comes back as the same pixels through rclpy."""
    typestore = make_typestore()
    pixels = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    image = Image(height=4, width=6, encoding="rgb8", step=18, data=pixels.tobytes())
    image.header.frame_id = "camera"
    with Writer(tmp_path / "img", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/image", "sensor_msgs/msg/Image", typestore=typestore)
        writer.write(connection, 42, serialize_message(image))
    with Reader(tmp_path / "img") as reader:
        ((_, timestamp, raw),) = list(reader.messages())
    decoded = deserialize_message(raw, Image)
    assert timestamp == 42 and decoded.header.frame_id == "camera"
    np.testing.assert_array_equal(
        np.frombuffer(bytes(decoded.data), np.uint8).reshape(4, 6, 3), pixels
    )
