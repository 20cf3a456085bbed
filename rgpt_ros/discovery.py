"""Waiting for DDS discovery: messages sent before a publisher and a subscription are matched
are lost, so the bag player and recorder wait for their peers before they start."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rclpy.publisher import Publisher
from rclpy.subscription import Subscription


def _peers(endpoint: Publisher | Subscription) -> int:
    if isinstance(endpoint, Publisher):
        return endpoint.get_subscription_count()
    return endpoint.get_publisher_count()


def wait_matched(endpoints: Sequence[Publisher | Subscription], timeout: float
                 ) -> list[Publisher | Subscription]:
    """Wait up to ``timeout`` seconds until every endpoint has a peer; returns those without."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all(_peers(e) for e in endpoints):
        time.sleep(0.05)
    return [e for e in endpoints if not _peers(e)]
