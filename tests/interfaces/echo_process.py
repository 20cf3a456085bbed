"""A second ROS 2 process for the round-trip tests: echoes every message, serves the action.

Run as `python echo_process.py SEED`. Each message type T received on `in/T` is published back
unchanged on `out/T`. The `region_query` action server republishes each goal on `goal_echo`,
sends two filled feedbacks, and returns a result filled from SEED (the client builds the same
values locally). A goal whose task is "wait_for_cancel" runs until it is canceled.
"""

from __future__ import annotations

import random
import sys
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regiongpt_ros.action import RegionQuery

from tests.interfaces.interface_list import MESSAGE_TYPES
from tests.interfaces.message_fill import fill_message

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class EchoNode(Node):
    def __init__(self, seed: int) -> None:
        super().__init__("interface_echo")
        self.seed = seed
        self.echo_publishers = {}
        for cls in MESSAGE_TYPES:
            name = cls.__name__
            self.echo_publishers[name] = self.create_publisher(cls, f"out/{name}", RELIABLE)
            self.create_subscription(
                cls,
                f"in/{name}",
                lambda msg, n=name: self.echo_publishers[n].publish(msg),
                RELIABLE,
            )
        self.goal_echo = self.create_publisher(RegionQuery.Goal, "goal_echo", RELIABLE)
        self.server = ActionServer(
            self,
            RegionQuery,
            "region_query",
            self.execute,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
        )

    def execute(self, goal_handle):
        self.goal_echo.publish(goal_handle.request)
        rng = random.Random(self.seed)
        if goal_handle.request.task == "wait_for_cancel":
            deadline = time.monotonic() + 30.0
            while not goal_handle.is_cancel_requested and time.monotonic() < deadline:
                time.sleep(0.02)
            goal_handle.canceled()
            result = RegionQuery.Result()
            result.error = "canceled"
            return result
        for _ in range(2):
            goal_handle.publish_feedback(fill_message(RegionQuery.Feedback, rng))
            time.sleep(0.05)
        goal_handle.succeed()
        return fill_message(RegionQuery.Result, rng)


def main() -> None:
    rclpy.init()
    node = EchoNode(int(sys.argv[1]))
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    print("ready", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
