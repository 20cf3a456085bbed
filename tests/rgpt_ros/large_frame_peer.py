"""One side of the large-frame test, in its own process (so each has its own DDS participant and
reads FASTDDS_DEFAULT_PROFILES_FILE itself).

    python -m tests.rgpt_ros.large_frame_peer sub        # prints "ready", then on SIGTERM the count
    python -m tests.rgpt_ros.large_frame_peer pub N HZ   # waits for the subscriber, sends N frames
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from rgpt_ros.conversions import rgb_to_image_msg

TOPIC = "large_frames"
HEIGHT, WIDTH = 480, 640


def subscribe() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = Node("large_frame_sub")
    whole: list[int] = []
    node.create_subscription(
        Image, TOPIC, lambda m: whole.append(int(len(m.data) == HEIGHT * WIDTH * 3)),
        qos_profile_sensor_data)
    print("ready", flush=True)
    while not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    print(f"received {sum(whole)} of {len(whole)}", flush=True)
    node.destroy_node()
    return 0


def publish(count: int, hz: float) -> int:
    node = Node("large_frame_pub")
    pub = node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
    end = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    if pub.get_subscription_count() == 0:
        print("no subscriber matched", flush=True)
        return 1
    time.sleep(0.5)  # the subscriber learns of the writer too (best effort: no repairs)
    rgb = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = rgb_to_image_msg(rgb)
    for _ in range(count):
        pub.publish(msg)
        time.sleep(1.0 / hz)
    time.sleep(0.5)
    node.destroy_node()
    return 0


def main(argv: list[str]) -> int:
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    try:
        return subscribe() if argv[0] == "sub" else publish(int(argv[1]), float(argv[2]))
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
