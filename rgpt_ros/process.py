"""Start the node in its own process (demo, tests, benchmark) and stop it cleanly.

Real deployments use the launch file; these helpers give the same command line
(`--ros-args -r __ns:=... -p name:=value -r from:=to`) without the launch package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any


def ros_args(params: Mapping[str, Any] | None = None, namespace: str = "",
             remap: Mapping[str, str] | None = None, params_file: str | None = None,
             log_level: str | None = None) -> list[str]:
    """Build a `--ros-args` list; values are written as YAML, so lists and bools work."""
    args = ["--ros-args"]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    for src, dst in (remap or {}).items():
        args += ["-r", f"{src}:={dst}"]
    if params_file:
        args += ["--params-file", str(params_file)]
    for name, value in (params or {}).items():
        args += ["-p", f"{name}:={json.dumps(value)}"]
    if log_level:
        args += ["--log-level", log_level]
    return args


def start_node(params: Mapping[str, Any] | None = None, namespace: str = "",
               remap: Mapping[str, str] | None = None, params_file: str | None = None,
               log: IO | str | Path | None = None, env: Mapping[str, str] | None = None,
               ) -> subprocess.Popen:
    """`python -m rgpt_ros.node --ros-args ...` as a child process (stdout+stderr to ``log``)."""
    cmd = [sys.executable, "-u", "-m", "rgpt_ros.node",
           *ros_args(params, namespace, remap, params_file)]
    out: Any = subprocess.DEVNULL
    if isinstance(log, str | Path):
        out = open(log, "w")  # noqa: SIM115 - lives as long as the process
    elif log is not None:
        out = log
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "2")
    full_env.update(env or {})
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)


def stop_node(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT (clean shutdown), then SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)
