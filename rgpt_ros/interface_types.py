"""Our message definitions for `rosbags`, so bags we write carry the types ROS 2 tools expect.

rosbags needs every custom type registered from its `.msg` text; reading the installed `.msg`
files (or the repository's, before a build) keeps one source of truth for the definitions.
"""

from __future__ import annotations

from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

INTERFACE_PACKAGE = "regiongpt_ros"


def interface_msg_dir() -> Path:
    """The folder of our `.msg` files: the installed share folder, else the source tree's."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            installed = Path(get_package_share_directory(INTERFACE_PACKAGE)) / "msg"
            if installed.is_dir():
                return installed
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    source = Path(__file__).resolve().parent.parent / "msg"
    if not source.is_dir():
        raise FileNotFoundError(
            f"cannot find the {INTERFACE_PACKAGE} .msg files: build the package "
            "(bash scripts/setup.sh) or run from the repository"
        )
    return source


def make_typestore(store: Stores = Stores.ROS2_KILTED) -> Typestore:
    """A rosbags typestore with the ROS 2 standard types plus every message of ours."""
    typestore = get_typestore(store)
    types = {}
    for path in sorted(interface_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{INTERFACE_PACKAGE}/msg/{path.stem}"))
    typestore.register(types)
    return typestore
