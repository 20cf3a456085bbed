"""Counters and recent latency behind the `status` topic (regiongpt_ros/NodeStatus).

Frames are counted per stream (each stream's received = processed + dropped + rejected holds on
its own) and published both as totals and as NodeStatus.streams; queries and the last error are
counted for the node. Updated from the executor thread and the worker thread, so every access
holds one lock. The latency windows are bounded (last 100 batches).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

FRAME_FIELDS = ("frames_received", "frames_processed", "frames_dropped", "frames_rejected",
                "images_unmatched", "masks_unmatched", "regions_decoded", "regions_reused")
QUERY_FIELDS = ("queries_received", "queries_answered", "queries_failed")
# NodeStatus carries these frame counters as totals (the reuse counts only per stream).
TOTAL_FIELDS = FRAME_FIELDS[:6]


class _StreamCounts:
    def __init__(self, window: int) -> None:
        self.counts = dict.fromkeys(FRAME_FIELDS, 0)
        self.latency: deque[float] = deque(maxlen=window)
        self.last_error = ""


def _percentiles(values: Iterable[float]) -> tuple[float, float, float]:
    lat = np.asarray(list(values), dtype=np.float64)
    if not len(lat):
        return 0.0, 0.0, 0.0
    return float(lat[-1]), float(np.percentile(lat, 50)), float(np.percentile(lat, 95))


class StatusCounters:
    """Frame accounting per stream, query accounting per node (module docstring)."""

    def __init__(self, window: int = 100, streams: Sequence[str] = ("",)) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._latency: deque[float] = deque(maxlen=window)
        self.set_streams(streams)

    def set_streams(self, names: Sequence[str]) -> None:
        """Count these streams from zero (on configure, when the stream list is read)."""
        with self._lock:
            self._streams = {str(n): _StreamCounts(self._window) for n in names}
            self._reset_node()

    def reset(self) -> None:
        """Start counting from zero (on activation)."""
        with self._lock:
            self._streams = {n: _StreamCounts(self._window) for n in self._streams}
            self._reset_node()

    def _reset_node(self) -> None:
        self._queries = dict.fromkeys(QUERY_FIELDS, 0)
        self._last_error = ""
        self._latency.clear()

    @property
    def stream_names(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    @property
    def last_error(self) -> str:
        with self._lock:
            return self._last_error

    def _bump(self, stream: str | None, counts: dict[str, int]) -> None:
        for name, n in counts.items():
            if name in QUERY_FIELDS:
                self._queries[name] += n
            elif stream is None:
                raise ValueError(f"{name} is counted per stream: pass stream=")
            else:
                self._streams[stream].counts[name] += n

    def add(self, stream: str | None = None, **counts: int) -> None:
        """Increment named counters, e.g. ``add("front", frames_received=1)`` or
        ``add(queries_received=1)``."""
        with self._lock:
            self._bump(stream, counts)

    def set(self, stream: str, **values: int) -> None:
        """Overwrite a stream's counters kept elsewhere, e.g. its synchroniser's unmatched."""
        with self._lock:
            self._streams[stream].counts.update({k: int(v) for k, v in values.items()})

    def error(self, text: str, stream: str | None = None, **counts: int) -> None:
        """Record an error text (the node's and, given one, the stream's) and optional
        counter increments, atomically."""
        with self._lock:
            self._last_error = text
            if stream is not None:
                self._streams[stream].last_error = text
            self._bump(stream, counts)

    def latency(self, seconds: float, streams: Sequence[str] = ()) -> None:
        """Model time of one batch: once for the node, once for each stream it served."""
        with self._lock:
            self._latency.append(float(seconds))
            for name in streams:
                self._streams[name].latency.append(float(seconds))

    def get(self, name: str, stream: str | None = None) -> int:
        """A counter: of one stream, or the node's total."""
        with self._lock:
            if name in QUERY_FIELDS:
                return self._queries[name]
            if stream is not None:
                return self._streams[stream].counts[name]
            return sum(s.counts[name] for s in self._streams.values())

    def __getattr__(self, name: str) -> int:
        """``counters.frames_received`` and the like: the node's totals."""
        if name in FRAME_FIELDS or name in QUERY_FIELDS:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to_msg(self, msg, state: str, stamp) -> object:
        """Fill a NodeStatus message: totals, then one StreamStatus per stream."""
        from regiongpt_ros.msg import StreamStatus

        with self._lock:
            msg.header.stamp = stamp
            msg.state = state
            for name in TOTAL_FIELDS:
                setattr(msg, name, sum(s.counts[name] for s in self._streams.values()))
            for name, value in self._queries.items():
                setattr(msg, name, value)
            msg.latency_last, msg.latency_p50, msg.latency_p95 = _percentiles(self._latency)
            msg.last_error = self._last_error
            msg.streams = []
            for name, s in self._streams.items():
                entry = StreamStatus(name=name, last_error=s.last_error, **s.counts)
                entry.latency_last, entry.latency_p50, entry.latency_p95 = \
                    _percentiles(s.latency)
                msg.streams.append(entry)
        return msg
