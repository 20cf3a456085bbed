"""The input side of the node: subscriptions, stamp matching, conversion, hand-over to the worker.

Callbacks here run on the executor: they only validate and convert messages (cheap, bounded by
max_image_width/height) and hand the newest frame of each stream to the worker. Nothing here
runs the model or SAM. Every stream has its own subscriptions, synchroniser and label maps, so a
stream whose masks never come, or whose input is bad, holds up no other stream. Inputs that
never find a partner are counted per stream and input and, past unmatched_warn_after seconds,
reported in a throttled warning that names the topic and the stamps seen.
"""

from __future__ import annotations

import time

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from regiongpt_ros.msg import LabelMap, RegionPromptArray
from sensor_msgs.msg import CompressedImage, Image

from . import conversions as conv
from .frames import Frame
from .jobs import describe_error
from .streams import Stream
from .synchronizer import StampSynchronizer

LABEL_MAP_KEEP = 32  # stamped label maps remembered per stream (bounded)


def _stamp_text(stamp_ns: int | None) -> str:
    return "none yet" if stamp_ns is None else f"{stamp_ns / 1e9:.3f}"


class InputsMixin:
    """Input handling of RGPTNode (needs p(), counters, streams, _worker, _subs, _input_group)."""

    def _limit(self) -> conv.SizeLimit:
        return conv.SizeLimit(int(self.p("max_image_width")), int(self.p("max_image_height")))

    def _create_inputs(self) -> None:
        """Per stream: image + masks (or prompts) subscriptions into its own synchroniser, and
        its label map."""
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=int(self.p("input_depth")),
            reliability=(ReliabilityPolicy.BEST_EFFORT
                         if self.p("input_reliability") == "best_effort"
                         else ReliabilityPolicy.RELIABLE))
        img_type, img_topic = (CompressedImage, "image/compressed") \
            if self.p("compressed_input") else (Image, "image")
        region_type, region_topic = (RegionPromptArray, "prompts") \
            if self.p("region_source") == "prompts" else (Image, "masks")
        for stream in self.streams.values():
            stream.sync = StampSynchronizer(float(self.p("sync_slop")),
                                            int(self.p("sync_queue_size")))
            stream.unmatched_warned = [0.0, 0.0]
            stream.input_subs = (
                self.create_subscription(
                    img_type, stream.topic(img_topic),
                    lambda m, s=stream: self._on_input(s, 0, m), qos,
                    callback_group=self._input_group),
                self.create_subscription(
                    region_type, stream.topic(region_topic),
                    lambda m, s=stream: self._on_input(s, 1, m), qos,
                    callback_group=self._input_group))
            self._subs.extend(stream.input_subs)
            self._subs.append(self.create_subscription(
                LabelMap, stream.topic("label_map"),
                lambda m, s=stream: self._on_label_map(s, m), 10,
                callback_group=self._input_group))

    def _on_input(self, stream: Stream, index: int, msg) -> None:
        sync = stream.sync
        if sync is None:
            return
        pair = sync.add(index, conv.stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self._on_pair(stream, *pair)

    def _on_label_map(self, stream: Stream, msg: LabelMap) -> None:
        if len(msg.ids) != len(msg.labels):
            self.counters.error(f"{stream.topic('label_map')} ignored: {len(msg.ids)} ids but "
                                f"{len(msg.labels)} labels", stream.name)
            self.get_logger().warning(self.counters.last_error)
            return
        maps = stream.label_maps
        key = conv.stamp_to_ns(msg.header.stamp)
        maps[key] = {int(i): str(s) for i, s in zip(msg.ids, msg.labels, strict=True)}
        maps.move_to_end(key)
        while len(maps) > LABEL_MAP_KEEP:
            oldest = next(iter(maps))
            if oldest == 0 and len(maps) > 1:
                maps.move_to_end(0)
                oldest = next(iter(maps))
            maps.pop(oldest)

    def _on_pair(self, stream: Stream, image_msg, region_msg) -> None:
        """Convert and validate a synchronised pair, then hand it to the worker."""
        worker = self._worker
        if worker is None:
            return
        self.counters.add(stream.name, frames_received=1)
        try:
            frame = self.to_frame(image_msg, region_msg)
        except Exception as exc:  # noqa: BLE001 - bad input is counted, never raised
            stamp = image_msg.header.stamp
            where = f" of {stream.label}" if len(self.streams) > 1 else ""
            reason = (f"frame {stamp.sec}.{stamp.nanosec:09d}{where} rejected: "
                      f"{describe_error(exc)}")
            self.counters.error(reason, stream.name, frames_rejected=1)
            self.get_logger().warning(reason)
            return
        key = conv.stamp_to_ns(image_msg.header.stamp)
        frame.stream = stream.name
        frame.label_map = stream.label_maps.get(key) or stream.label_maps.get(0) or {}
        if worker.submit_frame(frame, stream.name):
            self.counters.add(stream.name, frames_dropped=1)

    def to_frame(self, image_msg, region_msg) -> Frame:
        """Message pair -> Frame (raises ConversionError with the reason); prompts are only
        validated here, the worker segments them."""
        limit = self._limit()
        if isinstance(image_msg, CompressedImage):
            rgb = conv.compressed_to_rgb(image_msg, limit)
        else:
            rgb = conv.image_to_rgb(image_msg, limit)
        if isinstance(region_msg, RegionPromptArray):
            return Frame(image_msg.header, rgb, prompts=conv.prompts_from_msg(region_msg))
        labels = conv.labels_from_msg(region_msg, limit)
        labels = conv.match_mask_size(labels, rgb.shape[0], rgb.shape[1])
        return Frame(image_msg.header, rgb, labels=labels)

    def check_unmatched(self) -> None:
        """Copy each stream's unmatched counts into the status; warn (throttled) about a
        lonely input."""
        warn_after = float(self.p("unmatched_warn_after"))
        for stream in self.streams.values():
            sync = stream.sync
            if sync is None:
                continue
            images, regions = sync.unmatched_counts()
            self.counters.set(stream.name, images_unmatched=images, masks_unmatched=regions)
            if warn_after > 0 and len(stream.input_subs) == 2:
                self._warn_unmatched(stream, warn_after)

    def _warn_unmatched(self, stream: Stream, warn_after: float) -> None:
        now = time.monotonic()
        for w in stream.sync.waiting():
            if now - w.since < warn_after or now - stream.unmatched_warned[w.index] < warn_after:
                continue
            stream.unmatched_warned[w.index] = now
            topic = stream.input_subs[w.index].topic_name
            other = stream.input_subs[1 - w.index].topic_name
            self.get_logger().warning(
                f"{topic}: {w.count} messages without a partner on {other} for "
                f"{now - w.since:.1f} s (stamps {_stamp_text(w.first_stamp_ns)} .. "
                f"{_stamp_text(w.last_stamp_ns)}; newest on {other}: "
                f"{_stamp_text(w.other_last_stamp_ns)}). Is the {other} publisher running, "
                f"and do its stamps match within sync_slop={float(self.p('sync_slop'))} s?")
