"""The worker side of a frame: regions from masks or prompts, the model, the published result.

Runs on the one worker thread only (never on the executor), and only for frames the worker
takes: prompts are turned into masks here, so SAM never runs for a frame that a newer one
superseded. The last described frame stays available to queries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from std_msgs.msg import Header

from . import conversions as conv
from . import debug_image
from .jobs import describe_error
from .parameters import parse_vocabulary


@dataclass
class Frame:
    """A synchronised, converted input pair; its regions are a label image or prompts."""

    header: Header
    rgb: np.ndarray
    labels: np.ndarray | None = None
    prompts: list | None = None  # rgpt_model RegionPrompt list when region_source is prompts
    label_map: dict[int, str] = field(default_factory=dict)
    received: float = field(default_factory=time.monotonic)


@dataclass
class ProcessedFrame:
    """What queries run against: the latest frame the model described."""

    header: Header
    rgb: np.ndarray
    masks: object  # label image (np.ndarray) or rgpt_model MaskStack
    region_ids: list[int]


class FramesMixin:
    """Frame processing of RGPTNode (needs p(), counters, predictor, sam, _pubs, _worker)."""

    def frame_masks(self, frame: Frame) -> tuple[object, dict[int, str]]:
        """(masks, known labels) of a frame: the label image, or SAM/box masks of its prompts
        (whose labels then name the regions, like a label map)."""
        if frame.prompts is None:
            return frame.labels, frame.label_map
        from rgpt_model.region_prompts import prompts_to_masks

        made = prompts_to_masks(frame.rgb, frame.prompts, self.sam)
        if made.empty_ids:
            self.get_logger().warning(f"prompts {made.empty_ids} produced no mask pixels; "
                                      "skipped")
        return made.stack, made.labels or frame.label_map

    def _process_frame(self, frame: Frame) -> None:
        """Worker: describe the frame's regions and publish them."""
        from rgpt_model.regions import describe_regions, outline_regions, select_regions

        t0 = time.perf_counter()
        tasks = [t for t in self.p("tasks") if t != "none"]
        try:
            masks, known = self.frame_masks(frame)
            region_ids = select_regions(masks, min_area=int(self.p("min_region_area")),
                                        max_regions=int(self.p("max_regions")))
            if tasks and region_ids:
                descs = describe_regions(
                    self.predictor, frame.rgb, masks, region_ids, tasks=tasks, known_labels=known,
                    vocabulary=parse_vocabulary(self.p("vocabulary")),
                    max_new_tokens=int(self.p("max_new_tokens")))
            else:
                descs = outline_regions(masks, region_ids, known)
        except Exception as exc:  # noqa: BLE001 - a frame the model refuses is a bad input
            reason = f"frame rejected by the model: {describe_error(exc)}"
            self.counters.error(reason, frames_rejected=1)
            self.get_logger().warning(reason)
            return
        infer = time.perf_counter() - t0
        out = conv.region_array_msg(frame.header, descs, tasks or ["none"], infer)
        with self._latest_lock:
            self._latest = ProcessedFrame(frame.header, frame.rgb, masks, region_ids)
        pubs = self._pubs
        if "regions" in pubs:
            pubs["regions"].publish(out)
        self.counters.latency(infer)
        self.counters.add(frames_processed=1)
        if self.p("publish_debug_image") and "debug_image" in pubs:
            labels = masks if isinstance(masks, np.ndarray) else masks.to_label_image()
            marks = [(d.region_id, d.bbox, d.label) for d in descs]
            img = debug_image.draw(frame.rgb, labels, marks)
            pubs["debug_image"].publish(conv.rgb_to_image_msg(img, frame.header))
