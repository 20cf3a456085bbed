#!/usr/bin/env python3
"""Benchmark the node end to end (node in its own process, this process as camera and client).

For 640x480 frames with 1, 4, 8, 16 regions: latency from image published to descriptions
received (p50, p95), the share spent outside the model (conversion, sync, transport: end-to-end
minus the node's reported inference_time), then a 30 Hz camera for a while (frames processed vs
dropped), and the node's peak RSS (VmHWM). Prints a table and writes JSON.

By default it runs twice, each run in a child process (Fast DDS reads its profile when the
process starts): without a Fast DDS profile, then with config/fastdds_large_frames.xml (16 MB
shared-memory segment), and reports the outside-the-model share of both side by side.

    source setup_env.sh && python scripts/benchmark_node.py --json bench.json
    python scripts/benchmark_node.py --profiles with      # one run, with the profile only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from rgpt_ros.client import RGPTClient, make_header  # noqa: E402
from rgpt_ros.conversions import labels_to_image_msg, rgb_to_image_msg  # noqa: E402
from rgpt_ros.process import start_node, stop_node  # noqa: E402

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def frame(n: int, height: int = 480, width: int = 640, seed: int = 0):
    """A 640x480 RGB frame with ``n`` rectangular regions on a textured background."""
    rng = np.random.default_rng(seed + n)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 128)], -1)
    rgb = (rgb + rng.normal(0, 8, rgb.shape)).clip(0, 255).astype(np.uint8)
    labels = np.zeros((height, width), np.uint16)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    ch, cw = height // rows, width // cols
    for k in range(n):
        r, c = divmod(k, cols)
        y0, x0 = r * ch + ch // 6, c * cw + cw // 6
        y1, x1 = y0 + ch * 2 // 3, x0 + cw * 2 // 3
        rgb[y0:y1, x0:x1] = rng.integers(0, 255, 3)
        labels[y0:y1, x0:x1] = k + 1
    return rgb, labels


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def profile_env(mode: str) -> dict[str, str]:
    """This environment with the large-frame profile (``with``) or no Fast DDS profile."""
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    if mode == "with":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return env


def compare_profiles(argv: list[str], json_path: str | None) -> int:
    """Run this script once per profile mode in a child process (Fast DDS reads its profile
    once per process); print the outside-the-model shares side by side."""
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("without", "with"):
            out = Path(tmp) / f"{mode}.json"
            print(f"=== Fast DDS profile: {mode} ===", flush=True)
            rc = subprocess.call([sys.executable, __file__, *argv, "--profiles", mode,
                                  "--json", str(out)])
            if rc != 0 or not out.is_file():
                print(f"the run {mode} the profile failed ({rc})")
                return 1
            runs[mode] = json.loads(out.read_text())
    shares: dict[str, dict] = {}
    print("regions | outside share without | with the profile | e2e p50 without | with")
    for n, with_ in runs["with"]["latency"].items():
        without = runs["without"]["latency"].get(n)
        if without is None:
            continue
        shares[n] = {"without": without["outside_share_p50"],
                     "with": with_["outside_share_p50"],
                     "e2e_p50_s_without": without["e2e_p50_s"],
                     "e2e_p50_s_with": with_["e2e_p50_s"]}
        print(f"{n:>7} | {without['outside_share_p50'] * 100:19.1f} % | "
              f"{with_['outside_share_p50'] * 100:14.1f} % | {without['e2e_p50_s'] * 1e3:12.1f} ms"
              f" | {with_['e2e_p50_s'] * 1e3:7.1f} ms")
    if json_path:
        Path(json_path).write_text(json.dumps({"outside_share_p50": shares, **runs}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--regions", default="1,4,8,16", help="region counts to measure")
    ap.add_argument("--repeats", type=int, default=10, help="timed frames per region count")
    ap.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    ap.add_argument("--camera-hz", type=float, default=30.0, help="camera rate for the load run")
    ap.add_argument("--camera-seconds", type=float, default=10.0, help="length of the load run")
    ap.add_argument("--camera-regions", type=int, default=4, help="regions per load-run frame")
    ap.add_argument("--model-path", default="", help="model directory; empty = demo model")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--dtype", default="float32", help="float32, float16, bfloat16")
    ap.add_argument("--tasks", default="classify,caption", help="tasks per frame")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="tokens per caption")
    ap.add_argument("--best-effort", action="store_true",
                    help="best-effort camera and node inputs (the node's default); without the "
                         "large-frame profile Fast DDS loses 640x480 best-effort frames between "
                         "processes, so reliable is the benchmark's default (the same QoS in "
                         "both runs of --profiles both)")
    ap.add_argument("--frame-timeout", type=float, default=30.0,
                    help="seconds to wait for a frame's descriptions before counting it lost")
    ap.add_argument("--profiles", choices=("both", "with", "without", "env"), default="both",
                    help="Fast DDS profile: both = one child run without and one with "
                         "config/fastdds_large_frames.xml, compared; env = as this shell has it")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--log", default="/tmp/rgpt_benchmark_node.log", help="node log file")
    args = ap.parse_args()
    if args.profiles == "both":
        # the children's own --profiles/--json come last, so theirs win
        return compare_profiles(sys.argv[1:], args.json)
    if args.profiles != "env":  # read by Fast DDS when the client's participant starts
        for name in PROFILE_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(profile_env(args.profiles))

    params = {
        "model_path": args.model_path,
        "device": args.device,
        "dtype": args.dtype,
        "tasks": [t for t in args.tasks.split(",") if t],
        "max_regions": 64,
        "max_new_tokens": args.max_new_tokens,
        "status_period": 0.25,
        "input_reliability": "best_effort" if args.best_effort else "reliable",
    }
    ns = "/rgpt_bench"
    t0 = time.monotonic()
    node = start_node(params, namespace=ns, log=args.log)
    client = RGPTClient(ns=ns, reliable_inputs=not args.best_effort)
    out: dict = {
        "params": params,
        "host": platform.node(),
        "python": sys.version.split()[0],
        "frame": "640x480 rgb8 + mono16 labels",
        "fastdds_profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
        or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"),
        "input_reliability": params["input_reliability"],
        "latency": {},
        "camera": {},
    }
    try:
        if not client.wait_ready(300):
            print(Path(args.log).read_text()[-3000:])
            return 1
        out["startup_s"] = time.monotonic() - t0
        for n in [int(x) for x in args.regions.split(",")]:
            rgb, labels = frame(n)
            # messages built before the clock starts: a camera driver hands over ready messages
            image_msg, mask_msg = rgb_to_image_msg(rgb), labels_to_image_msg(labels)
            e2e, model = [], []
            lost = 0
            for k in range(args.warmup + args.repeats):
                stamp = time.time_ns()
                header = make_header(stamp)
                image_msg.header, mask_msg.header = header, header
                t_pub = time.perf_counter()
                client.publish_frame(stamp_ns=stamp, image_msg=image_msg, mask_msg=mask_msg)
                msg = client.wait_regions(stamp, args.frame_timeout)
                if msg is None:
                    lost += 1
                    continue
                t_recv = client.regions[stamp][1]
                if k >= args.warmup:
                    e2e.append(t_recv - t_pub)
                    model.append(msg.inference_time)
            if not e2e:
                raise RuntimeError(f"no descriptions for any {n}-region frame ({lost} lost); "
                                   f"status {client.status}")
            e2e_a, model_a = np.array(e2e), np.array(model)
            outside = e2e_a - model_a
            out["latency"][n] = {
                "e2e_p50_s": pct(e2e_a, 50),
                "e2e_p95_s": pct(e2e_a, 95),
                "model_p50_s": pct(model_a, 50),
                "outside_p50_s": pct(outside, 50),
                "outside_share_p50": float(np.median(outside / e2e_a)),
                "frames": len(e2e),
                "lost": lost,
            }
            r = out["latency"][n]
            print(
                f"{n:>2} regions: e2e p50 {r['e2e_p50_s'] * 1e3:8.1f} ms  p95 "
                f"{r['e2e_p95_s'] * 1e3:8.1f} ms  model p50 {r['model_p50_s'] * 1e3:8.1f} ms"
                f"  outside {r['outside_p50_s'] * 1e3:6.1f} ms "
                f"({r['outside_share_p50'] * 100:.1f} %); lost {lost}",
                flush=True,
            )
        # Load run: a camera at camera_hz; the node keeps only the newest frame.
        before = client.wait_status(
            lambda s: (
                s.frames_received == s.frames_processed + s.frames_dropped + s.frames_rejected
            ),
            60,
        )
        rgb, labels = frame(args.camera_regions)
        lat: list[float] = []
        sent: dict[int, float] = {}
        client.on_regions = lambda m, t: lat.append(
            t - sent.get(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec, t)
        )
        period = 1.0 / args.camera_hz
        start = time.perf_counter()
        n_pub = 0
        while time.perf_counter() - start < args.camera_seconds:
            due = start + n_pub * period
            time.sleep(max(0.0, due - time.perf_counter()))
            stamp = time.time_ns()
            sent[stamp] = time.perf_counter()
            client.publish_frame(rgb, labels, stamp_ns=stamp)
            n_pub += 1
        after = client.wait_status(
            lambda s: (
                s.frames_received == s.frames_processed + s.frames_dropped + s.frames_rejected
                and s.frames_received > before.frames_received
            ),
            600,
        )
        client.on_regions = None
        got = {
            k: getattr(after, k) - getattr(before, k)
            for k in ("frames_received", "frames_processed", "frames_dropped", "frames_rejected")
        }
        out["camera"] = {
            "hz": args.camera_hz,
            "seconds": args.camera_seconds,
            "regions": args.camera_regions,
            "published": n_pub,
            **got,
            "e2e_p50_s": pct(lat, 50),
            "e2e_p95_s": pct(lat, 95),
        }
        c = out["camera"]
        print(
            f"camera {args.camera_hz:.0f} Hz x {args.camera_seconds:.0f} s "
            f"({args.camera_regions} regions): published {n_pub}, received "
            f"{c['frames_received']}, processed {c['frames_processed']}, dropped "
            f"{c['frames_dropped']}, rejected {c['frames_rejected']}; e2e p50 "
            f"{c['e2e_p50_s'] * 1e3:.1f} ms p95 {c['e2e_p95_s'] * 1e3:.1f} ms"
        )
        out["node_peak_rss_mb"] = peak_rss_mb(node.pid)
        print(f"node peak RSS {out['node_peak_rss_mb']:.0f} MB; startup {out['startup_s']:.1f} s")
    finally:
        client.close()
        out["node_exit"] = stop_node(node)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
