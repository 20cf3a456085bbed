"""Pure-Python parts of rgpt_ros: conversions, debug image, worker."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image

from rgpt_ros import conversions as conv
from rgpt_ros import debug_image
from rgpt_ros.frame_worker import LatestFrameWorker

RGB = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", list(conv.IMAGE_ENCODINGS))
def test_image_round_trip_every_encoding(encoding):
    back = conv.image_to_rgb(conv.rgb_to_image_msg(RGB, encoding=encoding))
    if encoding == "mono8":
        assert back.shape == RGB.shape and (back[..., 0] == back[..., 1]).all()
    else:
        assert np.array_equal(back, RGB)


def test_padded_rows_are_respected():
    msg = conv.rgb_to_image_msg(RGB)
    padded = np.zeros((5, 7 * 3 + 11), np.uint8)
    padded[:, :21] = RGB.reshape(5, 21)
    msg.step, msg.data = 32, padded.tobytes()
    assert np.array_equal(conv.image_to_rgb(msg), RGB)


@pytest.mark.parametrize("encoding", list(conv.MASK_ENCODINGS))
def test_label_round_trip_every_encoding(encoding):
    labels = np.arange(35, dtype=np.int64).reshape(5, 7) % 9
    back = conv.labels_from_msg(conv.labels_to_image_msg(labels, encoding=encoding))
    assert np.array_equal(back, labels)


def test_big_endian_mono16():
    labels = np.array([[1, 300], [0, 2]], np.uint16)
    msg = Image(height=2, width=2, encoding="mono16", is_bigendian=1, step=4)
    msg.data = labels.astype(">u2").tobytes()
    assert np.array_equal(conv.labels_from_msg(msg), labels)


def test_huge_image_rejected_before_reading_data():
    msg = Image(height=10000, width=10000, encoding="rgb8", step=30000)
    with pytest.raises(conv.ConversionError, match="limit"):
        conv.image_to_rgb(msg)
    conv.image_to_rgb(conv.rgb_to_image_msg(RGB), conv.SizeLimit(7, 5))  # at the limit: fine


def test_truncated_and_short_step():
    msg = conv.rgb_to_image_msg(RGB)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(conv.ConversionError, match="truncated"):
        conv.image_to_rgb(msg)
    msg = conv.rgb_to_image_msg(RGB)
    msg.step = 20
    with pytest.raises(conv.ConversionError, match="step"):
        conv.image_to_rgb(msg)


def test_compressed_png_round_trip_and_garbage():
    assert np.array_equal(conv.compressed_to_rgb(conv.rgb_to_compressed_msg(RGB)), RGB)
    bad = conv.rgb_to_compressed_msg(RGB)
    bad.data = b"not an image"
    with pytest.raises(conv.ConversionError, match="decode"):
        conv.compressed_to_rgb(bad)


def test_mask_resize_nearest_and_aspect_check():
    small = np.array([[1, 2], [3, 0]], np.uint16)
    big = conv.match_mask_size(small, 4, 4)
    assert np.array_equal(big, np.kron(small, np.ones((2, 2), np.uint16)))
    with pytest.raises(conv.ConversionError, match="aspect"):
        conv.match_mask_size(small, 4, 8)


def test_debug_image_draws_outlines_only_on_regions():
    labels = np.zeros((20, 20), np.uint16)
    labels[5:15, 5:15] = 3
    out = debug_image.draw(np.zeros((20, 20, 3), np.uint8), labels, [(3, (5, 5, 10, 10), "box")])
    assert out.shape == (20, 20, 3) and out[5, 10].any() and not out[10, 10].any()


def test_worker_newest_frame_wins_and_queries_first():
    seen: list = []
    gate = threading.Event()

    def process(frame):
        gate.wait(5)
        seen.append(frame)

    w = LatestFrameWorker(process, lambda e: seen.append(e), max_queries=2)
    try:
        assert not w.submit_frame(1)
        time.sleep(0.1)  # the worker is now blocked on frame 1
        assert not w.submit_frame(2)
        assert w.submit_frame(3)  # supersedes 2
        assert w.submit_query(lambda: seen.append("q1")) and w.submit_query(lambda: None)
        assert not w.submit_query(lambda: None)  # bounded
        gate.set()
        end = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < end:
            time.sleep(0.01)
        assert seen == [1, "q1", 3] and w.dropped == 1
    finally:
        w.stop(5)


def test_worker_rate_limit_drops_in_between():
    seen: list = []
    w = LatestFrameWorker(seen.append, print)
    w.min_period_s = 0.3
    try:
        w.submit_frame("a")
        time.sleep(0.05)
        w.submit_frame("b")
        assert w.submit_frame("c")  # b waits for the rate limit and is superseded
        time.sleep(0.5)
        assert seen == ["a", "c"]
    finally:
        w.stop(5)
