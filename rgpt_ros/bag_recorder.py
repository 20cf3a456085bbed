"""Record topics into a rosbag2 (mcap or sqlite3) with `rosbags`, as raw CDR (no conversion).

Types come from the node's known outputs, from the ROS graph, or from "topic:pkg/msg/Type".
The bag holds our types' definitions (registered from msg/), so `ros2 bag` reads it. As
rosbag2 does, each topic enters the bag once its publishers are known (its first message, or
at the end): with their offered QoS profiles, which `ros2 bag play` gives its publishers, and
the type hash they announce.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin

from .bag_player import message_class
from .discovery import wait_matched
from .interface_types import make_typestore
from .rosbag2_writer import Rosbag2Writer, bag_qos

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
        self._writer = Rosbag2Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._closed = False
        self._types: dict[str, str] = {}
        self._connections: dict[str, Connection] = {}
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self._subs = []
        for spec in topics or list(NODE_OUTPUTS):
            topic, _, msgtype = spec.partition(":")
            msgtype = msgtype or NODE_OUTPUTS.get(topic) or self._discover(topic,
                                                                            discover_timeout)
            full = node.resolve_topic_name(topic)
            self._types[full] = msgtype
            self.counts[full] = 0
            self._subs.append(node.create_subscription(
                message_class(msgtype), topic, lambda raw, t=full: self._write(t, raw), qos,
                raw=True))

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

    def _connection(self, topic: str) -> Connection:
        """The topic's bag connection, added on first use with its publishers' QoS and type
        hash as discovered (call with the lock held)."""
        conn = self._connections.get(topic)
        if conn is None:
            msgtype = self._types[topic]
            publishers = [p for p in self.node.get_publishers_info_by_topic(topic)
                          if p.topic_type == msgtype]
            own = self._typestore.hash_rihs01(msgtype)
            announced = {str(p.topic_type_hash) for p in publishers} - {own}
            if announced:
                self.node.get_logger().warning(
                    f"{topic}: publishers announce type hash {sorted(announced)}, our {msgtype} "
                    f"definition hashes to {own}: the bag's definition may not fit the data")
            msgdef, _ = self._typestore.generate_msgdef(msgtype, ros_version=2)
            conn = self._writer.add_connection(
                topic, msgtype, msgdef=msgdef,
                rihs01=next(iter(announced)) if len(announced) == 1 else own,
                offered_qos_profiles=[bag_qos(p.qos_profile) for p in publishers])
            self._connections[topic] = conn
        return conn

    def _write(self, topic: str, raw: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            self._writer.write(self._connection(topic), time.time_ns(), raw)
            self.counts[topic] += 1

    def close(self) -> dict[str, int]:
        """Stop recording and finish the bag; returns messages per topic."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        with self._lock:
            if not self._closed:
                self._closed = True
                for topic in self._types:  # topics without messages are listed too
                    self._connection(topic)
                self._writer.close()
        return dict(self.counts)
