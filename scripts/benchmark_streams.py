#!/usr/bin/env python3
"""Benchmark one node serving N camera streams against the alternatives, on this machine.

For N = 1, 2, 4 streams, each a camera at 30 Hz (this process publishes them all, image and
label masks, over real DDS), processed frames per second in total of:

- multi:        one node, streams [cam0 .. camN-1], one model batch across the streams
                (max_batch_frames N: one vision batch and one decoding batch per round);
- single_nodes: N single-stream nodes (N processes, each its own model copy) sharing the CPU;
- in_turn:      one node, the same N streams, served one frame at a time in round robin
                (max_batch_frames 1: what the node does without batching).

N = 1 is one node with one stream (the three setups are the same). For each N the nodes start
once and the setups are measured in interleaved rounds (the camera moves from one setup to the
next; the in_turn rounds set max_batch_frames 1 on the multi-stream node), so the ratios
multi / single_nodes and multi / in_turn come from the same run under the same load; figures
are medians over the rounds. Answer reuse is off (reuse_max_age 0) unless
--reuse: the camera frames do not change, so reuse would skip all decoding and hide batching.
Each window runs --warmup seconds, then is counted from the nodes' own status counters for
--seconds and until --min-frames were processed. Models: demo (rgpt_model/demo_model) and
tiny-large (random weights with the full model's sequence geometry,
scripts/benchmark_regions.tiny_large_configs), or a model directory.
The CPU is shared with whatever else runs: run it niced and say so. Besides frames/s, each
window records the node processes' CPU time: frames per CPU-second is the efficiency of a setup
whatever share of a busy machine the scheduler gave it (N processes get more of it than one);
--cpus pins every node to the same cores, so per-second figures compare the same hardware.

    source setup_env.sh
    nice -n 10 python scripts/benchmark_streams.py --json docs/benchmarks/streams_cpu.json
    python scripts/benchmark_streams.py --cpus 0 --threads 1 --models demo --streams 2 4 \
        --json docs/benchmarks/streams_cpu_pinned.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.signals import SignalHandlerOptions

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rgpt_ros.client import RGPTClient, make_header  # noqa: E402
from rgpt_ros.conversions import labels_to_image_msg, rgb_to_image_msg  # noqa: E402
from rgpt_ros.process import start_node, stop_node  # noqa: E402
from scripts.benchmark_node import frame  # noqa: E402

SETUPS = ("multi", "single_nodes", "in_turn")


def model_dir(name: str, tmp: Path) -> str:
    """A directory the node can load: demo ('' = the node's default), tiny-large (saved now
    from random weights), or a model directory as given."""
    if name == "demo":
        return ""
    if name == "tiny-large":
        from rgpt_model.predictor import RGPTPredictor
        from scripts.benchmark_regions import build_random_rgpt, tiny_large_configs

        out = tmp / "tiny_large"
        RGPTPredictor(*build_random_rgpt(*tiny_large_configs())).save_pretrained(out)
        return str(out)
    return name


class Cameras:
    """Publishes every target (a client with its image/mask publishers) at ``hz`` from one
    thread; messages are built once, only the stamp changes."""

    def __init__(self, clients: list[RGPTClient], hz: float, size: tuple[int, int],
                 regions: int) -> None:
        self.clients, self.period = clients, 1.0 / hz
        self.frames = []
        for k, _ in enumerate(clients):
            rgb, labels = frame(regions, height=size[0], width=size[1], seed=k)
            self.frames.append((rgb_to_image_msg(rgb), labels_to_image_msg(labels)))
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Cameras:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        start, tick = time.perf_counter(), 0
        while not self._stop.is_set():
            self._stop.wait(max(0.0, start + tick * self.period - time.perf_counter()))
            stamp = time.time_ns()
            for client, (image, masks) in zip(self.clients, self.frames, strict=True):
                image.header = masks.header = make_header(stamp, "camera")
                client.publish_frame(stamp_ns=stamp, image_msg=image, mask_msg=masks)
            self.sent += 1
            tick += 1


def _fresh_status(client: RGPTClient, after_ns: int, timeout: float = 30.0):
    def fresh(s):
        return s.header.stamp.sec * 1_000_000_000 + s.header.stamp.nanosec > after_ns
    st = client.wait_status(fresh, timeout)
    if st is None:
        raise RuntimeError(f"no status from the node in {timeout} s")
    return st


def _stream_counts(statuses) -> list[tuple[int, int, int]]:
    """(received, processed, dropped) of every stream of every node, in order."""
    return [(s.frames_received, s.frames_processed, s.frames_dropped)
            for st in statuses for s in st.streams]


def _stamp_ns(status) -> int:
    return status.header.stamp.sec * 1_000_000_000 + status.header.stamp.nanosec


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (threads it starts later inherit it): the setups
    then share the same cores, whatever number of processes each one has."""
    for _ in range(2):  # threads started while the first pass ran
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except ProcessLookupError:  # a thread that has just ended
                pass


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _processed(statuses) -> int:
    return sum(s.frames_processed for s in statuses)


