"""One inference thread: the newest frame of each stream wins, queries wait in a bounded queue.

The executor thread only hands work over (O(1), never blocks on the model). A single thread owns
the model, so frames and queries never run the predictor concurrently. Each stream has one slot:
a frame still waiting when a newer one of the same stream arrives is dropped (counted); a query
that finds the queue full is refused at once, so there is no unbounded queue anywhere.

Several streams share the model fairly: a batch takes the waiting frame of each stream in round
robin order, at most ``max_batch_frames`` of them, starting after the stream served last. A
stream that sends ten times as fast as another only keeps its own slot full; the slower one is
in the next batch at the latest (within ceil(streams / max_batch_frames) batches).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any


class LatestFrameWorker:
    """Runs ``process_frame`` for the newest submitted frame of each stream and ``job()`` for
    queries. ``batched=False``: ``process_frame(frame)``, one frame at a time (still round robin
    over streams); ``batched=True``: ``process_frame([frame, ...])`` with up to
    ``max_batch_frames`` frames, one per stream."""

    def __init__(
        self,
        process_frame: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        max_queries: int = 8,
        name: str = "rgpt_worker",
        batched: bool = False,
    ) -> None:
        self._process_frame = process_frame
        self._on_error = on_error
        self._batched = batched
        self._cond = threading.Condition()
        self._frames: dict[Hashable, Any] = {}  # stream -> its newest waiting frame
        self._order: list[Hashable] = []  # streams in the order first seen (round robin)
        self._last_served: Hashable = None  # the next batch starts after this stream
        self._queries: deque[Callable[[], None]] = deque()
        self.max_queries = max(1, int(max_queries))
        self.max_batch_frames = 1  # frames (one per stream) per batch when batched
        self.min_period_s = 0.0  # rate limit: least time between the starts of two batches
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

    def submit_frame(self, frame: Any, stream: Hashable = None) -> bool:
        """Make ``frame`` the next frame of ``stream``; True when it superseded a waiting one
        of the same stream."""
        with self._cond:
            superseded = stream in self._frames
            if superseded:
                self.dropped += 1
            elif stream not in self._order:
                self._order.append(stream)
            self._frames[stream] = frame
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
            return len(self._queries) + len(self._frames)

    def stop(self, timeout: float = 30.0) -> tuple[list[Any], list[Callable[[], None]]]:
        """Stop after the current item (``stopping`` tells it to hurry); returns (frames that
        were waiting, queries never run)."""
        self.stopping.set()
        with self._cond:
            self._stop = True
            dropped = list(self._frames.values())
            self.dropped += len(dropped)
            self._frames.clear()
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
                if self._frames:
                    wait = self._last_frame_start + self.min_period_s - time.monotonic()
                    if wait <= 0:
                        self._current = ("frame", self._take_batch())
                        self._last_frame_start = time.monotonic()
                        return self._current
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _take_batch(self) -> Any:
        """Round robin from the stream after the one served last (holds the lock)."""
        limit = max(1, int(self.max_batch_frames)) if self._batched else 1
        order = self._order
        start = order.index(self._last_served) + 1 if self._last_served in order else 0
        taken = []
        for k in range(len(order)):
            stream = order[(start + k) % len(order)]
            if stream in self._frames:
                taken.append(self._frames.pop(stream))
                self._last_served = stream
                if len(taken) >= limit:
                    break
        return taken if self._batched else taken[0]

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
