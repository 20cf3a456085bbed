"""The RegionGPT lifecycle node: a thin adapter between ROS 2 topics/actions and RGPTPredictor.

One node serves one or many camera streams (``streams`` parameter; streams.py): each stream
has its topics in its own namespace, its own synchroniser and newest-frame slot; the worker
runs the newest frame of every stream through one model batch, round robin and bounded
(``max_batch_frames``). configure loads the model and creates the publishers; activate creates
the subscriptions, the query topics and the actions; deactivate ends running queries and goals
(each gets a result), removes them and moves the model off the GPU. Input callbacks only
convert and hand frames to one worker thread; the model and SAM never run on the executor.
SIGINT/SIGTERM stop the worker and end every goal before the ROS context goes.

The parts: streams.py (stream names and state), inputs.py (subscriptions, stamp matching),
frames.py (the worker's batch processing, answer reuse), queries.py (topic and action
queries), parameters.py (the parameter table), status.py (per-stream accounting).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import rclpy
from rclpy.action import ActionServer, CancelResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from regiongpt_ros.action import RegionQuery
from regiongpt_ros.msg import NodeStatus, ReferQuery, ReferResult, RegionDescriptionArray
from sensor_msgs.msg import Image

from .frame_worker import LatestFrameWorker
from .frames import FramesMixin
from .inputs import InputsMixin
from .jobs import describe_error
from .parameters import change_policy, check_value, declare_all
from .queries import QueriesMixin
from .status import StatusCounters
from .streams import Stream

NODE_NAME = "rgpt_node"
SHUTDOWN_REASON = "node shutting down"
DEACTIVATE_REASON = "node deactivated before the query finished"
STOP_TIMEOUT_S = 10.0  # longest wait for the worker and the goals when stopping
RESULT_DEPTH = 100  # refer_result history: a burst of refusals must not overwrite answers


class RGPTNode(InputsMixin, FramesMixin, QueriesMixin, LifecycleNode):
    """Lifecycle node serving region descriptions and referring queries."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare_all(self)
        for name in ("device", "dtype", "encoder_backend", "tasks", "region_source",
                     "sam_model_type", "streams"):
            reason = check_value(name, self.get_parameter(name).value)
            if reason:
                raise ValueError(f"parameter {name}: {reason}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.state_label = "unconfigured"
        self.streams: dict[str, Stream] = {}  # made on configure, from the streams parameter
        self.counters = StatusCounters(streams=list(self.p("streams")))
        self.predictor = None
        self.sam = None  # SamPrompter when region_source is prompts and sam_checkpoint is set
        self.model_path = ""
        self._worker: LatestFrameWorker | None = None
        self._goal_lock = threading.Lock()
        self._subs: list = []
        self._actions: list[ActionServer] = []
        self._pubs: dict[str, Any] = {}  # the node's own (status); streams hold theirs
        self._status_timer = None
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._query_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        self._init_queries()

    # ----------------------------------------------------------------------- parameters
    def p(self, name: str) -> Any:
        """Current value of a parameter."""
        return self.get_parameter(name).value

    def _on_set_parameters(self, params):
        result = change_policy(params, self.state_label, self.p)
        if not result.successful:
            self.get_logger().warning(f"parameter change rejected: {result.reason}")
        return result

    def _after_set_parameters(self, params) -> None:
        for prm in params:
            if prm.name == "sync_slop":
                for stream in self.streams.values():
                    if stream.sync is not None:
                        stream.sync.set_slop(float(prm.value))
            elif prm.name == "rate_limit" and self._worker is not None:
                rate = float(prm.value)
                self._worker.min_period_s = 1.0 / rate if rate > 0 else 0.0
            elif prm.name == "max_batch_frames" and self._worker is not None:
                self._worker.max_batch_frames = int(prm.value)
        if any(prm.name in ("max_query_chars", "max_query_tokens") for prm in params):
            self._apply_query_limits()

    # ------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model; any failure leaves the node unconfigured with the reason logged."""
        self.state_label = "transitioning"
        try:
            self._load_model()
        except Exception as exc:  # noqa: BLE001 - never crash on a bad model
            reason = f"configure failed: {describe_error(exc)}"
            self.get_logger().error(f"{reason}; the node stays unconfigured")
            self.counters.error(reason)
            self.predictor = self.sam = None
            self.state_label = "unconfigured"
            return TransitionCallbackReturn.FAILURE
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        answers = QoSProfile(depth=RESULT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        names = [str(n) for n in self.p("streams")]
        self.streams = {name: Stream(name) for name in names}
        for s in self.streams.values():
            s.pubs = {
                "regions": self.create_publisher(RegionDescriptionArray, s.topic("regions"),
                                                 reliable),
                "refer_result": self.create_publisher(ReferResult, s.topic("refer_result"),
                                                      answers),
                "debug_image": self.create_publisher(Image, s.topic("debug_image"), 2),
            }
        self.counters.set_streams(names)
        self._pubs = {"status": self.create_publisher(NodeStatus, "status", reliable)}
        self._status_timer = self.create_timer(float(self.p("status_period")),
                                               self.publish_status)
        self.state_label = "inactive"
        self.get_logger().info(f"configured: model {self.model_path} on "
                               f"{self.predictor.device}; streams {names}")
        self.publish_status()
        return TransitionCallbackReturn.SUCCESS

    def _load_model(self) -> None:
        from rgpt_model.build import load_predictor
        from rgpt_model.threads import set_num_threads

        threads = set_num_threads(int(self.p("num_threads")))
        self.get_logger().info(f"torch intra-op threads: {threads}")
        self.predictor = load_predictor(
            str(self.p("model_path")), device=str(self.p("device")), dtype=str(self.p("dtype")),
            backend=str(self.p("encoder_backend")))
        self._apply_query_limits()
        self.sam = None
        if str(self.p("sam_checkpoint")).strip():
            from rgpt_model.sam import SamPrompter

            self.sam = SamPrompter.from_checkpoint(
                Path(str(self.p("sam_checkpoint"))).expanduser(),
                str(self.p("sam_model_type")), device=self.predictor.device)
        self.model_path = str(self.p("model_path")).strip() or "the built-in demo model"

    def _apply_query_limits(self) -> None:
        if self.predictor is not None:
            self.predictor.limits.max_query_chars = int(self.p("max_query_chars"))
            self.predictor.limits.max_query_tokens = int(self.p("max_query_tokens"))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create subscriptions, the query topic, the action server and the worker."""
        try:
            self._restore_model()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"activate failed: cannot move the model back to its "
                                    f"device: {describe_error(exc)}")
            return TransitionCallbackReturn.FAILURE
        self.counters.reset()
        for stream in self.streams.values():
            stream.forget()
        self._worker = LatestFrameWorker(self._process_frames, self._worker_error,
                                         max_queries=int(self.p("max_pending_queries")),
                                         batched=True)
        self._worker.max_batch_frames = int(self.p("max_batch_frames"))
        rate = float(self.p("rate_limit"))
        self._worker.min_period_s = 1.0 / rate if rate > 0 else 0.0
        self._create_inputs()
        query_qos = QoSProfile(depth=int(self.p("max_pending_queries")),
                               reliability=ReliabilityPolicy.RELIABLE)
        for s in self.streams.values():
            self._subs.append(self.create_subscription(
                ReferQuery, s.topic("refer_query"), lambda m, s=s: self._on_refer_query(s, m),
                query_qos, callback_group=self._query_group))
            self._actions.append(ActionServer(
                self, RegionQuery, s.topic("refer"),
                execute_callback=lambda handle, s=s: self._execute_goal(s, handle),
                goal_callback=self._on_goal,
                cancel_callback=lambda _goal: CancelResponse.ACCEPT,
                callback_group=self._action_group))
        self._accepting = True
        self.state_label = "active"
        self.get_logger().info("activated")
        self.publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """End queries and goals, remove subscriptions and the action, free GPU memory."""
        self._teardown_active(DEACTIVATE_REASON)
        self.state_label = "inactive"
        self.get_logger().info("deactivated")
        self.publish_status()
        return TransitionCallbackReturn.SUCCESS

    def _teardown_active(self, reason: str) -> None:
        """Stop taking work, stop the worker (a running decode stops at its next step), end
        every goal with ``reason``, then remove the active-state entities."""
        self._accepting = False
        had_goals = self.goals_running()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        for stream in self.streams.values():
            stream.input_subs = ()
        worker = self._worker
        if worker is not None:
            self.cancel_queries(reason)
            dropped, left = worker.stop(STOP_TIMEOUT_S)
            self._worker = None
            for frame in dropped:
                self.counters.add(frame.stream, frames_dropped=1)
            for job in left:
                job.refuse(reason)  # each gets its error result
        if not self.wait_goals_ended(STOP_TIMEOUT_S, had_goals):
            self.get_logger().warning("goals still running after the worker stopped")
        for action in self._actions:
            action.destroy()
        self._actions = []
        self._offload_model()

    def _restore_model(self) -> None:
        """Back onto the GPU after a deactivate (no-ops on the CPU)."""
        for model in (self.predictor, self.sam):
            if model is not None:
                model.restore()

    def _offload_model(self) -> None:
        """An inactive node holds no GPU memory (no-ops on the CPU)."""
        for stream in self.streams.values():
            stream.forget()  # encoded frames and cached answers hold tensors on the GPU
        for model in (self.predictor, self.sam):
            if model is not None:
                model.offload()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the model and the publishers."""
        self._release()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """End all work with a result for every query, then drop everything."""
        if self._worker is not None:
            self._teardown_active(SHUTDOWN_REASON)
        self.state_label = "finalized"
        self.publish_status()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        if self._status_timer is not None:
            self.destroy_timer(self._status_timer)
            self._status_timer = None
        for pub in [*self._pubs.values(),
                    *(p for s in self.streams.values() for p in s.pubs.values())]:
            self.destroy_publisher(pub)
        self._pubs = {}
        self.streams = {}
        self.predictor = self.sam = None

    # ------------------------------------------------------------------------- status
    def _worker_error(self, exc: BaseException) -> None:
        self.counters.error(f"worker error: {describe_error(exc)}")
        self.get_logger().error(self.counters.last_error)

    def publish_status(self) -> None:
        self.check_unmatched()
        pub = self._pubs.get("status")
        if pub is not None:
            pub.publish(self.counters.to_msg(NodeStatus(), self.state_label,
                                             self.get_clock().now().to_msg()))


def usage() -> str:
    """--help text: how to run it and every parameter with its default."""
    from .parameters import PARAMS

    lines = ["usage: rgpt_node [--ros-args -p name:=value ... -r image:=/camera/image_raw "
             "-r __ns:=/robot1 --params-file config/rgpt_node.yaml]", "",
             "RegionGPT lifecycle node. Topics (relative, per stream S of the streams parameter: "
             "S/image ...; '' = none): image (or image/compressed), masks (label image, ids <= 0 "
             "are background) or prompts, label_map, refer_query in; regions, refer_result, "
             "debug_image out; action refer. Node: status (NodeStatus, per-stream counters in "
             "its streams field).", "",
             "parameters (default) [when a change takes effect]:"]
    for spec in PARAMS:
        lines.append(f"  {spec.name} ({spec.default!r}) [{spec.policy}]: {spec.description}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    """Run the node; with autostart (default) it configures and activates itself.

    SIGINT/SIGTERM end the node in order: the lifecycle shutdown transition stops the worker
    and ends every goal while the executor still spins (so results reach the clients), then
    the executor and the ROS context go. A second signal exits at once.
    """
    import sys

    argv = sys.argv[1:] if args is None else args
    user_args = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in user_args or "--help" in user_args:
        print(usage())
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    node = RGPTNode()
    executor = MultiThreadedExecutor(num_threads=int(node.p("max_pending_queries")) + 4)
    executor.add_node(node)
    try:
        if node.p("autostart") and not stop.is_set():  # before spinning: no state queries
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:  # mid-transition
                node.trigger_activate()
            else:
                node.get_logger().error("autostart: configure failed; the node waits "
                                        "unconfigured (fix the parameters, then configure)")
        # The main thread owns the wait set (callbacks run on the executor's pool), so no
        # thread is still waiting inside rcl when the entities and the context are destroyed
        # (a spinner thread left there aborted the process: "terminate called without an
        # active exception").
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.2)
        node.get_logger().info("shutting down: ending queries and goals")
        if node.state_label != "finalized":
            closer = threading.Thread(target=node.trigger_shutdown, name="rgpt_shutdown")
            closer.start()  # goals end with results while this thread keeps spinning
            while closer.is_alive():
                executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
