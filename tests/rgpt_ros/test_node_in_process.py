"""The node in this process (real rclpy node, real DDS to an in-process client), so the test can
watch where the model and SAM run: SAM only on the worker and only for frames the worker takes,
one encoding per frame for its description and its queries, named regions not classified."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regiongpt_ros.msg import RegionPrompt, RegionPromptArray
from sensor_msgs.msg import RegionOfInterest

from rgpt_ros import conversions as conv
from rgpt_ros.client import RGPTClient, make_header
from rgpt_ros.node import RGPTNode

from .conftest import wait_for

NS = "/rgpt_inproc"
RGB = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)


@dataclass
class Calls:
    """What the spies saw: (thread name, detail) per call."""

    sam: list = field(default_factory=list)
    encode: list = field(default_factory=list)  # one entry per frame encoded
    decode_rows: list = field(default_factory=list)  # rows of each decoding batch


def _spy(obj, name: str, log: list, detail=lambda *a, **k: None) -> None:
    """Wrap a bound method of ``obj`` so each call is logged with its thread (still runs)."""
    real = getattr(obj, name)

    def wrapper(*args, **kwargs):
        log.append((threading.current_thread().name, detail(*args, **kwargs)))
        return real(*args, **kwargs)

    setattr(obj, name, wrapper)


@pytest.fixture(scope="module")
def inproc(ros_context, tiny_model):
    from rgpt_model.sam import SamPrompter
    from tests.tiny_sam import make_tiny_sam

    params = {"model_path": str(tiny_model), "region_source": "prompts", "max_new_tokens": 24,
              "tasks": ["classify", "caption"], "status_period": 0.2}
    node = RGPTNode(namespace=NS, parameter_overrides=[Parameter(k, value=v)
                                                       for k, v in params.items()])
    executor = MultiThreadedExecutor(num_threads=6)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    client = None
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        node.sam = SamPrompter(make_tiny_sam(), use_onnx=False)
        calls = Calls()
        _spy(node.sam, "predict", calls.sam)
        _spy(node.predictor, "encode", calls.encode)
        _spy(node.predictor, "encode_many", calls.encode)  # the node's batches (one frame here)
        _spy(node.predictor, "generate_from_embeds", calls.decode_rows,
             lambda embeds, *a, **kw: int(embeds.shape[0]))
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        client = RGPTClient(ns=NS)
        pub = client.node.create_publisher(
            RegionPromptArray, "prompts",
            QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        assert client.wait_ready(60, masks=False)
        assert wait_for(lambda: pub.get_subscription_count() > 0, 20)
        yield node, client, pub, calls
    finally:
        if client is not None:
            client.close()
        node.trigger_shutdown()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()


def _box(pid: int, x: int, y: int, label: str = "") -> RegionPrompt:
    return RegionPrompt(id=pid, label=label,
                        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=20, height=16))


def _publish(client, pub, prompts: list[RegionPrompt], stamp: int | None = None) -> int:
    stamp = stamp or time.time_ns()
    header = make_header(stamp, "cam")
    pub.publish(RegionPromptArray(header=header, prompts=prompts))
    client.image_pub.publish(conv.rgb_to_image_msg(RGB, header))
    return stamp


def _settled(node):
    """Counters once every received frame is accounted for and nothing changed for 1 s."""
    last = None
    end = time.monotonic() + 60
    while time.monotonic() < end:
        c = node.counters
        now = (c.frames_received, c.frames_processed, c.frames_dropped, c.frames_rejected)
        if now == last and now[0] == sum(now[1:]) and not node._worker.busy:
            return now
        last = now
        time.sleep(1.0)
    raise AssertionError(f"frames never settled: {last}")


def test_sam_runs_on_the_worker_only_for_frames_it_processes(inproc):
    node, client, pub, calls = inproc
    before = _settled(node)
    sam_before = len(calls.sam)
    for k in range(15):  # faster than the worker: newest wins, most are dropped
        _publish(client, pub, [_box(1, 2, 2), _box(2, 30 + k % 3, 20)])
        time.sleep(0.01)
    received, processed, dropped, rejected = (a - b for a, b in zip(_settled(node), before,
                                                                    strict=True))
    sam = calls.sam[sam_before:]
    assert received > 0 and dropped > 0 and rejected == 0, (received, processed, dropped)
    assert len(sam) == processed, f"SAM ran {len(sam)} times for {processed} processed frames"
    assert {thread for thread, _ in sam} == {"rgpt_worker"}


def test_one_encoding_serves_a_frame_and_its_queries(inproc):
    node, client, pub, calls = inproc
    _settled(node)
    start = len(calls.encode)
    stamp = _publish(client, pub, [_box(1, 2, 2), _box(2, 30, 20), _box(5, 10, 25)])
    assert client.wait_regions(stamp, 30) is not None
    for k in range(3):
        res = client.refer_topic("the red circle", f"enc{k}", timeout=30)
        assert res is not None and res.success, res
    assert len(calls.encode) - start == 1
    assert {thread for thread, _ in calls.encode[start:]} == {"rgpt_worker"}


def test_regions_named_by_the_detector_are_not_classified(inproc):
    node, client, pub, calls = inproc
    _settled(node)
    start = len(calls.decode_rows)
    stamp = _publish(client, pub, [_box(3, 2, 2, "mug"), _box(4, 30, 20)])
    msg = client.wait_regions(stamp, 30)
    assert msg is not None
    got = {r.id: (r.label, r.label_score, bool(r.caption)) for r in msg.regions}
    assert got[3] == ("mug", 1.0, True) and got[4][0] != "mug"
    # one decoding batch: a caption for both regions, a classification for region 4 only
    assert [rows for _, rows in calls.decode_rows[start:]] == [3]
