"""A `rosbags` Writer that writes what rosbag2 itself writes, so `ros2 bag` treats our bags as
its own: the ROS distribution (rosbags writes "rosbags"), every topic's offered QoS profiles
(how `ros2 bag play` recreates the publishers) and, in mcap channels, the `topic_type_hash`
entry next to `offered_qos_profiles` (rosbag2_storage_mcap's create_topic writes both). Its
sqlite3 storage may be written from another thread than the one that opened it (a recorder's
subscription callbacks).
"""

from __future__ import annotations

import os
import sqlite3
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from rclpy.duration import Duration
from rclpy.qos import QoSProfile
from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import CompressionMode, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import Channel, McapWriter, write_channel, write_string
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

# The registry's ROS 2 wheels (requirements/ros.txt) are Kilted and set no ROS_DISTRO.
WHEELS_DISTRO = "kilted"


def ros_distro() -> str:
    """The distribution rosbag2 would record: ROS_DISTRO of a sourced install, else the wheels'."""
    return os.environ.get("ROS_DISTRO") or WHEELS_DISTRO


def _qos_time(duration: Duration) -> QosTime:
    # rclpy's infinite duration (2**63 - 1 ns) splits into rmw's infinite {sec, nsec} as well
    return QosTime(*divmod(int(duration.nanoseconds), 1_000_000_000))


def bag_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile (e.g. a discovered publisher's) as rosbags writes it to a bag."""
    return Qos(
        history=QosHistory[profile.history.name],
        depth=int(profile.depth),
        reliability=QosReliability[profile.reliability.name],
        durability=QosDurability[profile.durability.name],
        deadline=_qos_time(profile.deadline),
        lifespan=_qos_time(profile.lifespan),
        liveliness=QosLiveliness[profile.liveliness.name],
        liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def _with_distro(serialized: str) -> str:
    """Bag metadata YAML (nested under rosbag2_bagfile_information or not) with our distro."""
    data: dict[str, Any] = yaml.safe_load(serialized)
    info = data.get("rosbag2_bagfile_information", data)
    info["ros_distro"] = ros_distro()
    return yaml.safe_dump(data, sort_keys=False)


class _McapStorage(McapWriter):
    def add_connection(self, connection: Connection, offered_qos_profiles: str) -> None:
        assert isinstance(connection.ext, ConnectionExtRosbag2)
        metadata = BytesIO()
        for key, value in (("offered_qos_profiles", offered_qos_profiles),
                           ("topic_type_hash", connection.digest)):
            write_string(metadata, key)
            write_string(metadata, value)
        self.channels.append(Channel(connection.id, connection.msgtype, connection.topic,
                                     connection.ext.serialization_format, metadata.getvalue()))
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)

    def close(self, version: int, metadata: str) -> None:
        super().close(version, _with_distro(metadata))


class _Sqlite3Storage(Sqlite3Writer):
    def __init__(self, path: Path, compression: CompressionMode) -> None:
        super().__init__(path, compression)
        # a recorder writes from its executor's thread; callers serialise access themselves
        self.conn.commit()
        self.conn.close()
        self.conn = sqlite3.connect(f"file:{self.path}", uri=True, check_same_thread=False)
        self.cursor = self.conn.cursor()

    def close(self, version: int, metadata: str) -> None:
        self.cursor.execute("UPDATE schema SET ros_distro = ?", (ros_distro(),))
        super().close(version, _with_distro(metadata))


class Rosbag2Writer(Writer):
    """rosbags' Writer with rosbag2's ros_distro and mcap channel metadata."""

    STORAGE_PLUGINS = {StoragePlugin.MCAP: _McapStorage, StoragePlugin.SQLITE3: _Sqlite3Storage}

    def close(self) -> None:
        super().close()
        self.metapath.write_text(_with_distro(self.metapath.read_text()), "utf8")
