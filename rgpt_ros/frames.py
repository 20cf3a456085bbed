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
    """What queries run against: the latest frame the model described, kept encoded so a
    query about it never runs the vision side again."""

    header: Header
    rgb: np.ndarray
    masks: object  # label image (np.ndarray) or rgpt_model MaskStack
    region_ids: list[int]
    encoded: object = None  # rgpt_model EncodedFrame of region_ids; None until first needed


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
        """Worker: describe the frame's regions and publish them (a stop request from
        deactivate or shutdown ends the decoding early; the frame then counts as dropped)."""
        from rgpt_model.errors import QueryCancelledError
        from rgpt_model.regions import describe_regions, outline_regions, select_regions

        t0 = time.perf_counter()
        tasks = [t for t in self.p("tasks") if t != "none"]
        worker = self._worker
        should_stop = worker.stopping.is_set if worker is not None else None
        encoded = None
        try:
            masks, known = self.frame_masks(frame)
            region_ids = select_regions(masks, min_area=int(self.p("min_region_area")),
                                        max_regions=int(self.p("max_regions")))
            if tasks and region_ids:
                encoded = self.predictor.encode(frame.rgb, masks, region_ids)
                descs = describe_regions(
                    self.predictor, encoded, tasks=tasks, known_labels=known,
                    vocabulary=parse_vocabulary(self.p("vocabulary")),
                    max_new_tokens=int(self.p("max_new_tokens")), should_stop=should_stop)
            else:
                descs = outline_regions(masks, region_ids, known)
        except QueryCancelledError:
            self.counters.add(frames_dropped=1)
            return
        except Exception as exc:  # noqa: BLE001 - a frame the model refuses is a bad input
            reason = f"frame rejected by the model: {describe_error(exc)}"
            self.counters.error(reason, frames_rejected=1)
            self.get_logger().warning(reason)
            return
        infer = time.perf_counter() - t0
        out = conv.region_array_msg(frame.header, descs, tasks or ["none"], infer)
        with self._latest_lock:
            self._latest = ProcessedFrame(frame.header, frame.rgb, masks, region_ids, encoded)
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

    def encoded_for(self, frame: ProcessedFrame, region_ids: list[int] | None):
        """The encoded frame a query runs on: the kept encoding when it covers
        ``region_ids`` (None = the frame's regions), else a new encoding of those ids."""
        ids = list(region_ids) if region_ids else list(frame.region_ids)
        kept = frame.encoded
        if kept is None and not region_ids:
            kept = frame.encoded = self.predictor.encode(frame.rgb, frame.masks, ids)
        if kept is not None and set(ids) <= set(kept.region_ids):
            return kept if ids == list(kept.region_ids) else kept.select(ids)
        return self.predictor.encode(frame.rgb, frame.masks, ids)
