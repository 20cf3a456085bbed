"""Bag tools: a generated bag replayed through the node (its own process) by `bag_cli play`,
the node's outputs recorded by `bag_cli record`, every frame accounted for."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image

from rgpt_ros import bag_player, demo_bag
from rgpt_ros.interface_types import make_typestore

from .conftest import SHARED_NS


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "in_sqlite"
    return demo_bag.generate(path, scenes=3, photos=1, storage="sqlite3", height=96, width=128)


def _read(bag):
    with AnyReader([bag], default_typestore=make_typestore()) as reader:
        return [(c.topic, reader.deserialize(raw, c.msgtype))
                for c, _, raw in reader.messages()]


def test_replay_through_the_node_and_record_outputs(shared_node, small_bag, tmp_path):
    _, client = shared_node
    before = client.wait_status(lambda s: s.frames_received == s.frames_processed +
                                s.frames_dropped + s.frames_rejected, 30)
    assert before is not None
    out = tmp_path / "recorded"
    rec = subprocess.Popen([sys.executable, "-m", "rgpt_ros.bag_cli", "record", str(out),
                            "--ns", SHARED_NS, "--topics", "regions", "status"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in rec.stdout:  # the recorder prints "recording" once it subscribed
            if line.strip() == "recording":
                break
        play = subprocess.run(
            [sys.executable, "-m", "rgpt_ros.bag_cli", "play", str(small_bag), "--ns",
             SHARED_NS, "--consume", "--remap", "/camera/image:=image",
             "--remap", "/camera/masks:=masks", "--consume-timeout", "60"],
            capture_output=True, text=True, timeout=180)
        assert play.returncode == 0, play.stdout + play.stderr
        time.sleep(0.6)  # one more status period reaches the recorder
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(30)
    assert rec.returncode == 0
    msgs = _read(out)
    regions = [m for t, m in msgs if t.endswith("/regions")]
    status = [m for t, m in msgs if t.endswith("/status")]
    stamps = {f["stamp_ns"] for f in demo_bag.load_annotations(small_bag)["frames"]}
    got = {r.header.stamp.sec * 1_000_000_000 + r.header.stamp.nanosec for r in regions}
    assert got == stamps, "every bag frame described (consume mode drops nothing)"
    last = status[-1]
    assert last.frames_received - before.frames_received == len(stamps)
    assert last.frames_received == (last.frames_processed + last.frames_dropped
                                    + last.frames_rejected)


def test_timed_play_with_rate_and_remap(ros_context, small_bag):
    node = Node("bag_rate_probe")
    got: list[tuple[float, int]] = []
    node.create_subscription(Image, "/probe/image",
                             lambda m: got.append((time.monotonic(), m.height)), 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    try:
        stats = bag_player.play(node, small_bag, remap={"/camera/image": "/probe/image"},
                                topics=["/camera/image"], rate=4.0, wait_subscribers=5)
        end = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        ex.shutdown(timeout_sec=1)
        node.destroy_node()
    assert stats.frames == 4 and stats.published == {"/camera/image": 4}
    assert len(got) == 4
    # 4 frames 0.2 s apart at rate 4: ~0.15 s in all (not as fast as possible, not 0.6 s)
    assert 0.1 <= stats.seconds < 0.6


def test_cli_help_lists_options():
    for cmd in (["play", "--help"], ["record", "--help"]):
        out = subprocess.run([sys.executable, "-m", "rgpt_ros.bag_cli", *cmd],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "default" in out.stdout
    assert rclpy.ok()
