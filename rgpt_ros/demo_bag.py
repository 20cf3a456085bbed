"""Generate the demo bag: synthetic scenes (with known referring answers), scenes whose masks
are bounding boxes, and real photographs.

The frames come from rgpt_model.data.demo_frames (deterministic): synthetic scenes, scenes
with box masks (as a detector without SAM gives them), then the photographs shipped inside
scikit-image with masks of their largest segments. Topics: /camera/image (rgb8) and
/camera/masks (mono16 label image), same stamps, 5 Hz. The bag is generated on demand (a few
MB, deterministic), not committed; ``annotations.json`` beside the bag's files holds every
frame's stamp, regions and the synthetic scenes' referring expressions with their target ids.

    python -m rgpt_ros.demo_bag OUT_DIR [--scenes 6] [--boxes 2] [--photos 4] [--storage mcap]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rgpt_model.data.demo_frames import PHOTOS, demo_frames

IMAGE_TOPIC = "/camera/image"
MASK_TOPIC = "/camera/masks"
START_NS = 1_700_000_000 * 1_000_000_000
PERIOD_NS = 200_000_000
ANNOTATIONS = "annotations.json"
BOX_FRAMES = 2  # frames with box masks, after the synthetic scenes


def default_path() -> Path:
    """Where the demo bag is generated when no path is given (the RGPT cache)."""
    from rgpt_model.demo import cache_dir

    return cache_dir() / "demo_bag_v2"  # v2: with box-mask frames


def generate(out: str | Path, scenes: int = 6, photos: int = 4, storage: str = "mcap",
             height: int = 240, width: int = 320, overwrite: bool = False,
             boxes: int = BOX_FRAMES) -> Path:
    """Write the demo bag to ``out`` and return its path (``boxes``: scenes with box masks)."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from .client import make_header
    from .conversions import labels_to_image_msg, rgb_to_image_msg
    from .interface_types import make_typestore

    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite)")
        shutil.rmtree(out)
    frames = demo_frames(scenes, photos, height, width, boxes)
    typestore = make_typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    notes = []
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        c_img = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=typestore)
        c_mask = writer.add_connection(MASK_TOPIC, "sensor_msgs/msg/Image", typestore=typestore)
        for k, frame in enumerate(frames):
            stamp = START_NS + k * PERIOD_NS
            header = make_header(stamp, "demo_camera")
            writer.write(c_mask, stamp,
                         serialize_message(labels_to_image_msg(frame.labels, header)))
            writer.write(c_img, stamp, serialize_message(rgb_to_image_msg(frame.image, header)))
            notes.append({"stamp_ns": stamp, **frame.annotations()})
    (out / ANNOTATIONS).write_text(json.dumps({"image_topic": IMAGE_TOPIC,
                                               "mask_topic": MASK_TOPIC, "frames": notes},
                                              indent=1))
    return out


def load_annotations(bag: str | Path) -> dict:
    return json.loads((Path(bag) / ANNOTATIONS).read_text())


def ensure(path: str | Path | None = None) -> Path:
    """The demo bag, generated first when missing."""
    path = Path(path) if path else default_path()
    if not (path / ANNOTATIONS).is_file():
        generate(path, overwrite=True)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("out", nargs="?", default=None,
                    help="bag directory to create (default: $RGPT_CACHE_DIR/demo_bag_v2)")
    ap.add_argument("--scenes", type=int, default=6, help="synthetic scenes")
    ap.add_argument("--boxes", type=int, default=BOX_FRAMES,
                    help="synthetic scenes with bounding-box masks (a detector's, no SAM)")
    ap.add_argument("--photos", type=int, default=4, help=f"photographs (of {PHOTOS})")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                    help="bag storage format")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    args = ap.parse_args(argv)
    path = generate(args.out or default_path(), args.scenes, args.photos, args.storage,
                    overwrite=args.overwrite, boxes=args.boxes)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
