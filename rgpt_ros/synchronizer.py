"""Pair images with their regions (mask label images or prompt arrays) by header stamp.

Exact or within a slop. ROS's `message_filters` is not installable here, so this is the one
synchroniser the node uses; both queues are bounded, so a topic that never matches cannot grow
memory. It also keeps what a user needs when nothing pairs: per input, how many messages left
without a partner, and since when and with which stamps an input has been waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

INPUTS = ("image", "regions")  # index 0 and 1 of add()


@dataclass(frozen=True)
class Waiting:
    """An input that has received messages but found no partner since ``since`` (monotonic s)."""

    index: int
    since: float
    count: int  # messages received on this input since its last match
    first_stamp_ns: int
    last_stamp_ns: int
    other_last_stamp_ns: int | None  # newest stamp seen on the other input (None: nothing yet)


class StampSynchronizer:
    """Match two streams by stamp (ns); the oldest unmatched message falls off a full queue."""

    def __init__(self, slop_s: float = 0.0, queue_size: int = 5) -> None:
        self._lock = threading.Lock()
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = max(1, int(queue_size))
        self._queues: tuple[deque, deque] = (deque(), deque())
        self.unmatched = [0, 0]  # per input: messages that left a queue without a partner
        self._waiting: list[dict | None] = [None, None]
        self._last_stamp: list[int | None] = [None, None]

    def set_slop(self, slop_s: float) -> None:
        """Runtime parameter change: applies to the next match."""
        with self._lock:
            self.slop_ns = int(round(slop_s * 1e9))

    def clear(self) -> None:
        with self._lock:
            for k in (0, 1):
                self._queues[k].clear()
                self._waiting[k] = None

    def unmatched_counts(self) -> tuple[int, int]:
        with self._lock:
            return self.unmatched[0], self.unmatched[1]

    def waiting(self) -> list[Waiting]:
        """Inputs that are waiting for a partner now, oldest wait first."""
        with self._lock:
            out = [Waiting(k, w["since"], w["count"], w["first"], w["last"],
                           self._last_stamp[1 - k])
                   for k, w in enumerate(self._waiting) if w is not None]
        return sorted(out, key=lambda w: w.since)

    def add(self, index: int, stamp_ns: int, msg: Any) -> tuple[Any, Any] | None:
        """Add a message of stream ``index`` (0 = image, 1 = regions); return a matched pair.

        The partner is the closest-stamped message of the other stream within the slop;
        everything older than the matched pair in both queues is discarded (it can no longer
        be the best match for anything newer).
        """
        with self._lock:
            self._last_stamp[index] = stamp_ns
            other = self._queues[1 - index]
            best, best_dt = -1, None
            for k, (ts, _) in enumerate(other):
                dt = abs(ts - stamp_ns)
                if dt <= self.slop_ns and (best_dt is None or dt < best_dt):
                    best, best_dt = k, dt
            own = self._queues[index]
            if best < 0:
                own.append((stamp_ns, msg))
                while len(own) > self.queue_size:
                    own.popleft()
                    self.unmatched[index] += 1
                self._note_waiting(index, stamp_ns)
                return None
            partner_ts, partner = other[best]
            for _ in range(best + 1):
                other.popleft()
            self.unmatched[1 - index] += best
            while own and own[0][0] <= max(stamp_ns, partner_ts):
                own.popleft()
                self.unmatched[index] += 1
            self._waiting = [None, None]
            return (msg, partner) if index == 0 else (partner, msg)

    def _note_waiting(self, index: int, stamp_ns: int) -> None:
        w = self._waiting[index]
        if w is None:
            self._waiting[index] = {"since": time.monotonic(), "count": 1, "first": stamp_ns,
                                    "last": stamp_ns}
        else:
            w["count"] += 1
            w["last"] = stamp_ns
