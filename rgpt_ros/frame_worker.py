"""One inference thread: the newest frame wins, queries wait in a short bounded queue.

The executor thread only hands work over (O(1), never blocks on the model). A single thread owns
the model, so frames and queries never run the predictor concurrently. A frame still waiting
when a newer one arrives is dropped (counted); a query that finds the queue full is refused at
once, so there is no unbounded queue anywhere.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class LatestFrameWorker:
    """Runs ``process_frame(frame)`` for the newest submitted frame and ``job()`` for queries."""

    def __init__(
        self,
        process_frame: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        max_queries: int = 8,
        name: str = "rgpt_worker",
    ) -> None:
        self._process_frame = process_frame
        self._on_error = on_error
        self._cond = threading.Condition()
        self._frame: Any = None
        self._queries: deque[Callable[[], None]] = deque()
        self.max_queries = max(1, int(max_queries))
        self.min_period_s = 0.0  # rate limit: least time between the starts of two frames
        self._last_frame_start = 0.0
        self._stop = False
        self.stopping = threading.Event()  # set by stop(): long work polls it to end early
        self._current: tuple[str, Any] | None = None  # ("frame" | "query", item) running now
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._current is not None

    def submit_frame(self, frame: Any) -> bool:
        """Make ``frame`` the next frame; returns True when it superseded a waiting one."""
        with self._cond:
            superseded = self._frame is not None
            if superseded:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()
            return superseded

    def submit_query(self, job: Callable[[], None]) -> bool:
        """Queue a query job; False (not queued) when the queue is full."""
        with self._cond:
            if len(self._queries) >= self.max_queries:
                return False
            self._queries.append(job)
            self._cond.notify()
            return True

    def queries(self) -> list[Callable[[], None]]:
        """The query running now (if any) and those waiting, e.g. to cancel them all."""
        with self._cond:
            running = [self._current[1]] if self._current and self._current[0] == "query" \
                else []
            return running + list(self._queries)

    def pending(self) -> int:
        with self._cond:
            return len(self._queries) + (self._frame is not None)

    def stop(self, timeout: float = 30.0) -> tuple[bool, list[Callable[[], None]]]:
        """Stop after the current item (``stopping`` tells it to hurry); returns (a frame was
        waiting, queries never run)."""
        self.stopping.set()
        with self._cond:
            self._stop = True
            dropped = self._frame is not None
            if dropped:
                self.dropped += 1
            self._frame = None
            left = list(self._queries)
            self._queries.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return dropped, left

    def _next(self) -> tuple[str, Any] | None:
        with self._cond:
            self._current = None
            while True:
                if self._stop:
                    return None
                if self._queries:  # interactive queries first: frames always have a newer one
                    self._current = ("query", self._queries.popleft())
                    return self._current
                if self._frame is not None:
                    wait = self._last_frame_start + self.min_period_s - time.monotonic()
                    if wait <= 0:
                        self._current, self._frame = ("frame", self._frame), None
                        self._last_frame_start = time.monotonic()
                        return self._current
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            kind, payload = item
            try:
                if kind == "frame":
                    self._process_frame(payload)
                else:
                    payload()
            except BaseException as exc:  # noqa: BLE001 - the worker must survive any failure
                self._on_error(exc)
