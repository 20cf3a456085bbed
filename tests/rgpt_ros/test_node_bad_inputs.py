"""Bad inputs are rejected with a clear reason (never a crash), and the next good frame is served.

Most cases run with tasks=['none'] (set at run time, which also checks that live parameter
changes take effect), so the good frame after each bad one costs no model time.
"""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from rgpt_ros import conversions as conv
from rgpt_ros.client import make_header

from .conftest import scene

# Every encoding of sensor_msgs/image_encodings.hpp that the node does not take as an image.
ROS_ENCODINGS = (
    ["rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16", "bgra16", "mono8", "mono16"]
    + [f"{b}{t}C{c}" for b in (8, 16, 32, 64) for t in "US F" if t != " "
       for c in (1, 2, 3, 4) if not (b == 64 and t != "F") and not (b == 32 and t == "U")
       and not (b == 8 and t == "F") and not (b == 16 and t == "F")]
    + [f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)]
    + ["yuv422", "UYVY", "YUYV", "yuv422_yuy2", "nv21", "nv24", "jpeg", ""]
)
BAD_IMAGE_ENCODINGS = [e for e in ROS_ENCODINGS if e not in conv.IMAGE_ENCODINGS]
BAD_MASK_ENCODINGS = [e for e in ROS_ENCODINGS if e not in conv.MASK_ENCODINGS]
SC = scene(20)


def raw(width: int, height: int, encoding: str, step: int | None = None,
        nbytes: int | None = None) -> Image:
    """An Image with arbitrary header fields (data zero-filled to ``nbytes``)."""
    msg = Image(width=width, height=height, encoding=encoding)
    msg.step = step if step is not None else width * 3
    msg.data = bytes(nbytes if nbytes is not None else msg.step * height)
    return msg


@pytest.fixture(scope="module")
def node(shared_node):
    proc, client = shared_node
    results = client.set_parameters({"tasks": ["none"]})
    assert all(r.successful for r in results)
    yield proc, client
    assert all(r.successful for r in client.set_parameters({"tasks": ["classify", "caption"]}))


def _bad_then_good(client, image_msg=None, mask_msg=None, rgb=None, labels=None,
                   expect_error: str | None = None):
    """Publish a bad pair then a good one; the good one must be served, the bad one counted."""
    before = client.wait_status(lambda s: True, 5)
    stamp = client.publish_frame(rgb, labels, image_msg=image_msg, mask_msg=mask_msg)
    if expect_error is None:  # a valid frame: let it be served before the next one replaces it
        assert client.wait_regions(stamp, 30) is not None, f"frame not served: {client.status}"
    good = client.publish_frame(SC.image, SC.labels, stamp_ns=stamp + 1000)
    msg = client.wait_regions(good, 30)
    assert msg is not None, f"good frame after a bad one not served; status {client.status}"
    assert [r.id for r in msg.regions] == sorted(r.id for r in SC.regions)[:8]
    if expect_error is not None:
        st = client.wait_status(lambda s: s.frames_rejected > before.frames_rejected
                                and expect_error in s.last_error, 5)
        assert st is not None, f"expected rejection {expect_error!r}; status {client.status}"
    return stamp


@pytest.mark.parametrize("encoding", BAD_IMAGE_ENCODINGS)
def test_unsupported_image_encoding(node, encoding):
    _, client = node
    mask = conv.labels_to_image_msg(SC.labels)
    _bad_then_good(client, raw(128, 96, encoding), mask, expect_error="unsupported image")


@pytest.mark.parametrize("encoding", BAD_MASK_ENCODINGS)
def test_unsupported_mask_encoding(node, encoding):
    _, client = node
    img = conv.rgb_to_image_msg(SC.image)
    _bad_then_good(client, img, raw(128, 96, encoding), expect_error="unsupported mask")


@pytest.mark.parametrize("case,error", [
    ("size_mismatch", "aspect"),
    ("empty_masks", "empty"),
    ("empty_image", "empty"),
    ("huge_image", "limit"),
    ("truncated_image", "truncated"),
    ("truncated_masks", "truncated"),
    ("short_step", "step"),
])
def test_rejected_inputs(node, case, error):
    _, client = node
    img = conv.rgb_to_image_msg(SC.image)
    mask = conv.labels_to_image_msg(SC.labels)
    if case == "size_mismatch":
        mask = conv.labels_to_image_msg(np.ones((100, 100), np.uint16))
    elif case == "empty_masks":
        mask = Image(encoding="mono16")
    elif case == "empty_image":
        img = Image(encoding="rgb8")
    elif case == "huge_image":  # header only: the size check must come before any data access
        img = raw(10000, 10000, "rgb8", nbytes=16)
    elif case == "truncated_image":
        img = raw(128, 96, "rgb8", nbytes=128 * 3 * 95)
    elif case == "truncated_masks":
        mask = raw(128, 96, "mono16", step=256, nbytes=256 * 50)
    elif case == "short_step":
        img = raw(128, 96, "rgb8", step=100)
    _bad_then_good(client, img, mask, expect_error=error)


