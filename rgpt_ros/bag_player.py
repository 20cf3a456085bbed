"""Play a rosbag2 (mcap or sqlite3) into ROS 2 topics with `rosbags` (no rosbag2 needed).

Timing: the bag's own (scaled by a rate factor), or "consume": each frame is published only
after the node has dealt with the previous one (its descriptions arrived, or its status shows
it rejected/dropped it), so a slow CPU model still sees every frame. Messages are published as
the raw CDR bytes stored in the bag, so no conversion happens on the way. Publishers take the
reliability and durability the bag recorded for their topic (as `ros2 bag play` does), unless
told otherwise.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection

from .discovery import wait_matched
from .interface_types import make_typestore

FrameHook = Callable[[str, int], None]  # (bag topic, header stamp ns) after a frame is consumed


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy class (ImportError/AttributeError when unknown)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def publisher_qos(conn: Connection, reliable: bool | None, depth: int) -> QoSProfile:
    """QoS to replay ``conn`` with: the given reliability, else the one every recorded publisher
    offered (with its durability), else reliable; rosbag2's player follows the same rule."""
    qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    if reliable is not None:
        qos.reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        return qos
    offered = getattr(conn.ext, "offered_qos_profiles", None) or []
    reliabilities = {q.reliability.name for q in offered}
    durabilities = {q.durability.name for q in offered}
    if len(reliabilities) == 1 and len(durabilities) == 1:
        (rel,), (dur,) = reliabilities, durabilities
        if rel in ("RELIABLE", "BEST_EFFORT") and dur in ("VOLATILE", "TRANSIENT_LOCAL"):
            qos.reliability, qos.durability = ReliabilityPolicy[rel], DurabilityPolicy[dur]
    return qos


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    consume_timeouts: int = 0
    seconds: float = 0.0


def guess_frame_topic(topics: Mapping[str, str]) -> str | None:
    """The bag topic that carries camera frames: an Image/CompressedImage not named mask."""
    for topic, msgtype in topics.items():
        last = topic.rstrip("/").split("/")[-1]
        if msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage") and \
                "mask" not in topic and last in ("image", "image_raw", "image_rect",
                                                 "image_color", "compressed"):
            return topic
    return None


class ConsumeWaiter:
    """Knows when the node has consumed a frame: descriptions with its stamp, or the status
    counters show every received frame accounted for (rejected and dropped frames)."""

    def __init__(self, node: Node, regions_topic: str = "regions",
                 status_topic: str = "status") -> None:
        from regiongpt_ros.msg import NodeStatus, RegionDescriptionArray

        self._cond = threading.Condition()
        self._stamps: set[int] = set()
        self._status = None
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [node.create_subscription(RegionDescriptionArray, regions_topic,
                                               self._on_regions, rel),
                      node.create_subscription(NodeStatus, status_topic, self._on_status, rel)]
        self._node = node

    def _on_regions(self, msg) -> None:
        with self._cond:
            self._stamps.add(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
            if len(self._stamps) > 1000:
                self._stamps.clear()
            self._cond.notify_all()

    def _on_status(self, msg) -> None:
        with self._cond:
            self._status = msg
            self._cond.notify_all()

    def baseline(self, timeout: float = 5.0) -> int:
        """frames_received now (waits for one status message)."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._status is None and time.monotonic() < end:
                self._cond.wait(0.1)
            return int(self._status.frames_received) if self._status else 0

    def wait(self, stamp_ns: int, expected_received: int, timeout: float) -> bool:
        """True once the frame with ``stamp_ns`` is described, or the node has accounted for
        ``expected_received`` frames."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                if stamp_ns in self._stamps:
                    return True
                s = self._status
                if s is not None and s.frames_received >= expected_received and \
                        s.frames_received == (s.frames_processed + s.frames_dropped
                                              + s.frames_rejected):
                    return True
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))

    def close(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)


def play(node: Node, bag: str | Path, *, remap: Mapping[str, str] | None = None,
         rate: float = 1.0, consume: bool = False, frame_topic: str | None = None,
         topics: list[str] | None = None, reliable: bool | None = None, depth: int = 10,
         wait_subscribers: float = 10.0, consume_timeout: float = 120.0,
         regions_topic: str = "regions", status_topic: str = "status",
         on_frame: FrameHook | None = None, log=print) -> PlayStats:
    """Publish the bag's messages from ``node`` (which must be spinning in another thread).

    ``remap``: bag topic -> published topic (relative names resolve in ``node``'s namespace).
    ``rate``: time factor for the bag's timing (2.0 = twice as fast); ignored with ``consume``.
    ``reliable``: publishers' reliability; None = as the bag recorded it (reliable if unknown).
    ``on_frame(topic, stamp)``: called after each frame was consumed (consume mode only).
    """
    stats = PlayStats()
    remap = dict(remap or {})
    typestore = make_typestore()
    with AnyReader([Path(bag)], default_typestore=typestore) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        types = {c.topic: c.msgtype for c in conns}
        pubs = {}
        for c in conns:
            try:
                cls = message_class(c.msgtype)
            except (ImportError, AttributeError, ValueError):
                log(f"skipping {c.topic}: message type {c.msgtype} is not available here")
                continue
            pubs[c.topic] = node.create_publisher(cls, remap.get(c.topic, c.topic),
                                                  publisher_qos(c, reliable, depth))
        frame_topic = frame_topic or guess_frame_topic(types)
        if consume and frame_topic is None:
            raise ValueError("consume mode needs the frame topic: pass --frame-topic")
        wait_matched(list(pubs.values()), wait_subscribers)
        waiter = ConsumeWaiter(node, regions_topic, status_topic) if consume else None
        base = waiter.baseline() if waiter else 0
        pending: tuple[int, int] | None = None  # (stamp, expected frames_received)
        t_start = time.monotonic()
        bag_t0 = None
        for conn, timestamp, raw in reader.messages(connections=conns):
            pub = pubs.get(conn.topic)
            if pub is None:
                continue
            if waiter is not None and conn.topic == frame_topic:
                if pending is not None:
                    _wait_frame(waiter, pending, consume_timeout, stats, frame_topic, on_frame,
                                log)
                stamp = reader.deserialize(raw, conn.msgtype).header.stamp
                pending = (stamp.sec * 1_000_000_000 + stamp.nanosec, base + stats.frames + 1)
            elif waiter is None:
                bag_t0 = timestamp if bag_t0 is None else bag_t0
                due = t_start + (timestamp - bag_t0) / 1e9 / max(rate, 1e-9)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            stats.frames += conn.topic == frame_topic
            pub.publish(bytes(raw))
            stats.published[conn.topic] = stats.published.get(conn.topic, 0) + 1
        if waiter is not None:
            if pending is not None:
                _wait_frame(waiter, pending, consume_timeout, stats, frame_topic, on_frame, log)
            waiter.close()
        for pub in pubs.values():
            node.destroy_publisher(pub)
    stats.seconds = time.monotonic() - t_start
    return stats


def _wait_frame(waiter: ConsumeWaiter, pending: tuple[int, int], timeout: float,
                stats: PlayStats, topic: str, on_frame: FrameHook | None, log) -> None:
    if not waiter.wait(pending[0], pending[1], timeout):
        stats.consume_timeouts += 1
        log(f"frame {pending[0]} not consumed within {timeout:.0f} s; going on")
    elif on_frame is not None:
        on_frame(topic, pending[0])
