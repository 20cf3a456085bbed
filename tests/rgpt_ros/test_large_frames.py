"""Issue 18, defect 13: 640x480 rgb8 frames, best effort, between two processes on one host.

With Fast DDS's default ~512 kB shared-memory segment almost none arrive; the profile shipped in
config/ (a 16 MB segment) must carry them. Both processes get the profile explicitly, whatever
the test's own environment says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "config" / "fastdds_large_frames.xml"
FRAMES, HZ = 20, 10.0


def _env(profile: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")}
    if profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


def frames_received(profile: Path | None) -> tuple[int, str]:
    """Frames of FRAMES that reached a best-effort subscriber in another process."""
    cmd = [sys.executable, "-m", "tests.rgpt_ros.large_frame_peer"]
    sub = subprocess.Popen([*cmd, "sub"], cwd=ROOT, env=_env(profile), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert sub.stdout.readline().strip() == "ready", "subscriber did not start"
        pub = subprocess.run([*cmd, "pub", str(FRAMES), str(HZ)], cwd=ROOT, env=_env(profile),
                             capture_output=True, text=True, timeout=120)
        assert pub.returncode == 0, pub.stdout + pub.stderr
        time.sleep(0.5)
        sub.terminate()
        out, _ = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    match = re.search(r"received (\d+) of (\d+)", out)
    assert match, out
    return int(match.group(1)), out


def test_profile_carries_640x480_best_effort_frames_between_processes():
    got, out = frames_received(PROFILE)
    assert got >= 0.9 * FRAMES, f"{got} of {FRAMES} frames arrived with the profile\n{out}"