def test_zero_regions_give_an_empty_description(node):
    """No object in view is not bad input: an empty description, counted as processed."""
    _, client = node
    before = client.wait_status(lambda s: True, 5)
    stamp = _bad_then_good(client, rgb=SC.image, labels=np.zeros_like(SC.labels))
    msg = client.wait_regions(stamp, 10)
    assert msg is not None and len(msg.regions) == 0
    st = client.wait_status(lambda s: s.frames_processed >= before.frames_processed + 2, 5)
    assert st is not None and st.frames_rejected == before.frames_rejected, client.status


def test_negative_ids_in_a_signed_label_image_are_background(node):
    """32SC1 may carry negative values (e.g. 'ignore'); ids <= 0 are never objects."""
    _, client = node
    labels = SC.labels.astype(np.int32)
    labels[labels == 0] = -1
    labels[:4, :4] = -7
    mask = conv.labels_to_image_msg(labels, encoding="32SC1")
    stamp = _bad_then_good(client, conv.rgb_to_image_msg(SC.image), mask)
    msg = client.wait_regions(stamp, 10)
    assert [r.id for r in msg.regions] == sorted(r.id for r in SC.regions)[:8]


def test_masks_at_a_lower_resolution_are_resized(node):
    _, client = node
    small = SC.labels[::2, ::2]
    stamp = client.publish_frame(SC.image, small)
    msg = client.wait_regions(stamp, 20)
    assert msg is not None and msg.regions
    assert {r.id for r in msg.regions} <= {r.id for r in SC.regions}
    assert sum(r.area for r in msg.regions) == pytest.approx(int((SC.labels > 0).sum()), rel=0.2)


def test_more_than_max_regions_keeps_the_largest(node):
    _, client = node
    labels = np.zeros((96, 128), np.uint16)
    for k in range(12):  # id k+1 gets k+1 columns: larger ids are larger
        labels[: 8 * (k % 12) + 8, 10 * k: 10 * k + k // 2 + 1] = k + 1
    stamp = _bad_then_good(client, rgb=SC.image, labels=labels)
    msg = client.wait_regions(stamp, 10)
    areas = {k + 1: int((labels == k + 1).sum()) for k in range(12)}
    largest = sorted(sorted(areas, key=lambda i: areas[i], reverse=True)[:8])
    assert [r.id for r in msg.regions] == largest


def test_one_pixel_image_with_the_model(node):
    _, client = node
    assert all(r.successful for r in client.set_parameters({"tasks": ["classify"]}))
    try:
        rgb = np.full((1, 1, 3), 200, np.uint8)
        _bad_then_good(client, rgb=rgb, labels=np.ones((1, 1), np.uint16))
    finally:
        assert all(r.successful for r in client.set_parameters({"tasks": ["none"]}))
    assert node[0].alive()


@pytest.mark.parametrize("expression,ok", [
    ("", False),
    ("the red circle " * 700, None),  # ~10 kB: answered or refused with a reason
    ("la tasse rouge à gauche — 赤い丸 🔴", True),
])
def test_expressions(node, expression, ok):
    _, client = node
    stamp = client.publish_frame(SC.image, SC.labels)
    assert client.wait_regions(stamp, 20) is not None
    res = client.refer_topic(expression, f"expr{len(expression)}", timeout=60)
    assert res is not None, "no answer to the query"
    assert res.expression == expression
    if ok is not None:
        assert res.success == ok, res.error
    if not res.success:
        assert res.error
    else:
        assert set(res.matched_ids) <= {r.id for r in SC.regions}


def test_goal_image_without_masks_fails_with_reason(node):
    """A goal image with no masks fails with a reason (the pair is incomplete)."""
    _, client = node
    img = conv.rgb_to_image_msg(SC.image, make_header(5))
    out = client.refer_action("the red circle", image=img)
    assert out is not None
    status, result = out
    assert not result.success and "masks" in result.error
