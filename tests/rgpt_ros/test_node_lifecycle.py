"""Lifecycle, runtime parameters, QoS, namespace/remapping and a bad model path, each node in its
own process driven over real DDS (lifecycle services, parameter services)."""

from __future__ import annotations

import time

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from rgpt_ros.client import RGPTClient

from .conftest import NodeProcess, log_tail, scene

NS = "/lc"
SC = scene(30)


@pytest.fixture(scope="module")
def nodes(ros_context, tmp_path_factory):
    """(managed node + client, bad-model node + client), both started at once."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    managed = NodeProcess(tmp / "managed.log", namespace=NS,
                          remap={"image": "camera/image_raw"},
                          params={"autostart": False, "status_period": 0.2,
                                  "tasks": ["classify"], "max_new_tokens": 2})
    bad = NodeProcess(tmp / "bad.log", namespace="/badmodel",
                      params={"model_path": "/nonexistent/rgpt_model_dir"})
    c_managed = RGPTClient(ns=NS, image_topic="camera/image_raw")
    c_bad = RGPTClient(ns="/badmodel")
    yield (managed, c_managed), (bad, c_bad)
    for client in (c_managed, c_bad):
        client.close()
    # stop both before asserting: a failed assert must not leave the other node running
    codes = {proc: proc.stop() for proc in (managed, bad)}
    for proc, rc in codes.items():
        assert rc == 0, f"node exited with {rc}:\n{log_tail(proc.log)}"


def _served(client, timeout: float = 30.0) -> bool:
    stamp = client.publish_frame(SC.image, SC.labels)
    return client.wait_regions(stamp, timeout) is not None


def _wait_unmatched(client, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if client.image_pub.get_subscription_count() == 0:
            return True
        time.sleep(0.05)
    return False


def test_bad_model_path_leaves_the_node_unconfigured(nodes):
    _, (bad, client) = nodes
    assert client.get_state(timeout=90) == "unconfigured"
    end = time.monotonic() + 30
    while "configure failed" not in bad.log.read_text() and time.monotonic() < end:
        time.sleep(0.2)
    text = bad.log.read_text()
    assert "configure failed" in text and "/nonexistent/rgpt_model_dir" in text
    assert bad.alive()
    # Fix the parameter (allowed while unconfigured) and configure: the node recovers.
    assert all(r.successful for r in client.set_parameters({"model_path": ""}))
    assert client.change_state("configure") and client.get_state() == "inactive"


def test_autostart_false_waits_for_a_lifecycle_manager(nodes):
    (managed, client), _ = nodes
    assert client.get_state(timeout=90) == "unconfigured"
    assert client.change_state("configure") and client.get_state() == "inactive"
    assert client.image_pub.get_subscription_count() == 0  # no inputs before activate
    assert client.change_state("activate") and client.wait_ready(30)
    assert _served(client), log_tail(managed.log)


def test_runtime_parameter_policy(nodes):
    (_, client), _ = nodes
    res = client.set_parameters({"input_depth": 3})[0]
    assert not res.successful and "deactivate" in res.reason
    res = client.set_parameters({"model_path": "/tmp/other"})[0]
    assert not res.successful and "deactivate and cleanup" in res.reason
    res = client.set_parameters({"autostart": True})[0]  # started with autostart false
    assert not res.successful and "startup" in res.reason
    res = client.set_parameters({"max_regions": 2000})[0]  # out of the declared range
    assert not res.successful
    res = client.set_parameters({"tasks": ["sing"]})[0]
    assert not res.successful and "sing" in res.reason
    assert client.set_parameters({"max_regions": 2})[0].successful
    stamp = client.publish_frame(SC.image, SC.labels)
    msg = client.wait_regions(stamp, 30)
    assert msg is not None and len(msg.regions) == 2  # took effect on the next frame
    assert client.set_parameters({"max_regions": 32})[0].successful


def test_setting_every_parameter_to_its_current_value_succeeds(nodes):
    """Loading the node's own parameter dump while it is active (it failed 15 of them)."""
    from rgpt_ros.parameters import PARAMS

    (_, client), _ = nodes
    assert client.get_state() == "active"
    current = client.get_parameters([spec.name for spec in PARAMS])
    results = client.set_parameters(current)
    failed = {name: r.reason for name, r in zip(current, results, strict=True)
              if not r.successful}
    assert failed == {}


