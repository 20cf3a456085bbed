"""Node parameters: one table with default, description, range and runtime-change policy.

The table is the single source for the declarations (with descriptors, so `ros2 param describe`
shows ranges), for config/rgpt_node.yaml (a test checks they agree) and for the policy that
accepts or rejects a change while the node runs:

- ``live``: takes effect on the next frame or query.
- ``inactive``: read when the subscriptions are created; change it while inactive.
- ``unconfigured``: read when the model loads; change it while unconfigured (cleanup first).
- ``startup``: read once by ``main()``; never changed at run time.

Setting a parameter to the value it already has always succeeds (loading the node's own
parameter dump must work in any state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)

from rgpt_model.device import DEVICE_HELP, device_name_problem

from .streams import stream_names_problem

TASK_CHOICES = ("classify", "caption", "detailed_caption", "none")
MAX_NEW_TOKENS_BOUND = 512  # the predictor refuses longer generations
DTYPE_CHOICES = ("float32", "float16", "bfloat16")
RELIABILITY_CHOICES = ("best_effort", "reliable")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    policy: str  # live | inactive | unconfigured | startup
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", "", "Model directory; empty = the built-in demo model "
              "(rgpt_model.demo.default_model_path()).", "unconfigured"),
    ParamSpec("device", "auto", f"Torch device: {DEVICE_HELP} (auto = cuda when available, "
              "else cpu).", "unconfigured"),
    ParamSpec("dtype", "float32", "Model dtype: float32, float16 or bfloat16 (half types need "
              "a GPU).", "unconfigured", choices=DTYPE_CHOICES),
    ParamSpec("encoder_backend", "torch", "Region encoder (vision + refinement + pooling): "
              "torch, or onnx (ONNX Runtime with TensorRT/CUDA/CPU, whichever is usable; "
              "exported once into the cache).", "unconfigured", choices=("torch", "onnx")),
    ParamSpec("streams", [""], "Camera streams this one node serves, by name; each name is a "
              "namespace for its topics (<name>/image, <name>/masks, <name>/regions, "
              "<name>/refer_query, action <name>/refer ...; remap them to your cameras as usual). "
              "'' is the node's own namespace: the default [''] is one camera on image, masks, "
              "regions. Frames of all streams share one model batch (max_batch_frames).",
              "unconfigured"),
    ParamSpec("max_batch_frames", 4, "Most frames (one per stream, round robin) the model "
              "takes in one vision batch and one decoding batch; bounds the time a batch takes.",
              "live", int_range=(1, 64)),
    ParamSpec("reuse_iou_threshold", 0.5, "Answer reuse: a region keeps its last label and "
              "caption (RegionDescription.reused, age) while its mask's IoU with the mask last "
              "answered is at least this; 0 disables reuse (every region decoded).", "live",
              float_range=(0.0, 1.0)),
    ParamSpec("reuse_cosine_threshold", 0.98, "Answer reuse: ... and the cosine similarity of "
              "its pooled vision feature with the one last answered is at least this; 0 "
              "disables reuse.", "live", float_range=(0.0, 1.0)),
    ParamSpec("reuse_max_age", 10, "Answer reuse: ... for at most this many frames of its "
              "stream, then it is decoded again; 0 disables reuse. Referring answers on a "
              "stream's latest frame are reused while no candidate region changed.", "live",
              int_range=(0, 100_000)),
    ParamSpec("region_source", "masks", "Where regions come from: masks (a label image on "
              "`masks`) or prompts (regiongpt_ros/RegionPromptArray boxes/points on `prompts`, "
              "e.g. from a detector: SAM turns them into masks when sam_checkpoint is set, "
              "otherwise boxes become rectangles).", "inactive", choices=("masks", "prompts")),
    ParamSpec("sam_checkpoint", "", "Local SAM checkpoint (sam_vit_b/l/h .pth) for "
              "region_source prompts; empty = boxes become rectangular masks and point prompts "
              "are rejected.", "unconfigured"),
    ParamSpec("sam_model_type", "auto", "SAM variant of sam_checkpoint: auto (read off the "
              "file), vit_b, vit_l or vit_h.", "unconfigured",
              choices=("auto", "vit_b", "vit_l", "vit_h")),
    ParamSpec("tasks", ["classify", "caption"], "Tasks run for every frame: any of classify, "
              "caption, detailed_caption; ['none'] alone publishes ids, boxes and areas only. "
              "Regions named by label_map (or by a detector's prompt labels) keep that name and "
              "are not classified.", "live", choices=TASK_CHOICES),
    ParamSpec("vocabulary", "", "Comma-separated class names for classification; empty = the "
              "model's own vocabulary.", "live"),
    ParamSpec("max_regions", 32, "Most regions described per frame; the largest ones are kept.",
              "live", int_range=(1, 1024)),
    ParamSpec("min_region_area", 1, "Regions with fewer mask pixels (at image resolution) are "
              "skipped.", "live", int_range=(1, 100_000_000)),
    ParamSpec("max_new_tokens", 32, "Generated tokens per caption / answer; an action goal may "
              f"ask for fewer or more, up to {MAX_NEW_TOKENS_BOUND}.", "live",
              int_range=(1, MAX_NEW_TOKENS_BOUND)),
    ParamSpec("max_query_chars", 1000, "Longest referring expression or question, in "
              "characters; longer ones get an error result at once.", "live",
              int_range=(1, 1_000_000)),
    ParamSpec("max_query_tokens", 256, "Longest referring expression or question, in tokens "
              "of the model's tokenizer; longer ones get an error result at once.",
              "live", int_range=(1, 100_000)),
    ParamSpec("num_threads", 0, "Torch intra-op CPU threads; 0 = one less than the CPUs this "
              "process may use (at least 1), leaving the executor and DDS a core.",
              "unconfigured", int_range=(0, 1024)),
    ParamSpec("sync_slop", 0.0, "Seconds by which image and mask stamps may differ and still "
              "pair (0 = exact).", "live", float_range=(0.0, 10.0)),
    ParamSpec("sync_queue_size", 5, "Unmatched messages kept per input while waiting for a "
              "partner.", "inactive", int_range=(1, 100)),
    ParamSpec("unmatched_warn_after", 5.0, "Warn (throttled) when one input has gone this many "
              "seconds without a partner on the other (e.g. the segmenter is down or stamps "
              "differ by more than sync_slop); 0 = never warn. status counts unmatched inputs "
              "either way.", "live", float_range=(0.0, 3600.0)),
    ParamSpec("input_reliability", "best_effort", "QoS reliability of the image/mask "
              "subscriptions: best_effort (sensor data, matches any camera) or reliable.",
              "inactive", choices=RELIABILITY_CHOICES),
    ParamSpec("input_depth", 5, "QoS history depth of the image/mask subscriptions.",
              "inactive", int_range=(1, 100)),
    ParamSpec("compressed_input", False, "Subscribe to sensor_msgs/CompressedImage on "
              "image/compressed instead of sensor_msgs/Image on image.", "inactive"),
    ParamSpec("rate_limit", 0.0, "Most frames per second given to the model per stream (0 = as "
              "fast as it goes; one batch takes at most one frame of each stream); frames in "
              "between are dropped, newest wins.", "live",
              float_range=(0.0, 1000.0)),
    ParamSpec("max_image_width", 4096, "Wider images and masks are rejected before any pixel "
              "is read.", "live", int_range=(1, 65535)),
    ParamSpec("max_image_height", 4096, "Taller images and masks are rejected before any pixel "
              "is read.", "live", int_range=(1, 65535)),
    ParamSpec("publish_debug_image", False, "Publish debug_image: the frame with mask outlines, "
              "ids and labels (for rviz).", "live"),
    ParamSpec("max_pending_queries", 8, "Queries (topic and action) waiting for the model; "
              "more are refused with an error result. Also the history depth of refer_query: "
              "the topic is best effort by nature (a burst beyond it can be lost in transport, "
              "unseen by the node); the refer action is the reliable path (every goal gets a "
              "result).", "inactive", int_range=(1, 1000)),
    ParamSpec("status_period", 1.0, "Seconds between status messages.", "unconfigured",
              float_range=(0.05, 3600.0)),
    ParamSpec("autostart", True, "main() configures and activates the node itself; false "
              "leaves it unconfigured for an external lifecycle manager.", "startup"),
)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """ParameterDescriptor with description and range, shown by `ros2 param describe`."""
    desc = ParameterDescriptor(description=spec.description)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.int_range:
        desc.integer_range = [IntegerRange(from_value=spec.int_range[0],
                                           to_value=spec.int_range[1], step=0)]
    if spec.float_range:
        desc.floating_point_range = [FloatingPointRange(from_value=spec.float_range[0],
                                                        to_value=spec.float_range[1], step=0.0)]
    return desc


def declare_all(node) -> None:
    """Declare every parameter of the table on ``node``."""
    for spec in PARAMS:
        node.declare_parameter(spec.name, spec.default, descriptor(spec))


def check_value(name: str, value: Any) -> str | None:
    """Reason why ``value`` is not acceptable for ``name`` (choices), or None."""
    if name == "device":
        return device_name_problem(str(value)) or None
    if name == "streams":
        return stream_names_problem([str(v) for v in value]) or None
    spec = SPECS.get(name)
    if spec is None or not spec.choices:
        return None
    if name == "tasks":
        bad = [t for t in value if t not in spec.choices]
        if bad:
            return f"unknown task(s) {bad}; choose from {spec.choices}"
        if "none" in value and len(value) > 1:
            return "'none' cannot be combined with other tasks"
        if not value:
            return "tasks must not be empty; use ['none'] for ids and boxes only"
        return None
    if value not in spec.choices:
        return f"{name} must be one of {spec.choices}, got {value!r}"
    return None


def change_policy(params, state: str, current: Callable[[str], Any] | None = None
                  ) -> SetParametersResult:
    """Accept or reject a runtime change given the lifecycle state label; the reason says why.

    ``state`` is unconfigured, inactive, active or finalized; ``current(name)`` gives the value
    a parameter has now, so setting that same value is accepted in any state.
    """
    for p in params:
        spec = SPECS.get(p.name)
        if spec is None:
            continue  # e.g. use_sim_time: rclpy handles it
        reason = check_value(p.name, p.value)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if current is not None and _same(current(p.name), p.value):
            continue
        reason = _policy_reason(spec, state)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, list | tuple) or isinstance(new, list | tuple):
        return list(old or []) == list(new or [])
    return old == new


def _policy_reason(spec: ParamSpec, state: str) -> str:
    """Why ``spec`` cannot change in ``state`` ('' when it can), with the steps that allow it."""
    if spec.policy == "startup":
        return f"{spec.name} is only read at startup; restart the node to change it"
    if spec.policy == "unconfigured" and state == "active":
        return (f"{spec.name} is read when the model loads: deactivate and cleanup the node "
                "(state active), set it, then configure and activate again")
    if spec.policy == "unconfigured" and state != "unconfigured":
        return (f"{spec.name} is read when the model loads: cleanup the node (state {state}), "
                "set it, then configure again")
    if spec.policy == "inactive" and state == "active":
        return (f"{spec.name} is read when the subscriptions are created: deactivate, set it, "
                "then activate")
    return ""


def parse_vocabulary(text: str) -> list[str] | None:
    """'cup, mug,plate' -> ['cup', 'mug', 'plate']; empty -> None (model default)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    return items or None


def params_yaml() -> str:
    """config/rgpt_node.yaml: every parameter with its default, described (from this table)."""
    import json
    import textwrap

    lines = ["# Every parameter of rgpt_node with its default (generated by",
             "# rgpt_ros.parameters.params_yaml(); tests/rgpt_ros/test_config_launch.py checks",
             "# that they agree). Policy: live = takes effect on the next frame; inactive =",
             "# change while the node is inactive; unconfigured = change while unconfigured",
             "# (read when the model loads); startup = read once by main(). Setting a parameter",
             "# to its current value always succeeds.",
             "/**:", "  ros__parameters:"]
    for spec in PARAMS:
        text = spec.description
        if spec.choices:
            text += " One of: " + ", ".join(spec.choices) + "."
        if spec.int_range or spec.float_range:
            low, high = spec.int_range or spec.float_range
            text += f" Range {low}..{high}."
        lines += textwrap.wrap(f"{text} [{spec.policy}]", 100, initial_indent="    # ",
                               subsequent_indent="    # ")
        value = str(spec.default).lower() if isinstance(spec.default, bool) \
            else json.dumps(spec.default)
        lines.append(f"    {spec.name}: {value}")
    return "\n".join(lines) + "\n"
