"""Bounds that keep the node serving: query length, query bursts, inputs without a partner."""

from __future__ import annotations

import time

from rclpy.qos import QoSProfile, ReliabilityPolicy
from regiongpt_ros.msg import ReferQuery

from rgpt_ros import conversions as conv
from rgpt_ros.client import GOAL_ABORTED, make_header

from .conftest import SHARED_NS, scene, wait_for

SC = scene(40)
MEGABYTE = "the red circle " * 70_000  # ~1 MB


def _served(client, timeout: float = 10.0) -> float | None:
    """Seconds until a fresh frame is described (None: not within ``timeout``)."""
    t0 = time.monotonic()
    stamp = client.publish_frame(SC.image, SC.labels)
    return time.monotonic() - t0 if client.wait_regions(stamp, timeout) else None


def test_a_megabyte_expression_is_refused_at_once(shared_node):
    _, client = shared_node
    assert _served(client, 30) is not None
    t0 = time.monotonic()
    res = client.refer_topic(MEGABYTE, "huge", timeout=30)
    assert res is not None and not res.success, res
    assert "max_query_chars" in res.error and time.monotonic() - t0 < 10
    assert _served(client) is not None, "the next frame was not served right away"
    t0 = time.monotonic()
    status, result = client.refer_action(MEGABYTE, query_id="huge-goal", timeout=30)
    assert status == GOAL_ABORTED and "max_query_chars" in result.error
    assert time.monotonic() - t0 < 10
    assert _served(client) is not None


def test_query_bounds_are_node_parameters(shared_node):
    _, client = shared_node
    assert _served(client, 30) is not None
    assert all(r.successful for r in client.set_parameters({"max_query_chars": 64}))
    try:
        res = client.refer_topic("the red circle " * 6, "chars", timeout=30)  # 90 characters
        assert res is not None and not res.success and "max_query_chars" in res.error
        assert client.refer_topic("the red circle", "short", timeout=30).success
    finally:
        assert all(r.successful for r in client.set_parameters({"max_query_chars": 1000}))
    assert all(r.successful for r in client.set_parameters({"max_query_tokens": 4}))
    try:
        status, result = client.refer_action("the big red circle left of the square")
        assert status == GOAL_ABORTED and "max_query_tokens" in result.error
    finally:
        assert all(r.successful for r in client.set_parameters({"max_query_tokens": 256}))


def _restart_with(client, **params) -> None:
    assert client.change_state("deactivate")
    assert all(r.successful for r in client.set_parameters(params))
    assert client.change_state("activate") and client.wait_ready(30)


def test_a_burst_of_twice_the_bound_is_answered_or_refused(shared_node):
    """Every query the node receives gets a result (answer or refusal) and the counters agree;
    the subscription's history holds at least the pending-query bound."""
    _, client = shared_node
    bound = 12
    _restart_with(client, max_pending_queries=bound)
    pub = client.node.create_publisher(
        ReferQuery, "refer_query", QoSProfile(depth=4 * bound,
                                              reliability=ReliabilityPolicy.RELIABLE))
    try:
        assert wait_for(lambda: pub.get_subscription_count() > 0, 10)
        assert _served(client, 30) is not None
        ids = [f"burst{k}" for k in range(2 * bound)]
        for qid in ids:
            pub.publish(ReferQuery(query_id=qid, expression="the blue square"))

        def settled():
            st, got = client.status, {q: client.results[q] for q in ids if q in client.results}
            done = st is not None and 0 < st.queries_received == len(got) == \
                st.queries_answered + st.queries_failed
            return (st, got) if done else None

        assert wait_for(settled, 60), (client.status, len(client.results))
        time.sleep(1.0)  # nothing more arrives later
        final = settled()
        assert final is not None, "results or counters changed after they had settled"
        st, got = final
        print(f"burst: {len(got)} of {len(ids)} received, {st.queries_failed} refused")
        assert len(got) >= bound, f"only {len(got)} of {2 * bound} queries reached the node"
        for res in got.values():
            assert res.success or "max_pending_queries" in res.error, res.error
        assert sum(not r.success for r in got.values()) == st.queries_failed
    finally:
        client.node.destroy_publisher(pub)
        _restart_with(client, max_pending_queries=8)


def test_images_without_masks_are_counted_and_reported(shared_node):
    proc, client = shared_node
    assert all(r.successful for r in client.set_parameters({"unmatched_warn_after": 1.0}))
    try:
        before = client.wait_status(lambda s: True, 5)
        t0 = time.time_ns()
        end = time.monotonic() + 3.0
        k = 0
        while time.monotonic() < end:  # a camera whose segmenter is down
            client.image_pub.publish(conv.rgb_to_image_msg(SC.image, make_header(t0 + k)))
            k += 1
            time.sleep(0.1)
        st = client.wait_status(lambda s: s.images_unmatched >= before.images_unmatched + 5, 10)
        assert st is not None, client.status
        assert st.masks_unmatched == before.masks_unmatched
        warned = wait_for(lambda: [line for line in proc.log.read_text().splitlines()
                                   if f"{SHARED_NS}/image:" in line
                                   and "without a partner" in line], 10)
        assert warned and f"{SHARED_NS}/masks" in warned[-1], warned
        assert f"{t0 / 1e9:.3f}" in warned[-1]  # the first stamp seen
    finally:
        assert all(r.successful for r in client.set_parameters({"unmatched_warn_after": 5.0}))
    assert _served(client, 30) is not None  # a matched pair still goes through