def test_deactivate_activate_cycles(nodes):
    (managed, client), _ = nodes
    for _ in range(2):
        assert client.change_state("deactivate") and client.get_state() == "inactive"
        assert _wait_unmatched(client), "subscriptions still exist after deactivate"
        assert client.set_parameters({"input_depth": 2})[0].successful  # allowed when inactive
        assert client.change_state("activate") and client.wait_ready(30)
        assert _served(client), log_tail(managed.log)
    st = client.wait_status(lambda s: s.frames_received > 0 and s.frames_received ==
                            s.frames_processed + s.frames_dropped + s.frames_rejected, 10)
    assert st is not None and st.state == "active"


def test_qos_default_takes_best_effort_and_reliable_cameras(nodes):
    (_, client), _ = nodes
    assert client.image_pub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert _served(client)  # the client's camera publisher is best-effort
    reliable = RGPTClient(ns=NS, image_topic="camera/image_raw", reliable_inputs=True)
    try:
        assert reliable.wait_ready(30) and _served(reliable)
    finally:
        reliable.close()


def test_reliable_subscription_does_not_match_a_best_effort_camera(nodes):
    (_, client), _ = nodes
    assert client.change_state("deactivate")
    assert client.set_parameters({"input_reliability": "reliable"})[0].successful
    assert client.change_state("activate")
    probe = client.node.create_publisher(
        Image, "masks", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    end = time.monotonic() + 10
    while probe.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    assert probe.get_subscription_count() == 1  # the node's masks subscription is up
    assert client.mask_pub.get_subscription_count() == 0  # best-effort camera: incompatible
    client.node.destroy_publisher(probe)
    assert client.change_state("deactivate")
    assert client.set_parameters({"input_reliability": "best_effort"})[0].successful
    assert client.change_state("activate") and client.wait_ready(30)


def test_cleanup_and_configure_again(nodes):
    (managed, client), _ = nodes
    assert client.change_state("deactivate") and client.change_state("cleanup")
    assert client.get_state() == "unconfigured"
    assert client.change_state("configure") and client.change_state("activate")
    assert client.wait_ready(30) and _served(client), log_tail(managed.log)


def test_compressed_input_by_parameter(nodes):
    (_, client), _ = nodes
    from sensor_msgs.msg import CompressedImage

    from rgpt_ros import conversions as conv
    from rgpt_ros.client import make_header

    assert client.change_state("deactivate")
    assert client.set_parameters({"compressed_input": True})[0].successful
    assert client.change_state("activate")
    pub = client.node.create_publisher(
        CompressedImage, "image/compressed",
        QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        end = time.monotonic() + 10
        while (pub.get_subscription_count() == 0 or client.mask_pub.get_subscription_count() == 0
               ) and time.monotonic() < end:
            time.sleep(0.05)
        # a match seen by the publisher can precede the subscriber's side (a loaded CI machine
        # lost the one frame sent at that moment): send a fresh frame until one is served
        end, msg = time.monotonic() + 30, None
        while msg is None and time.monotonic() < end:
            stamp = time.time_ns()
            header = make_header(stamp)
            client.mask_pub.publish(conv.labels_to_image_msg(SC.labels, header))
            pub.publish(conv.rgb_to_compressed_msg(SC.image, header, "png"))
            msg = client.wait_regions(stamp, 5)
        assert msg is not None and {r.id for r in msg.regions} == {r.id for r in SC.regions}
    finally:
        client.node.destroy_publisher(pub)
        assert client.change_state("deactivate")
        assert client.set_parameters({"compressed_input": False})[0].successful
        assert client.change_state("activate")
