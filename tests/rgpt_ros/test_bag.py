"""Bag tools: a generated bag replayed through the node (its own process) by `bag_cli play`,
the node's outputs recorded by `bag_cli record`, every frame accounted for; recorded bags carry
what rosbag2 itself writes (issue 18, defect 8), checked with an independent mcap reader."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image
from std_msgs.msg import String

from rgpt_ros import bag_player, demo_bag
from rgpt_ros.bag_recorder import BagRecorder
from rgpt_ros.interface_types import make_typestore
from rgpt_ros.rosbag2_writer import ros_distro

from .conftest import SHARED_NS


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "in_sqlite"
    return demo_bag.generate(path, scenes=3, photos=1, storage="sqlite3", height=96, width=128,
                             boxes=0)


def _read(bag):
    with AnyReader([bag], default_typestore=make_typestore()) as reader:
        return [(c.topic, reader.deserialize(raw, c.msgtype))
                for c, _, raw in reader.messages()]


def _metadata(bag: Path) -> dict:
    """metadata.yaml: {"ros_distro": ..., "topics": {name: topic_metadata}}."""
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return {"ros_distro": info["ros_distro"],
            "topics": {t["topic_metadata"]["name"]: t["topic_metadata"]
                       for t in info["topics_with_message_count"]}}


def _mcap(bag: Path) -> tuple[dict, dict, dict]:
    """With the `mcap` package (not rosbags): channel metadata per topic, the rosbag2 metadata
    record's serialized_metadata, and the decoded messages per topic."""
    with open(next(bag.glob("*.mcap")), "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        channels = {c.topic: dict(c.metadata) for c in reader.get_summary().channels.values()}
        records = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        decoded: dict[str, list] = {}
        for _schema, channel, _message, msg in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append(msg)
    return channels, yaml.safe_load(records["rosbag2"]["serialized_metadata"]), decoded


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
    # what rosbag2 writes: distro, the node's publishers' QoS (reliable), type hashes
    meta = _metadata(out)
    assert meta["ros_distro"] == ros_distro() != "rosbags"
    assert set(meta["topics"]) == {f"{SHARED_NS}/regions", f"{SHARED_NS}/status"}
    channels, serialized, decoded = _mcap(out)
    assert serialized["ros_distro"] == ros_distro()
    for name, topic in meta["topics"].items():
        (offered,) = topic["offered_qos_profiles"]  # the node's one publisher
        assert offered["reliability"] == "reliable" and offered["durability"] == "volatile"
        assert topic["type_description_hash"].startswith("RIHS01_")
        assert channels[name]["topic_type_hash"] == topic["type_description_hash"]
        assert yaml.safe_load(channels[name]["offered_qos_profiles"]) == [offered]
    assert {m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
            for m in decoded[f"{SHARED_NS}/regions"]} == stamps


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_keeps_each_publishers_qos_and_play_restores_it(ros_context, tmp_path, storage):
    """Offered QoS as discovered (reliable + transient local + a deadline on one topic, best
    effort on the other), the announced type hash; the player publishes with that QoS."""
    node = Node("bag_qos_probe", namespace="/bagqos")
    kept = QoSProfile(depth=3, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL,
                      deadline=Duration(seconds=1, nanoseconds=500_000_000))
    lossy = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    pubs = {"kept": node.create_publisher(String, "kept", kept),
            "lossy": node.create_publisher(String, "lossy", lossy)}
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    out = tmp_path / "qos_bag"
    try:
        rec = BagRecorder(node, out, [f"{t}:std_msgs/msg/String" for t in pubs],
                          storage=storage, reliable=False)
        assert rec.wait_for_publishers(10) == []
        for k in range(3):
            for pub in pubs.values():
                pub.publish(String(data=f"m{k}"))
        end = time.monotonic() + 10
        while sum(rec.counts.values()) < 6 and time.monotonic() < end:
            time.sleep(0.05)
        counts = rec.close()
    finally:
        ex.shutdown(timeout_sec=1)
        node.destroy_node()
    assert counts == {"/bagqos/kept": 3, "/bagqos/lossy": 3}
    meta = _metadata(out)
    assert meta["ros_distro"] == ros_distro() != "rosbags"
    (q_kept,) = meta["topics"]["/bagqos/kept"]["offered_qos_profiles"]
    (q_lossy,) = meta["topics"]["/bagqos/lossy"]["offered_qos_profiles"]
    assert (q_kept["reliability"], q_kept["durability"]) == ("reliable", "transient_local")
    assert q_kept["deadline"] == {"sec": 1, "nsec": 500_000_000}
    assert q_lossy["reliability"] == "best_effort"
    assert q_lossy["deadline"] == {"sec": 9223372036, "nsec": 854775807}  # infinite, as rmw's
    hash_ = meta["topics"]["/bagqos/kept"]["type_description_hash"]
    assert hash_ == make_typestore().hash_rihs01("std_msgs/msg/String")
    if storage == "mcap":
        channels, serialized, _ = _mcap(out)
        assert channels["/bagqos/kept"]["topic_type_hash"] == hash_
        assert serialized["ros_distro"] == ros_distro()
    else:
        with sqlite3.connect(next(out.glob("*.db3"))) as db:
            assert db.execute("SELECT ros_distro FROM schema").fetchone()[0] == ros_distro()
    with AnyReader([out], default_typestore=make_typestore()) as reader:
        qos = {c.topic: bag_player.publisher_qos(c, None, 10) for c in reader.connections}
        forced = {c.topic: bag_player.publisher_qos(c, True, 10) for c in reader.connections}
    assert qos["/bagqos/kept"].reliability == ReliabilityPolicy.RELIABLE
    assert qos["/bagqos/kept"].durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert qos["/bagqos/lossy"].reliability == ReliabilityPolicy.BEST_EFFORT
    assert forced["/bagqos/lossy"].reliability == ReliabilityPolicy.RELIABLE


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
