"""How many CPU threads torch may use inside one operation (intra-op parallelism).

Torch defaults to one thread per core. A server process that also runs an executor and DDS
threads then fights itself on a small machine: on 2 cores the node's per-frame p95 went from
57 ms (1 thread) to 1.39 s (default). Leaving one core to the rest of the process avoids that.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_num_threads() -> int:
    """One core left to the caller's other threads: max(1, CPUs - 1)."""
    return max(1, available_cpus() - 1)


def set_num_threads(count: int = 0) -> int:
    """Set torch's intra-op thread count (``count`` <= 0: :func:`default_num_threads`) and
    return the count now in effect."""
    import torch

    wanted = int(count) if int(count) > 0 else default_num_threads()
    torch.set_num_threads(wanted)
    actual = torch.get_num_threads()
    logger.info("torch intra-op threads: %d", actual)
    return actual
