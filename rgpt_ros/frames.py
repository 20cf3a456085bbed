"""The worker side of frames: regions from masks or prompts, the model, the published results.

Runs on the one worker thread only (never on the executor), and only for frames the worker
takes: prompts are turned into masks here, so SAM never runs for a frame that a newer one
superseded. A batch holds at most one frame per stream; all its frames go through one vision
batch (``predictor.encode_many``) and one decoding batch (``predictor.describe_many``), and each
stream's answers are published in its own namespace with its own header. A frame the model
refuses is that stream's rejection: the batch is then run frame by frame, so the other streams
are still served. Each stream's AnswerReuse skips decoding regions that have not changed. The
last described frame of each stream stays available to its queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from std_msgs.msg import Header

from . import conversions as conv
from . import debug_image
from .jobs import describe_error
from .parameters import parse_vocabulary
from .streams import Stream


@dataclass
class Frame:
    """A synchronised, converted input pair; its regions are a label image or prompts."""

    header: Header
    rgb: np.ndarray
    labels: np.ndarray | None = None
    prompts: list | None = None  # rgpt_model RegionPrompt list when region_source is prompts
    label_map: dict[int, str] = field(default_factory=dict)
    received: float = field(default_factory=time.monotonic)
    stream: str = ""  # the stream it came from ('' = the node's own namespace)


@dataclass
class ProcessedFrame:
    """What queries run against: the latest frame the model described, kept encoded so a
    query about it never runs the vision side again."""

    header: Header
    rgb: np.ndarray
    masks: object  # label image (np.ndarray) or rgpt_model MaskStack
    region_ids: list[int]
    encoded: object = None  # rgpt_model EncodedFrame of region_ids; None until first needed


@dataclass
class _Work:
    """One frame of a batch on its way through the model."""

    frame: Frame
    masks: object
    known: dict[int, str]
    region_ids: list[int]
    encoded: Any = None
    descriptions: list | None = None
    error: BaseException | None = None


def batch_or_each(run: Callable[[list], list], items: list) -> list:
    """``run(items)``, one result per item; when the batch fails, each item alone, so one bad
    item gets its exception (in its place) and the others their results. A stop request
    (QueryCancelledError) ends everything."""
    from rgpt_model.errors import QueryCancelledError

    if not items:
        return []
    try:
        return list(run(items))
    except QueryCancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolated below
        if len(items) == 1:
            return [exc]
    out: list = []
    for item in items:
        try:
            out.append(run([item])[0])
        except QueryCancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - this item's failure only
            out.append(exc)
    return out


class FramesMixin:
    """Frame processing of RGPTNode (needs p(), counters, predictor, sam, streams, _worker)."""

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

    def reuse_for(self, stream: Stream):
        """The stream's AnswerReuse under the current reuse parameters, or None when reuse is
        off (a threshold or the age is 0). A parameter change starts a fresh cache."""
        settings = (float(self.p("reuse_iou_threshold")),
                    float(self.p("reuse_cosine_threshold")), int(self.p("reuse_max_age")))
        if not all(settings):
            stream.reuse, stream.reuse_settings = None, settings
        elif stream.reuse is None or stream.reuse_settings != settings:
            from rgpt_model.answer_reuse import AnswerReuse

            stream.reuse, stream.reuse_settings = AnswerReuse(*settings), settings
        return stream.reuse

    def _process_frames(self, frames: Sequence[Frame]) -> None:
        """Worker: describe one batch of frames (one per stream) and publish each stream's
        result. A stop request from deactivate or shutdown ends the decoding early; the
        batch's frames then count as dropped."""
        from rgpt_model.errors import QueryCancelledError
        from rgpt_model.regions import outline_regions, select_regions

        t0 = time.perf_counter()
        tasks = [t for t in self.p("tasks") if t != "none"]
        work: list[_Work] = []
        for frame in frames:
            try:
                masks, known = self.frame_masks(frame)
                ids = select_regions(masks, min_area=int(self.p("min_region_area")),
                                     max_regions=int(self.p("max_regions")))
                work.append(_Work(frame, masks, known, ids))
            except Exception as exc:  # noqa: BLE001 - this stream's bad input
                self._reject(frame.stream, exc)
        try:
            self._run_model([w for w in work if tasks and w.region_ids], tasks)
        except QueryCancelledError:
            for w in work:
                self.counters.add(w.frame.stream, frames_dropped=1)
            return
        served = []
        for w in work:
            if w.error is not None:
                self._reject(w.frame.stream, w.error)
                continue
            if w.descriptions is None:
                w.descriptions = outline_regions(w.masks, w.region_ids, w.known)
            served.append(w)
        infer = time.perf_counter() - t0
        self.counters.latency(infer, [w.frame.stream for w in served])
        for w in served:
            self._publish(w, tasks or ["none"], infer)

    def _run_model(self, work: list[_Work], tasks: list[str]) -> None:
        """One vision batch, then one decoding batch, for every frame that needs the model;
        sets each frame's ``encoded`` and ``descriptions``, or its ``error``."""
        if not work:
            return
        worker = self._worker
        encoded = batch_or_each(
            lambda ws: self.predictor.encode_many(
                [(w.frame.rgb, w.masks, w.region_ids) for w in ws]), work)
        for w, got in zip(work, encoded, strict=True):
            if isinstance(got, BaseException):
                w.error = got
            else:
                w.encoded = got
        ready = [w for w in work if w.error is None]
        options = {"tasks": tasks, "vocabulary": parse_vocabulary(self.p("vocabulary")),
                   "max_new_tokens": int(self.p("max_new_tokens")),
                   "should_stop": worker.stopping.is_set if worker is not None else None}
        described = batch_or_each(
            lambda ws: self.predictor.describe_many(
                [w.encoded for w in ws], named=[w.known for w in ws],
                reuse=[self.reuse_for(self.streams[w.frame.stream]) for w in ws], **options),
            ready)
        for w, got in zip(ready, described, strict=True):
            if isinstance(got, BaseException):
                w.error = got
            else:
                w.descriptions = got

    def _reject(self, stream: str, exc: BaseException) -> None:
        where = f" ({self.streams[stream].label})" if len(self.streams) > 1 else ""
        reason = f"frame rejected by the model{where}: {describe_error(exc)}"
        self.counters.error(reason, stream, frames_rejected=1)
        self.get_logger().warning(reason)

    def _publish(self, w: _Work, tasks: list[str], infer: float) -> None:
        """One stream's result: regions (its header), debug image, latest frame, counters."""
        frame, descs = w.frame, w.descriptions
        stream = self.streams[frame.stream]
        stream.set_latest(ProcessedFrame(frame.header, frame.rgb, w.masks, w.region_ids,
                                         w.encoded))
        pubs = stream.pubs
        if "regions" in pubs:
            pubs["regions"].publish(conv.region_array_msg(frame.header, descs, tasks, infer))
        reused = sum(1 for d in descs if d.reused)
        decoded = len(descs) - reused if w.encoded is not None else 0
        self.counters.add(frame.stream, frames_processed=1, regions_reused=reused,
                          regions_decoded=decoded)
        if self.p("publish_debug_image") and "debug_image" in pubs:
            labels = w.masks if isinstance(w.masks, np.ndarray) else w.masks.to_label_image()
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
