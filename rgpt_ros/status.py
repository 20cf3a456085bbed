"""Counters and recent latency behind the `status` topic (regiongpt_ros/NodeStatus).

Updated from the executor thread and the worker thread, so every access holds a lock. The
latency window is bounded (last 100 frames).
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class StatusCounters:
    """Frame and query accounting: received = processed + dropped + rejected (+ in flight)."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._latency: deque[float] = deque(maxlen=window)
        self.reset()

    def reset(self) -> None:
        """Start counting from zero (on activation)."""
        with self._lock:
            self.frames_received = 0
            self.frames_processed = 0
            self.frames_dropped = 0
            self.frames_rejected = 0
            self.queries_received = 0
            self.queries_answered = 0
            self.queries_failed = 0
            self.images_unmatched = 0
            self.masks_unmatched = 0
            self.last_error = ""
            self._latency.clear()

    def set(self, **values: int) -> None:
        """Overwrite counters kept elsewhere, e.g. the synchroniser's unmatched counts."""
        with self._lock:
            for name, value in values.items():
                setattr(self, name, int(value))

    def add(self, **counts: int) -> None:
        """Increment named counters, e.g. ``add(frames_received=1)``."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def error(self, text: str, **counts: int) -> None:
        """Record an error text (and optional counter increments) atomically."""
        with self._lock:
            self.last_error = text
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def latency(self, seconds: float) -> None:
        with self._lock:
            self._latency.append(float(seconds))

    def to_msg(self, msg, state: str, stamp) -> object:
        """Fill a NodeStatus message."""
        with self._lock:
            msg.header.stamp = stamp
            msg.state = state
            msg.frames_received = self.frames_received
            msg.frames_processed = self.frames_processed
            msg.frames_dropped = self.frames_dropped
            msg.frames_rejected = self.frames_rejected
            msg.queries_received = self.queries_received
            msg.queries_answered = self.queries_answered
            msg.queries_failed = self.queries_failed
            msg.images_unmatched = self.images_unmatched
            msg.masks_unmatched = self.masks_unmatched
            lat = np.asarray(self._latency, dtype=np.float64)
            msg.latency_last = float(lat[-1]) if len(lat) else 0.0
            msg.latency_p50 = float(np.percentile(lat, 50)) if len(lat) else 0.0
            msg.latency_p95 = float(np.percentile(lat, 95)) if len(lat) else 0.0
            msg.last_error = self.last_error
        return msg
