"""setup_env.sh (written by scripts/setup.sh), sourced in a clean shell, gives a whole ROS 2
environment: the ament index finds the wheels' packages next to ours (issue 18, defect 2: it
found only regiongpt_ros, so `ros2 interface show` stopped at std_msgs/Header), and the Fast DDS
profile for large frames is exported unless the user chose one (defect 13)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, os
from pathlib import Path
from ament_index_python import get_package_share_directory
shares = {p: get_package_share_directory(p) for p in ("std_msgs", "sensor_msgs", "regiongpt_ros")}
print(json.dumps({
    "shares": shares,
    "header_msg": (Path(shares["std_msgs"]) / "msg" / "Header.msg").is_file(),
    "profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"),
    "prefixes": os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep),
}))
"""


def _sourced(extra_env: dict[str, str] | None = None, twice: bool = False) -> dict:
    """Run PROBE in `bash -c 'source setup_env.sh && python -c PROBE'` with a bare environment."""
    if not (ROOT / "setup_env.sh").is_file():
        pytest.fail("setup_env.sh missing: run scripts/setup.sh")
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin",
           **(extra_env or {})}
    source = "source setup_env.sh && " * (2 if twice else 1)
    out = subprocess.run(["bash", "-c", f'{source}python -c "$PROBE"'], cwd=ROOT,
                         env={**env, "PROBE": PROBE}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ament_index_finds_the_wheels_packages_and_ours():
    got = _sourced(twice=True)
    assert all(Path(p).is_dir() for p in got["shares"].values()), got["shares"]
    assert got["header_msg"], "std_msgs/msg/Header.msg not in the share folder"
    assert len(got["prefixes"]) == len(set(got["prefixes"])), "sourcing twice repeats prefixes"


def test_large_frame_profile_exported_unless_the_user_set_one():
    assert _sourced()["profile"] == str(ROOT / "config" / "fastdds_large_frames.xml")
    assert _sourced({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"})["profile"] == \
        "/etc/mine.xml"
    assert _sourced({"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/old.xml"})["profile"] is None
