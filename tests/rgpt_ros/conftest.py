"""Fixtures for the node tests: the node runs in its own process, this process is the client.

One shared node (namespace /rgpt_test) serves the topic, action, bad-input and bag tests, so
the model loads once per session; lifecycle tests start their own nodes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import rclpy

from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_ros.client import RGPTClient
from rgpt_ros.process import start_node, stop_node

SHARED_NS = "/rgpt_test"
SHARED_PARAMS = {
    "status_period": 0.2,
    "max_new_tokens": 4,
    "max_regions": 8,
    "tasks": ["classify", "caption"],
    "publish_debug_image": True,
}


# The share of a seeded sample of referring expressions (every kind) the node must answer
# right; chance is about 1 in 6. It sits under the demo model's measured REC accuracy, so the
# test checks the node end to end rather than the model's last points.
REFERRING_BAR = 0.5

def scene(index: int, height: int = 96, width: int = 128, split: str = "val"):
    """A deterministic synthetic scene (image, labels, regions, expressions)."""
    return generate_scene(0, index, split, SceneConfig(height=height, width=width))


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@pytest.fixture(scope="session")
def ros_context():
    if not rclpy.ok():
        rclpy.init()
    yield
    rclpy.try_shutdown()


class NodeProcess:
    """A running node process with its log file."""

    def __init__(self, log: Path, **kw) -> None:
        self.log = log
        self.proc = start_node(log=log, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        return stop_node(self.proc)


@pytest.fixture(scope="session")
def shared_node(ros_context, tmp_path_factory):
    """(process, client) of the session's node, active and matched."""
    log = tmp_path_factory.mktemp("shared_node") / "node.log"
    node = NodeProcess(log, params=SHARED_PARAMS, namespace=SHARED_NS)
    client = RGPTClient(ns=SHARED_NS)
    if not client.wait_ready(120):
        node.stop()
        pytest.fail(f"shared node did not become active:\n{log_tail(log)}")
    yield node, client
    client.close()
    rc = node.stop()
    assert rc == 0, f"node exited with {rc}:\n{log_tail(log)}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random RGPT: fast, and it never stops before max_new_tokens (long decodes on
    demand for cancel and shutdown tests)."""
    from rgpt_model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_rgpt") / "model", seed=0)


def wait_for(predicate, timeout: float, step: float = 0.05):
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else None."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value or None
        time.sleep(step)


@pytest.fixture(scope="session")
def tmp_cache(tmp_path_factory) -> Path:
    return Path(os.environ.get("RGPT_TEST_CACHE", tmp_path_factory.mktemp("cache")))
