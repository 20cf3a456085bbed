"""The worker across streams (round robin, bounded batches, a fast stream cannot starve a slow
one), per-stream accounting, and a batch in which one frame fails (real tiny predictor)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from regiongpt_ros.msg import NodeStatus

from rgpt_ros.frame_worker import LatestFrameWorker
from rgpt_ros.frames import batch_or_each
from rgpt_ros.status import StatusCounters


def _wait(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.005)
    return predicate()


def test_batches_take_one_frame_per_stream_round_robin_and_bounded():
    batches: list = []
    gate = threading.Event()

    def process(batch):
        gate.wait(5)
        batches.append(list(batch))

    w = LatestFrameWorker(process, print, batched=True)
    w.max_batch_frames = 2
    try:
        w.submit_frame("a0", "a")
        assert _wait(lambda: w.busy)  # blocked on ["a0"]
        for s in "abc":
            assert not w.submit_frame(f"{s}1", s)
        assert w.submit_frame("a2", "a")  # supersedes a1 in stream a's slot only
        gate.set()
        assert _wait(lambda: len(batches) == 3)
        # after a: b and c (bounded at 2), then a again
        assert batches == [["a0"], ["b1", "c1"], ["a2"]]
        assert w.dropped == 1
    finally:
        w.stop(5)


def test_a_stream_at_ten_times_the_rate_does_not_starve_another():
    """One frame per batch (the tightest bound): the slow stream is served every time it has a
    frame, however full the fast stream keeps its slot."""
    served = {"fast": 0, "slow": 0}

    def process(batch):
        time.sleep(0.02)  # the model
        for stream, _ in batch:
            served[stream] += 1

    w = LatestFrameWorker(process, print, batched=True)
    w.max_batch_frames = 1
    sent = {"fast": 0, "slow": 0}
    dropped = {"fast": 0, "slow": 0}
    try:
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            for _ in range(10):
                sent["fast"] += 1
                dropped["fast"] += w.submit_frame(("fast", sent["fast"]), "fast")
                time.sleep(0.005)
            sent["slow"] += 1
            dropped["slow"] += w.submit_frame(("slow", sent["slow"]), "slow")
        assert _wait(lambda: w.pending() == 0 and not w.busy)
    finally:
        w.stop(5)
    assert sent["fast"] >= 10 * sent["slow"] - 10
    assert dropped["slow"] == 0 and served["slow"] == sent["slow"], (sent, served, dropped)
    assert served["fast"] > 0 and dropped["fast"] > 0


def test_stop_returns_every_waiting_frame():
    gate = threading.Event()
    w = LatestFrameWorker(lambda batch: gate.wait(5), print, batched=True)
    w.submit_frame("x", "a")
    assert _wait(lambda: w.busy)
    w.submit_frame("y", "b")
    w.submit_frame("z", "c")
    frames, queries = w.stop(0.1)  # the worker is still inside "x"
    gate.set()
    assert sorted(frames) == ["y", "z"] and queries == [] and w.dropped == 2


def test_status_counts_each_stream_and_the_totals():
    c = StatusCounters(streams=["front", "rear"])
    c.add("front", frames_received=3, frames_processed=2)
    c.add("rear", frames_received=2, frames_dropped=1)
    c.error("bad frame", "rear", frames_rejected=1)
    c.add(queries_received=1)
    c.latency(0.5, ["front", "rear"])
    c.latency(0.25, ["front"])
    msg = c.to_msg(NodeStatus(), "active", NodeStatus().header.stamp)
    assert (msg.frames_received, msg.frames_processed, msg.frames_dropped,
            msg.frames_rejected) == (5, 2, 1, 1)
    assert msg.queries_received == 1 and msg.last_error == "bad frame"
    front, rear = msg.streams
    assert (front.name, front.frames_received, front.frames_processed, front.last_error) == \
        ("front", 3, 2, "")
    assert (rear.frames_received, rear.frames_dropped, rear.frames_rejected, rear.last_error) == \
        (2, 1, 1, "bad frame")
    assert front.latency_last == 0.25 and rear.latency_last == 0.5 and msg.latency_last == 0.25
    assert c.frames_received == 5 and c.get("frames_received", "rear") == 2
    with pytest.raises(ValueError, match="per stream"):
        c.add(frames_received=1)
    c.reset()
    assert c.frames_received == 0 and c.stream_names == ["front", "rear"]


@pytest.fixture(scope="module")
def tiny_predictor(tiny_model):
    from rgpt_model.build import load_predictor

    return load_predictor(str(tiny_model), device="cpu")


def test_a_frame_the_model_refuses_fails_alone(tiny_predictor):
    """encode_many of a batch with one unusable frame: that frame gets its error, the others
    their encodings (equal to encoding them on their own)."""
    from rgpt_model.errors import RGPTError

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)
    labels = np.zeros((32, 40), np.uint16)
    labels[4:20, 5:25] = 1
    labels[22:30, 8:30] = 2
    bad = (rgb, np.zeros((10, 10), np.uint16) + 1, [1])  # masks of another size
    items = [(rgb, labels, [1, 2]), bad, (rgb[::-1].copy(), labels, [2])]
    out = batch_or_each(tiny_predictor.encode_many, items)
    assert isinstance(out[1], RGPTError)
    assert out[0].region_ids == [1, 2] and out[2].region_ids == [2]
    alone = tiny_predictor.encode(*items[2])
    assert np.allclose(out[2].region_features.numpy(), alone.region_features.numpy(), atol=1e-5)


def test_batch_or_each_lets_a_stop_request_through(tiny_predictor):
    from rgpt_model.errors import QueryCancelledError

    frame = tiny_predictor.encode(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), np.uint8))
    with pytest.raises(QueryCancelledError):
        batch_or_each(lambda frames: tiny_predictor.describe_many(
            frames, tasks=["caption"], should_stop=lambda: True), [frame, frame])
