"""The main job: start the node on the demo model, replay the demo bag through it, print the
region descriptions and the answers to referring queries, record the outputs, print a summary.

    bash scripts/run_demo.sh [--max-new-tokens 16] [--device auto] ...

Exit status 0 when the pipeline worked end to end (node up, every frame accounted for, every
query answered, clean shutdown); answer correctness is reported, and only counts when the
trained demo model is present (the tiny random model's answers are random).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import demo_bag
from .bag_player import play
from .bag_recorder import BagRecorder
from .client import GOAL_SUCCEEDED, RGPTClient
from .process import start_node, stop_node

PREFERRED_KINDS = ("attribute", "relation", "superlative", "absent")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rgpt-demo", description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--bag", default=None,
                    help="demo bag directory (default: generated into the RGPT cache)")
    ap.add_argument("--model-path", default="",
                    help="model directory; empty = the built-in demo model")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--tasks", default="classify,caption", help="tasks per frame")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="tokens per caption/answer")
    ap.add_argument("--queries-per-scene", type=int, default=3,
                    help="referring queries asked about each synthetic scene")
    ap.add_argument("--namespace", default="/rgpt_demo", help="namespace of the node")
    ap.add_argument("--record", default=None,
                    help="bag to record the node's outputs into (default: a temp folder)")
    ap.add_argument("--startup-timeout", type=float, default=180.0,
                    help="seconds to wait for the node to become active")
    ap.add_argument("--log", default=None, help="node log file (default: beside the record)")
    return ap


def demo_model_trained() -> bool:
    from rgpt_model.demo import DEMO_MODEL_DIR

    return (DEMO_MODEL_DIR / "config.json").is_file() and any(DEMO_MODEL_DIR.glob("*.safetensors"))


def pick_expressions(expressions: list[dict], n: int) -> list[dict]:
    """Up to ``n`` expressions, one per kind first (attribute, relation, ... absent)."""
    chosen: list[dict] = []
    for kind in PREFERRED_KINDS:
        chosen += [e for e in expressions if e["kind"] == kind][:1]
    chosen += [e for e in expressions if e not in chosen]
    return chosen[:n]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_dir = Path(tempfile.mkdtemp(prefix="rgpt_demo_"))
    record = Path(args.record) if args.record else out_dir / "outputs"
    log_path = Path(args.log) if args.log else out_dir / "node.log"
    t0 = time.monotonic()
    bag = demo_bag.ensure(args.bag)
    frames = {f["stamp_ns"]: f for f in demo_bag.load_annotations(bag)["frames"]}
    trained = demo_model_trained() or bool(args.model_path)
    print(f"[demo] bag {bag} ({len(frames)} frames); node log {log_path}")
    if not trained:
        print("[demo] NOTE: no trained demo model yet: the node uses a tiny RANDOM model, so "
              "labels, captions and answers below are random (the plumbing is what runs).")
    params = {"model_path": args.model_path, "device": args.device,
              "tasks": [t.strip() for t in args.tasks.split(",") if t.strip()],
              "max_new_tokens": args.max_new_tokens, "status_period": 0.25}
    node = start_node(params, namespace=args.namespace, log=log_path)
    client = RGPTClient(ns=args.namespace, reliable_inputs=True)
    problems: list[str] = []
    asked = answered = correct = 0
    try:
        if not client.wait_ready(args.startup_timeout):
            print(f"[demo] node did not become active; log tail:\n"
                  f"{log_path.read_text(errors='replace')[-3000:]}")
            return 1
        print(f"[demo] node active after {time.monotonic() - t0:.1f} s")
        recorder = BagRecorder(client.node, record, ["regions", "refer_result", "status"])

        def on_frame(_topic: str, stamp: int) -> None:
            nonlocal asked, answered, correct
            info = frames.get(stamp, {})
            msg = client.wait_regions(stamp, 5.0)  # the player may have seen it first
            head = f"[frame] {info.get('kind', '?')} {info.get('source', '?')} " \
                   f"({info.get('width')}x{info.get('height')})"
            if msg is None:
                print(f"{head}: no descriptions (rejected or dropped; see status)")
                return
            print(f"{head}: {len(msg.regions)} regions, model {msg.inference_time:.2f} s")
            for r in msg.regions:
                truth = info.get("regions", {}).get(str(r.id), "")
                note = f"  [truth: {truth}]" if truth else ""
                print(f"   id {r.id:>2} {r.label!r:<16} score {r.label_score:.2f} "
                      f"box {r.bbox.x_offset},{r.bbox.y_offset},{r.bbox.width}x"
                      f"{r.bbox.height} caption {r.caption!r}{note}")
            for k, expr in enumerate(pick_expressions(info.get("expressions", []),
                                                      args.queries_per_scene)):
                asked += 1
                via = "topic" if k % 2 == 0 else "action"
                if via == "topic":
                    res = client.refer_topic(expr["text"], f"demo-{stamp}-{k}", timeout=120)
                    ok = res is not None and res.success
                    ids = list(res.matched_ids) if res else []
                    raw = res.raw_answer if res else ""
                    err = (res.error if res else "no answer")
                else:
                    out = client.refer_action(expr["text"], query_id=f"demo-{stamp}-{k}",
                                              timeout=120)
                    ok = out is not None and out[0] == GOAL_SUCCEEDED
                    ids = list(out[1].matched_ids) if out else []
                    raw = out[1].answer if out else ""
                    err = out[1].error if out else "no answer"
                if not ok:
                    problems.append(f"query {expr['text']!r} failed: {err}")
                    print(f"   Q ({via}) {expr['text']!r} -> FAILED: {err}")
                    continue
                answered += 1
                right = sorted(ids) == sorted(expr["target_ids"])
                correct += right
                print(f"   Q ({via}) {expr['text']!r} -> ids {ids} (expected "
                      f"{expr['target_ids']}) {'correct' if right else 'wrong'}; raw {raw!r}")

        stats = play(client.node, bag, remap={demo_bag.IMAGE_TOPIC: "image",
                                              demo_bag.MASK_TOPIC: "masks"},
                     consume=True, frame_topic=demo_bag.IMAGE_TOPIC, on_frame=on_frame,
                     consume_timeout=300, log=lambda s: print(f"[play] {s}"))
        st = client.wait_status(lambda s: s.frames_received >= stats.frames and
                                s.frames_received == s.frames_processed + s.frames_dropped
                                + s.frames_rejected, 30)
        time.sleep(0.5)
        counts = recorder.close()
    finally:
        client.close()
        rc = stop_node(node)
    if st is None:
        problems.append("frames not accounted for (processed + dropped + rejected != received)")
    if rc != 0:
        problems.append(f"node exited with status {rc}")
    if stats.consume_timeouts:
        problems.append(f"{stats.consume_timeouts} frames not consumed in time")
    print("\n[summary]")
    print(f"  frames played      {stats.frames} in {stats.seconds:.1f} s")
    if st is not None:
        print(f"  node frames        received {st.frames_received}, processed "
              f"{st.frames_processed}, dropped {st.frames_dropped}, rejected "
              f"{st.frames_rejected}; model latency p50 {st.latency_p50:.2f} s, "
              f"p95 {st.latency_p95:.2f} s")
    print(f"  referring queries  {asked} asked, {answered} answered, {correct} correct"
          + ("" if trained else " (random model: correctness not expected)"))
    print(f"  outputs recorded   {record} {counts}")
    print(f"  node exit status   {rc}; total {time.monotonic() - t0:.1f} s")
    for p in problems:
        print(f"  PROBLEM: {p}")
    print("[demo] " + ("done" if not problems else "finished with problems"))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
