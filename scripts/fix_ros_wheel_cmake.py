"""Point the ROS 2 wheels' CMake export files at this interpreter's include folders.

The wheels were built in a manylinux container, and their exported CMake targets name that
container's Python and numpy include folders (under /opt/python/...). CMake refuses targets
whose include paths do not exist, so interface generation fails until those paths are rewritten.
Idempotent: files already fixed are left alone.

The numpy folder can be given as a path outside the repository: CMake refuses to export
targets whose include folders lie inside the source tree, and the virtual environment does.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILDER_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+t?/include/python3\.\d+t?")
BUILDER_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+t?/lib/python3\.\d+t?/site-packages/numpy/(?:_core|core)/include"
)


def fix_prefix(prefix: Path, numpy_include: str) -> int:
    """Rewrite builder paths in every *.cmake file under ``prefix``; return files changed."""
    python_include = sysconfig.get_paths()["include"]
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        fixed = BUILDER_NUMPY_INCLUDE.sub(numpy_include, text)
        fixed = fixed.replace(numpy.get_include(), numpy_include)
        fixed = BUILDER_PYTHON_INCLUDE.sub(python_include, fixed)
        if fixed != text:
            path.write_text(fixed, encoding="utf-8", errors="surrogateescape")
            changed += 1
    return changed


if __name__ == "__main__":
    # argv: [prefix] [numpy include folder to write, e.g. a link outside the source tree]
    root = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
    numpy_dir = sys.argv[2] if len(sys.argv) > 2 else numpy.get_include()
    print(f"fixed {fix_prefix(root, numpy_dir)} CMake export file(s) under {root}")
