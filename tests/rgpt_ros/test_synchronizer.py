"""The one stamp synchroniser: pairing, bounded queues, per-input unmatched counts, waiting."""

from __future__ import annotations

import time

from rgpt_ros.synchronizer import StampSynchronizer


def test_sync_exact_and_slop():
    sync = StampSynchronizer(0.0, 3)
    assert sync.add(0, 100, "i1") is None
    assert sync.add(1, 101, "m1") is None  # 1 ns apart: no exact match
    assert sync.add(1, 100, "m0") == ("i1", "m0")
    sync.set_slop(0.001)
    assert sync.add(0, 5_000_100, "i2") is None  # m1 (101) is 5 ms away: beyond the slop
    assert sync.add(1, 5_000_100, "m2") == ("i2", "m2")


def test_sync_queue_is_bounded_and_counts_per_input():
    sync = StampSynchronizer(0.0, 2)
    for k in range(100):
        sync.add(0, k, k)
    assert len(sync._queues[0]) == 2 and sync.unmatched_counts() == (98, 0)
    assert sync.add(1, 99, "m") == (99, "m")
    assert sync.unmatched_counts() == (99, 0)  # image 98 was passed over by the match
    for k in range(5):
        sync.add(1, 1000 + k, k)
    assert sync.unmatched_counts() == (99, 3)


def test_waiting_names_the_lonely_input_and_its_stamps():
    sync = StampSynchronizer(0.0, 5)
    assert sync.waiting() == []
    t0 = time.monotonic()
    sync.add(1, 7, "m")  # one mask, long ago
    for k in range(10):
        sync.add(0, 1_000 + k, k)
    waiting = {w.index: w for w in sync.waiting()}
    image = waiting[0]
    assert image.count == 10 and (image.first_stamp_ns, image.last_stamp_ns) == (1_000, 1_009)
    assert image.other_last_stamp_ns == 7 and image.since >= t0
    assert waiting[1].count == 1 and waiting[1].other_last_stamp_ns == 1_009
    sync.add(1, 1_009, "m9")  # a match ends every wait
    assert sync.waiting() == []
