"""Every message and the action cross a real DDS link between two processes, field for field."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regiongpt_ros.action import RegionQuery

from tests.interfaces.interface_list import MESSAGE_TYPES
from tests.interfaces.message_fill import fill_message

REPO = Path(__file__).resolve().parents[2]
SEED = 20261126
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def echo_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.interfaces.echo_process", str(SEED)],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready", "echo process failed to start"
    yield proc
    proc.terminate()
    try:  # rclpy's SIGTERM shutdown took over 10 s once on a loaded machine (CI beside training)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def client(echo_process):
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("interface_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(executor, condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        executor.spin_once(timeout_sec=0.05)
    return condition()


def test_every_message_file_is_covered():
    names = {path.stem for path in (REPO / "msg").glob("*.msg")}
    assert names == {cls.__name__ for cls in MESSAGE_TYPES}


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
def test_message_round_trip(client, cls):
    node, executor = client
    sent = fill_message(cls, random.Random(f"{SEED}-{cls.__name__}"))
    received = []
    publisher = node.create_publisher(cls, f"in/{cls.__name__}", RELIABLE)
    subscription = node.create_subscription(cls, f"out/{cls.__name__}", received.append, RELIABLE)
    try:
        connected = spin_until(
            executor,
            lambda: (
                publisher.get_subscription_count() > 0 and subscription.get_publisher_count() > 0
            ),
        )
        assert connected, f"no DDS match with the echo process for {cls.__name__}"
        publisher.publish(sent)
        assert spin_until(executor, lambda: bool(received)), f"{cls.__name__} never came back"
        assert received[0] == sent
    finally:
        node.destroy_publisher(publisher)
        node.destroy_subscription(subscription)


def test_action_round_trip_with_feedback(client):
    node, executor = client
    goal = fill_message(RegionQuery.Goal, random.Random(f"{SEED}-goal"))
    goal_echoes, feedbacks = [], []
    echo_sub = node.create_subscription(RegionQuery.Goal, "goal_echo", goal_echoes.append, RELIABLE)
    action = ActionClient(node, RegionQuery, "region_query")
    try:
        assert spin_until(
            executor, lambda: action.server_is_ready() and echo_sub.get_publisher_count()
        )
        send = action.send_goal_async(
            goal, feedback_callback=lambda fb: feedbacks.append(fb.feedback)
        )
        assert spin_until(executor, send.done)
        handle = send.result()
        assert handle.accepted
        result_future = handle.get_result_async()
        assert spin_until(executor, result_future.done)
        expected = random.Random(SEED)
        expected_feedbacks = [fill_message(RegionQuery.Feedback, expected) for _ in range(2)]
        expected_result = fill_message(RegionQuery.Result, expected)
        assert result_future.result().result == expected_result
        assert spin_until(executor, lambda: len(feedbacks) == 2 and goal_echoes)
        assert feedbacks == expected_feedbacks
        assert goal_echoes[0] == goal
    finally:
        action.destroy()
        node.destroy_subscription(echo_sub)


def test_action_cancel(client):
    node, executor = client
    action = ActionClient(node, RegionQuery, "region_query")
    try:
        assert spin_until(executor, action.server_is_ready)
        send = action.send_goal_async(RegionQuery.Goal(task="wait_for_cancel"))
        assert spin_until(executor, send.done)
        handle = send.result()
        cancel = handle.cancel_goal_async()
        assert spin_until(executor, cancel.done)
        assert len(cancel.result().goals_canceling) == 1
        result_future = handle.get_result_async()
        assert spin_until(executor, result_future.done)
        from action_msgs.msg import GoalStatus

        assert result_future.result().status == GoalStatus.STATUS_CANCELED
    finally:
        action.destroy()
