"""The camera streams one node serves: names, their topics, and each stream's own state.

A stream is a name; its topics are that name as a namespace relative to the node's:
``<name>/image`` (or ``<name>/image/compressed``), ``<name>/masks`` (or ``<name>/prompts``),
``<name>/label_map`` and ``<name>/refer_query`` in; ``<name>/regions``, ``<name>/refer_result``,
``<name>/debug_image`` and the action ``<name>/refer`` out. The empty name is the node's own
namespace, so the default ``streams: [""]`` gives exactly the single-camera topics. Users point a
stream at their camera with ordinary remapping (``-r front/image:=/front/color/image_raw``), as
with any ROS node.

Everything that belongs to one camera lives in its :class:`Stream`: the synchroniser (stamps of
one camera never pair with another's masks), the label maps, the frame counters, the latest
processed frame that queries run on, and the answer cache (region ids are a stream's own).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .synchronizer import StampSynchronizer

# ROS name tokens separated by '/': relative, so a stream lives in the node's namespace.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
REFER_CACHE_SIZE = 16  # referring answers remembered per stream (bounded)


def stream_names_problem(names: Sequence[str]) -> str:
    """Why ``names`` cannot be the node's streams ('' when they can)."""
    names = list(names)
    if not names:
        return "streams must not be empty; [''] is the node's own namespace (one camera)"
    bad = [n for n in names if n != "" and not _NAME.match(n)]
    if bad:
        return (f"stream names {bad} are not relative ROS names (letters, digits, '_', tokens "
                "separated by '/', not starting with a digit or '/'); '' is the node's namespace")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return f"stream names {twice} appear more than once; give each camera one name"
    return ""


def stream_topic(stream: str, base: str) -> str:
    """``base`` (e.g. 'image') in the namespace of ``stream`` ('' = the node's own)."""
    return f"{stream}/{base}" if stream else base


def stream_label(stream: str) -> str:
    """How logs and errors name a stream."""
    return f"stream {stream!r}" if stream else "the stream"


@dataclass
class Stream:
    """One camera's state inside the node (see module docstring)."""

    name: str
    sync: StampSynchronizer | None = None  # made on activate (sync_queue_size may change)
    label_maps: OrderedDict = field(default_factory=OrderedDict)  # stamp ns -> {id: name}
    input_subs: tuple = ()
    pubs: dict[str, Any] = field(default_factory=dict)
    unmatched_warned: list[float] = field(default_factory=lambda: [0.0, 0.0])
    latest: Any = None  # ProcessedFrame: what queries on this stream run against
    reuse: Any = None  # rgpt_model AnswerReuse for this stream's regions, or None
    reuse_settings: tuple | None = None  # (iou, cosine, max_age) the reuse object was made with
    refer_cache: OrderedDict = field(default_factory=OrderedDict)  # key -> (snapshot, answer)
    lock: threading.Lock = field(default_factory=threading.Lock)  # latest and refer_cache

    def topic(self, base: str) -> str:
        return stream_topic(self.name, base)

    @property
    def label(self) -> str:
        return stream_label(self.name)

    def set_latest(self, processed) -> None:
        with self.lock:
            self.latest = processed

    def get_latest(self):
        with self.lock:
            return self.latest

    def remember_answer(self, key: tuple, snapshot, answer) -> None:
        """Keep a referring answer with the regions it was computed on (bounded, LRU)."""
        with self.lock:
            self.refer_cache[key] = (snapshot, answer)
            self.refer_cache.move_to_end(key)
            while len(self.refer_cache) > REFER_CACHE_SIZE:
                self.refer_cache.popitem(last=False)

    def cached_answer(self, key: tuple):
        """(snapshot, answer) of an earlier identical query, or None."""
        with self.lock:
            return self.refer_cache.get(key)

    def forget(self) -> None:
        """Drop what refers to earlier frames (deactivate: tensors may live on the GPU)."""
        with self.lock:
            self.latest = None
            self.refer_cache.clear()
        self.reuse = None
        self.reuse_settings = None
        if self.sync is not None:
            self.sync.clear()
