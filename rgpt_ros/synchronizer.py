"""Pair images with mask label images by header stamp, exactly or within a slop.

`message_filters.ApproximateTimeSynchronizer` does this when a ROS distribution ships it (see
`node.py`); this is the fallback for environments without it. Both queues are bounded, so a
topic that never matches cannot grow memory.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

PairCallback = Callable[[Any, Any], None]


class StampSynchronizer:
    """Match two streams by stamp (ns); the oldest unmatched message falls off a full queue."""

    def __init__(self, slop_s: float = 0.0, queue_size: int = 5) -> None:
        self._lock = threading.Lock()
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = max(1, int(queue_size))
        self._queues: tuple[deque, deque] = (deque(), deque())
        self.unmatched = 0  # messages that fell off a queue without a partner

    def set_slop(self, slop_s: float) -> None:
        """Runtime parameter change: applies to the next match."""
        with self._lock:
            self.slop_ns = int(round(slop_s * 1e9))

    def clear(self) -> None:
        with self._lock:
            self._queues[0].clear()
            self._queues[1].clear()

    def add(self, index: int, stamp_ns: int, msg: Any) -> tuple[Any, Any] | None:
        """Add a message of stream ``index`` (0 = image, 1 = masks); return a matched pair.

        The partner is the closest-stamped message of the other stream within the slop;
        everything older than the matched pair in both queues is discarded (it can no longer
        be the best match for anything newer).
        """
        with self._lock:
            other = self._queues[1 - index]
            best, best_dt = -1, None
            for k, (ts, _) in enumerate(other):
                dt = abs(ts - stamp_ns)
                if dt <= self.slop_ns and (best_dt is None or dt < best_dt):
                    best, best_dt = k, dt
            if best < 0:
                own = self._queues[index]
                own.append((stamp_ns, msg))
                while len(own) > self.queue_size:
                    own.popleft()
                    self.unmatched += 1
                return None
            partner_ts, partner = other[best]
            for _ in range(best + 1):
                other.popleft()
            self.unmatched += best
            own = self._queues[index]
            while own and own[0][0] <= max(stamp_ns, partner_ts):
                own.popleft()
                self.unmatched += 1
            return (msg, partner) if index == 0 else (partner, msg)
