"""Node in its own process, this process as the client over real DDS: frames, queries, action."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regiongpt_ros.msg import LabelMap

from rgpt_ros import conversions as conv
from rgpt_ros.client import GOAL_ABORTED, GOAL_CANCELED, GOAL_SUCCEEDED, make_header

from .conftest import REFERRING_BAR, SHARED_PARAMS, scene


def _publish_and_wait(client, sc, **kw):
    stamp = client.publish_frame(sc.image, sc.labels, **kw)
    msg = client.wait_regions(stamp, 60)
    assert msg is not None, "no descriptions for the frame"
    return stamp, msg


def test_query_before_any_frame_gets_an_error_result(shared_node):
    _, client = shared_node
    # Other modules may have fed the shared node already: a deactivate/activate cycle forgets
    # the latest frame (and resets the counters).
    assert client.change_state("deactivate") and client.change_state("activate")
    assert client.wait_ready(30)
    res = client.refer_topic("the red circle", "early")
    assert res is not None and not res.success
    assert "no frame" in res.error and res.query_id == "early"
    status, result = client.refer_action("the red circle", query_id="early-action")
    assert status == GOAL_ABORTED and not result.success and "no frame" in result.error


def test_descriptions_copy_the_header_and_match_the_masks(shared_node):
    _, client = shared_node
    sc = scene(0)
    stamp, msg = _publish_and_wait(client, sc, frame_id="cam_front")
    assert conv.stamp_to_ns(msg.header.stamp) == stamp and msg.header.frame_id == "cam_front"
    expected = sorted(r.id for r in sc.regions)[: SHARED_PARAMS["max_regions"]]
    assert [r.id for r in msg.regions] == expected
    for r in msg.regions:
        truth = sc.region(r.id)
        assert (r.bbox.x_offset, r.bbox.y_offset, r.bbox.width, r.bbox.height) == truth.bbox
        assert r.area == truth.area and r.label and 0.0 <= r.label_score <= 1.0
    assert list(msg.tasks) == ["classify", "caption"] and msg.inference_time > 0


def test_refer_via_topic_returns_ids_of_the_frame(shared_node):
    _, client = shared_node
    sc = scene(1)
    stamp, msg = _publish_and_wait(client, sc)
    expr = sc.expressions[0].text
    res = client.refer_topic(expr, "t1")
    assert res is not None and res.success, res
    assert res.query_id == "t1" and res.expression == expr
    assert conv.stamp_to_ns(res.header.stamp) == stamp
    assert set(res.matched_ids) <= {r.id for r in msg.regions}
    assert len(res.scores) == len(res.matched_ids) and res.raw_answer


def test_refer_via_action_with_feedback(shared_node):
    _, client = shared_node
    sc = scene(2)
    stamp, msg = _publish_and_wait(client, sc)
    feedback: list = []
    status, result = client.refer_action(sc.expressions[0].text, query_id="a1",
                                         feedback=feedback)
    assert status == GOAL_SUCCEEDED and result.success and result.query_id == "a1"
    assert conv.stamp_to_ns(result.header.stamp) == stamp
    assert set(result.matched_ids) <= {r.id for r in msg.regions} and result.answer
    stages = [f.stage for f in feedback]
    assert "done" in stages, stages


def test_action_on_its_own_image_and_masks(shared_node):
    _, client = shared_node
    sc = scene(3)
    header = make_header(123_000_000_456, "goal_cam")
    img = conv.rgb_to_image_msg(sc.image, header, "bgr8")
    masks = conv.labels_to_image_msg(sc.labels, header, "32SC1")
    status, result = client.refer_action("the blue square", image=img, masks=masks)
    assert status == GOAL_SUCCEEDED, result.error
    assert result.header.frame_id == "goal_cam" and result.header.stamp.sec == 123
    assert set(result.matched_ids) <= {r.id for r in sc.regions}
    status, result = client.refer_action("", task="describe", image=img, masks=masks,
                                         max_new_tokens=2)
    assert status == GOAL_SUCCEEDED, result.error
    assert sorted(r.id for r in result.regions) == sorted(r.id for r in sc.regions)[:8]


def test_action_with_unknown_region_ids_fails_with_reason(shared_node):
    _, client = shared_node
    status, result = client.refer_action("the red circle", region_ids=[999])
    assert status == GOAL_ABORTED and "999" in result.error


def test_cancel_a_goal(shared_node):
    _, client = shared_node
    sc = scene(4, 192, 256)
    client.publish_frame(sc.image, sc.labels)  # keeps the worker busy for a while
    handle = client.send_goal("the green triangle", query_id="c1")
    assert handle is not None and handle.accepted
    fut = handle.cancel_goal_async()
    end = time.monotonic() + 10
    while not fut.done() and time.monotonic() < end:
        time.sleep(0.01)
    status, result = client.goal_result(handle, 30)
    assert status == GOAL_CANCELED and not result.success and result.error == "canceled"


def test_debug_image_has_the_frame_header_and_size(shared_node):
    _, client = shared_node
    sc = scene(5)
    stamp, _ = _publish_and_wait(client, sc)
    got = client._wait(lambda: next((m for m in client.debug_images
                                     if conv.stamp_to_ns(m.header.stamp) == stamp), None), 10)
    assert got is not None and (got.width, got.height) == (128, 96) and got.encoding == "rgb8"
    rgb = conv.image_to_rgb(got)
    assert (rgb != sc.image).any()  # outlines were drawn


def test_label_map_seeds_labels(shared_node):
    _, client = shared_node
    pub = client.node.create_publisher(
        LabelMap, "label_map", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    end = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    sc = scene(6)
    first = sc.regions[0].id
    pub.publish(LabelMap(ids=[first, 4242], labels=["widget", "ghost"]))  # 4242: no pixels
    time.sleep(0.5)
    _, msg = _publish_and_wait(client, sc)
    labels = {r.id: (r.label, r.label_score) for r in msg.regions}
    assert labels[first] == ("widget", 1.0) and 4242 not in labels
    pub.publish(LabelMap())  # back to no label map
    time.sleep(0.3)
    client.node.destroy_publisher(pub)


@pytest.fixture()
def long_answers(shared_node):
    """Room for a full "Region [n]" answer while the test runs."""
    _, client = shared_node
    assert client.set_parameters({"max_new_tokens": 16})[0].successful
    yield
    assert client.set_parameters({"max_new_tokens": SHARED_PARAMS["max_new_tokens"]})[0].successful


def test_node_answers_equal_the_library_answers(shared_node, long_answers):
    """Whatever model is installed, the node returns exactly what RGPTPredictor returns."""
    from rgpt_model.demo import default_model_path
    from rgpt_model.predictor import RGPTPredictor

    _, client = shared_node
    predictor = RGPTPredictor.from_pretrained(default_model_path())
    for index in (10, 11):
        sc = scene(index, 128, 128)
        _, msg = _publish_and_wait(client, sc)
        ids = [r.id for r in msg.regions]
        for k, expr in enumerate(sc.expressions[:2]):
            res = client.refer_topic(expr.text, f"lib{index}-{k}")
            want = predictor.refer(sc.image, sc.labels, expr.text, region_ids=ids,
                                   max_new_tokens=16)
            assert res is not None and res.success
            assert list(res.matched_ids) == want.matched_ids and res.raw_answer == want.raw_answer


def test_referring_answers_are_correct_on_synthetic_scenes(shared_node, long_answers):
    """A seeded sample of each scene's expressions (attribute, relation, superlative and
    absent ones; targets anywhere in the scene) is answered right well above chance."""
    _, client = shared_node
    rng = np.random.default_rng(0)
    right, kinds = 0, []
    for index in range(10, 16):
        sc = scene(index, 128, 128, split="val")
        _publish_and_wait(client, sc)
        for k in rng.choice(len(sc.expressions), 4, replace=False):
            expr = sc.expressions[int(k)]
            res = client.refer_topic(expr.text, f"acc{index}-{k}")
            assert res is not None and res.success
            right += sorted(res.matched_ids) == sorted(expr.target_ids)
            kinds.append(expr.kind)
    assert len(set(kinds)) >= 3, kinds
    assert right / len(kinds) >= REFERRING_BAR, f"{right}/{len(kinds)} referring answers correct"


def test_node_sets_its_own_torch_thread_count(shared_node):
    """Default num_threads 0: one core left to the executor and DDS, and the log says so."""
    from rgpt_model.threads import default_num_threads

    proc, _ = shared_node
    assert f"torch intra-op threads: {default_num_threads()}" in proc.log.read_text()


def test_explicit_region_ids_are_bounded_by_max_regions(shared_node):
    _, client = shared_node
    sc = scene(7)
    _publish_and_wait(client, sc)
    ids = list(range(1, SHARED_PARAMS["max_regions"] + 2))
    status, result = client.refer_action("the red circle", region_ids=ids, query_id="many")
    assert status == GOAL_ABORTED and not result.success
    assert "max_regions" in result.error and str(len(ids)) in result.error


def test_every_frame_is_accounted_for(shared_node):
    _, client = shared_node
    st = client.wait_status(lambda s: s.frames_received > 0 and s.frames_received ==
                            s.frames_processed + s.frames_dropped + s.frames_rejected, 30)
    assert st is not None, client.status
    assert st.queries_received >= st.queries_answered + 1