def measure(targets: list[RGPTClient], status_clients: list[RGPTClient], pids: list[int],
            args) -> dict:
    """Cameras on ``targets`` for warmup, then counted for at least --seconds and until
    --min-frames were processed (a slow model needs longer windows); rates from the nodes'
    status counters, CPU time from the node processes (``pids``)."""
    with Cameras(targets, args.hz, args.size, args.regions) as cams:
        time.sleep(args.warmup)
        t0, sent0 = time.time_ns(), cams.sent
        before = [_fresh_status(c, t0) for c in status_clients]
        cpu0 = cpu_seconds(pids)
        start = time.monotonic()
        while time.monotonic() - start < args.seconds or (
                _processed(c.status for c in status_clients) - _processed(before)
                < args.min_frames and time.monotonic() - start < args.max_seconds):
            time.sleep(0.5)
        t1, sent1 = time.time_ns(), cams.sent
        after = [_fresh_status(c, t1) for c in status_clients]
        cpu = cpu_seconds(pids) - cpu0
    seconds = (min(_stamp_ns(s) for s in after) - max(_stamp_ns(s) for s in before)) / 1e9
    deltas = [tuple(b - a for a, b in zip(x, y, strict=True))
              for x, y in zip(_stream_counts(before), _stream_counts(after), strict=True)]
    per_stream = [d[1] / seconds for d in deltas]
    return {
        "processed_fps": sum(per_stream),
        "frames_per_cpu_s": sum(d[1] for d in deltas) / max(cpu, 1e-9),
        "node_cpu_share": cpu / ((t1 - t0) / 1e9),  # cores the nodes got, on average
        "per_stream_processed_fps": per_stream,
        "received_fps": sum(d[0] for d in deltas) / seconds,
        "dropped_fps": sum(d[2] for d in deltas) / seconds,
        "published_fps": (sent1 - sent0) * len(targets) / ((t1 - t0) / 1e9),
        "seconds": seconds,
    }


