"""Record topics into a rosbag2 (mcap or sqlite3) with `rosbags`, as raw CDR (no conversion).

Types come from the node's known outputs, from the ROS graph, or from "topic:pkg/msg/Type".
The bag holds our types' definitions (registered from msg/), so `ros2 bag` reads it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer

from .bag_player import message_class
from .discovery import wait_matched
from .interface_types import make_typestore

# The node's outputs (relative names) and their types.
NODE_OUTPUTS = {
    "regions": "regiongpt_ros/msg/RegionDescriptionArray",
    "refer_result": "regiongpt_ros/msg/ReferResult",
    "status": "regiongpt_ros/msg/NodeStatus",
    "debug_image": "sensor_msgs/msg/Image",
}


class BagRecorder:
    """Subscribes to topics from ``node`` and writes every message to ``path``."""

    def __init__(self, node: Node, path: str | Path, topics: list[str] | None = None,
                 storage: str = "mcap", reliable: bool = True, depth: int = 100,
                 discover_timeout: float = 5.0) -> None:
        self.node = node
        self.path = Path(path)
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._typestore = make_typestore()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._closed = False
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self._subs = []
        for spec in topics or list(NODE_OUTPUTS):
            topic, _, msgtype = spec.partition(":")
            msgtype = msgtype or NODE_OUTPUTS.get(topic) or self._discover(topic,
                                                                            discover_timeout)
            full = node.resolve_topic_name(topic)
            conn = self._writer.add_connection(full, msgtype, typestore=self._typestore)
            self.counts[full] = 0
            self._subs.append(node.create_subscription(
                message_class(msgtype), topic,
                lambda raw, c=conn, t=full: self._write(c, t, raw), qos, raw=True))

    def wait_for_publishers(self, timeout: float) -> list[str]:
        """Wait until every subscription is matched to a publisher (DDS discovery is
        asynchronous: messages sent before the match are not received); returns the topics
        still without one after ``timeout`` seconds."""
        return [s.topic_name for s in wait_matched(self._subs, timeout)]

    def _discover(self, topic: str, timeout: float) -> str:
        full = self.node.resolve_topic_name(topic)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, types in self.node.get_topic_names_and_types():
                if name == full and types:
                    return types[0]
            time.sleep(0.1)
        raise ValueError(f"type of topic {full} unknown (not in the graph): pass topic:type")

    def _write(self, conn, topic: str, raw: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            self._writer.write(conn, time.time_ns(), raw)
            self.counts[topic] += 1

    def close(self) -> dict[str, int]:
        """Stop recording and finish the bag; returns messages per topic."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()
        return dict(self.counts)
