"""The RegionGPT lifecycle node: a thin adapter between ROS 2 topics/actions and RGPTPredictor.

configure loads the model (failure: stays unconfigured, logs why); activate creates the
subscriptions, the query topic and the action; deactivate removes them and frees GPU memory.
Input callbacks only convert and hand frames to one worker thread (newest frame wins); the model
never runs on the executor. See docs/ARCHITECTURE.md for topics and parameters.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from regiongpt_ros.action import RegionQuery
from regiongpt_ros.msg import (
    LabelMap,
    NodeStatus,
    ReferQuery,
    ReferResult,
    RegionDescription,
    RegionDescriptionArray,
    RegionPromptArray,
)
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from . import conversions as conv
from . import debug_image
from .frame_worker import LatestFrameWorker
from .parameters import change_policy, check_value, declare_all, parse_vocabulary
from .status import StatusCounters
from .synchronizer import StampSynchronizer

NODE_NAME = "rgpt_node"
ACTION_TASKS = ("refer", "describe", "classify", "caption", "ask")
LABEL_MAP_KEEP = 32  # stamped label maps remembered (bounded)


@dataclass
class Frame:
    """A synchronised, converted input pair."""

    header: Header
    rgb: np.ndarray
    labels: np.ndarray
    label_map: dict[int, str]
    received: float = field(default_factory=time.monotonic)


@dataclass
class ProcessedFrame:
    """What queries run against: the latest frame the model described."""

    header: Header
    rgb: np.ndarray
    labels: np.ndarray
    region_ids: list[int]


class _Job:
    """A query on the worker; ``done`` is set when it finished, failed or was skipped."""

    def __init__(self, run, on_done=None) -> None:
        self.run = run
        self.on_done = on_done
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error = ""

    def __call__(self) -> None:
        try:
            if not self.cancelled.is_set():
                self.result = self.run(self)
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error result
            self.error = _describe_error(exc)
        finally:
            self.done.set()
            if self.on_done is not None:
                self.on_done(self)


def _describe_error(exc: BaseException) -> str:
    """Readable one-line reason (RGPTError messages already say what to do)."""
    from rgpt_model.errors import RGPTError

    if isinstance(exc, RGPTError | conv.ConversionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _state_label(state_id: int) -> str:
    return {1: "unconfigured", 2: "inactive", 3: "active", 4: "finalized"}.get(
        state_id, "transitioning")


class RGPTNode(LifecycleNode):
    """Lifecycle node serving region descriptions and referring queries."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare_all(self)
        for name in ("device", "dtype", "encoder_backend", "tasks", "region_source",
                     "sam_model_type"):
            reason = check_value(name, self.get_parameter(name).value)
            if reason:
                raise ValueError(f"parameter {name}: {reason}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.state_label = "unconfigured"
        self.counters = StatusCounters()
        self.predictor = None
        self.sam = None  # SamPrompter when region_source is prompts and sam_checkpoint is set
        self.model_path: Path | None = None
        self._device = "cpu"
        self._offloaded = False
        self._worker: LatestFrameWorker | None = None
        self._sync: StampSynchronizer | None = None
        self._mf_sync = None
        self._latest: ProcessedFrame | None = None
        self._latest_lock = threading.Lock()
        self._label_maps: OrderedDict[int, dict[int, str]] = OrderedDict()
        self._active_goals = 0
        self._goal_lock = threading.Lock()
        self._subs: list = []
        self._action: ActionServer | None = None
        self._pubs: dict[str, Any] = {}
        self._status_timer = None
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._query_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()

    # ----------------------------------------------------------------------- parameters
    def p(self, name: str) -> Any:
        """Current value of a parameter."""
        return self.get_parameter(name).value

    def _limit(self) -> conv.SizeLimit:
        return conv.SizeLimit(int(self.p("max_image_width")), int(self.p("max_image_height")))

    def _on_set_parameters(self, params):
        result = change_policy(params, self.state_label)
        if not result.successful:
            self.get_logger().warning(f"parameter change rejected: {result.reason}")
        return result

    def _after_set_parameters(self, params) -> None:
        for prm in params:
            if prm.name == "sync_slop" and self._sync is not None:
                self._sync.set_slop(float(prm.value))
            elif prm.name == "sync_slop" and self._mf_sync is not None:
                self._mf_sync.slop = float(prm.value)
            elif prm.name == "rate_limit" and self._worker is not None:
                rate = float(prm.value)
                self._worker.min_period_s = 1.0 / rate if rate > 0 else 0.0

    # ------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model; any failure leaves the node unconfigured with the reason logged."""
        self.state_label = "transitioning"
        try:
            self._load_model()
        except Exception as exc:  # noqa: BLE001 - never crash on a bad model
            self.get_logger().error(f"configure failed, node stays unconfigured: "
                                    f"{_describe_error(exc)}")
            self.counters.error(f"configure failed: {_describe_error(exc)}")
            self.predictor = None
            self.state_label = "unconfigured"
            return TransitionCallbackReturn.FAILURE
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {
            "regions": self.create_publisher(RegionDescriptionArray, "regions", reliable),
            "refer_result": self.create_publisher(ReferResult, "refer_result", reliable),
            "debug_image": self.create_publisher(Image, "debug_image", 2),
            "status": self.create_publisher(NodeStatus, "status", reliable),
        }
        self._status_timer = self.create_timer(float(self.p("status_period")),
                                               self.publish_status)
        self.state_label = "inactive"
        self.get_logger().info(f"configured: model {self.model_path} on {self._device}")
        self.publish_status()
        return TransitionCallbackReturn.SUCCESS

    def _load_model(self) -> None:
        import torch

        from rgpt_model.errors import ModelLoadError
        from rgpt_model.predictor import RGPTPredictor

        path = str(self.p("model_path")).strip()
        if path:
            model_path = Path(path).expanduser()
            if not model_path.is_dir():
                raise ModelLoadError(f"model_path {model_path} is not a directory; set "
                                     "model_path to a model folder or leave it empty for the "
                                     "built-in demo model")
        else:
            from rgpt_model.demo import DEMO_MODEL_DIR, default_model_path

            model_path = default_model_path()
            if model_path != DEMO_MODEL_DIR:
                self.get_logger().warning(
                    f"no trained demo model in {DEMO_MODEL_DIR}: using the tiny RANDOM model "
                    f"{model_path} (answers are meaningless)")
        device = str(self.p("device"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} requested but CUDA is not available; "
                                 "set device to cpu or auto")
        self.predictor = RGPTPredictor.from_pretrained(
            model_path, device=device, dtype=str(self.p("dtype")),
            backend=str(self.p("encoder_backend")))
        self.sam = None
        if str(self.p("sam_checkpoint")).strip():
            from rgpt_model.sam import SamPrompter

            self.sam = SamPrompter.from_checkpoint(
                Path(str(self.p("sam_checkpoint"))).expanduser(),
                str(self.p("sam_model_type")), device=device)
        self.model_path, self._device, self._offloaded = model_path, device, False

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create subscriptions, the query topic, the action server and the worker."""
        try:
            if self._offloaded:
                self.predictor.model.to(self._device)
                self._offloaded = False
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"activate failed: cannot move the model back to "
                                    f"{self._device}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.counters.reset()
        with self._latest_lock:
            self._latest = None
        self._worker = LatestFrameWorker(self._process_frame, self._worker_error,
                                         max_queries=int(self.p("max_pending_queries")))
        rate = float(self.p("rate_limit"))
        self._worker.min_period_s = 1.0 / rate if rate > 0 else 0.0
        self._create_inputs()
        self._subs.append(self.create_subscription(
            ReferQuery, "refer_query", self._on_refer_query, 10,
            callback_group=self._query_group))
        self._action = ActionServer(
            self, RegionQuery, "refer", execute_callback=self._execute_goal,
            goal_callback=self._on_goal, cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=self._action_group)
        self.state_label = "active"
        self.get_logger().info("activated")
        self.publish_status()
        return TransitionCallbackReturn.SUCCESS

    def _create_inputs(self) -> None:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=int(self.p("input_depth")),
            reliability=(ReliabilityPolicy.BEST_EFFORT
                         if self.p("input_reliability") == "best_effort"
                         else ReliabilityPolicy.RELIABLE))
        compressed = bool(self.p("compressed_input"))
        img_type, img_topic = (CompressedImage, "image/compressed") if compressed \
            else (Image, "image")
        region_type, region_topic = (RegionPromptArray, "prompts") \
            if self.p("region_source") == "prompts" else (Image, "masks")
        self._sync = StampSynchronizer(float(self.p("sync_slop")), int(self.p("sync_queue_size")))
        self._mf_sync = None
        try:  # a full ROS distribution ships message_filters: prefer it
            import message_filters

            subs = [message_filters.Subscriber(self, img_type, img_topic, qos_profile=qos,
                                               callback_group=self._input_group),
                    message_filters.Subscriber(self, region_type, region_topic, qos_profile=qos,
                                               callback_group=self._input_group)]
            self._mf_sync = message_filters.ApproximateTimeSynchronizer(
                subs, int(self.p("sync_queue_size")), float(self.p("sync_slop")))
            self._mf_sync.registerCallback(self._on_pair)
            self._subs.extend(s.sub for s in subs)
            self._sync = None
            self.get_logger().info("synchronising inputs with message_filters")
        except Exception:  # noqa: BLE001 - not installed (or an incompatible version)
            self._subs.append(self.create_subscription(
                img_type, img_topic, lambda m: self._on_input(0, m), qos,
                callback_group=self._input_group))
            self._subs.append(self.create_subscription(
                region_type, region_topic, lambda m: self._on_input(1, m), qos,
                callback_group=self._input_group))
        self._subs.append(self.create_subscription(
            LabelMap, "label_map", self._on_label_map, 10, callback_group=self._input_group))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Remove subscriptions and the action, stop the worker, free GPU memory."""
        self._teardown_active()
        self.state_label = "inactive"
        self.get_logger().info("deactivated")
        self.publish_status()
        return TransitionCallbackReturn.SUCCESS

    def _teardown_active(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._mf_sync = None
        if self._action is not None:
            self._action.destroy()
            self._action = None
        if self._worker is not None:
            dropped, left = self._worker.stop()
            self._worker = None
            if dropped:
                self.counters.add(frames_dropped=1)
            for job in left:
                job.cancelled.set()
                job.error = "node deactivated before the query ran"
                job()  # skips the model, marks it done, publishes the error result
        if self._sync is not None:
            self._sync.clear()
        self._free_gpu(offload=True)

    def _free_gpu(self, offload: bool) -> None:
        if not self._device.startswith("cuda") or self.predictor is None:
            return
        import torch

        if offload:
            self.predictor.model.to("cpu")
            self._offloaded = True
        gc.collect()
        torch.cuda.empty_cache()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the model and the publishers."""
        self._release()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._worker is not None:
            self._teardown_active()
        self._release()
        self.state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        if self._status_timer is not None:
            self.destroy_timer(self._status_timer)
            self._status_timer = None
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        was_cuda = self._device.startswith("cuda")
        self.predictor = None
        self.sam = None
        gc.collect()
        if was_cuda:
            import torch

            torch.cuda.empty_cache()

    # -------------------------------------------------------------------------- inputs
    def _on_input(self, index: int, msg) -> None:
        sync = self._sync
        if sync is None:
            return
        pair = sync.add(index, conv.stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self._on_pair(*pair)

    def _on_label_map(self, msg: LabelMap) -> None:
        if len(msg.ids) != len(msg.labels):
            self.counters.error(f"label_map ignored: {len(msg.ids)} ids but "
                                f"{len(msg.labels)} labels")
            self.get_logger().warning(self.counters.last_error)
            return
        key = conv.stamp_to_ns(msg.header.stamp)
        self._label_maps[key] = {int(i): str(s) for i, s in zip(msg.ids, msg.labels, strict=True)}
        self._label_maps.move_to_end(key)
        while len(self._label_maps) > LABEL_MAP_KEEP:
            oldest = next(iter(self._label_maps))
            if oldest == 0 and len(self._label_maps) > 1:
                self._label_maps.move_to_end(0)
                oldest = next(iter(self._label_maps))
            self._label_maps.pop(oldest)

    def _on_pair(self, image_msg, mask_msg) -> None:
        """Convert and validate a synchronised pair, then hand it to the worker."""
        worker = self._worker
        if worker is None:
            return
        self.counters.add(frames_received=1)
        try:
            frame = self.to_frame(image_msg, mask_msg)
        except Exception as exc:  # noqa: BLE001 - bad input is counted, never raised
            reason = f"frame {image_msg.header.stamp.sec}.{image_msg.header.stamp.nanosec:09d} " \
                     f"rejected: {_describe_error(exc)}"
            self.counters.error(reason, frames_rejected=1)
            self.get_logger().warning(reason)
            return
        key = conv.stamp_to_ns(image_msg.header.stamp)
        if not frame.label_map:  # prompt labels (from a detector) already name the regions
            frame.label_map = self._label_maps.get(key) or self._label_maps.get(0) or {}
        if worker.submit_frame(frame):
            self.counters.add(frames_dropped=1)

    def to_frame(self, image_msg, mask_msg) -> Frame:
        """Message pair -> Frame (raises ConversionError with the reason)."""
        limit = self._limit()
        if isinstance(image_msg, CompressedImage):
            rgb = conv.compressed_to_rgb(image_msg, limit)
        else:
            rgb = conv.image_to_rgb(image_msg, limit)
        if isinstance(mask_msg, RegionPromptArray):
            return self._frame_from_prompts(image_msg.header, rgb, mask_msg)
        labels = conv.labels_from_msg(mask_msg, limit)
        labels = conv.match_mask_size(labels, rgb.shape[0], rgb.shape[1])
        return Frame(image_msg.header, rgb, labels, {})

    def _frame_from_prompts(self, header, rgb: np.ndarray, prompts_msg) -> Frame:
        """Box/point prompts -> label image: SAM masks, or rectangles without a SAM checkpoint.

        Where masks overlap, the later prompt's id wins the pixel; prompt labels seed the
        region labels like a label map.
        """
        from rgpt_model.masks import boxes_to_masks, stack_to_label_image

        prompts = conv.prompts_from_msg(prompts_msg)
        if not prompts:
            raise conv.ConversionError("the prompt array is empty: no regions to describe")
        if self.sam is not None:
            stack = self.sam.predict(rgb, prompts).masks
        elif any(len(p.points) for p in prompts) or any(p.box is None for p in prompts):
            raise conv.ConversionError("point prompts need SAM: set sam_checkpoint to a local "
                                       "SAM checkpoint (boxes alone work without it)")
        else:
            stack = boxes_to_masks([p.box for p in prompts], rgb.shape[:2])
        ids = [p.id for p in prompts]
        labels = stack_to_label_image(stack, ids)
        missing = [i for i in ids if not (labels == i).any()]
        if missing:
            self.get_logger().warning(f"prompts {missing} produced no mask pixels; skipped")
        label_map = {p.id: p.label for p in prompts if p.label}
        return Frame(header, rgb, labels, label_map)

    # ------------------------------------------------------------------------- frames
    def _select_regions(self, labels: np.ndarray) -> list[int]:
        """Ids passing min_region_area, the largest max_regions of them, in id order."""
        ids, counts = np.unique(labels, return_counts=True)
        keep = [(int(c), int(i)) for i, c in zip(ids, counts, strict=True)
                if i != 0 and c >= int(self.p("min_region_area"))]
        max_regions = int(self.p("max_regions"))
        if len(keep) > max_regions:
            self.get_logger().debug(f"{len(keep)} regions, describing the largest {max_regions}")
            keep = sorted(keep, reverse=True)[:max_regions]
        return sorted(i for _, i in keep)

    def _process_frame(self, frame: Frame) -> None:
        """Worker: describe the frame's regions and publish them."""
        from rgpt_model.masks import label_image_to_stack, mask_area, mask_bbox

        t0 = time.perf_counter()
        tasks = [t for t in self.p("tasks") if t != "none"]
        try:
            region_ids = self._select_regions(frame.labels)
            if tasks and region_ids:
                descs = self.predictor.describe(
                    frame.rgb, frame.labels, region_ids=region_ids, tasks=tasks,
                    vocabulary=parse_vocabulary(self.p("vocabulary")),
                    max_new_tokens=int(self.p("max_new_tokens")))
                rows = [(d.region_id, d.bbox, d.area, d.label, d.label_score, d.caption)
                        for d in descs]
            else:
                stack, _ = label_image_to_stack(frame.labels, region_ids)
                rows = [(rid, mask_bbox(m), mask_area(m), "", 0.0, "")
                        for rid, m in zip(region_ids, stack, strict=True)]
        except Exception as exc:  # noqa: BLE001 - a frame the model refuses is a bad input
            reason = f"frame rejected by the model: {_describe_error(exc)}"
            self.counters.error(reason, frames_rejected=1)
            self.get_logger().warning(reason)
            return
        infer = time.perf_counter() - t0
        out = RegionDescriptionArray(header=frame.header, inference_time=infer,
                                     tasks=tasks or ["none"])
        for rid, (x, y, w, h), area, label, score, caption in rows:
            if rid in frame.label_map:
                label, score = frame.label_map[rid], 1.0  # the segmenter's class wins
            out.regions.append(RegionDescription(
                id=int(rid), bbox=RegionOfInterest(x_offset=int(x), y_offset=int(y),
                                                   width=int(w), height=int(h)),
                area=int(area), label=str(label), label_score=float(score),
                caption=str(caption)))
        with self._latest_lock:
            self._latest = ProcessedFrame(frame.header, frame.rgb, frame.labels, region_ids)
        pubs = self._pubs
        if "regions" in pubs:
            pubs["regions"].publish(out)
        self.counters.latency(infer)
        self.counters.add(frames_processed=1)
        if self.p("publish_debug_image") and "debug_image" in pubs:
            marks = [(r.id, (r.bbox.x_offset, r.bbox.y_offset, r.bbox.width, r.bbox.height),
                      r.label) for r in out.regions]
            img = debug_image.draw(frame.rgb, frame.labels, marks)
            pubs["debug_image"].publish(conv.rgb_to_image_msg(img, frame.header))

    def _worker_error(self, exc: BaseException) -> None:
        self.counters.error(f"worker error: {_describe_error(exc)}")
        self.get_logger().error(self.counters.last_error)

    def publish_status(self) -> None:
        pub = self._pubs.get("status")
        if pub is not None:
            pub.publish(self.counters.to_msg(NodeStatus(), self.state_label,
                                             self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------------- queries
    def _query_frame(self, image_msg: Image | None, mask_msg: Image | None) -> ProcessedFrame:
        """The frame a query runs on: its own image+masks, or the latest processed frame."""
        from rgpt_model.errors import InvalidQueryError

        if image_msg is not None and image_msg.width > 0 and image_msg.height > 0:
            if mask_msg is None or mask_msg.width == 0 or mask_msg.height == 0:
                raise InvalidQueryError("the goal carries an image but no masks; send the mask "
                                        "label image with it")
            frame = self.to_frame(image_msg, mask_msg)
            return ProcessedFrame(frame.header, frame.rgb, frame.labels,
                                  self._select_regions(frame.labels))
        with self._latest_lock:
            latest = self._latest
        if latest is None:
            raise InvalidQueryError("no frame processed yet: publish image and masks first, or "
                                    "send the image and masks with the goal")
        return latest

    def _on_refer_query(self, msg: ReferQuery) -> None:
        """Topic query: answered on refer_result, always (an error result on failure)."""
        self.counters.add(queries_received=1)

        def run(job: _Job) -> ReferResult:
            frame = self._query_frame(None, None)
            res = self.predictor.refer(frame.rgb, frame.labels, msg.expression,
                                       region_ids=frame.region_ids or None,
                                       max_new_tokens=int(self.p("max_new_tokens")))
            return ReferResult(query_id=msg.query_id, expression=msg.expression,
                               matched_ids=[int(i) for i in res.matched_ids],
                               scores=[float(s) for s in res.scores], header=frame.header,
                               raw_answer=res.raw_answer, success=True)

        def finish(job: _Job) -> None:
            out = job.result
            if out is None:
                out = ReferResult(query_id=msg.query_id, expression=msg.expression,
                                  success=False, error=job.error or "query not run")
                self.counters.add(queries_failed=1)
                self.get_logger().warning(f"query {msg.query_id!r} failed: {out.error}")
            else:
                self.counters.add(queries_answered=1)
            pub = self._pubs.get("refer_result")
            if pub is not None:
                pub.publish(out)

        job = _Job(run, finish)
        worker = self._worker
        if worker is None or not worker.submit_query(job):
            job.cancelled.set()
            job.error = "too many pending queries (max_pending_queries); try again later"
            job()

    def _on_goal(self, goal: RegionQuery.Goal) -> GoalResponse:
        with self._goal_lock:
            if self._worker is None or self._active_goals >= int(self.p("max_pending_queries")):
                self.get_logger().warning("refer goal rejected: node busy or inactive")
                return GoalResponse.REJECT
            self._active_goals += 1
        return GoalResponse.ACCEPT

    def _execute_goal(self, goal_handle) -> RegionQuery.Result:
        """Action: queue the query on the worker, wait for it, honour cancel."""
        try:
            return self._execute_goal_inner(goal_handle)
        finally:
            with self._goal_lock:
                self._active_goals -= 1

    def _execute_goal_inner(self, goal_handle) -> RegionQuery.Result:
        goal: RegionQuery.Goal = goal_handle.request
        self.counters.add(queries_received=1)
        result = RegionQuery.Result(query_id=goal.query_id)
        task = goal.task.strip() or "refer"

        def feedback(stage: str, done: int = 0, total: int = 0, partial: str = "") -> None:
            goal_handle.publish_feedback(RegionQuery.Feedback(
                stage=stage, done=done, total=total, partial_answer=partial))

        def run(job: _Job) -> RegionQuery.Result:
            from rgpt_model.errors import InvalidQueryError

            if task not in ACTION_TASKS:
                raise InvalidQueryError(f"unknown task {task!r}; use one of {ACTION_TASKS}")
            frame = self._query_frame(goal.image, goal.masks)
            ids = [int(i) for i in goal.region_ids] or frame.region_ids or None
            tokens = int(goal.max_new_tokens) or int(self.p("max_new_tokens"))
            feedback("generating", 0, len(ids or []))
            out = RegionQuery.Result(query_id=goal.query_id, header=frame.header, success=True)
            if task == "refer":
                res = self.predictor.refer(frame.rgb, frame.labels, goal.expression,
                                           region_ids=ids, max_new_tokens=tokens)
                out.matched_ids = [int(i) for i in res.matched_ids]
                out.scores = [float(s) for s in res.scores]
                out.answer = res.raw_answer
            elif task == "ask":
                out.answer = self.predictor.ask(frame.rgb, frame.labels, goal.expression,
                                                region_ids=ids, max_new_tokens=tokens)
            else:
                tasks = ["classify", "caption"] if task == "describe" else [task]
                descs = self.predictor.describe(
                    frame.rgb, frame.labels, region_ids=ids, tasks=tasks,
                    vocabulary=parse_vocabulary(self.p("vocabulary")), max_new_tokens=tokens)
                for d in descs:
                    x, y, w, h = d.bbox
                    out.regions.append(RegionDescription(
                        id=int(d.region_id), area=int(d.area), label=d.label,
                        label_score=float(d.label_score), caption=d.caption,
                        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)))
            feedback("done", len(ids or []), len(ids or []), out.answer)
            return out

        job = _Job(run)
        feedback("waiting")
        worker = self._worker
        if worker is None or not worker.submit_query(job):
            job.error = "too many pending queries (max_pending_queries); try again later"
            job.done.set()
        while not job.done.wait(0.05):
            if goal_handle.is_cancel_requested:
                job.cancelled.set()  # skipped if not started; result discarded otherwise
                goal_handle.canceled()
                self.counters.add(queries_failed=1)
                result.success, result.error = False, "canceled"
                return result
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
            self.counters.add(queries_failed=1)
            result.success, result.error = False, "canceled"
            return result
        if job.result is None:
            result.success = False
            result.error = job.error or "query not run"
            self.counters.add(queries_failed=1)
            self.get_logger().warning(f"goal {goal.query_id!r} failed: {result.error}")
            goal_handle.abort()
            return result
        self.counters.add(queries_answered=1)
        goal_handle.succeed()
        return job.result


def usage() -> str:
    """--help text: how to run it and every parameter with its default."""
    from .parameters import PARAMS

    lines = ["usage: rgpt_node [--ros-args -p name:=value ... -r image:=/camera/image_raw "
             "-r __ns:=/robot1 --params-file config/rgpt_node.yaml]", "",
             "RegionGPT lifecycle node. Topics (relative): image (or image/compressed), masks, "
             "label_map, refer_query in; regions, refer_result, debug_image, status out; "
             "action refer.", "", "parameters (default) [when a change takes effect]:"]
    for spec in PARAMS:
        lines.append(f"  {spec.name} ({spec.default!r}) [{spec.policy}]: {spec.description}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    """Run the node; with autostart (default) it configures and activates itself."""
    import sys

    argv = sys.argv[1:] if args is None else args
    user_args = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in user_args or "--help" in user_args:
        print(usage())
        return
    rclpy.init(args=args)
    node = RGPTNode()
    executor = MultiThreadedExecutor(num_threads=int(node.p("max_pending_queries")) + 4)
    executor.add_node(node)
    try:
        if node.p("autostart"):
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            else:
                node.get_logger().error("autostart: configure failed; the node waits "
                                        "unconfigured (fix the parameters, then configure)")
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node._worker is not None:
            node._worker.stop(timeout=5.0)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