def run_streams(n: int, params: dict, args, log_dir: Path) -> dict:
    """All setups for N streams, measured in interleaved rounds (multi, single_nodes, in_turn,
    then again in another order ...) so a change of the machine's load hits every setup."""
    streams = [f"cam{k}" for k in range(n)]
    setups = ["multi"] if n == 1 else list(args.setups)
    nodes = [("/bench_multi", {**params, "streams": streams, "max_batch_frames": n})]
    if "single_nodes" in setups:
        nodes += [(f"/bench_single{k}", {**params, "streams": [""]}) for k in range(n)]
    procs = [start_node(p, namespace=ns, log=log_dir / f"{ns.strip('/')}_{n}.log")
             for ns, p in nodes]
    if args.cpus:
        for proc in procs:
            pin_process(proc.pid, args.cpus)
    multi = [RGPTClient(ns="/bench_multi", stream=s, reliable_inputs=True) for s in streams]
    single = [RGPTClient(ns=ns, reliable_inputs=True) for ns, _ in nodes[1:]]
    rounds: dict[str, list[dict]] = {s: [] for s in setups}
    try:
        for c in multi + single:
            if not c.wait_ready(600):
                raise RuntimeError(f"N={n}: a node did not become ready; see {log_dir}")
        for r in range(args.rounds):
            for setup in setups[r % len(setups):] + setups[: r % len(setups)]:
                if setup == "single_nodes":
                    rounds[setup].append(measure(single, single, [x.pid for x in procs[1:]],
                                                 args))
                    continue
                batch = n if setup == "multi" else 1
                if not all(x.successful for x in multi[0].set_parameters(
                        {"max_batch_frames": batch})):
                    raise RuntimeError("max_batch_frames refused")
                rounds[setup].append(measure(multi, multi[:1], [procs[0].pid], args))
    finally:
        for c in multi + single:
            c.close()
        for p in procs:
            stop_node(p)
    out: dict = {}
    for setup, runs in rounds.items():
        out[setup] = {key: float(np.median([x[key] for x in runs]))
                      for key in ("processed_fps", "frames_per_cpu_s", "node_cpu_share")}
        out[setup]["rounds"] = runs
    for other in ("single_nodes", "in_turn"):
        if other not in rounds:
            continue
        for key, name in (("processed_fps", ""), ("frames_per_cpu_s", "_per_cpu")):
            ratios = [m[key] / max(o[key], 1e-9)
                      for m, o in zip(rounds["multi"], rounds[other], strict=True)]
            out[f"multi_vs_{other}{name}"] = float(np.median(ratios))
            out[f"multi_vs_{other}{name}_rounds"] = ratios
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    arg = ap.add_argument
    arg("--models", nargs="+", default=["demo", "tiny-large"],
        help="demo, tiny-large or model directories (default: demo tiny-large)")
    arg("--streams", nargs="+", type=int, default=[1, 2, 4],
        help="stream counts N to measure (default: 1 2 4)")
    arg("--setups", nargs="+", choices=SETUPS, default=list(SETUPS),
        help="setups to compare for N > 1 (default: all three)")
    arg("--hz", type=float, default=30.0, help="camera rate per stream (default: 30)")
    arg("--size", type=lambda s: tuple(int(v) for v in s.split("x"))[::-1], default=(240, 320),
        help="frame size WIDTHxHEIGHT (default: 320x240)")
    arg("--regions", type=int, default=4, help="regions per frame (default: 4)")
    arg("--tasks", default="classify,caption", help="tasks per frame (default: classify,caption)")
    arg("--max-new-tokens", type=int, default=8,
        help="tokens per answer (default: 8; a random-weight model never stops early, so this "
             "sets its decode length)")
    arg("--threads", type=int, default=0,
        help="num_threads of every node (default: 0 = the node's default, CPUs - 1, at least "
             "1; more than that on a busy machine makes torch's threads wait for each other)")
    arg("--reuse", action="store_true",
        help="leave answer reuse on (default: off, reuse_max_age 0; see above)")
    arg("--rounds", type=int, default=5,
        help="interleaved rounds over the setups; figures are medians of rounds (default: 5)")
    arg("--warmup", type=float, default=3.0,
        help="seconds of camera before each count (default: 3)")
    arg("--seconds", type=float, default=10.0,
        help="seconds counted per setup and round (default: 10)")
    arg("--min-frames", type=int, default=40,
        help="a counted window also lasts until this many frames were processed (default: 40)")
    arg("--max-seconds", type=float, default=90.0,
        help="... but no longer than this many seconds (default: 90)")
    arg("--cpus", type=lambda s: {int(v) for v in s.split(",")}, default=None,
        help="pin every node process to these CPUs, e.g. 0 (default: none; unpinned, N "
             "processes draw more of a shared machine than one: compare frames per CPU-second)")
    arg("--device", default="cpu", help="node device (default: cpu)")
    arg("--json", type=Path, default=None, help="write the results here (default: none)")
    arg("--log-dir", type=Path, default=None,
        help="node logs (default: a temporary folder, removed afterwards)")
    args = ap.parse_args(argv)
    if "multi" not in args.setups:
        args.setups = ["multi", *args.setups]
    # Ctrl-C and SIGTERM end this script with the nodes stopped (rclpy's own handler would
    # only stop the clients; a shell's background job starts with SIGINT ignored)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    params = {"tasks": [t for t in args.tasks.split(",") if t],
              "max_new_tokens": args.max_new_tokens, "max_regions": 64, "status_period": 0.25,
              "input_reliability": "reliable",
              "num_threads": args.threads, "device": args.device,
              **({} if args.reuse else {"reuse_max_age": 0})}
    out: dict = {"command": " ".join(["scripts/benchmark_streams.py", *(argv or sys.argv[1:])]),
                 "host": platform.node(), "cpus": os.cpu_count(), "nice": os.nice(0),
                 "pinned_cpus": sorted(args.cpus) if args.cpus else None,
                 "hz": args.hz, "size_wxh": [args.size[1], args.size[0]],
                 "regions": args.regions, "params": params,
                 "loadavg_start": os.getloadavg(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = args.log_dir or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            params_m = {**params, "model_path": model_dir(name, Path(tmp))}
            res: dict = {}
            for n in args.streams:
                r = res[n] = run_streams(n, params_m, args, log_dir)
                print(f"{name} N={n}: " + "  ".join(
                    f"{s} {r[s]['processed_fps']:.2f} fps ({r[s]['frames_per_cpu_s']:.2f}/cpu-s, "
                    f"{r[s]['node_cpu_share']:.2f} cores)" for s in SETUPS if s in r)
                    + "  " + "  ".join(f"{k} {v:.2f}x" for k, v in r.items()
                                       if k.startswith("multi_vs") and not k.endswith("rounds")),
                    flush=True)
            out["models"][name] = res
    out["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
