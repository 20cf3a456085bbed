"""Cancel and shutdown while the model is busy, on node processes serving the tiny random model
(it never emits EOS, so a goal with max_new_tokens=512 decodes for seconds)."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from rgpt_ros.client import GOAL_ABORTED, GOAL_CANCELED, GOAL_SUCCEEDED, RGPTClient

from .conftest import NodeProcess, log_tail, wait_for

RGB = np.random.default_rng(5).integers(0, 255, (96, 64, 3), dtype=np.uint8)
LABELS = np.zeros((96, 64), np.uint16)
for _k in range(16):
    LABELS[6 * _k: 6 * _k + 5, 4: 12 + 3 * _k] = _k + 1
LONG_GOAL = {"task": "describe", "max_new_tokens": 512}  # 16 regions x 2 tasks x 512 tokens
BAD_LOG_LINES = ("Traceback", "RCLError", "context is invalid", "publisher is invalid")


def _start(tmp_path, ns: str, tiny_model, **params) -> tuple[NodeProcess, RGPTClient]:
    node = NodeProcess(tmp_path / f"{ns.strip('/')}.log", namespace=ns,
                       params={"model_path": str(tiny_model), "status_period": 0.2, **params})
    client = RGPTClient(ns=ns)
    if not client.wait_ready(120):
        node.stop()
        client.close()
        pytest.fail(f"node did not become active:\n{log_tail(node.log)}")
    return node, client


def _frame(client, timeout: float = 30.0) -> bool:
    stamp = client.publish_frame(RGB, LABELS)
    return client.wait_regions(stamp, timeout) is not None


def _start_long_goal(client):
    """(goal handle, result future): the client waits for the result from the start, as
    action clients do."""
    feedback: list = []
    handle = client.send_goal("", feedback=feedback, **LONG_GOAL)
    assert handle is not None and handle.accepted
    result = handle.get_result_async()
    assert wait_for(lambda: any(f.stage == "generating" for f in feedback), 30)
    time.sleep(0.3)  # decoding is under way
    return handle, result


def _clean_exit(node: NodeProcess) -> None:
    rc = node.proc.wait(30)
    text = node.log.read_text()
    assert rc == 0, f"exit code {rc}:\n{log_tail(node.log)}"
    assert not [w for w in BAD_LOG_LINES if w in text], log_tail(node.log, 80)


@pytest.fixture(scope="module")
def tiny_node(ros_context, tiny_model, tmp_path_factory):
    node, client = _start(tmp_path_factory.mktemp("cancel"), "/rgpt_cancel", tiny_model,
                          tasks=["none"])
    yield node, client
    client.close()
    assert node.stop() == 0, log_tail(node.log)


def test_cancel_stops_the_running_decode(tiny_node):
    _, client = tiny_node
    assert _frame(client)
    t0 = time.monotonic()
    status, _ = client.refer_action("", timeout=120, **LONG_GOAL)
    full = time.monotonic() - t0
    assert status == GOAL_SUCCEEDED and full > 1.0, f"the uncanceled decode took only {full:.2f} s"
    handle, result_future = _start_long_goal(client)
    t0 = time.monotonic()
    handle.cancel_goal_async()
    assert wait_for(result_future.done, 60, 0.01)
    took = time.monotonic() - t0
    status, result = result_future.result().status, result_future.result().result
    assert status == GOAL_CANCELED and result.error == "canceled"
    assert took < full / 3, f"cancel took {took:.2f} s of a {full:.2f} s decode"
    t0 = time.monotonic()
    assert _frame(client, full)
    assert time.monotonic() - t0 < full / 3


def test_sigint_during_a_goal_ends_it_with_a_result(ros_context, tiny_model, tmp_path):
    node, client = _start(tmp_path, "/rgpt_sigint_goal", tiny_model, tasks=["none"])
    try:
        assert _frame(client)
        _, result_future = _start_long_goal(client)
        node.proc.send_signal(signal.SIGINT)
        assert wait_for(result_future.done, 30), "the client never got a result"
        status, result = result_future.result().status, result_future.result().result
        assert status == GOAL_ABORTED and "shutting down" in result.error, result.error
        _clean_exit(node)
    finally:
        client.close()
        node.stop()


def test_sigint_during_frame_processing_exits_cleanly(ros_context, tiny_model, tmp_path):
    node, client = _start(tmp_path, "/rgpt_sigint_frame", tiny_model, tasks=["caption"],
                          max_new_tokens=512)
    try:
        client.publish_frame(RGB, LABELS)
        assert client.wait_status(lambda s: s.frames_received == 1 and s.frames_processed == 0,
                                  30), client.status
        time.sleep(0.3)
        node.proc.send_signal(signal.SIGINT)
        _clean_exit(node)
    finally:
        client.close()
        node.stop()
