"""rgpt-bag: play a rosbag2 into topics, or record topics into a rosbag2 (built on rosbags).

    python -m rgpt_ros.bag_cli play BAG [--rate 2 | --consume] [--remap /camera/image:=image]
    python -m rgpt_ros.bag_cli record OUT [--ns /rgpt] [--topics regions refer_result status]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def _remaps(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise SystemExit(f"--remap wants FROM:=TO, got {item!r}")
        out[src] = dst
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rgpt-bag", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("play", help="publish a bag's messages",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bag", help="rosbag2 directory (mcap or sqlite3)")
    p.add_argument("--ns", default="", help="namespace for relative remapped topic names")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                   help="publish bag topic FROM on topic TO (repeatable)")
    p.add_argument("--topics", nargs="*", default=None,
                   help="bag topics to play (default: all)")
    p.add_argument("--rate", type=float, default=1.0,
                   help="time factor on the bag's timing (2 = twice as fast)")
    p.add_argument("--consume", action="store_true",
                   help="ignore timing: publish each frame once the node dealt with the last")
    p.add_argument("--frame-topic", default=None,
                   help="bag topic that marks a frame (default: guessed image topic)")
    qos = p.add_mutually_exclusive_group()
    qos.add_argument("--best-effort", dest="reliable", action="store_false", default=None,
                     help="publish best-effort (default: the QoS the bag recorded for each "
                          "topic, reliable when it recorded none)")
    qos.add_argument("--reliable", dest="reliable", action="store_true", default=None,
                     help="publish reliable, whatever the bag recorded")
    p.add_argument("--wait-subscribers", type=float, default=10.0,
                   help="seconds to wait for subscribers before playing")
    p.add_argument("--consume-timeout", type=float, default=120.0,
                   help="seconds to wait for the node per frame in --consume mode")
    p.add_argument("--regions-topic", default="regions",
                   help="node output watched in --consume mode")
    p.add_argument("--status-topic", default="status",
                   help="node status watched in --consume mode")
    r = sub.add_parser("record", help="record topics into a bag",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("out", help="bag directory to create (must not exist)")
    r.add_argument("--ns", default="", help="namespace for relative topic names")
    r.add_argument("--topics", nargs="*", default=None,
                   help="topics, optionally topic:pkg/msg/Type (default: the node's outputs "
                        "regions refer_result status debug_image)")
    r.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                   help="bag storage format")
    r.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0 = until SIGINT/SIGTERM)")
    r.add_argument("--best-effort", action="store_true",
                   help="subscribe best-effort instead of reliable")
    r.add_argument("--wait-publishers", type=float, default=5.0,
                   help="seconds to wait for every topic's publisher to be matched before "
                        "printing 'recording' (0 = start at once)")
    return ap


def _spin_in_thread(node: Node) -> tuple[SingleThreadedExecutor, threading.Thread]:
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except (ExternalShutdownException, Exception):  # noqa: BLE001 - ends with shutdown
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return executor, thread


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rclpy.init(args=["rgpt-bag"], signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = Node("rgpt_bag_" + args.command, namespace=args.ns or None)
    log = node.get_logger()
    executor, thread = _spin_in_thread(node)
    try:
        if args.command == "play":
            from .bag_player import play

            stats = play(node, args.bag, remap=_remaps(args.remap), rate=args.rate,
                         consume=args.consume, frame_topic=args.frame_topic, topics=args.topics,
                         reliable=args.reliable, wait_subscribers=args.wait_subscribers,
                         consume_timeout=args.consume_timeout,
                         regions_topic=args.regions_topic, status_topic=args.status_topic,
                         log=log.info)
            log.info(f"played {sum(stats.published.values())} messages ({stats.frames} frames) "
                     f"in {stats.seconds:.1f} s: {stats.published}")
            return 1 if stats.consume_timeouts else 0
        from .bag_recorder import BagRecorder

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        rec = BagRecorder(node, args.out, args.topics, storage=args.storage,
                          reliable=not args.best_effort)
        missing = rec.wait_for_publishers(args.wait_publishers)
        if missing:
            log.warning(f"no publisher matched yet on {missing}; recording anyway")
        log.info(f"recording {list(rec.counts)} into {args.out}")
        print("recording", flush=True)  # readiness marker for scripts
        end = time.monotonic() + (args.duration if args.duration > 0 else float("inf"))
        while not stop.wait(0.2) and time.monotonic() < end:
            pass
        counts = rec.close()
        log.info(f"recorded {counts} into {args.out}")
        return 0
    finally:
        executor.shutdown(timeout_sec=1.0)
        thread.join(5.0)  # a spinning thread at interpreter exit aborts the process
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
