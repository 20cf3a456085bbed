"""A small rclpy client of the node: publish frames, collect descriptions, ask queries.

Used by the demo, the benchmark and the tests, each in a process of its own (real DDS between
client and node). The client spins in a background thread, so its methods block the caller
only.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from regiongpt_ros.action import RegionQuery
from regiongpt_ros.msg import NodeStatus, ReferQuery, ReferResult, RegionDescriptionArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from . import conversions as conv
from .streams import stream_topic

KEEP = 256  # results remembered per kind (bounded)
RESULT_DEPTH = 100  # history of queries and results: a burst of answers is never overwritten


def make_header(stamp_ns: int, frame_id: str = "camera") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return h


class _Bounded(OrderedDict):
    def put(self, key, value) -> None:
        self[key] = value
        while len(self) > KEEP:
            self.popitem(last=False)


class RGPTClient:
    """Talks to one node (namespace ``ns``) over topics and the action; with ``stream``, to that
    stream of a multi-stream node (its topics and action under ``<stream>/``; status, lifecycle
    and parameters stay the node's)."""

    _ids = itertools.count()

    def __init__(self, ns: str = "", reliable_inputs: bool = False, depth: int = 5,
                 name: str | None = None, image_topic: str | None = None,
                 mask_topic: str | None = None, stream: str = "") -> None:
        if not rclpy.ok():
            rclpy.init()
        self.stream = stream
        self.node = Node(name or f"rgpt_client_{next(self._ids)}", namespace=ns or None)
        image_topic = image_topic or stream_topic(stream, "image")
        mask_topic = mask_topic or stream_topic(stream, "masks")
        qos_in = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable_inputs
                            else ReliabilityPolicy.BEST_EFFORT)
        rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        answers = QoSProfile(depth=RESULT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, image_topic, qos_in)
        self.mask_pub = self.node.create_publisher(Image, mask_topic, qos_in)
        self.query_pub = self.node.create_publisher(ReferQuery, stream_topic(stream, "refer_query"),
                                                    answers)
        self._cond = threading.Condition()
        self.regions: _Bounded = _Bounded()  # stamp_ns -> (msg, receive time)
        self.results: _Bounded = _Bounded()  # query_id -> ReferResult
        self.status: NodeStatus | None = None
        self.debug_images: list[Image] = []
        self.on_regions = None  # optional callback(msg, t_received)
        self.node.create_subscription(RegionDescriptionArray, stream_topic(stream, "regions"),
                                      self._on_regions, rel)
        self.node.create_subscription(ReferResult, stream_topic(stream, "refer_result"),
                                      self._on_result, answers)
        self.node.create_subscription(NodeStatus, "status", self._on_status, rel)
        self.node.create_subscription(Image, stream_topic(stream, "debug_image"), self._on_debug,
                                      2)
        self.action = ActionClient(self.node, RegionQuery, stream_topic(stream, "refer"))
        self._param_client = None
        self._service_clients: dict[str, Any] = {}
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._lifecycle_clients("rgpt_node")  # discovery runs while the caller gets ready

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races end the thread quietly
            pass

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._thread.join(5.0)  # a spinning thread at interpreter exit aborts the process
        self.node.destroy_node()

    # ------------------------------------------------------------------- callbacks
    def _on_regions(self, msg: RegionDescriptionArray) -> None:
        t = time.perf_counter()
        if self.on_regions is not None:
            self.on_regions(msg, t)
        with self._cond:
            self.regions.put(conv.stamp_to_ns(msg.header.stamp), (msg, t))
            self._cond.notify_all()

    def _on_result(self, msg: ReferResult) -> None:
        with self._cond:
            self.results.put(msg.query_id, msg)
            self._cond.notify_all()

    def _on_status(self, msg: NodeStatus) -> None:
        with self._cond:
            self.status = msg
            self._cond.notify_all()

    def _on_debug(self, msg: Image) -> None:
        with self._cond:
            self.debug_images = (self.debug_images + [msg])[-4:]
            self._cond.notify_all()

    def _wait(self, pred, timeout: float) -> Any:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                value = pred()
                if value is not None and value is not False:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.2))

    # ----------------------------------------------------------------------- waiting
    def change_state(self, transition: str, node_name: str = "rgpt_node",
                     timeout: float = 60.0) -> bool:
        """Drive the node's lifecycle (configure, activate, deactivate, cleanup, shutdown)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE,
               "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE,
               "cleanup": Transition.TRANSITION_CLEANUP,
               "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
        return bool(self._call(ChangeState, f"{node_name}/change_state",
                               ChangeState.Request(transition=Transition(id=ids[transition])),
                               timeout).success)

    def get_state(self, node_name: str = "rgpt_node", timeout: float = 10.0) -> str:
        """Lifecycle state label of the node, e.g. 'unconfigured', 'active'."""
        from lifecycle_msgs.srv import GetState

        return str(self._call(GetState, f"{node_name}/get_state", GetState.Request(),
                              timeout, resend_every=2.0).current_state.label)

    def _lifecycle_clients(self, node_name: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self._client(ChangeState, f"{node_name}/change_state")
        self._client(GetState, f"{node_name}/get_state")

    def _client(self, srv_type, name: str):
        """One long-lived client per service. ``wait_for_service`` only sees the server's
        request reader; a response sent before the server has matched the client's reply
        reader is lost, which a fresh client per call risks on every call."""
        if name not in self._service_clients:
            self._service_clients[name] = self.node.create_client(srv_type, name)
        return self._service_clients[name]

    def _call(self, srv_type, name: str, request, timeout: float,
              resend_every: float | None = None):
        """Call a service; idempotent requests are sent again every ``resend_every`` s, in
        case the first went out before the reply path was matched."""
        cli = self._client(srv_type, name)
        if not cli.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        fut = cli.call_async(request)
        sent = time.monotonic()
        end = sent + timeout
        while not fut.done() and time.monotonic() < end:
            if resend_every is not None and time.monotonic() - sent > resend_every:
                fut, sent = cli.call_async(request), time.monotonic()
            time.sleep(0.01)
        if not fut.done():
            raise TimeoutError(f"service {name} did not answer")
        return fut.result()

    def wait_ready(self, timeout: float = 60.0, masks: bool = True) -> bool:
        """True once the node reports active and its inputs and the action are matched
        (``masks=False`` for a node whose regions come from prompts, not a mask topic)."""
        ok = self._wait(lambda: self.status is not None and self.status.state == "active",
                        timeout)
        end = time.monotonic() + timeout
        while ok and time.monotonic() < end:
            if (self.image_pub.get_subscription_count() > 0
                    and (not masks or self.mask_pub.get_subscription_count() > 0)
                    and self.query_pub.get_subscription_count() > 0
                    and self.action.server_is_ready()):
                return True
            time.sleep(0.05)
        return False

    def stream_status(self, status: NodeStatus | None = None):
        """This client's stream's entry of NodeStatus.streams (the latest status by default)."""
        status = status or self.status
        if status is None:
            return None
        return next((s for s in status.streams if s.name == self.stream), None)

    def wait_status(self, pred, timeout: float = 10.0) -> NodeStatus | None:
        """Wait for a status message for which ``pred(status)`` holds."""
        return self._wait(lambda: self.status if self.status and pred(self.status) else None,
                          timeout)

    def wait_regions(self, stamp_ns: int, timeout: float = 30.0) -> RegionDescriptionArray | None:
        got = self._wait(lambda: self.regions.get(int(stamp_ns)), timeout)
        return got[0] if got else None

    # ---------------------------------------------------------------------- sending
    def publish_frame(self, rgb: np.ndarray | None = None, labels: np.ndarray | None = None,
                      stamp_ns: int | None = None, frame_id: str = "camera",
                      encoding: str = "rgb8", mask_encoding: str = "mono16",
                      image_msg: Image | None = None, mask_msg: Image | None = None) -> int:
        """Publish an image and its mask label image with the same stamp; returns the stamp."""
        if stamp_ns is None:
            stamp_ns = time.time_ns()
        header = make_header(stamp_ns, frame_id)
        if image_msg is None:
            image_msg = conv.rgb_to_image_msg(rgb, header, encoding)
        if mask_msg is None:
            mask_msg = conv.labels_to_image_msg(labels, header, mask_encoding)
        image_msg.header = header
        mask_msg.header = header
        self.mask_pub.publish(mask_msg)
        self.image_pub.publish(image_msg)
        return int(stamp_ns)

    def _parameter_call(self, call: str, arg, node_name: str, timeout: float):
        from rclpy.parameter_client import AsyncParameterClient

        if self._param_client is None:
            ns = self.node.get_namespace().rstrip("/")
            self._param_client = AsyncParameterClient(self.node, f"{ns}/{node_name}")
        if not self._param_client.wait_for_services(timeout):
            raise TimeoutError("parameter services of the node not available")
        fut = getattr(self._param_client, call)(arg)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        if not fut.done():
            raise TimeoutError(f"{call} timed out")
        return fut.result()

    def set_parameters(self, values: dict[str, Any], node_name: str = "rgpt_node",
                       timeout: float = 10.0) -> list:
        """Set parameters of the node; returns the SetParametersResult of each."""
        from rclpy.parameter import Parameter

        params = [Parameter(k, value=v) for k, v in values.items()]
        return list(self._parameter_call("set_parameters", params, node_name, timeout).results)

    def get_parameters(self, names: list[str], node_name: str = "rgpt_node",
                       timeout: float = 10.0) -> dict[str, Any]:
        """Current values of the node's parameters, as Python values."""
        from rclpy.parameter import parameter_value_to_python

        values = self._parameter_call("get_parameters", list(names), node_name, timeout).values
        return {n: parameter_value_to_python(v) for n, v in zip(names, values, strict=True)}

    def refer_topic(self, expression: str, query_id: str | None = None,
                    timeout: float = 30.0) -> ReferResult | None:
        """Fire a ReferQuery and wait for its ReferResult."""
        qid = query_id or f"q{time.time_ns()}"
        self.query_pub.publish(ReferQuery(query_id=qid, expression=expression))
        return self._wait(lambda: self.results.get(qid), timeout)

    def send_goal(self, expression: str = "", task: str = "refer", query_id: str = "",
                  image: Image | None = None, masks: Image | None = None,
                  region_ids: list[int] | None = None, max_new_tokens: int = 0,
                  feedback: list | None = None, timeout: float = 10.0):
        """Send a RegionQuery goal; returns the goal handle (None when not accepted in time)."""
        goal = RegionQuery.Goal(task=task, expression=expression, query_id=query_id,
                                region_ids=list(region_ids or []),
                                max_new_tokens=max_new_tokens)
        if image is not None:
            goal.image = image
        if masks is not None:
            goal.masks = masks
        if not self.action.wait_for_server(timeout_sec=timeout):
            return None
        fut = self.action.send_goal_async(
            goal, feedback_callback=(lambda fb: feedback.append(fb.feedback))
            if feedback is not None else None)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        return fut.result() if fut.done() else None

    def goal_result(self, handle, timeout: float = 60.0) -> tuple[int, Any] | None:
        """Wait for a goal's (status, result)."""
        fut = handle.get_result_async()
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        if not fut.done():
            return None
        res = fut.result()
        return res.status, res.result

    def refer_action(self, expression: str, timeout: float = 60.0, **kw):
        """Send a goal and wait for it: (status, result), or None on timeout/rejection."""
        handle = self.send_goal(expression, **kw)
        if handle is None or not handle.accepted:
            return None
        return self.goal_result(handle, timeout)


GOAL_SUCCEEDED = GoalStatus.STATUS_SUCCEEDED
GOAL_ABORTED = GoalStatus.STATUS_ABORTED
GOAL_CANCELED = GoalStatus.STATUS_CANCELED
